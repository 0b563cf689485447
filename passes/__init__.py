"""edgec's passes, one module each; `default_pipeline()` gives the canonical order."""

from __future__ import annotations

from .comm_insert import CommInsert
from .split_vertical import SplitVertical

__all__ = ["CommInsert", "SplitVertical", "default_pipeline", "PASSES"]

PASSES = {p.name: p for p in (SplitVertical, CommInsert)}


def default_pipeline() -> list:
    return [SplitVertical(), CommInsert()]
