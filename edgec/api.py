"""The library entry points other compilers call: `load_plan`, `load_program`, `compile`.

`compile` is exactly what `edgec compile` does: parse the plan, load and normalize the model,
lower the plan onto it, run the pass pipeline (IR verified after every pass), and write the
artifacts atomically. Each step is also callable on its own.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import onnx
import onnx_ir as ir

from .backends.artifacts import write_artifacts
from .backends.manifest import sha256_file
from .backends.output_dir import check_output_path
from .compiler.diagnostics import ModelError, PlanError, UsageError, closest
from .compiler.model_loader import fix_input_shapes, normalize_model, read_model
from .compiler.pass_manager import Hook, Pass, PassManager
from .compiler.program import Program
from .dsl import ast
from .dsl.lower import check_supported, lower_placements, lower_platform, lower_splits
from .dsl.parser import parse_plan, parse_plan_file
from .passes import default_pipeline

ModelLike = "str | os.PathLike | onnx.ModelProto | ir.Model"
BACKENDS = ("onnx", "tvm", "cpp")


def load_plan(plan: str | os.PathLike | ast.Plan) -> ast.Plan:
    """A plan from a parsed Plan, plan text (a string with a newline or a `{`), or a file path."""
    if isinstance(plan, ast.Plan):
        return plan
    if isinstance(plan, str) and ("\n" in plan or "{" in plan):
        return parse_plan(plan, "<plan>")
    return parse_plan_file(plan)


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
) -> Program:
    """Parse `plan`, load `model` (the plan's `model` if None) and lower the plan onto it."""
    plan = load_plan(plan)
    check_supported(plan)
    source = _model_path(model, plan)
    model_ir = read_model(source)
    _apply_plan_inputs(plan, model_ir, overridden=set(input_shapes or {}))
    loaded = normalize_model(model_ir, input_shapes=input_shapes)
    program = Program(loaded, lower_platform(plan))
    program.source_path = str(Path(source).resolve()) if isinstance(source, (str, os.PathLike)) else None
    lower_splits(plan, program)
    lower_placements(plan, program)
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
    manifest: dict | None


def compile(
    model: ModelLike | None,
    plan: str | os.PathLike | ast.Plan,
    out: str | os.PathLike | None = None,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    passes: Iterable[Pass] | None = None,
    hooks: Sequence[Hook] = (),
    progress: Callable[[str], None] = lambda _msg: None,
    backends: Sequence[str] = ("onnx",),
) -> CompileResult:
    """Compile `model` with `plan`; write artifacts to `out` (skipped when None).

    `backends`: "onnx" (always written), "tvm" (a compiled module per stage) and "cpp" (the C++/MPI
    program and per-device packages; implies "tvm")."""
    unknown = set(backends) - set(BACKENDS)
    if unknown:
        raise UsageError(f"unknown or unavailable backend '{sorted(unknown)[0]}' (available: {', '.join(BACKENDS)})")
    if "cpp" in backends and "tvm" not in backends:
        backends = (*backends, "tvm")
    if out is not None:
        check_output_path(Path(out))
    plan = load_plan(plan)
    progress("loading model and lowering plan")
    program = load_program(model, plan, input_shapes=input_shapes)
    progress("running passes")
    PassManager(list(passes) if passes is not None else default_pipeline(), hooks=hooks).run(program)
    manifest = None
    if out is not None:
        manifest = write_artifacts(
            program, Path(out), model_info=_model_info(program), plan_info=_plan_info(plan), progress=progress,
            backends=backends,
        )
    return CompileResult(program, Path(out) if out is not None else None, manifest)


def _model_info(program: Program) -> dict:
    if program.source_path is None:
        return {"path": None, "sha256": None}
    return {"path": program.source_path, "sha256": sha256_file(Path(program.source_path))}


def _plan_info(plan: ast.Plan) -> dict:
    return {
        "path": plan.filename,
        "sha256": hashlib.sha256(plan.source.encode()).hexdigest(),
        "source": plan.source,
    }
