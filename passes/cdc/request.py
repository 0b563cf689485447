"""What a `cdc` statement asks of one layer: R parity parts and where they run.

Attached by dsl/lower_cdc.py to the selected layer under `CDC`; the split-layer pass reads it
to keep the coded layer's parts linear (no follower is fused into them), and the cdc-encode
pass consumes it after the split.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...compiler.annotations import CDC, Placement
from ...compiler.diagnostics import SourceSpan



__all__ = ["CDC", "CdcRequest"]


@dataclass(frozen=True)
class CdcRequest:
    parity: int
    targets: tuple[Placement, ...]
    """One placement per parity part (a single `on` target is repeated)."""
    span: SourceSpan | None = None
