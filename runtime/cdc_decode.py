"""Decoding a coded layer from what reached the merge rank, driven by the manifest's `cdc` section.

`Decoder(entry)` takes one `CdcLayerEntry` (backends/cdc_records.py) and rebuilds the k part
tensors from any k of the k + R rows that arrived, keyed by tensor name as in `comm.json`.
This is the piece the merge rank's frame loop needs; the loop itself (first-k receives,
draining late parts, fault injection) is not built yet, so today only tests and tools call it.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..backends.cdc_records import CdcLayerEntry
from ..passes.cdc.code import recover_parts


class Decoder:
    def __init__(self, entry: CdcLayerEntry) -> None:
        self.entry = entry
        self.rows = {name: i for i, name in enumerate((*entry.parts, *entry.parities))}
        self.matrix = np.array(entry.generator, dtype=np.float64)

    def recover(self, arrived: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], list[str]]:
        """(every part tensor by name, the names that were rebuilt) from the tensors that arrived."""
        unknown = sorted(set(arrived) - set(self.rows))
        if unknown:
            raise KeyError(f"'{unknown[0]}' is neither a part nor a parity of coded layer '{self.entry.layer}'")
        missing = [p for p in self.entry.parts if p not in arrived]
        if not missing:
            return {p: arrived[p] for p in self.entry.parts}, []
        parts = recover_parts({self.rows[n]: a for n, a in arrived.items()}, self.matrix, self.entry.axis,
                              self.entry.ranges, self.entry.padded)
        return dict(zip(self.entry.parts, parts)), missing
