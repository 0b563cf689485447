"""The frame loop of one rank: non-blocking receives and sends around a stage kernel, double-buffered.

Why double buffering: a stage should compute frame k+1 while frame k is still on the wire, so
a pipeline runs at the speed of its slowest stage, not at the sum of compute and transfer
times. Every received and every produced tensor has two preallocated buffers; frame k uses
set `k % 2`. Receives for frames k and k+1 are always posted ahead (straight into the
buffers, raw bytes, no pickling); before the kernel overwrites set `p` with frame k, the loop
waits for the sends of frame k-2 that read from it. The requests are persistent
(`Recv_init`/`Ssend_init` once per buffer set, `Startall` per frame): the nonblocking
`Irecv`/`Issend` pattern without re-describing the same buffers every frame.

Tags: transfer `t` of frame k travels with tag `t.tag + (k % 2) * stride`, where `stride` is
the number of transfers, so a message can only ever match the buffer of its own parity. MPI's
non-overtaking rule (same sender, communicator and tag are matched in posting order) would
already keep frames apart; the parity tag makes that independent of posting order and easy
to check in a trace.

Sends are synchronous-mode (`Ssend_init`, a persistent `Issend`): they complete only once the
consumer has matched them, which gives backpressure. A fast producer stays at most two frames
ahead of its consumer instead of filling MPI's unexpected-message queue, so memory and
latency stay bounded.

Coded layers (`coded`, a `cdc_merge.CodedMerge`): at a merge rank the rows of the layers it
decodes are not among `recvs`; the merge receives them into a ring of its own, the loop waits
for k of each layer's k + R rows and lets it fill the kernel's buffers (rebuilding what is
missing) just before the kernel runs. A straggler (`straggle(frame)` seconds, fault injection)
sleeps after its kernel, before its sends, so its frame takes that much longer.

Replicas (`replicate`, `replica_frames.py`): a rank that is replica a of a stage with r replicas
runs only the global frames f = a, a + r, a + 2r, … (`first`, `step`), and its buffer set is
the *local* index j % 2, so double buffering survives an even r (with f % 2 the parity would be
constant on a replica). A link carries frame f only when f mod `every` == `offset`, and its tag
parity is the consumer's local parity (f // r_consumer) % 2, which both ends can compute: the
consumer from its own j, the producer from the peer's replica count (`peer_replicas`). Sends
therefore have one persistent request per (own buffer set, tag parity). Without replicas every
link is active for every frame and both parities are f % 2: exactly the plain loop.

Progress: the loop keeps (frame, phase) in a two-integer array (see `progress`), so a launcher
that has to stop a stuck run can say which rank was doing what.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence

import numpy as np
from mpi4py import MPI

from ..compiler.tensor_types import nbytes
from .progress import COMPUTE, DRAIN, FINISH, WAIT_INPUTS, WAIT_SENDS

if TYPE_CHECKING:
    from .cdc_merge import CodedMerge


def _nothing(requests: list) -> None:
    """Stands in for Startall/Waitall on a side that has no requests, to keep the loop lean."""


@dataclass(frozen=True)
class TensorSpec:
    """A buffer the loop allocates: shape and numpy dtype, nameless (links and output tables name it); the
    manifest's `TensorSpec` is the named, JSON form of the same facts."""

    shape: tuple[int, ...]
    dtype: np.dtype

    def empty(self) -> np.ndarray:
        return np.empty(self.shape, self.dtype)

    @property
    def nbytes(self) -> int:
        return nbytes(self.shape, self.dtype)


@dataclass(frozen=True)
class Link:
    """One transfer as one rank sees it: the tensor, the other rank and the base tag."""

    tensor: str
    peer: int
    tag: int
    spec: TensorSpec
    every: int = 1
    offset: int = 0
    """The link carries only the frames f with f % every == offset (replicated stages at one end or both)."""
    peer_replicas: int = 1
    """Replicas of the peer's stage: a send's tag parity is the consumer's local parity (f // peer_replicas) % 2."""

    def carries(self, frame: int) -> bool:
        return frame % self.every == self.offset


class Kernel(Protocol):
    """The stage's computation: bound once per buffer set, then run once per frame."""

    def bind(self, parity: int, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None: ...

    def run(self, parity: int) -> None: ...


@dataclass
class FrameStats:
    """Per frame (warm-up included): absolute compute start/end (perf_counter) and the time split."""

    start: np.ndarray
    end: np.ndarray
    compute: np.ndarray
    wait: np.ndarray
    send: np.ndarray

    @classmethod
    def from_times(cls, t: np.ndarray) -> "FrameStats":
        """From rows of (before input wait, inputs in, sends free, compute done, sends posted)."""
        return cls(start=t[:, 2], end=t[:, 3], compute=t[:, 3] - t[:, 2], wait=t[:, 1] - t[:, 0],
                   send=(t[:, 2] - t[:, 1]) + (t[:, 4] - t[:, 3]))


@dataclass
class FrameLoop:
    """One rank's pipelined frame loop (see the module's docstring): persistent receives and synchronous
    sends around `kernel`, over two preallocated buffer sets.

    `feeds` holds this rank's graph inputs as stacks of samples, shape (samples, *input shape):
    measured frame j reads sample j % samples (a single sample is bound once and never copied)."""

    comm: MPI.Comm
    recvs: Sequence[Link]
    sends: Sequence[Link]
    feeds: Mapping[str, np.ndarray]
    outputs: Mapping[str, TensorSpec]
    kernel: Kernel
    tag_stride: int
    keep: Sequence[str] = ()
    before_frame: Callable[[int], None] | None = None
    progress: np.ndarray = field(default_factory=lambda: np.full(2, -1, np.int64))
    kept: dict[str, np.ndarray] = field(default_factory=dict)
    send_latency: Sequence[float] = ()
    """Seconds each send (by position in `sends`) starts after it is posted: an emulated link's latency
    (`cluster.latency`); empty or all zero: sends start at once."""
    coded: "CodedMerge | None" = None
    straggle: Callable[[int], float] | None = None
    """Seconds to sleep after the kernel of each frame, before its sends (fault injection; None: never)."""
    interval: float = 0.0
    """Offered load: a rank that receives nothing starts frame k no earlier than k * interval seconds after the
    loop starts (0: as fast as its consumers take the frames, the full-load figures)."""
    first: int = 0
    step: int = 1
    """This rank computes the global frames first, first + step, …: replica `first` of a stage of `step` replicas."""
    after_kernel: Callable[[int, float], bool] | None = None
    """Called after each frame's kernel with (global frame, compute seconds); once it returns False the loop posts no
    further receives and ends after the next frame (whose receives are already posted), so ranks that answer False at
    the same frame all end at the same frame (`rebalance_rank.py`: a plan switch at a frame boundary). None: never
    ends early."""
    sending: Any = None
    """An object whose start(requests)/wait(requests) replace Startall/Waitall on the sends (`ulfm_mpi.SurvivingSends`:
    links to a dead consumer are dropped); None: the plain calls."""

    def __post_init__(self) -> None:
        self._recv_bufs = [{link.tensor: link.spec.empty() for link in self.recvs} for _ in range(2)]
        self._out_bufs = [{name: spec.empty() for name, spec in self.outputs.items()} for _ in range(2)]
        self._stacks = {name: stack for name, stack in self.feeds.items() if len(stack) > 1}
        self._feed_bufs = [{name: np.empty_like(stack[0, ...]) if name in self._stacks else stack[0, ...]
                            for name, stack in self.feeds.items()} for _ in range(2)]
        coded_bufs = self.coded.inputs if self.coded is not None else [{}, {}]
        for parity in range(2):
            self.kernel.bind(parity, {**self._feed_bufs[parity], **self._recv_bufs[parity], **coded_bufs[parity]},
                             self._out_bufs[parity])
        self._recv_reqs = [[self.comm.Recv_init([self._recv_bufs[p][link.tensor], MPI.BYTE], link.peer,
                                                link.tag + p * self.tag_stride) for link in self.recvs] for p in range(2)]
        self._send_reqs = [[[self.comm.Ssend_init([self.tensor(p, link.tensor), MPI.BYTE], link.peer,
                                                  link.tag + t * self.tag_stride) for link in self.sends]
                            for t in range(2)] for p in range(2)]
        """`_send_reqs[own buffer set][tag parity][link]`."""
        self._delayed = None
        if any(d > 0 for d in self.send_latency):
            from ..cluster.latency import DelayedStarts

            self._delayed = DelayedStarts([reqs for by_tag in self._send_reqs for reqs in by_tag], self.send_latency)

    def local_frames(self, frames: int) -> range:
        """The global frames this rank computes in a run of `frames` global frames."""
        return range(self.first, frames, self.step)

    def _plans(self, frames: range) -> tuple[list[list], list[list]]:
        """Per local frame j: the receive requests to start (buffer set j % 2) and the send requests to start
        (own set j % 2, the consumer's tag parity), only on the links that carry global frame frames[j]."""
        recvs, sends = [], []
        for j, f in enumerate(frames):
            p = j & 1
            recvs.append([self._recv_reqs[p][i] for i, link in enumerate(self.recvs) if link.carries(f)])
            sends.append([self._send_reqs[p][(f // link.peer_replicas) & 1][i]
                          for i, link in enumerate(self.sends) if link.carries(f)])
        return recvs, sends

    def tensor(self, parity: int, name: str) -> np.ndarray:
        """A tensor of the frame in buffer set `parity`: a kernel output, a feed, or a received tensor."""
        coded = self.coded.inputs[parity] if self.coded is not None else {}
        for table in (self._out_bufs[parity], self._feed_bufs[parity], self._recv_bufs[parity], coded):
            if name in table:
                return table[name]
        raise KeyError(f"tensor '{name}' is neither computed, fed nor received by this stage")

    def close(self) -> None:
        """Free the persistent requests (the loop cannot run afterwards)."""
        if self._delayed is not None:
            self._delayed.close()
        if self.coded is not None:
            self.coded.close()
        sends = [reqs for by_tag in self._send_reqs for reqs in by_tag]
        for request in [r for reqs in self._recv_reqs + sends for r in reqs]:
            request.Free()
        self._recv_reqs, self._send_reqs = [[], []], [[[], []], [[], []]]

    def run(self, frames: int, keep_from: int = 0) -> FrameStats:
        """Run this rank's frames of a run of `frames` global frames (all of them without replicas); graph outputs
        named in `keep` are copied out for global frames >= keep_from, in local order. `before_frame(j)` is called
        with the local index once the frame's inputs are in, just before the kernel runs; the stats are per local
        frame."""
        now = time.perf_counter
        order = self.local_frames(frames)
        count = len(order)
        skipped = sum(1 for f in order if f < keep_from)
        self.kept = {name: np.empty((count - skipped, *self.tensor(0, name).shape), self.tensor(0, name).dtype)
                     for name in self.keep}
        recv_plan, send_plan = self._plans(order)
        after_kernel, end = self.after_kernel, count
        start_all = MPI.Prequest.Startall if self.recvs else _nothing
        wait_recvs = MPI.Request.Waitall if self.recvs else _nothing
        start_sends = MPI.Prequest.Startall if self.sends else _nothing
        wait_sends = MPI.Request.Waitall if self.sends else _nothing
        if self._delayed is not None:
            start_sends, wait_sends = self._delayed.start, self._delayed.wait
        if self.sending is not None:
            start_sends, wait_sends = self.sending.start, self.sending.wait
        for j in range(min(2, count)):
            start_all(recv_plan[j])
        coded, straggle = self.coded, self.straggle
        if coded is not None:
            coded.start(count)
        progress, kernel, hook, kept = memoryview(self.progress), self.kernel, self.before_frame, self.kept
        stacks, feed_bufs = self._stacks, self._feed_bufs
        interval = self.interval if not self.recvs and coded is None else 0.0
        pending: list[list] = [[], []]
        release = now()
        times: list[tuple[float, float, float, float, float]] = []
        for j, frame in enumerate(order):
            if j == end:
                break
            p = j & 1
            progress[0], progress[1] = frame, WAIT_INPUTS
            if interval > 0 and (ahead := release + frame * interval - now()) > 0:
                time.sleep(ahead)
            t0 = now()
            wait_recvs(recv_plan[j])
            if coded is not None:
                coded.wait_rows(j)
            progress[1] = WAIT_SENDS
            t1 = now()
            wait_sends(pending[p])
            progress[1] = COMPUTE
            if hook is not None:
                hook(j)
            t2 = now()
            for name, stack in stacks.items():
                np.copyto(feed_bufs[p][name], stack[(frame - keep_from) % len(stack)])
            if coded is not None:
                coded.fill(j, p)
            kernel.run(p)
            if straggle is not None and (delay := straggle(j)) > 0:
                time.sleep(delay)
            t3 = now()
            if after_kernel is not None and not after_kernel(frame, t3 - t2) and j + 2 < end:
                end = j + 2
            if j + 2 < end:
                start_all(recv_plan[j + 2])
            pending[p] = send_plan[j]
            start_sends(pending[p])
            t4 = now()
            if kept and frame >= keep_from:
                for name, store in kept.items():
                    store[j - skipped] = self.tensor(p, name)
            times.append((t0, t1, t2, t3, t4))
        progress[1] = DRAIN
        wait_sends(pending[0] + pending[1])
        if coded is not None:
            coded.drain()
        progress[1] = FINISH
        if end < count:
            self.kept = {name: store[: end - skipped] for name, store in kept.items()}
        return FrameStats.from_times(np.array(times, dtype=np.float64).reshape(-1, 5))
