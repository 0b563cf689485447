"""The manifest's `cdc` section: per coded layer, what the merge rank's decoder needs.

k part tensors and R parity tensors (names as in `comm.json`, with their stages), the merge
stage, the concat axis, each part's range along it, the padded size the code works on, and the
parity matrix P of the generator [I_k; P] (`passes/cdc/code.py`). Written from the cdc-encode
pass's `CdcLayer` records; absent when the plan codes nothing, which reads back as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .records import Fields, Record


@dataclass(frozen=True)
class CdcLayerEntry(Record):
    layer: str
    op: str
    axis: int
    merge_stage: int
    parts: tuple[str, ...]
    part_stages: tuple[int, ...]
    parities: tuple[str, ...]
    parity_stages: tuple[int, ...]
    ranges: tuple[tuple[int, int], ...]
    padded: int
    generator: tuple[tuple[float, ...], ...]

    @classmethod
    def read(cls, f: Fields) -> CdcLayerEntry:
        f.only(*(name for name in cls.__dataclass_fields__))
        parts, parities = f.strs("parts"), f.strs("parities")
        ranges = tuple(tuple(r) for r in _matrix(f, "ranges", int, len(parts), 2))
        generator = _matrix(f, "generator", float, len(parities), len(parts))
        return cls(f.string("layer"), f.string("op"), f.integer("axis"), f.integer("merge_stage"), parts,
                   f.ints("part_stages"), parities, f.ints("parity_stages"), ranges, f.integer("padded"), generator)


def _matrix(f: Fields, key: str, kind: Callable, rows: int, cols: int) -> tuple[tuple[Any, ...], ...]:
    value = f.get(key, "a list")
    numbers = (int,) if kind is int else (int, float)
    ok = len(value) == rows and all(isinstance(r, list) and len(r) == cols and
                                    all(isinstance(x, numbers) and not isinstance(x, bool) for x in r) for r in value)
    if not ok:
        raise f.error(f"expected {rows} lists of {cols} numbers", key)
    return tuple(tuple(kind(x) for x in r) for r in value)


@dataclass(frozen=True)
class CdcInfo(Record):
    """The `cdc` section."""

    layers: tuple[CdcLayerEntry, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"layers": [entry.to_json() for entry in self.layers]}

    @classmethod
    def read(cls, f: Fields) -> CdcInfo:
        f.only("layers")
        return cls(f.records("layers", CdcLayerEntry, default=[]))

    @classmethod
    def of(cls, layers: Any, stage_of_tensor: Callable[[str], int]) -> CdcInfo | None:
        """From the cdc-encode pass's `CdcLayer`s; `stage_of_tensor` maps a tensor to the stage that computes it
        (the merge's stage: that of the merged tensor's consumer side, the merge node)."""
        if not layers:
            return None
        return cls(tuple(CdcLayerEntry(
            r.layer, r.op, r.axis, stage_of_tensor(r.merge), r.parts, tuple(stage_of_tensor(p) for p in r.parts),
            r.parities, tuple(stage_of_tensor(p) for p in r.parities), r.ranges, r.padded, r.matrix) for r in layers))
