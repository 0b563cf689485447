"""What `edgec profile` and `edgec explore` do, callable without the CLI.

`load` reads the model and only the platform of a plan (a platform file needs no `place`);
`run_profile` measures or reads a profile; `run_explore` searches, optionally measures the
best plans, and writes the output directory under the rule of `backends/output_dir.py`.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx_ir as ir

from ..compiler.diagnostics import UsageError
from ..compiler.platform import Platform
from ..dsl import ast
from .cost_model import CostModel, PlanCost
from .graph_facts import GraphFacts, graph_facts
from .search import OBJECTIVES, Candidate, explore, objective_values

Progress = Callable[[str], None]


@dataclass
class Loaded:
    model: ir.Model
    platform: Platform
    plan: ast.Plan
    model_path: Path | None

    @property
    def names(self) -> list[str]:
        return [n.name for n in self.model.graph]

    @property
    def plan_dir(self) -> Path | None:
        return Path(self.plan.filename).parent if self.plan.filename not in ("<plan>", "") else None

    @property
    def inputs(self) -> dict[str, list[int]]:
        return {v.name: [int(d) for d in v.shape] for v in self.model.graph.inputs}


def load(model, plan, input_shapes=None, progress: Progress = lambda _m: None) -> Loaded:
    from .. import api
    from ..compiler.model_loader import normalize_model, read_model
    from ..dsl.lower import check_supported, lower_platform

    parsed = api.load_plan(plan)
    check_supported(parsed)
    source = api._model_path(model, parsed)
    model_ir = read_model(source)
    api._apply_plan_inputs(parsed, model_ir, overridden=set(input_shapes or {}))
    loaded = normalize_model(model_ir, input_shapes=input_shapes, progress=progress)
    platform = lower_platform(parsed)
    if not platform.devices:
        raise UsageError(f"the plan '{parsed.filename}' declares no devices to explore")
    path = Path(source).resolve() if isinstance(source, (str, os.PathLike)) else None
    return Loaded(loaded, platform, parsed, path)


def profile_threads(platform: Platform) -> list[int]:
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return sorted({min(d.cores, available) for d in platform.devices.values() if not d.profile} or {1})


def run_profile(loaded: Loaded, profile_path: Path | None, *, repeats: int = 5, progress: Progress = lambda _m: None) -> dict:
    from .profile import profile, read_profile

    if profile_path is not None:
        return read_profile(profile_path, loaded.names)
    return profile(loaded.model, profile_threads(loaded.platform), repeats=repeats, progress=progress,
                   source=str(loaded.model_path) if loaded.model_path else None)


def parse_objectives(text: str | None, has_power: bool) -> tuple[tuple[str, ...], str | None]:
    """The objectives asked (default: all four, energy only when every device has power figures)."""
    if text is None:
        chosen = tuple(o for o in OBJECTIVES if o != "energy" or has_power)
        return chosen, None if has_power else "energy left out: not every device has power_active and power_idle"
    chosen = tuple(dict.fromkeys(o.strip() for o in text.split(",") if o.strip()))
    for o in chosen:
        if o not in OBJECTIVES:
            from ..compiler.diagnostics import closest

            near = closest(o, OBJECTIVES)
            raise UsageError(f"unknown objective '{o}' (known: {', '.join(OBJECTIVES)})",
                             hint=f"did you mean '{near}'?" if near else None)
    if "throughput" not in chosen:
        raise UsageError("the objectives must include throughput (the DP optimum and the gap are about it)")
    if "energy" in chosen and not has_power:
        raise UsageError("objective 'energy' needs power_active and power_idle on every device")
    return chosen, None


def parse_wires(text: str | None, calibrate: Path | None) -> tuple[str, ...]:
    """The wire formats the search may choose (`quantize wire …`); int8 needs calibration data."""
    from .cost_model import WIRE_FACTORS

    chosen = tuple(dict.fromkeys(w.strip() for w in (text or "float32").split(",") if w.strip()))
    for w in chosen:
        if w not in WIRE_FACTORS:
            raise UsageError(f"unknown wire format '{w}' (known: {', '.join(WIRE_FACTORS)})")
    if "int8" in chosen and (calibrate is None or not calibrate.is_dir()):
        raise UsageError("wire format int8 needs --calibrate DIR (a folder of .npy/.npz inputs)",
                         hint="edgec never quantizes with invented ranges; fp16 needs no data")
    return chosen or ("float32",)


def build_model(loaded: Loaded, profile: dict, points: int) -> tuple[GraphFacts, CostModel]:
    from .platform_costs import platform_costs
    from .units import candidate_units

    facts = graph_facts(loaded.model.graph)
    costs = platform_costs(loaded.platform, profile, loaded.names, loaded.plan_dir)
    units = candidate_units(facts, costs.node_time.mean(axis=0), points)
    return facts, CostModel(facts, units, costs)


def row(name: str, cost: PlanCost, plan, platform: Platform) -> dict:
    devices = list(platform.devices)
    return {"plan": name, "stages": len(plan.starts), "devices": [devices[d] for d in plan.devices], "wire": plan.wire,
            "throughput_fps": cost.throughput, "latency_ms": 1e3 * cost.latency,
            "peak_memory_bytes": int(cost.peak_memory), "energy_j": cost.energy if np.isfinite(cost.energy) else None,
            "stage_ms": [round(1e3 * t, 4) for t in cost.stage_time],
            **({"replicas": [[devices[d] for d in extra] for extra in plan.replicas]} if any(plan.replicas) else {})}


def _choose(front: list[Candidate], objectives: tuple[str, ...], limit: int) -> list[Candidate]:
    """At most `limit` plans: the best of each objective, then the fastest of the rest."""
    if len(front) <= limit:
        return front
    keep: dict[int, Candidate] = {}
    for i in range(len(objectives)):
        best = min(front, key=lambda c: objective_values(c.cost, objectives)[i])
        keep[id(best)] = best
    for c in sorted(front, key=lambda c: c.cost.period):
        if len(keep) >= limit:
            break
        keep.setdefault(id(c), c)
    return sorted(keep.values(), key=lambda c: c.cost.period)


def _with_absolute_profiles(platform: Platform, plan_dir: Path | None) -> Platform:
    """The platform with each device's `profile` path made absolute: emitted plans live elsewhere."""
    from dataclasses import replace

    devices = {name: replace(d, profile=str((plan_dir or Path.cwd()) / d.profile))
               if d.profile and not Path(d.profile).is_absolute() else d for name, d in platform.devices.items()}
    return Platform(devices, list(platform.links))


def _measured_front(rows: list[dict]) -> list[str]:
    """The measured plans no other measured plan beats on measured throughput, measured latency and memory."""
    done = [r for r in rows if "measured_fps" in r]

    def beats(a: dict, b: dict) -> bool:
        x = (-a["measured_fps"], a["measured_latency_ms"], a["peak_memory_bytes"])
        y = (-b["measured_fps"], b["measured_latency_ms"], b["peak_memory_bytes"])
        return all(i <= j for i, j in zip(x, y)) and x != y

    return [r["plan"] for r in done if not any(beats(o, r) for o in done)]


def run_explore(loaded: Loaded, profile: dict, out: Path, *, objectives: str | None = None, budget_s: float = 20.0,
                points: int = 48, max_plans: int = 12, measure: int = 0, frames: int = 20, force: bool = False,
                seed: int = 0, wires: str | None = None, calibrate: Path | None = None, replicate: int = 1,
                progress: Progress = lambda _m: None) -> dict:
    from ..backends.output_dir import EXPLORE, EXPLORE_INDEX, atomic_directory, check_output_path
    from .plan_text import plan_text

    if replicate < 1:
        raise UsageError(f"--replicate must be at least 1 (replicas per stage), not {replicate}")
    if replicate > 1 and measure:
        raise UsageError("--measure runs plans with mpirun, which does not deal frames to replicas yet",
                         hint="use --replicate without --measure, and `edgec verify` on the compiled plan")
    check_output_path(out, force=force, kind=EXPLORE)
    formats = parse_wires(wires, calibrate)
    facts, model = build_model(loaded, profile, points)
    chosen, note = parse_objectives(objectives, model.platform.has_power)
    if note:
        progress(note)
    progress(f"{facts.size} nodes in {model.units.count} units ({model.units.count - 1} candidate split points), "
             f"{model.platform.count} devices; objectives {', '.join(chosen)}")
    result = explore(model, chosen, budget_s=budget_s, seed=seed, wires=formats, max_replicas=replicate,
                     progress=progress)
    if not result.front:
        raise UsageError("no plan fits in the devices' memory (every stage must fit its device's `mem`)",
                         hint="add devices or memory to the plan")
    emitted = _choose(result.front, chosen, max_plans)
    dp = result.optimum
    best = min(c.cost.period for c in result.front)
    gap = 100.0 * (best - dp.period) / dp.period if np.isfinite(dp.period) else None
    rows, files = [], {}
    written = _with_absolute_profiles(loaded.platform, loaded.plan_dir)
    for i, c in enumerate(emitted, 1):
        name = f"plan-{i:02d}.edge"
        header = [f"edgec explore: plan {i} of {len(emitted)} on the front",
                  f"analytic: {c.cost.throughput:.4g} frames/s, latency {1e3 * c.cost.latency:.4g} ms, "
                  f"peak memory {c.cost.peak_memory / 2**20:.1f} MiB"
                  + (f", {c.cost.energy:.4g} J/frame" if np.isfinite(c.cost.energy) else "")]
        files[name] = plan_text(c.plan, model.units, facts.names, written,
                                model=str(loaded.model_path) if loaded.model_path else None,
                                inputs=loaded.inputs, header=header, cost=c.cost,
                                calibrate=str(calibrate.resolve()) if calibrate else None)
        rows.append(row(name, c.cost, c.plan, loaded.platform))
    if measure:
        if loaded.model_path is None:
            raise UsageError("measuring plans needs the model as a file")
        from .measure import measure_plan

        for r in sorted(rows, key=lambda r: -r["throughput_fps"])[:measure]:
            progress(f"measuring {r['plan']}: edgec compile + edgec run, {frames} frames")
            try:
                r.update(measure_plan(loaded.model_path, files[r["plan"]], frames=frames))
            except UsageError as exc:
                progress(f"{r['plan']} not measured: {exc.message}")
                r["measure_error"] = exc.message
                continue
            r["analytic_error"] = r["throughput_fps"] / r["measured_fps"] - 1.0
    dp_row = None
    if dp.plan is not None:
        dp_row = row("chain-dp", model.evaluate(dp.plan), dp.plan, loaded.platform)
    document = {
        "edgec": "explore", "format_version": 1, "model": str(loaded.model_path) if loaded.model_path else None,
        "objectives": list(chosen), "budget_s": budget_s, "seconds": result.seconds,
        "evaluations": result.evaluations, "best_found_s": result.best_found_s, "levels": result.levels,
        "nodes": facts.size, "units": model.units.count, "devices": list(model.platform.devices),
        "dp_optimum_fps": dp.throughput if dp.plan is not None else None, "dp_plan": dp_row,
        "best_fps": 1.0 / best, "gap_percent": gap, "front_size": len(result.front), "plans": rows,
        "measured": bool(measure), "measured_front": _measured_front(rows), "profile": {k: profile.get(k) for k in ("host", "engine", "load_average", "mpi",
                                                                          "runtime_overhead_bytes")},
    }
    png = None
    try:
        from .pareto_plot import draw_front
    except ImportError:
        draw_front = None
    with atomic_directory(out, force=force, kind=EXPLORE, progress=progress) as tmp:
        for name, text in files.items():
            (tmp / name).write_text(text)
        if draw_front is not None:
            try:
                draw_front(tmp / "front.png", rows, document["dp_optimum_fps"],
                           f"{loaded.model_path.name if loaded.model_path else 'model'}: {len(rows)} plans")
                png = "front.png"
            except ImportError:
                png = None
        document["files"] = sorted(files) + ([png] if png else [])
        document["png"] = png
        (tmp / EXPLORE_INDEX).write_text(json.dumps(document, indent=2) + "\n")
    return document
