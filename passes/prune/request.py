"""What one `prune` statement asks for, attached to every node it selects (`node.meta[PRUNE]`).

Lowering resolves the selector and attaches one shared `PruneRequest` per statement; the
prune pass groups selected layers by request. The key is carried by the Builder (like a
placement), so the parts of an intra-layer split stay selected.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ...compiler.annotations import PRUNE
from ...compiler.diagnostics import SourceSpan

__all__ = ["PRUNE", "METRICS", "PruneRequest"]
METRICS = ("l1", "l2", "bn_gamma", "activation", "contribution")


@dataclass(frozen=True, eq=False)
class PruneRequest:
    """One statement: remove `fraction` of the selected layers' output channels.

    `per_layer`: every tie group loses `fraction` of its channels; otherwise the fraction is of
    all selected channels, allocated by a global ranking. `calibrate`: a directory of
    calibration inputs (enables statistics repair and `activation` ranking). `reconstruct`: refit the
    consumers by least squares on the calibration data. `index` orders
    statements (the first statement that selects a channel group owns it).
    """

    fraction: float
    metric: str = "l1"
    per_layer: bool = False
    calibrate: str | None = None
    what: str = "channels"
    reconstruct: bool = False
    text: str = ""
    index: int = 0
    span: SourceSpan | None = field(default=None, compare=False)

    @property
    def label(self) -> str:
        return self.text or f"prune {self.what} {self.fraction:.0%} by {self.metric}"
