"""Lower `prune` statements: a shared `PruneRequest` on every Conv/Gemm/MatMul each one selects.

Checked here, at the statement: the calibration directory exists and holds `.npy`/`.npz` files,
`by activation` has calibration data, a selector picks at least one layer with channels to
prune, and no layer is selected by two statements. The prune pass does the rest.
"""

from __future__ import annotations

from pathlib import Path

from ..compiler.annotations import PRUNE
from ..compiler.diagnostics import PlanError
from ..compiler.program import Program
from ..passes.prune.request import PruneRequest
from . import ast
from .lower import plan_names
from .selectors import resolve

LAYERS = ("Conv", "Gemm", "MatMul")


def lower_prunes(plan: ast.Plan, program: Program) -> None:
    names_of = plan_names(program)
    nodes = {n.name: n for n in program.nodes()}
    selected_by: dict[str, ast.PruneStmt] = {}
    for index, stmt in enumerate(plan.prunes):
        metric = stmt.metric or "l1"
        if stmt.calibrate is not None:
            _check_calibration(stmt, plan)
        elif stmt.reconstruct:
            raise PlanError("`reconstruct` refits layers on calibration data; add `calibrate \"DIR\"`", stmt.span)
        elif metric in ("activation", "contribution"):
            raise PlanError(f"`by {metric}` ranks channels on calibration data; add `calibrate \"DIR\"`", stmt.span)
        text = (stmt.span.source_line or "").strip() if stmt.span else ""
        request = PruneRequest(stmt.amount, metric, stmt.per_layer, _calibration_path(stmt, plan), stmt.what,
                               stmt.reconstruct, text.split("#")[0].strip(), index, stmt.span)
        names = resolve(stmt.selector, names_of, warn=program.warnings.append, purpose="pruning")
        layers = [n for n in names if n in nodes and nodes[n].op_type in LAYERS]
        if not layers:
            raise PlanError(f"the selector names no Conv, Gemm or MatMul layer to prune ({len(names)} node(s) selected)",
                            stmt.selector.span)
        for name in layers:
            if name in selected_by:
                first = selected_by[name].span
                raise PlanError(f"layer '{name}' is already pruned" + (f" at {first}" if first else ""),
                                stmt.selector.span, hint="each layer may be selected by one `prune` statement")
            selected_by[name] = stmt
            nodes[name].meta[PRUNE] = request


def _calibration_path(stmt: ast.PruneStmt, plan: ast.Plan) -> str | None:
    if stmt.calibrate is None:
        return None
    path = Path(stmt.calibrate)
    if not path.is_absolute() and plan.filename not in ("<plan>", "<string>"):
        beside = Path(plan.filename).parent / path
        path = beside if beside.exists() or not path.exists() else path
    return str(path)


def _check_calibration(stmt: ast.PruneStmt, plan: ast.Plan) -> None:
    path = Path(_calibration_path(stmt, plan))
    if not path.is_dir():
        raise PlanError(f"calibration directory '{stmt.calibrate}' does not exist", stmt.span)
    if not any(path.glob("*.npy")) and not any(path.glob("*.npz")):
        raise PlanError(f"calibration directory '{stmt.calibrate}' holds no .npy or .npz files", stmt.span,
                        hint="one NAME.npy per model input (samples on axis 0), or .npz files keyed by input name")
