"""Link latency, emulated in the ranks: each send starts its link's latency after the frame loop posts it.

Why here and not in the kernel: the `netem` qdisc is not in this kernel (nor `fq`, which would
honour departure times set by a BPF program), and `tbf`/`htb` only shape rates. So the sender
delays the start of each message: a timer thread starts the persistent send `latency` seconds
after the frame loop asked for it, while the loop goes on computing; the loop's wait for that
send first waits until the thread has started it. The data then reaches the receiver one
latency later than it would over the bare shaped link, which is what a link's propagation delay
does to a message.

How exact: the delay is added once per message, from the moment the stage posts it, with the
timer thread's wake-up error (about 0.1 ms under load, more when all cores are busy). Not
emulated: the latency of each protocol round trip (Open MPI's rendezvous handshake of a large
synchronous send, TCP's acknowledgements and window growth), so a sender learns a message
was taken one latency earlier than over a real link. Needs MPI_THREAD_MULTIPLE (mpi4py asks
for it by default; Open MPI 4.1 provides it).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from typing import Sequence

from mpi4py import MPI


class DelayedStarts:
    """Stands in for the frame loop's `Startall`/`Waitall` of its sends: `start` schedules each request
    `delays[i]` seconds later (by its position in `requests`), `wait` waits until they are started, then
    for their completion."""

    def __init__(self, requests: Sequence[Sequence[MPI.Prequest]], delays: Sequence[float]) -> None:
        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:
            raise RuntimeError("emulated link latency needs MPI_THREAD_MULTIPLE, which this MPI did not provide")
        self._delay = {id(r): float(d) for reqs in requests for r, d in zip(reqs, delays)}
        self._pending: set[int] = set()
        self._heap: list[tuple[float, int, MPI.Prequest]] = []
        self._order = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="edgec-link-latency", daemon=True)
        self._thread.start()

    def start(self, requests: Sequence[MPI.Prequest]) -> None:
        now = time.perf_counter()
        with self._cond:
            for request in requests:
                delay = self._delay.get(id(request), 0.0)
                if delay <= 0:
                    request.Start()
                    continue
                self._pending.add(id(request))
                heapq.heappush(self._heap, (now + delay, next(self._order), request))
            self._cond.notify_all()

    def wait(self, requests: Sequence[MPI.Prequest]) -> None:
        ids = {id(r) for r in requests}
        with self._cond:
            while ids & self._pending:
                self._cond.wait()
        MPI.Request.Waitall(list(requests))

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join()

    def _serve(self) -> None:
        with self._cond:
            while not self._closed:
                if not self._heap:
                    self._cond.wait()
                    continue
                due = self._heap[0][0]
                left = due - time.perf_counter()
                if left > 0:
                    self._cond.wait(left)
                    continue
                _, _, request = heapq.heappop(self._heap)
                request.Start()
                self._pending.discard(id(request))
                self._cond.notify_all()
