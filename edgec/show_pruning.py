"""`edgec show`'s pruning tables: channels each layer lost, and parameters and MACs saved."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


def _saved(before: int, after: int) -> str:
    return f"{before:,} → {after:,} (−{(before - after) / before:.1%})" if before else f"{before:,} → {after:,}"


def show_pruning(m, console: Console) -> None:
    pruning = m.pruning
    if pruning.costs:
        table = Table(title="pruning: parameters and MACs")
        for col in ("statement", "stage", "parameters", "MACs"):
            table.add_column(col)
        for c in pruning.costs:
            table.add_row(escape(c.statement), "all" if c.stage is None else str(c.stage), _saved(c.params_before, c.params_after),
                          _saved(c.macs_before, c.macs_after))
        console.print(table)
    if pruning.layers:
        table = Table(title=f"pruned layers ({sum(p.channels_before - p.channels_after for p in pruning.layers):,} "
                            "channels removed)")
        for col in ("layer", "channels", "removed", "statement"):
            table.add_column(col)
        for p in pruning.layers:
            table.add_row(p.node, f"{p.channels_before} → {p.channels_after}", str(p.channels_before - p.channels_after),
                          escape(p.statement))
        console.print(table)
