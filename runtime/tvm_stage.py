"""A stage's TVM module behind the interfaces the onnxruntime stages already use.

Why look-alikes: `verify` drives stages through `get_inputs()`, `get_outputs()` and
`run(None, feeds)` of an onnxruntime session, and the MPI frame loop through a kernel's
`bind(parity, inputs, outputs)` / `run(parity)` (`stage_kernel.OrtKernel`). `TvmSession` and
`TvmKernel` offer exactly those, so either engine plugs in without touching the callers'
logic (`engines.py` names them). Names, shapes and types come from the stage's signature in the
manifest (TVM's `main` takes its inputs positionally, in that order); `from_onnx` reads them
from a sub-model instead, for a module compiled on its own.

Why the thread setup before the first session: TVM sizes its thread pool once, on first use,
from `TVM_NUM_THREADS`, and by default takes half the cores (it assumes hyper-threading; on this
2-core machine that is one thread). `_init_tvm_threads` raises it to all cores (unless the user
set it) before a session loads its module; each session then asks for its stage's `threads`.
Nothing happens at import.

A module built for another CPU (an aarch64 device) runs under qemu-user (`emulate.py`),
slowly but exactly, so `verify` works for every stage a plan can place.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

from ..backends.manifest import TensorSpec
from ..backends.tvm.emulate import elf_arch, run_module
from ..backends.tvm.section import TvmSection
from ..backends.tvm.targets import host_arch
from ..compiler.diagnostics import UsageError
from ..compiler.tensor_types import numpy_name, ort_type

if TYPE_CHECKING:
    from .outputs import CompiledOutput

_ALIGNMENT = 64


@dataclass(frozen=True)
class TensorArg:
    """What onnxruntime's NodeArg tells a caller: name, static shape, `tensor(float)`-style type."""

    name: str
    shape: list[int]
    type: str


def _args(specs: Sequence[TensorSpec]) -> list[TensorArg]:
    return [TensorArg(s.name, list(s.shape), ort_type(s.dtype)) for s in specs]


def _init_tvm_threads() -> None:
    """Let TVM's pool (sized when first used) hold every core; sessions then pick their stage's threads."""
    os.environ.setdefault("TVM_NUM_THREADS", str(os.cpu_count() or 1))


_pool_threads: list[int] = []


def _set_threads(threads: int) -> None:
    """Resize TVM's (process-wide) pool only when a stage asks for another size: resizing
    restarts the workers, which costs milliseconds per frame."""
    import tvm

    threads = max(1, threads)
    if _pool_threads != [threads]:
        tvm.get_global_func("runtime.config_threadpool")(1, threads)
        _pool_threads[:] = [threads]


class TvmSession:
    """An onnxruntime-session look-alike running one stage's exported TVM module."""

    def __init__(self, module: str | Path, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], *,
                 threads: int = 1, kind: str = "llvm", spin: bool = True) -> None:
        """`inputs`/`outputs`: the module's `main` parameters and results, in order. `spin=False` (ranks
        sharing a host's cores, as the onnxruntime sessions of such ranks) makes TVM's workers sleep
        instead of spinning; it takes effect if no TVM module has run yet."""
        self.module_path, self.threads = Path(module), threads
        _init_tvm_threads()
        if not spin:
            os.environ["TVM_THREAD_POOL_SPIN_COUNT"] = "0"
        if not self.module_path.is_file():
            raise UsageError(f"TVM module '{self.module_path}' is missing; compile with --backend tvm")
        self._inputs = _args(inputs)
        self._outputs = _args(outputs)
        self.arch = elf_arch(self.module_path)
        self.emulated = self.arch is not None and self.arch != host_arch()
        self._main = None
        import tvm

        self.device = tvm.cuda(0) if kind == "cuda" else tvm.cpu()
        if kind == "cuda" and (self.emulated or not self.device.exist):
            raise UsageError(f"{self.module_path.name} was compiled for CUDA ({self.arch} host code); "
                             "it runs only on such a machine with a CUDA GPU")
        if not self.emulated:
            from tvm import relax

            self._vm = relax.VirtualMachine(tvm.runtime.load_module(str(self.module_path)), self.device)
            self._main = self._vm["main"]

    @classmethod
    def for_stage(cls, compiled: CompiledOutput, rank: int, threads: int | None = None, *,
                  spin: bool = True) -> TvmSession:
        """The session of stage `rank` of a compiled output: module and target from the manifest's `tvm`
        section, inputs and outputs from the stage's signature."""
        section = compiled.manifest.section("tvm")
        entry = section.stage(rank) if isinstance(section, TvmSection) else None
        if entry is None:
            raise UsageError(f"'{compiled.root}' has no TVM module for stage {rank}", hint="compile with --backend tvm")
        stage = compiled.manifest.stage(rank)
        if stage.signature is None:
            raise UsageError(f"'{compiled.root}': the manifest records no signature for stage {rank} (written by an "
                             "older edgec)", hint="compile the output again with this edgec")
        return cls(compiled.root / entry.module, stage.signature.inputs, stage.signature.outputs,
                   threads=threads or stage.threads or 1, kind=entry.kind, spin=spin)

    @classmethod
    def for_replica(cls, compiled: CompiledOutput, stage: int, replica: int, threads: int | None = None, *,
                    spin: bool = True) -> TvmSession:
        """The session of replica `replica` of stage `stage` (`replicate`): that replica's own module (the tvm
        section's `replicas`, built for its device), with the stage's signature; replica 0 is the stage's own."""
        if replica == 0:
            return cls.for_stage(compiled, stage, threads, spin=spin)
        section = compiled.manifest.section("tvm")
        entry = next((r.module for r in section.replicas if (r.stage, r.replica) == (stage, replica)), None) \
            if isinstance(section, TvmSection) else None
        if entry is None:
            raise UsageError(f"'{compiled.root}' has no TVM module for replica {replica} of stage {stage}",
                             hint="compile with --backend tvm (this edgec builds one per replica)")
        signature = compiled.manifest.stage(stage).signature
        if signature is None:
            raise UsageError(f"'{compiled.root}': the manifest records no signature for stage {stage}",
                             hint="compile the output again with this edgec")
        own = compiled.manifest.replicas.of_stage(stage).replicas[replica].threads
        return cls(compiled.root / entry.module, signature.inputs, signature.outputs,
                   threads=threads or own or 1, kind=entry.kind, spin=spin)

    @classmethod
    def from_onnx(cls, module: str | Path, model: str | Path, **options: object) -> TvmSession:
        """The session of a module compiled on its own from the ONNX file `model` (its graph inputs
        and outputs, weights excluded, give the signature)."""
        import onnx

        proto = onnx.load(str(model), load_external_data=False)
        initializers = {i.name for i in proto.graph.initializer}

        def specs(values) -> list[TensorSpec]:
            return [TensorSpec(v.name, tuple(d.dim_value for d in v.type.tensor_type.shape.dim),
                               numpy_name(v.type.tensor_type.elem_type))
                    for v in values if v.name not in initializers]

        return cls(module, specs(proto.graph.input), specs(proto.graph.output), **options)

    def get_inputs(self) -> list[TensorArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[TensorArg]:
        return list(self._outputs)

    def _call(self, arrays: list) -> list:
        _set_threads(self.threads)
        result = self._main(*arrays)
        return list(result) if not hasattr(result, "numpy") else [result]

    def run(self, output_names: list[str] | None, feeds: Mapping[str, np.ndarray], run_options=None) -> list[np.ndarray]:
        """Outputs (all, or those named, in that order) for `feeds` keyed by input name."""
        missing = [a.name for a in self._inputs if a.name not in feeds]
        if missing:
            raise UsageError(f"{self.module_path.name}: no value for input(s) {', '.join(missing)}")
        arrays = [np.ascontiguousarray(feeds[a.name]) for a in self._inputs]
        if self.emulated:
            results = run_module(self.module_path, arrays)
        else:
            import tvm

            results = [r.numpy() for r in self._call([tvm.runtime.tensor(a, self.device) for a in arrays])]
        by_name = dict(zip((o.name for o in self._outputs), results))
        return [by_name[name] for name in (output_names or list(by_name))]


class TvmKernel:
    """`stage_kernel.OrtKernel`'s interface over a TvmSession: bind the loop's buffers once per
    buffer set, then run once per frame. Inputs are shared with TVM where 64-byte aligned
    (otherwise copied in per frame); outputs are copied into the loop's buffers."""

    def __init__(self, session: TvmSession) -> None:
        if session.emulated:
            raise UsageError(f"{session.module_path.name} is built for {session.arch}; run it on such a device")
        self.session = session
        self.input_names = [a.name for a in session.get_inputs()]
        self.output_names = [a.name for a in session.get_outputs()]
        self._bindings: dict[int, tuple[list, list, list]] = {}

    def bind(self, parity: int, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        import tvm

        views, staged = [], []
        for name in self.input_names:
            if name not in inputs:
                raise UsageError(f"the sub-model reads '{name}', which this stage neither receives nor is fed")
            array = inputs[name]
            if not array.flags.c_contiguous:
                raise ValueError(f"buffer for '{name}' is not contiguous")
            if array.ctypes.data % _ALIGNMENT == 0 and self.session.device.dlpack_device_type() == 1:
                views.append(tvm.runtime.from_dlpack(array))
            else:
                views.append(tvm.runtime.empty(array.shape, str(array.dtype), self.session.device))
                staged.append((views[-1], array))
        sinks = [self._view(outputs[name]) for name in self.output_names]
        self._bindings[parity] = (views, staged, sinks)

    def _view(self, array: np.ndarray):
        import tvm

        if array.flags.c_contiguous and array.ctypes.data % _ALIGNMENT == 0:
            return tvm.runtime.from_dlpack(array)
        return array

    def run(self, parity: int) -> None:
        views, staged, sinks = self._bindings[parity]
        for tensor, array in staged:
            tensor.copyfrom(array)
        for result, sink in zip(self.session._call(views), sinks):
            if isinstance(sink, np.ndarray):
                np.copyto(sink, result.numpy())
            else:
                result.copyto(sink)
