"""`edgec show`'s replicas table: per replicated stage, each replica's rank and target, and the dealing rule."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def show_replicas(m, console: Console) -> None:
    table = Table(title=f"replicated stages: {m.replicas.rule}")
    for col in ("stage", "r", "replica", "rank", "target", "frames", "sub-model", "statement"):
        table.add_column(col)
    for s in m.replicas.stages:
        r = len(s.replicas)
        for replica in s.replicas:
            threads = f" threads {replica.threads}" if replica.threads else ""
            table.add_row(str(s.stage), str(r), str(replica.replica), str(replica.rank),
                          f"{replica.device}.{replica.resource}{threads}", f"f mod {r} = {replica.replica}",
                          replica.model, s.statement if replica.replica == 0 else "")
    console.print(table)
