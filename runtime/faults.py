"""Fault injection for experiments and tests: stragglers, given as `edgec run --straggler` specs.

    RANK:DELAY[:PROB]   rank RANK sleeps DELAY seconds before its sends, in each frame with probability PROB
                        (default 1), drawn from a generator seeded with the rank, so a run repeats exactly;
    random:DELAY        each frame, one part rank of a coded layer (not its merge rank), drawn from a generator
                        seeded with RANDOM_SEED and the same on every rank, sleeps DELAY seconds; in an output
                        without coded layers, one rank of a split layer's part devices (not the merge's device),
                        so an uncoded baseline gets the same stragglers.

Why sleeping before the sends: it delays everything downstream of that rank by DELAY for that
frame, as a device that computed 1 + DELAY/compute times slower would, and the rank's next frame
starts that much later too (the rank is busy), so a straggler also holds back its own producer
through the synchronous sends. Every rank parses the same specs against the same manifest and
computes the whole schedule up front: no message is needed to agree on who straggles when.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..backends.manifest import Manifest
from ..compiler.diagnostics import UsageError

RANDOM_SEED = 0


@dataclass(frozen=True)
class Straggler:
    """One `--straggler` spec: `rank` None means a random part rank each frame."""

    rank: int | None
    delay: float
    prob: float = 1.0

    @property
    def spec(self) -> str:
        who = "random" if self.rank is None else str(self.rank)
        return f"{who}:{self.delay!r}" + ("" if self.rank is None or self.prob == 1.0 else f":{self.prob!r}")


def parse_straggler(text: str, manifest: Manifest) -> Straggler:
    """A `--straggler` spec checked against the compiled output (UsageError on anything wrong)."""
    fields = text.split(":")
    usage = "give --straggler RANK:DELAY[:PROB] or random:DELAY (DELAY in seconds, PROB in [0, 1])"
    if len(fields) not in (2, 3) or (fields[0] == "random" and len(fields) != 2):
        raise UsageError(f"--straggler '{text}' is not a straggler spec", hint=usage)
    try:
        delay = float(fields[1])
        prob = float(fields[2]) if len(fields) == 3 else 1.0
    except ValueError:
        raise UsageError(f"--straggler '{text}': DELAY and PROB must be numbers", hint=usage) from None
    if not (0 <= delay < float("inf")) or not 0 <= prob <= 1:
        raise UsageError(f"--straggler '{text}': DELAY must be a finite number >= 0 and PROB in [0, 1]", hint=usage)
    if fields[0] == "random":
        if not part_ranks(manifest):
            raise UsageError(f"--straggler '{text}': this output has no split or coded layer whose part ranks could "
                             "straggle", hint="give RANK:DELAY, or compile a plan with a `split` or `cdc` statement")
        return Straggler(None, delay)
    replicas = getattr(manifest, "replicas", None)
    ranks = len(manifest.stages) + (sum(len(s.replicas) - 1 for s in replicas.stages) if replicas else 0)
    if not fields[0].isdigit() or int(fields[0]) >= ranks:
        raise UsageError(f"--straggler '{text}': RANK must be a rank of this output, 0..{ranks - 1}", hint=usage)
    return Straggler(int(fields[0]), delay, prob)


def part_ranks(manifest: Manifest) -> list[int]:
    """The ranks that compute a part of a coded layer and are not that layer's merge rank; without coded layers,
    the ranks on the part devices of split layers that are not on the merge's device."""
    if manifest.cdc is not None:
        return sorted({s for entry in manifest.cdc.layers for s in entry.part_stages if s != entry.merge_stage})
    devices = {part.device for split in manifest.splits for part in split.parts
               if part.device != split.merge.split(".")[0]}
    return [rank for rank, stage in enumerate(manifest.stages) if stage.device in devices]


def schedule(stragglers: Sequence[Straggler], manifest: Manifest, rank: int, frames: int) -> np.ndarray | None:
    """Seconds `rank` sleeps in each of `frames` frames (None when it never does)."""
    delays = np.zeros(frames)
    for straggler in stragglers:
        if straggler.rank is None:
            candidates = part_ranks(manifest)
            chosen = np.random.default_rng(RANDOM_SEED).integers(len(candidates), size=frames)
            delays += np.where(np.asarray(candidates)[chosen] == rank, straggler.delay, 0.0)
        elif straggler.rank == rank:
            hit = np.random.default_rng([RANDOM_SEED, rank]).random(frames) < straggler.prob
            delays += np.where(hit, straggler.delay, 0.0)
    return delays if delays.any() else None
