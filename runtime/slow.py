"""A slower device, for experiments: `edgec run --slow RANK:FACTOR`.

The rank's kernel is timed each frame and followed by a sleep of (FACTOR - 1) times that time,
so the stage computes FACTOR times slower, whatever it computes. Why a factor and not a fixed
delay (`--straggler RANK:DELAY`): a device that is 3x slower stays 3x slower when a rebalanced
plan gives it more or fewer layers, which a fixed delay would not model. Sleeping takes no core,
so on a machine with fewer cores than ranks the slowdown is not hidden by contention.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np

from ..compiler.diagnostics import UsageError
from .pipeline import Kernel


@dataclass(frozen=True)
class Slowdown:
    rank: int
    factor: float

    @property
    def spec(self) -> str:
        return f"{self.rank}:{self.factor!r}"


def parse_slow(text: str, ranks: int) -> Slowdown:
    """A `--slow RANK:FACTOR` spec for an output of `ranks` ranks (UsageError on anything wrong)."""
    usage = "give --slow RANK:FACTOR, e.g. --slow 2:3 (rank 2 computes 3x slower)"
    who, sep, factor_text = text.partition(":")
    if not sep or not who.strip().isdigit():
        raise UsageError(f"--slow '{text}' is not RANK:FACTOR", hint=usage)
    try:
        factor = float(factor_text)
    except ValueError:
        raise UsageError(f"--slow '{text}': FACTOR must be a number", hint=usage) from None
    if not 1.0 <= factor < float("inf"):
        raise UsageError(f"--slow '{text}': FACTOR must be a finite number >= 1", hint=usage)
    rank = int(who)
    if rank >= ranks:
        raise UsageError(f"--slow '{text}': RANK must be a rank of this output, 0..{ranks - 1}", hint=usage)
    return Slowdown(rank, factor)


def slowdowns(specs: tuple[str, ...] | list[str], ranks: int) -> dict[int, float]:
    """Rank → factor from repeated `--slow` specs (a rank given twice is refused)."""
    table: dict[int, float] = {}
    for text in specs:
        slow = parse_slow(text, ranks)
        if slow.rank in table:
            raise UsageError(f"--slow: rank {slow.rank} is given twice")
        table[slow.rank] = slow.factor
    return table


class SlowKernel:
    """A `Kernel` that runs `inner`, then sleeps (factor - 1) times as long as it took."""

    def __init__(self, inner: Kernel, factor: float) -> None:
        self.inner, self.extra = inner, factor - 1.0

    def bind(self, parity: int, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        self.inner.bind(parity, inputs, outputs)

    def run(self, parity: int) -> None:
        start = time.perf_counter()
        self.inner.run(parity)
        time.sleep(self.extra * (time.perf_counter() - start))


def slowed(kernel: Kernel, rank: int, specs: tuple[str, ...] | list[str]) -> Kernel:
    """The rank's kernel, slowed if a `--slow` spec names the rank (specs were checked by the launcher)."""
    for text in specs:
        who, _, factor = text.partition(":")
        if int(who) == rank and float(factor) > 1.0:
            return SlowKernel(kernel, float(factor))
    return kernel
