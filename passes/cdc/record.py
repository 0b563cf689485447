"""What the cdc-encode pass records for each coded layer: everything the merge's decoder needs.

A `CdcLayer` lists the k part tensors and the R parity tensors (names in the graph, and where
they run), the parity matrix P of the code (generator [I_k; P]), the merge axis, each part's
range along it, and the padded size every row shares (parts of uneven size are zero-padded to
the largest before coding, and cropped after decoding).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .code import recover_parts


@dataclass(frozen=True)
class CdcLayer:
    layer: str
    op: str
    merge: str
    axis: int
    parts: tuple[str, ...]
    part_devices: tuple[str, ...]
    parities: tuple[str, ...]
    parity_devices: tuple[str, ...]
    ranges: tuple[tuple[int, int], ...]
    padded: int
    matrix: tuple[tuple[float, ...], ...]

    @property
    def k(self) -> int:
        return len(self.parts)

    @property
    def parity(self) -> int:
        return len(self.parities)

    def recover(self, received: dict[int, np.ndarray]) -> list[np.ndarray]:
        """The k part outputs from any k of the k + R rows (index i < k: part i, k + j: parity j)."""
        return recover_parts(received, np.array(self.matrix), self.axis, self.ranges, self.padded)

    def to_json(self) -> dict:
        return {"layer": self.layer, "op": self.op, "merge": self.merge, "axis": self.axis, "k": self.k,
                "parity": self.parity, "parts": list(self.parts), "part_devices": list(self.part_devices),
                "parities": list(self.parities), "parity_devices": list(self.parity_devices),
                "ranges": [list(r) for r in self.ranges], "padded": self.padded,
                "generator": [list(row) for row in self.matrix]}
