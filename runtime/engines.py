"""Runtime engines by name: what computes a compiled output's stages, and which backend's artifacts it needs.

Why one table: `edgec verify`, `edgec run`, the in-process stage loop and the MPI ranks all
choose an engine by name; each engine says here how to make a stage's session (for verify in
one process and for the Python MPI ranks), the frame-loop kernel over that session, and how to
run the whole output distributed. An engine that runs the whole program itself (cpp) has no
per-stage session. Sessions, kernels and runners are imported only when used, so naming the
TVM engine does not import TVM.

    onnxruntime  the ONNX sub-models in onnxruntime        (backend onnx, always there)
    tvm          each stage's TVM module, in Python        (backend tvm)
    cpp          the generated C++/MPI program             (backend cpp)
    vta          VTA stages on the simulator, CPU fallbacks (backend vta; other stages in onnxruntime)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..compiler.diagnostics import UsageError, closest

if TYPE_CHECKING:
    from .launcher import RunResult
    from .outputs import CompiledOutput

SessionFactory = Callable[["CompiledOutput", int, "int | None", bool], Any]


@dataclass(frozen=True)
class Engine:
    """`session(compiled, rank, threads, spin)` makes a stage's session (onnxruntime-like `run`,
    `get_inputs`, `get_outputs`), `kernel(session)` its frame-loop kernel, `owns(session)` tells
    whether a session is this engine's; `runner(out, feeds, **options)` runs the output on MPI."""

    name: str
    backend: str
    summary: str
    runner: Callable[..., RunResult]
    session: SessionFactory | None = None
    kernel: Callable[[Any], Any] | None = None
    owns: Callable[[Any], bool] | None = None

    @property
    def per_stage(self) -> bool:
        return self.session is not None

    def run(self, out: Any, feeds: dict, **options: Any) -> RunResult:
        """Run OUT distributed (one MPI rank per stage); the options of `launcher.run`."""
        return self.runner(out, feeds, **options)


def _python_ranks(name: str) -> Callable[..., RunResult]:
    def run(out: Any, feeds: dict, **options: Any) -> RunResult:
        from .launcher import run as launch

        return launch(out, feeds, engine=name, **options)

    return run


def _cpp_program(out: Any, feeds: dict, **options: Any) -> RunResult:
    from .cpp_engine import run

    return run(out, feeds, **options)


def _ort_session(compiled: CompiledOutput, rank: int, threads: int | None, spin: bool) -> Any:
    return compiled.session(rank, threads, spin=spin)


def _ort_kernel(session: Any) -> Any:
    from .stage_kernel import OrtKernel

    return OrtKernel(session)


def _ort_owns(session: Any) -> bool:
    import onnxruntime as ort

    return isinstance(session, ort.InferenceSession)


def _tvm_session(compiled: CompiledOutput, rank: int, threads: int | None, spin: bool) -> Any:
    from .tvm_stage import TvmSession

    return TvmSession.for_stage(compiled, rank, threads, spin=spin)


def _tvm_kernel(session: Any) -> Any:
    from .tvm_stage import TvmKernel

    return TvmKernel(session)


def _tvm_owns(session: Any) -> bool:
    from .tvm_stage import TvmSession

    return isinstance(session, TvmSession)


def _vta_session(compiled: CompiledOutput, rank: int, threads: int | None, spin: bool) -> Any:
    from .vta_stage import VtaSession

    return VtaSession.for_stage(compiled, rank, threads, spin=spin)


def _vta_kernel(session: Any) -> Any:
    from .vta_stage import VtaKernel

    return VtaKernel(session)


def _vta_owns(session: Any) -> bool:
    from .vta_stage import VtaSession

    return isinstance(session, VtaSession)


_ENGINES: dict[str, Engine] = {}


def register_engine(engine: Engine, *, replace: bool = False) -> Engine:
    if not isinstance(engine, Engine):
        raise UsageError(f"{engine!r} is not an edgec.runtime.engines.Engine")
    if engine.name in _ENGINES and not replace:
        raise UsageError(f"an engine named '{engine.name}' is already registered")
    if (engine.session is None) != (engine.kernel is None) or (engine.session is None) != (engine.owns is None):
        raise UsageError(f"engine '{engine.name}': give session, kernel and owns together, or none of them")
    _ENGINES[engine.name] = engine
    return engine


def unregister_engine(name: str) -> None:
    _ENGINES.pop(name, None)


def engine_names() -> list[str]:
    return list(_ENGINES)


def get_engine(name: str) -> Engine:
    """The engine called `name`; a UsageError listing the engines when there is none."""
    if isinstance(name, str) and name in _ENGINES:
        return _ENGINES[name]
    suggestion = closest(str(name), _ENGINES)
    raise UsageError(f"unknown engine '{name}' (engines: {', '.join(_ENGINES)})"
                     + (f"; did you mean '{suggestion}'?" if suggestion else ""))


def checked_engine(compiled: CompiledOutput, name: str, *, per_stage: bool = False) -> Engine:
    """The engine `name` for running `compiled`: known, its backend's artifacts present, and (with
    `per_stage`) able to run one stage at a time."""
    engine = get_engine(name)
    if engine.backend not in compiled.manifest.backends:
        raise UsageError(f"'{compiled.root}' has no artifacts of the {engine.backend} backend, which engine '{name}' "
                         f"runs (it was compiled with: {', '.join(compiled.manifest.backends)})",
                         hint=f"compile it with --backend {engine.backend}")
    if per_stage and not engine.per_stage:
        raise UsageError(f"engine '{name}' runs the whole program under mpirun, not one stage at a time",
                         hint=f"use `edgec run/verify --engine {name}` (edgec.runtime.engines.get_engine('{name}').run)")
    return engine


def kernel_for(session: Any) -> Any:
    """The frame-loop kernel of a session made by one of the engines."""
    for engine in _ENGINES.values():
        if engine.owns is not None and engine.owns(session):
            return engine.kernel(session)
    raise UsageError(f"no engine runs a session of type {type(session).__name__} (engines: {', '.join(_ENGINES)})")


register_engine(Engine("onnxruntime", "onnx", "the ONNX sub-models in onnxruntime", _python_ranks("onnxruntime"),
                       _ort_session, _ort_kernel, _ort_owns))
register_engine(Engine("tvm", "tvm", "each stage's TVM module (--backend tvm)", _python_ranks("tvm"),
                       _tvm_session, _tvm_kernel, _tvm_owns))
register_engine(Engine("cpp", "cpp", "the C++/MPI program (--backend cpp), built on first use", _cpp_program))
register_engine(Engine("vta", "vta", "VTA stages on the VTA simulator, their fallbacks on the CPU (--backend vta)",
                       _python_ranks("vta"), _vta_session, _vta_kernel, _vta_owns))
