"""`edgec show`'s cdc table: per coded layer, the parts and parity parts with their stages, and the code."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table


def show_cdc(m, console: Console) -> None:
    table = Table(title="coded layers (cdc): any k of k + R rows rebuild the layer's output")
    for col in ("layer", "k", "R", "parts (stage)", "parity parts (stage)", "merge stage", "code"):
        table.add_column(col)
    for c in m.cdc.layers:
        code = "sum" if len(c.parities) == 1 and all(x == 1.0 for x in c.generator[0]) else "Chebyshev MDS"
        table.add_row(c.layer, str(len(c.parts)), str(len(c.parities)),
                      ", ".join(f"{p} ({s})" for p, s in zip(c.parts, c.part_stages)),
                      ", ".join(f"{p} ({s})" for p, s in zip(c.parities, c.parity_stages)), str(c.merge_stage), code)
    console.print(table)
