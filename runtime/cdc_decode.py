"""Decoding a coded layer from what reached the merge rank, driven by the manifest's `cdc` section.

`Decoder(entry)` takes one `CdcLayerEntry` (backends/cdc_records.py) and rebuilds the k part
tensors from any k of the k + R rows that arrived, keyed by tensor name as in `comm.json`.
The merge rank's frame loop calls it through `cdc_merge.CodedMerge`, which does the first-k
receives and drains the late rows.

Why `recover_into` besides `recover`: `recover` pads, stacks in float64 and solves the whole
system (the reference, exact to the code's condition number); in the frame loop that cost
11 ms a frame on a 4-part conv layer of 400 KiB parts, more than the layer. `recover_into`
writes only the missing parts, each a combination sum_j C[m, j] row_j of the k rows used
(C: the rows of G[S]^-1 for the missing parts, computed once per set S in float64), straight
into the kernel's buffers in the parts' own dtype, reading each row only as far as the part's
range reaches (the zero padding contributes nothing). Float32 accumulation of k terms adds
about k * max|C| * eps to the code's error; the run's report measures the result.
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
        self._inverses: dict[tuple[int, ...], np.ndarray] = {}

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

    def recover_into(self, arrived: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> list[str]:
        """Write each part missing from `arrived` into `out[part]`; the names rebuilt (see the module's docstring)."""
        k = len(self.entry.parts)
        missing = [i for i, p in enumerate(self.entry.parts) if p not in arrived]
        if not missing:
            return []
        used = tuple(sorted(self.rows[n] for n in arrived)[:k])
        if len(used) < k:
            raise ValueError(f"cannot decode '{self.entry.layer}': {len(used)} of {k} needed rows arrived")
        coefficients = self._coefficients(used)
        names = [*self.entry.parts, *self.entry.parities]
        axis = self.entry.axis
        for m in missing:
            target = out[self.entry.parts[m]]
            target.fill(0)
            width = target.shape[axis]
            for j, row in enumerate(used):
                source = arrived[names[row]]
                n = min(width, source.shape[axis])
                index = (slice(None),) * axis + (slice(0, n),)
                target[index] += float(coefficients[m, j]) * source[index]
        return [self.entry.parts[m] for m in missing]

    def _coefficients(self, used: tuple[int, ...]) -> np.ndarray:
        if used not in self._inverses:
            generator = np.vstack([np.eye(len(self.entry.parts)), self.matrix])
            self._inverses[used] = np.linalg.inv(generator[list(used)])
        return self._inverses[used]
