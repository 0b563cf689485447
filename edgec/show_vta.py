"""`edgec show` for an output built with the vta backend: per VTA stage, what runs on VTA (cycles, MACs,
utilization of the 256 MAC/cycle peak) and what falls back to the device's CPU, with the reason."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from .backends.vta.section import VtaSection


def show_vta(section: VtaSection, console: Console) -> None:
    for stage in section.stages:
        table = Table(title=f"stage {stage.rank} on {stage.device}.vta ({section.config}): "
                            f"{stage.cycles:,} cycles per sample = {stage.cycles / stage.clock_hz * 1e3:.3f} ms "
                            f"at {stage.clock_hz / 1e6:.0f} MHz")
        for col in ("node", "op", "runs on", "cycles", "MACs", "util", "DMA bytes", "why"):
            table.add_column(col)
        for layer in stage.layers:
            table.add_row(layer.name, layer.op, "VTA", f"{layer.cycles:,}", f"{layer.macs:,}" if layer.macs else "",
                          f"{layer.utilization:.1%}" if layer.macs else "", f"{layer.dma_bytes:,}", "")
        for f in stage.fallbacks:
            table.add_row(f.node, f.op, "CPU", "", "", "", "", f.reason)
        console.print(table)
