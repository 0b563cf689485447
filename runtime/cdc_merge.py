"""First k of k + R at the merge rank: receive a coded layer's rows, go on once enough arrived, rebuild the rest.

Why a ring of landing buffers instead of the loop's two sets: a part that is late is still on
its way when the merge moves on, and its straggling rank's synchronous send completes only once
the merge has matched it. So each coded row (a part or a parity tensor sent to this rank) gets
`depth` landing buffers with a persistent receive each, posted up to `depth` frames ahead; a
late row lands in its own frame's buffer and is drained (tested every frame, waited for only
when the straggler falls `depth` frames behind, or at the end), never into a buffer the kernel
reads. The kernel reads two sets of its own (`inputs`), into which `fill` copies the parts that
came and writes the parts it rebuilt with the `Decoder` (`recover_into`); the parity inputs the
merge's sub-model takes but does not use are left unwritten.

Tags: a row of frame f is sent with tag `tag + (f % 2) * stride` (the loop's scheme); `depth`
is even, so landing buffer `f % depth` always receives that tag. Receives of one row with one
tag are posted in frame order (a buffer is posted again only once every earlier frame of that
row has come), so MPI's in-order matching puts each message into its own frame's buffer.

Recovery error: when a rebuilt part's own row arrives later, the two are compared: the
largest absolute difference over the largest magnitude of the part (0 when the part is all
zeros), kept per part; a norm-wise relative error, because element-wise ratios are noise near 0.

Dead ranks (ULFM only, `failures`): a request that fails with MPI_ERR_PROC_FAILED marks every row of
the dead rank lost; a lost row is never waited for, tested or compared again, and is rebuilt in
every later frame (`ulfm_mpi.py`; without `failures` the error is raised as before).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
from mpi4py import MPI

from ..backends.cdc_records import CdcLayerEntry
from .cdc_decode import Decoder
from .pipeline import Link

if TYPE_CHECKING:
    from .ulfm_mpi import Failures

DEFAULT_DEPTH = 8


def decodable(entry: CdcLayerEntry, rank: int) -> bool:
    """Whether this rank can decode `entry` before its kernel runs: it is the merge and receives every row (a part
    or parity computed by the merge stage itself would only exist after the kernel that needs the decoded parts)."""
    return entry.merge_stage == rank and rank not in (*entry.part_stages, *entry.parity_stages)


@dataclass
class _Row:
    link: Link
    layer: int
    name: str
    is_part: bool


@dataclass
class CodedMerge:
    """The coded rows of the layers this rank merges (see the module's docstring); used by `FrameLoop`."""

    comm: MPI.Comm
    layers: Sequence[CdcLayerEntry]
    links: Sequence[Link]
    tag_stride: int
    wait_s: float = 0.0
    depth: int = DEFAULT_DEPTH
    rebuilt: list[list[str]] = field(default_factory=list)
    errors: dict[str, float] = field(default_factory=dict)
    late: int = 0
    failures: "Failures | None" = None
    """Under ULFM: a row whose rank died is marked lost (`lost`, row indices) and rebuilt from then on."""

    def __post_init__(self) -> None:
        if self.depth < 2 or self.depth % 2:
            raise ValueError("the landing ring's depth must be even and at least 2")
        by_name = {link.tensor: link for link in self.links}
        self._decoders = [Decoder(entry) for entry in self.layers]
        self._rows: list[_Row] = []
        for index, entry in enumerate(self.layers):
            for name in (*entry.parts, *entry.parities):
                self._rows.append(_Row(by_name[name], index, name, name in entry.parts))
        self._need = [len(entry.parts) for entry in self.layers]
        self._landing = [[row.link.spec.empty() for row in self._rows] for _ in range(self.depth)]
        self._reqs = [[self.comm.Recv_init([self._landing[s][i], MPI.BYTE], row.link.peer,
                                           row.link.tag + (s % 2) * self.tag_stride)
                       for i, row in enumerate(self._rows)] for s in range(self.depth)]
        self.inputs = [{row.name: row.link.spec.empty() for row in self._rows} for _ in range(2)]
        self._kept: dict[tuple[int, int], np.ndarray] = {}
        self.lost: set[int] = set()

    @property
    def tensors(self) -> set[str]:
        return {row.name for row in self._rows}

    def start(self, frames: int) -> None:
        """Post every row's receives for the first `depth` frames of a run of `frames`."""
        self._frames, self._consumed = frames, 0
        self._oldest = [0] * len(self._rows)
        self._done = [[False] * len(self._rows) for _ in range(self.depth)]
        self.rebuilt, self.errors, self.late, self._kept, self.lost = [], {}, 0, {}, set()
        for s in range(min(self.depth, frames)):
            for request in self._reqs[s]:
                request.Start()

    def wait_rows(self, frame: int) -> None:
        """Return once every layer has k rows of `frame` (after waiting up to `wait_s` for all of them)."""
        self._poll()
        for i in range(len(self._rows)):
            while i not in self.lost and self._oldest[i] <= frame - self.depth:
                old = self._oldest[i]
                if self._survive(self._reqs[old % self.depth][i].Wait, [i]):
                    self._done[old % self.depth][i] = True
                    self._advance(i)
        slot, done = frame % self.depth, self._done[frame % self.depth]
        pending = [i for i in range(len(self._rows)) if not done[i] and i not in self.lost]
        if self.wait_s > 0 and pending:
            deadline = time.perf_counter() + self.wait_s
            while pending and time.perf_counter() < deadline:
                pending = self._test(slot, pending)
        while pending and not self._enough(done):
            requests = [self._reqs[slot][i] for i in pending]
            index = self._survive(lambda: MPI.Request.Waitany(requests), pending)
            if index is None:
                pending = [i for i in pending if i not in self.lost]
            else:
                done[pending.pop(index)] = True

    def fill(self, frame: int, parity: int) -> None:
        """Copy the rows of `frame` that came into kernel set `parity`, rebuild the missing parts there, record them."""
        slot, inputs, rebuilt = frame % self.depth, self.inputs[parity], []
        for layer, decoder in enumerate(self._decoders):
            arrived = {row.name: self._landing[slot][i] for i, row in enumerate(self._rows)
                       if row.layer == layer and self._done[slot][i]}
            for name in decoder.entry.parts:
                if name in arrived:
                    np.copyto(inputs[name], arrived[name])
            missing = decoder.recover_into(arrived, inputs)
            for name in missing:
                if (index := self._index(layer, name)) not in self.lost:
                    self._kept[(frame, index)] = inputs[name].copy()
            rebuilt += missing
        self.rebuilt.append(rebuilt)
        self._consumed = frame + 1
        for i in range(len(self._rows)):
            self._advance(i)

    def drain(self) -> None:
        """Wait for every late row (the stragglers' sends then complete) and compare them with what was rebuilt."""
        for i in range(len(self._rows)):
            while i not in self.lost and self._oldest[i] < self._consumed:
                if self._survive(self._reqs[self._oldest[i] % self.depth][i].Wait, [i]):
                    self._done[self._oldest[i] % self.depth][i] = True
                    self._advance(i)

    def close(self) -> None:
        for request in [r for reqs in self._reqs for r in reqs]:
            self._survive(request.Free, [])
        self._reqs = []

    def part_ranks(self) -> dict[str, int]:
        """The rank that computes each part (the peer its row comes from)."""
        return {row.name: row.link.peer for row in self._rows if row.is_part}

    def _index(self, layer: int, name: str) -> int:
        return next(i for i, row in enumerate(self._rows) if row.layer == layer and row.name == name)

    def _enough(self, done: list[bool]) -> bool:
        have = [0] * len(self.layers)
        for i, row in enumerate(self._rows):
            have[row.layer] += done[i]
        return all(h >= need for h, need in zip(have, self._need))

    def _survive(self, operation: Callable, rows: list[int]):
        """`operation()` (a request's Wait, Test, Free, or a Waitany over `rows`); under ULFM, when a peer died, mark
        the dead ranks' rows lost and return None instead (`Failures` raises for a loss the run cannot survive)."""
        try:
            return operation()
        except MPI.Exception as exc:
            if self.failures is None or not self.failures.is_failure(exc):
                raise
            suspect = self._rows[rows[0]].link.peer if len(rows) == 1 else None
            dead = self.failures.update(suspect)
            self.lost |= {i for i, row in enumerate(self._rows) if row.link.peer in dead}
            return None

    def _test(self, slot: int, pending: list[int]) -> list[int]:
        left = []
        for i in pending:
            if self._survive(self._reqs[slot][i].Test, [i]):
                self._done[slot][i] = True
            elif i not in self.lost:
                left.append(i)
        return left

    def _poll(self) -> None:
        """Take in the late rows of consumed frames that came since the last frame (in frame order per row)."""
        for i in range(len(self._rows)):
            for frame in range(self._oldest[i], self._consumed):
                slot = frame % self.depth
                if not self._done[slot][i]:
                    if i in self.lost or not self._survive(self._reqs[slot][i].Test, [i]):
                        break
                    self._done[slot][i] = True
            self._advance(i)

    def _advance(self, i: int) -> None:
        """Retire row i's consumed, completed frames in order: compare late parts, repost the buffer `depth` ahead."""
        while self._oldest[i] < self._consumed and self._done[self._oldest[i] % self.depth][i]:
            frame = self._oldest[i]
            slot = frame % self.depth
            kept = self._kept.pop((frame, i), None)
            if kept is not None:
                self.late += 1
                truth = self._landing[slot][i].astype(np.float64)
                scale = float(np.max(np.abs(truth))) if truth.size else 0.0
                diff = float(np.max(np.abs(kept.astype(np.float64) - truth))) if truth.size else 0.0
                name = self._rows[i].name
                self.errors[name] = max(self.errors.get(name, 0.0), diff / scale if scale > 0 else diff)
            self._done[slot][i] = False
            if frame + self.depth < self._frames:
                self._reqs[slot][i].Start()
            self._oldest[i] = frame + 1
