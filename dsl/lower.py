"""Lower a parsed plan onto a loaded model: the platform, and a `Placement` on every node.

Everything checked here needs the model or the platform: unknown devices and resources,
selectors naming nodes the model does not have, a node placed twice, nodes left unplaced.
Statements whose passes do not exist yet stop with a located "not supported yet" error;
nothing in a plan is silently ignored. Selectors resolve against the model as read from the
file (`plan_names`): a node the loader folded away is part of a range around it, and selecting
it on its own is a located warning on `program.warnings`, not an error.
"""

from __future__ import annotations

from ..compiler.annotations import PLACEMENT, SPLIT, Placement, SplitSpec
from ..compiler.diagnostics import PlanError, SourceSpan, closest
from ..compiler.facts import Fact
from ..compiler.model_loader import FILE_NODES, REMOVED_NODES
from ..compiler.platform import KNOWN_ARCHES, Device, Link, Platform
from ..compiler.program import Program
from ..compiler.split_rules import SPATIAL_WORDS, splittable_ops, words_for
from . import ast
from .selectors import Names, resolve

UNSUPPORTED: dict[type, str] = {}
_DEVICE_KEYS = {"arch", "cores", "mem", "gpu", "accel", "target", "host", "slots",
                "power_active", "power_idle", "speed", "profile"}


def lower_platform(plan: ast.Plan) -> Platform:
    platform = Platform()
    for stmt in plan.devices:
        props = {k: p.value for k, p in stmt.props.items()}
        for key, prop in stmt.props.items():
            if key not in _DEVICE_KEYS:
                raise PlanError(f"unknown device property '{key}'", prop.span, suggestion=closest(key, _DEVICE_KEYS))
        arch = str(props.get("arch", "x86_64"))
        if arch not in KNOWN_ARCHES:
            span = stmt.props["arch"].span if "arch" in stmt.props else stmt.span
            raise PlanError(f"unknown arch '{arch}' (known: {', '.join(KNOWN_ARCHES)})", span,
                            suggestion=closest(arch, KNOWN_ARCHES))
        platform.add(Device(
            name=stmt.name, arch=arch, cores=int(props.get("cores", 1)),
            mem_bytes=_opt_int(props.get("mem")), gpu=_opt_str(props.get("gpu")),
            accel=_opt_str(props.get("accel")), target=_opt_str(props.get("target")),
            host=_opt_str(props.get("host")), slots=_opt_int(props.get("slots")),
            power_active_w=_opt_float(props.get("power_active")), power_idle_w=_opt_float(props.get("power_idle")),
            speed=_opt_float(props.get("speed")), profile=_opt_str(props.get("profile")),
        ))
    for stmt in plan.links:
        for end in (stmt.a, stmt.b):
            if end not in platform.devices:
                raise PlanError(f"link to unknown device '{end}'", stmt.span, suggestion=closest(end, platform.devices))
        bw, lat = stmt.props.get("bandwidth"), stmt.props.get("latency")
        platform.links.append(Link(stmt.a, stmt.b, stmt.bidirectional,
                                   float(bw.value) if bw else None, float(lat.value) if lat else None))
    return platform


def _opt_int(value) -> int | None:
    return None if value is None else int(value)


def _opt_float(value) -> float | None:
    return None if value is None else float(value)


def _opt_str(value) -> str | None:
    return None if value is None else str(value)


def check_supported(plan: ast.Plan) -> None:
    for stmt in plan.statements:
        what = UNSUPPORTED.get(type(stmt))
        if what:
            raise PlanError(f"{what} is not supported yet by this version of edgec", stmt.span,
                            hint="remove the statement; see the README's feature status")


def plan_names(program: Program) -> Names:
    """The names a plan may use: the program's nodes, and those the loader recorded as read from the file."""
    meta = program.model.meta
    order = program.node_names()
    file_order = meta.get(FILE_NODES) or order
    present = set(order)
    removed = {name: why for name, why in (meta.get(REMOVED_NODES) or {}).items() if name not in present}
    return Names(order, file_order, removed)


def lower_placements(plan: ast.Plan, program: Program) -> None:
    """Annotate every node with the placement of the `place` statement that selects it."""
    names_of = plan_names(program)
    order = list(names_of.order)
    nodes = {n.name: n for n in program.nodes()}
    placed_by: dict[str, SourceSpan | None] = {}
    if not plan.places:
        raise PlanError("the plan places no nodes", _end_span(plan),
                        hint="add at least `place * on DEVICE`")
    for stmt in plan.places:
        placement = _placement(stmt, program)
        unplaced = [n for n in order if n not in placed_by]
        names = resolve(stmt.selector, names_of, unplaced=unplaced, warn=program.warnings.append)
        for name in names:
            if name in placed_by and not isinstance(stmt.selector, ast.AllSel):
                first = placed_by[name]
                raise PlanError(f"node '{name}' is already placed" + (f" at {first}" if first else ""),
                                stmt.selector.span, hint="each node may be placed by one `place` statement")
            placed_by[name] = stmt.span
            nodes[name].meta[PLACEMENT] = placement
    missing = [n for n in order if n not in placed_by and SPLIT not in nodes[n].meta]
    if missing:
        raise PlanError(
            f"{len(missing)} node(s) are not placed, first '{missing[0]}'", _end_span(plan),
            hint="add `place * on DEVICE` to place every remaining node",
        )
    program.facts.add(Fact.PLACED)


def lower_splits(plan: ast.Plan, program: Program) -> None:
    """Attach a `SplitSpec` to every node a `split` statement selects; the split-layer pass rewrites them."""
    names_of = plan_names(program)
    nodes = {n.name: n for n in program.nodes()}
    split_by: dict[str, SourceSpan | None] = {}
    for stmt in plan.splits:
        targets = [_target(t, program, None) for t in stmt.targets]
        parts = tuple(targets * stmt.parts if len(targets) == 1 else targets)
        merge = _target(stmt.merge, program, None) if stmt.merge else None
        spec = SplitSpec(stmt.kind, parts, stmt.grid, tuple(stmt.ratio) if stmt.ratio else None, merge, stmt.span)
        names = resolve(stmt.selector, names_of, warn=program.warnings.append, purpose="split")
        for name in names:
            if name in split_by:
                raise PlanError(f"node '{name}' is already split at {split_by[name]}", stmt.selector.span)
            split_by[name] = stmt.span
            node = nodes[name]
            layers = splittable_ops()
            if stmt.kind not in SPATIAL_WORDS and node.op_type not in layers:
                raise PlanError(f"cannot split {node.op_type} '{name}': only {', '.join(layers)} layers split "
                                f"by {stmt.kind}", stmt.selector.span)
            allowed = words_for(node.op_type)
            if node.op_type in layers and stmt.kind not in allowed:
                raise PlanError(f"cannot split {node.op_type} '{name}' by {stmt.kind} (it takes: {', '.join(allowed)})",
                                stmt.span)
            node.meta[SPLIT] = spec


def _target(target: ast.Target, program: Program, threads: int | None) -> Placement:
    device = program.platform.devices.get(target.device)
    if device is None:
        raise PlanError(f"unknown device '{target.device}'", target.span,
                        suggestion=closest(target.device, program.platform.devices))
    resource = target.effective_resource
    if resource not in device.resources:
        raise PlanError(
            f"device '{device.name}' has no resource '{resource}' (it has: {', '.join(device.resources)})",
            target.span, suggestion=closest(resource, device.resources),
            hint="declare `gpu cuda` or `accel vta` in the device block" if resource in ("gpu", "vta") else None,
        )
    if threads is not None and threads > device.cores:
        raise PlanError(f"threads {threads} exceeds the {device.cores} core(s) of device '{device.name}'", target.span)
    return Placement(device.name, resource, threads, target.span)


def _placement(stmt: ast.PlaceStmt, program: Program) -> Placement:
    return _target(stmt.target, program, stmt.threads)


def _end_span(plan: ast.Plan) -> SourceSpan:
    lines = plan.source.splitlines() or [""]
    return SourceSpan(plan.filename, len(lines), 1, None, lines[-1])
