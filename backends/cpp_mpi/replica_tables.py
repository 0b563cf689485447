"""The rank tables of a generated program with replicated stages (`replicate`): roles, links, modules.

Why per rank: with replicas a rank is no longer its stage. The program needs, for every rank, the
stage it runs, its replica and the stage's replica count (it computes the global frames f with
f mod count == replica), the TVM module it loads (a further replica's own, built for its device:
the tvm section's `replicas`), and its links, each with the frames it carries (f mod every ==
offset) and the peer stage's replica count (a send's tag parity is the consumer's local parity,
(f / peer_replicas) % 2, as in `runtime/pipeline.py`). All of it comes from the manifest: its
stages, transfers and `replicas` section, and the same `frame_class` that wrote comm.json's rows,
so a C++ rank and a Python rank agree on every tag; no sub-model and no comm.json is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ...compiler.diagnostics import UsageError
from ..manifest import Manifest
from ..replica_records import frame_class
from ..tvm.section import TvmSection


@dataclass(frozen=True)
class RankRow:
    """Rank `rank` runs replica `replica` of `stage` (of `count` replicas) on `device` with `threads`."""

    rank: int
    stage: int
    replica: int
    count: int
    device: str
    module: str
    threads: int | None


@dataclass(frozen=True)
class LinkRow:
    """One link as rank `rank` sees it: it receives (`send` False) or sends `tensor` from or to `peer`."""

    rank: int
    send: bool
    tensor: str
    peer: int
    tag: int
    every: int
    offset: int
    peer_replicas: int


def _module(manifest: Manifest, rank: int, model: str) -> str:
    """The rank's TVM module (the tvm section's, else next to its sub-model)."""
    section = manifest.section("tvm")
    entry = section.module_of(rank) if isinstance(section, TvmSection) else None
    return entry.module if entry is not None else Path(model).with_suffix(".so").as_posix()


def stage_ranks(manifest: Manifest, stage: int) -> tuple[int, ...]:
    """The ranks of a stage's replicas, replica 0 first (the stage's own rank alone when not replicated)."""
    entry = manifest.replicas.of_stage(stage) if manifest.replicas is not None else None
    return tuple(r.rank for r in entry.replicas) if entry is not None else (stage,)


def rank_rows(manifest: Manifest) -> list[RankRow]:
    """Every rank, by rank: the stages' own ranks, then the further replicas' (which must follow them without gaps)."""
    rows = {s.rank: RankRow(s.rank, s.rank, 0, 1, s.device, _module(manifest, s.rank, s.model), s.threads)
            for s in manifest.stages}
    for entry in manifest.replicas.stages if manifest.replicas is not None else ():
        count = len(entry.replicas)
        rows[entry.stage] = dataclasses.replace(rows[entry.stage], count=count)
        for r in entry.replicas[1:]:
            rows[r.rank] = RankRow(r.rank, entry.stage, r.replica, count, r.device, _module(manifest, r.rank, r.model),
                                   r.threads)
    if sorted(rows) != list(range(len(rows))):
        raise UsageError(f"the manifest's ranks are {sorted(rows)}, not 0 … {len(rows) - 1}",
                         hint="compile the output again with this edgec")
    return [rows[rank] for rank in range(len(rows))]


def link_rows(manifest: Manifest, ranks: list[RankRow]) -> list[LinkRow]:
    """Every rank's receives, then its sends: one row per peer replica whose frames meet this replica's."""
    rows: list[LinkRow] = []
    for me in ranks:
        for send in (False, True):
            for t in manifest.transfers:
                mine, other = (t.src, t.dst) if send else (t.dst, t.src)
                if mine != me.stage:
                    continue
                peers = stage_ranks(manifest, other)
                for b, peer in enumerate(peers):
                    carried = frame_class(me.replica, me.count, b, len(peers))
                    if carried is not None:
                        rows.append(LinkRow(me.rank, send, t.tensor, peer, t.tag, carried[0], carried[1], len(peers)))
    return rows
