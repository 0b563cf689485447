"""`edgec run --rebalance` on the command line: which options go together, and the report's switch table."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .compiler.diagnostics import UsageError

if TYPE_CHECKING:
    from rich.console import Console


def rebalance_options(rebalance: bool, window: int | None, margin: float | None, *, engine: str, emulate: bool,
                      faults: dict) -> dict | None:
    """The options of a rebalanced run (None without --rebalance); UsageError for combinations it cannot run."""
    from .runtime.rebalance import DEFAULT_MARGIN, DEFAULT_WINDOW, check_window_margin

    if not rebalance:
        if window is not None or margin is not None:
            raise UsageError("--window and --margin need --rebalance")
        return None
    if engine != "onnxruntime":
        raise UsageError(f"--rebalance runs the onnxruntime engine only, not --engine {engine}",
                         hint="rebalanced plans are recompiled in the background; only the ONNX sub-models are")
    if emulate:
        raise UsageError("--rebalance cannot run in an emulated cluster (--emulate)")
    used = [flag for flag, key in (("--cdc-wait", "cdc_wait_ms"), ("--straggler", "stragglers"), ("--rate", "rate"),
                                   ("--kill", "kills")) if faults.get(key)]
    if used:
        raise UsageError(f"--rebalance does not combine with {', '.join(used)}",
                         hint="--slow RANK:FACTOR slows a device")
    options = {"window": DEFAULT_WINDOW if window is None else window,
               "margin": DEFAULT_MARGIN if margin is None else margin}
    check_window_margin(options["window"], options["margin"])
    return options


def _split(stages: list[dict] | None) -> str:
    return " | ".join(f"{s['first']}..{s['last']}" for s in stages or [])


def render_rebalance(report: dict, console: Console) -> None:
    """Each switch: frame, time, old and new split points, frames/s before and after, and the pause."""
    from rich.table import Table

    section = report.get("rebalance")
    if not section:
        return
    table = Table(title=f"rebalancing (window {section['window']} frames, margin {100 * section['margin']:.0f} %; "
                        "plans as each rank's first..last node, rank 0 first)")
    for col in ("frame", "at s", "old plan", "new plan", "before f/s", "after f/s", "pause ms"):
        table.add_column(col)
    for s in section["switches"]:
        fps = [f"{v:.1f}" if v else "-" for v in (s.get("before_fps"), s.get("after_fps"))]
        table.add_row(str(s["frame"]), f"{s['time_s']:.2f}", _split(s["old_stages"]), _split(s["new_stages"]),
                      *fps, f"{1e3 * s['pause_s']:.1f}")
    if section["switches"]:
        console.print(table)
    else:
        console.print("rebalancing: no switch")
    if section.get("not_adopted"):
        console.print(f"plans compiled but not switched to (the run ended first): {section['not_adopted']}")
    if section.get("note"):
        console.print(section["note"])
    if report.get("rebalanced_plan"):
        console.print(f"wrote {report['rebalanced_plan']}")
