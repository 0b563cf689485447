"""edgec's passes, one module each; `default_pipeline()` gives the canonical order."""

from __future__ import annotations

from .comm_insert import CommInsert
from .split_layer import SplitLayer
from .split_vertical import SplitVertical

__all__ = ["CommInsert", "SplitLayer", "SplitVertical", "default_pipeline", "PASSES"]

PASSES = {p.name: p for p in (SplitLayer, SplitVertical, CommInsert)}


def default_pipeline() -> list:
    return [SplitLayer(), SplitVertical(), CommInsert()]
