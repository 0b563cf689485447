"""Lower `quantize` statements: a `QuantizeRequest` per statement, checked against the model,
the platform and the calibration directory, for the quantize pass to apply.

A device subject is kept as the device's name and resolved by the pass, when every node (the
parts of split layers too) is placed; a selector subject marks its nodes now (`QUANTIZE`, carried
to the parts a split makes of them). Everything that can be wrong with a statement is a located
`PlanError` here, before any pass runs: an unknown subject, a node or device quantized twice, no
calibration data, or data that misses an input. Calibration data is never invented.
"""

from __future__ import annotations

from pathlib import Path

from ..compiler.annotations import QUANTIZE, QUANTIZE_REQUESTS, QuantizeRequest, calibration_stem
from ..compiler.diagnostics import PlanError, closest
from ..compiler.program import Program
from . import ast
from .selectors import resolve

CALIBRATION_SUFFIXES = (".npy", ".npz")


def lower_quantizes(plan: ast.Plan, program: Program) -> None:
    """Record one `QuantizeRequest` per statement on `program.model.meta`; mark selected nodes."""
    from .lower import plan_names

    requests: list[QuantizeRequest] = []
    seen: dict[str, ast.QuantizeStmt] = {}
    marked: dict[str, ast.QuantizeStmt] = {}
    nodes = {n.name: n for n in program.nodes()}
    for stmt in plan.quantizes:
        request = _request(stmt, plan, program)
        if request.wire or request.device is not None:
            key = "wire" if request.wire else f"device {request.device}"
            if key in seen:
                raise PlanError(f"{key} is quantized twice", stmt.span, hint=f"first at {seen[key].span}")
            seen[key] = stmt
        else:
            selector = ast.NameSel(stmt.subject, span=stmt.span) if isinstance(stmt.subject, str) else stmt.subject
            names = resolve(selector, plan_names(program), warn=program.warnings.append, purpose="quantization")
            for name in names:
                if name in marked:
                    raise PlanError(f"node '{name}' is quantized twice", stmt.span, hint=f"first at {marked[name].span}")
                marked[name] = stmt
                nodes[name].meta[QUANTIZE] = request
        requests.append(request)
    if requests:
        program.model.meta[QUANTIZE_REQUESTS] = requests


def _request(stmt: ast.QuantizeStmt, plan: ast.Plan, program: Program) -> QuantizeRequest:
    if stmt.dtype == "bf16":
        raise PlanError("bf16 quantization is not supported (int8, uint8 and fp16 are)", stmt.span)
    wire = stmt.subject_kind == "wire"
    if stmt.dtype == "fp16" and not wire:
        raise PlanError("fp16 is supported for `quantize wire fp16` only; a device or selector takes int8 or uint8",
                        stmt.span)
    device = None
    if stmt.subject_kind == "device_or_node" and str(stmt.subject) in program.platform.devices:
        device = str(stmt.subject)
    elif stmt.subject_kind == "device_or_node" and str(stmt.subject) not in program.node_names():
        known = list(program.platform.devices) + program.node_names()
        raise PlanError(f"'{stmt.subject}' is neither a device nor a node", stmt.span,
                        suggestion=closest(str(stmt.subject), known))
    if wire and (stmt.granularity == "per_channel" or stmt.correct_bias or stmt.equalize):
        raise PlanError("`quantize wire` takes a type, `calibrate` and `method` only (wire tensors are per tensor)",
                        stmt.span)
    calibrate = None
    if stmt.dtype != "fp16":
        if stmt.calibrate is None:
            raise PlanError(f"`quantize … {stmt.dtype}` needs calibration data: add calibrate \"DIR\" "
                            "(a folder of .npy/.npz files keyed by input name)", stmt.span,
                            hint="edgec never quantizes with invented ranges")
        calibrate = str(_calibration_dir(stmt, plan, program))
    return QuantizeRequest(stmt.dtype, stmt.granularity or ("per_tensor" if wire else "per_channel"), calibrate,
                           stmt.method or "minmax", stmt.correct_bias, stmt.equalize, device, wire, stmt.span)


def _calibration_dir(stmt: ast.QuantizeStmt, plan: ast.Plan, program: Program) -> Path:
    """The calibration folder, relative to the plan's folder; it must hold data for every input."""
    assert stmt.calibrate is not None
    path = Path(stmt.calibrate).expanduser()
    if not path.is_absolute() and plan.filename not in ("<plan>", ""):
        path = Path(plan.filename).parent / path
    if not path.is_dir():
        raise PlanError(f"calibration folder '{stmt.calibrate}' does not exist" if not path.exists()
                        else f"calibration path '{stmt.calibrate}' is not a folder", stmt.span)
    files = sorted(p for p in path.iterdir() if p.suffix in CALIBRATION_SUFFIXES and p.is_file())
    if not files:
        raise PlanError(f"calibration folder '{stmt.calibrate}' holds no .npy or .npz file", stmt.span)
    stems = {p.stem for p in files if p.suffix == ".npy"}
    archives = [p for p in files if p.suffix == ".npz"]
    keys: set[str] = set()
    if archives:
        import numpy as np

        for archive in archives:
            with np.load(archive) as data:
                keys |= set(data.files)
    graph = program.graph
    inputs = [v.name for v in graph.inputs if v.name not in graph.initializers]
    for name in inputs:
        if name not in stems and name not in keys and calibration_stem(name) not in stems:
            raise PlanError(f"calibration folder '{stmt.calibrate}' has no data for input '{name}'", stmt.span,
                            hint=f"add {calibration_stem(name)}.npy (samples along the first axis) or an .npz with key "
                                 f"'{name}'")
    return path.resolve()
