"""`edgec verify`'s tables: equality per output for float plans, agreement for quantized ones, and the
accuracy on `--dataset`. Printing only; the figures come from `runtime.verify.VerifyReport`."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table


def print_verify(report, out: Path, console: Console) -> None:
    where = f"{report.stages} stages{', mpirun' if report.mpi else ''}"
    if getattr(report, "replica_frames", 0):
        where += f", frames 0-{report.replica_frames - 1}: one on every replica"
    if not report.quantized:
        table = Table(title=f"edgec verify {out} ({where})")
        for col in ("output", "max abs err", "max rel err", "result"):
            table.add_column(col)
        for o in report.outputs:
            verdict = "[green]ok[/]" if o.ok else "[red]MISMATCH[/]"
            table.add_row(o.name, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", verdict)
        console.print(table)
    else:
        table = Table(title=f"edgec verify {out} ({where}, quantized: agreement with the float model)")
        for col in ("output", "top-1 agreement", "max abs err", "mean abs err", "max rel err", "result"):
            table.add_column(col)
        for a in report.agreement:
            table.add_row(a.name, f"{100 * a.top1_agreement:.2f} % of {a.rows}", f"{a.max_abs:.3g}",
                          f"{a.mean_abs:.3g}", f"{a.max_rel:.3g}", "[green]ok[/]" if a.finite else "[red]BROKEN[/]")
        console.print(table)
        console.print("top-1 agreement: argmax over each output's last axis, row by row (for outputs that are not "
                      "class scores, read the errors)", style="dim")
    d = report.dataset
    if d is None:
        if report.quantized:
            console.print("pass --dataset FILE.npz to measure the accuracy drop", style="dim")
        return
    verdict = "[green]ok[/]" if d.ok else f"[red]DROP ABOVE {d.max_drop:g} POINTS[/]"
    console.print(f"data set {d.path}: {d.samples} samples, {d.rows} predictions of '{d.output}'\n"
                  f"  top-1 float {d.float_accuracy:.2f} %   compiled {d.compiled_accuracy:.2f} %   "
                  f"drop {d.drop:+.2f} points (max {d.max_drop:g})   changed predictions {d.changed}   {verdict}")
