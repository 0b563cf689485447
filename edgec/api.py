"""The library entry points other compilers call: `load_plan`, `load_program`, `compile`.

`compile` is exactly what `edgec compile` does: parse the plan, load and normalize the model,
lower the plan onto it, run the pass pipeline (IR verified after every pass), and write the
artifacts atomically. Each step is also callable on its own. Arguments are checked at this
boundary and wrong ones raise `UsageError`; the caller's objects are never changed (an
`ir.Model` passed in is cloned: structure copied, weights shared).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence, TypeAlias, Union

from . import compiler as _compiler  # noqa: F401 - first: it defers onnx-ir's sympy import (compiler/lazy_imports.py)

import onnx
import onnx_ir as ir

from .backends.artifacts import write_artifacts
from .backends.manifest import Manifest
from .backends.onnx.source_hash import source_sha256
from .backends.output_dir import Contents, check_output_path
from .backends.registry import resolve_backends
from .compiler.annotations import CDC, PRUNE, QUANTIZE_REQUESTS, TARGET_BACKENDS
from .compiler.diagnostics import ModelError, PlanError, UsageError, closest
from .compiler.facts import Fact
from .compiler.model_loader import fix_input_shapes, normalize_model, read_model
from .compiler.pass_manager import Hook, Pass, PassManager
from .compiler.program import Program
from .dsl import ast
from .dsl.lower import check_supported, lower_placements, lower_platform, lower_splits
from .dsl.lower_prune import lower_prunes
from .dsl.lower_cdc import lower_cdcs
from .dsl.lower_replicate import check_replica_backends, lower_replicates
from .passes.replicate import REPLICATE_REQUESTS
from .dsl.lower_quantize import lower_quantizes
from .dsl.parser import parse_plan, parse_plan_file
from .passes import default_pipeline

ModelLike: TypeAlias = Union[str, os.PathLike, onnx.ModelProto, ir.Model]
"""A model: a path to an .onnx file, an `onnx.ModelProto`, or an `onnx_ir.Model`."""
PlanLike: TypeAlias = Union[str, os.PathLike, ast.Plan]
"""A plan: a parsed `Plan`, a path (`os.PathLike`, or a string naming a file), or plan text."""
_PLAN_WORDS = ("model", "input", "device", "link", "place", "split", "quantize", "prune", "cdc", "replicate", "#")


def load_plan(plan: PlanLike) -> ast.Plan:
    """A plan from a parsed Plan, a path, or plan text.

    An `os.PathLike` is always a path. A string is a path when it names an existing file, and
    plan text when it starts with a statement keyword (`place`, `device`, …) or a comment or
    holds a newline; anything else is taken as a path (so a mistyped file name is reported as
    a missing file, not as a syntax error)."""
    if isinstance(plan, ast.Plan):
        return plan
    if isinstance(plan, os.PathLike):
        return parse_plan_file(plan)
    if not isinstance(plan, str):
        raise UsageError(f"a plan is a Plan, plan text or a path, not {type(plan).__name__}")
    words = plan.lstrip().split(maxsplit=1)
    looks_like_text = "\n" in plan or (words and (words[0] in _PLAN_WORDS or words[0].startswith("#")))
    if looks_like_text and not _is_file(plan):
        return parse_plan(plan, "<plan>")
    return parse_plan_file(plan)


def _is_file(text: str) -> bool:
    try:
        return len(text) < 4096 and Path(text).is_file()
    except (OSError, ValueError):
        return False


def _check_model_arg(model: object) -> None:
    if model is not None and not isinstance(model, (str, os.PathLike, onnx.ModelProto, ir.Model)):
        raise UsageError(f"a model is a path, an onnx.ModelProto or an onnx_ir.Model, not {type(model).__name__}")


def _model_path(model, plan: ast.Plan) -> str | os.PathLike | onnx.ModelProto | ir.Model:
    if model is not None:
        return model
    if plan.model is None:
        raise UsageError("no model given: pass one on the command line or add `model \"file.onnx\"` to the plan")
    path = Path(plan.model.path)
    if not path.is_absolute() and plan.filename not in ("<plan>", ""):
        path = Path(plan.filename).parent / path
    return path


def load_program(
    model: ModelLike | None,
    plan: str | os.PathLike | ast.Plan,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> Program:
    """Parse `plan`, load `model` (the plan's `model` if None) and lower the plan onto it.
    `progress` hears what loading changed about the model (an old opset converted, shapes onnxruntime
    measured); what the plan does that is no error (it places a node folded away at load time) is on
    `program.warnings`."""
    _check_model_arg(model)
    plan = load_plan(plan)
    check_supported(plan)
    source = _model_path(model, plan)
    model_ir = read_model(source.clone() if isinstance(source, ir.Model) else source)
    _apply_plan_inputs(plan, model_ir, overridden=set(input_shapes or {}))
    loaded = normalize_model(model_ir, input_shapes=input_shapes, progress=progress)
    program = Program(loaded, lower_platform(plan))
    program.source_path = str(Path(source).resolve()) if isinstance(source, (str, os.PathLike)) else None
    lower_splits(plan, program)
    lower_placements(plan, program)
    lower_quantizes(plan, program)
    lower_prunes(plan, program)
    lower_cdcs(plan, program)
    lower_replicates(plan, program)
    return program


def _apply_plan_inputs(plan: ast.Plan, model: ir.Model, overridden: set[str]) -> None:
    """Fix dims from the plan's `input` statements, reporting a mismatch at the statement."""
    names = [v.name for v in model.graph.inputs if v.name not in model.graph.initializers]
    for stmt in plan.inputs:
        if stmt.name not in names:
            raise PlanError(f"the model has no input '{stmt.name}' (inputs: {', '.join(names)})", stmt.span,
                            suggestion=closest(stmt.name, names))
        if stmt.name in overridden:
            continue
        try:
            fix_input_shapes(model.graph, {stmt.name: list(stmt.dims)})
        except ModelError as exc:
            raise PlanError(exc.message, stmt.span) from None


@dataclass
class CompileResult:
    program: Program
    out: Path | None
    manifest: Manifest | None


def compile(
    model: ModelLike | None,
    plan: str | os.PathLike | ast.Plan,
    out: str | os.PathLike | None = None,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    passes: Iterable[Pass] | str | None = None,
    hooks: Sequence[Hook] = (),
    progress: Callable[[str], None] = lambda _msg: None,
    backends: Sequence[str] = ("onnx",),
    force: bool = False,
) -> CompileResult:
    """Compile `model` with `plan`; write artifacts to `out` (skipped when None).

    `out` may be new, empty or an earlier edgec output (replaced); any other directory is refused
    unless `force`, which writes beside the files there and never deletes or overwrites them.

    `passes`: the pipeline (Pass instances, or a spec such as "split-layer,split,comm-insert");
    default: `edgec.passes.default_pipeline`, completed with what the backends need. An explicit
    pipeline is checked, never reordered.

    `backends`: a list of backend names (`edgec.backends.registry.available_backends()`): "onnx"
    (always written), "tvm" (a compiled module per stage), "cpp" (the C++/MPI program and
    per-device packages; implies "tvm"), or a registered/plugin backend. A bare string is refused."""
    chosen = resolve_backends(backends)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise UsageError(f"out is a directory path, not {type(out).__name__}")
    if any(not callable(h) for h in hooks):
        raise UsageError("hooks must be callables taking (pass, program, result)")
    if not isinstance(force, bool):
        raise UsageError(f"force is True or False, not {force!r}")
    input_shapes = _checked_input_shapes(input_shapes)
    contents = check_output_path(Path(out), force=force) if out is not None else None
    plan = load_plan(plan)
    if contents is not None:
        _refuse_inputs_inside(contents, _model_path(model, plan), plan.filename)
    progress("loading model and lowering plan")
    program = load_program(model, plan, input_shapes=input_shapes, progress=progress)
    check_replica_backends(program, [b.name for b in chosen])
    reference = _embedded_reference(program) if out is not None else None
    progress("running passes")
    if isinstance(passes, str):
        from .passes.pipeline_spec import parse_pipeline

        passes = parse_pipeline(passes, "passes")
    needs = {"writing the output": {Fact.COMM}, **{f"backend '{b.name}'": b.requires for b in chosen}}
    statements = _statement_requests(program)
    needs.update({f"the plan's `{word}` statements": {fact} for fact, (word, requests) in statements.items() if requests})
    pipeline = passes if passes is not None else default_pipeline(set().union(*needs.values()))
    _refuse_ignored_statements(statements, pipeline)
    program.model.meta[TARGET_BACKENDS] = tuple(b.name for b in chosen)
    manager = PassManager(pipeline, hooks=hooks, target=needs if out is not None else None)
    manager.run(program)
    manifest = None
    if out is not None:
        manifest = write_artifacts(
            program, Path(out), model_info=_model_info(program, reference), plan_info=_plan_info(plan),
            progress=progress, backends=[b.name for b in chosen], force=force,
            extra_files={REFERENCE_FILE: reference} if reference is not None else None,
        )
    return CompileResult(program, Path(out) if out is not None else None, manifest)


def _statement_requests(program: Program) -> dict[Fact, tuple[str, list]]:
    """Per fact, the plan statement (its keyword) that only a pass providing the fact applies, and that
    statement's lowered requests in plan order. quantize keeps them on the model (a `wire` request
    has no node); prune and cdc on the nodes they select, one request object per statement."""
    def on_nodes(key: str) -> list:
        requests = {id(r): r for n in program.nodes() if (r := n.meta.get(key)) is not None}.values()
        return sorted(requests, key=lambda r: (r.span.line, r.span.column) if r.span else (0, 0))

    return {Fact.QUANTIZED: ("quantize", list(program.model.meta.get(QUANTIZE_REQUESTS) or ())),
            Fact.PRUNED: ("prune", on_nodes(PRUNE)), Fact.CDC_ENCODED: ("cdc", on_nodes(CDC)),
            Fact.STAGED: ("replicate", list(program.model.meta.get(REPLICATE_REQUESTS) or ()))}


def _refuse_ignored_statements(statements: dict[Fact, tuple[str, list]], pipeline: Sequence[Pass]) -> None:
    """A plan statement with a pipeline that has no pass to apply it is a located error (before the pipeline's
    own check, which knows no location): nothing in a plan is silently ignored."""
    from .passes.registry import provider_for

    for fact, (word, requests) in statements.items():
        if requests and not any(fact in p.provides for p in pipeline):
            provider = provider_for(fact)
            raise PlanError(f"the pipeline has no '{word}' pass, so this statement would be ignored", requests[0].span,
                            hint=f"add '{provider.name if provider else word}' to --passes (or leave --passes out)")


def _checked_input_shapes(shapes: object) -> dict[str, list[int]] | None:
    """`{"x": [1, 3, 224, 224]}` with positive int dims, or None; anything else is a UsageError."""
    if shapes is None:
        return None
    if not isinstance(shapes, Mapping):
        raise UsageError(f"input_shapes maps input names to dims, e.g. {{'x': [1, 3, 224, 224]}}, not {shapes!r}")
    checked = {}
    for name, dims in shapes.items():
        if (not isinstance(name, str) or isinstance(dims, (str, bytes)) or not isinstance(dims, Sequence)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)):
            raise UsageError(f"input_shapes['{name}'] must be a list of positive integers, not {dims!r}")
        checked[name] = list(dims)
    return checked


def _refuse_inputs_inside(contents: Contents, model: object, plan: object) -> None:
    """Replacing OUT must not delete the model or plan being compiled: one that is a file of the
    earlier output there (e.g. OUT/reference.onnx). A user's own file beside it is kept anyway."""
    ours = set(contents.ours)
    for what, source in (("model", model), ("plan", plan)):
        if isinstance(source, (str, os.PathLike)) and _is_file(str(source)):
            path = Path(source).resolve()
            if path.is_relative_to(contents.path) and path.relative_to(contents.path).as_posix() in ours:
                raise UsageError(f"the {what} '{source}' is inside the output directory '{contents.given}', which the "
                                 "compile replaces", hint="copy it elsewhere or choose another -o")


REFERENCE_FILE = "reference.onnx"


def _embedded_reference(program: Program) -> bytes | None:
    """The unsplit model as loaded, for a model given in memory: `edgec verify` needs a reference."""
    if program.source_path is not None:
        return None
    return ir.to_proto(program.model).SerializeToString()


def _model_info(program: Program, reference: bytes | None = None) -> dict:
    if reference is not None:
        return {"path": REFERENCE_FILE, "sha256": hashlib.sha256(reference).hexdigest()}
    if program.source_path is None:
        return {"path": None, "sha256": None}
    return {"path": program.source_path, "sha256": source_sha256(Path(program.source_path))}


def _plan_info(plan: ast.Plan) -> dict:
    return {
        "path": plan.filename,
        "sha256": hashlib.sha256(plan.source.encode()).hexdigest(),
        "source": plan.source,
    }
