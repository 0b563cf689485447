"""The manifest's `replicas` section, the ranks replicas add, and the frames each link carries.

A replicated stage (`replicate`, `passes/replicate.py`) keeps its own rank as replica 0 and
gets one more rank per further replica, numbered after all stages. Every replica runs the
stage's one sub-model: the ONNX backend writes it once and copies it (and its external data
file) into each further replica's device folder, `model` naming that replica's own copy, so a
device's folder holds everything its ranks run and `edgec verify` checks each replica's file.
Frame f is computed by replica f mod r. So a link between replica a of a stage with r_s
replicas and replica b of one with r_d carries exactly the frames with f ≡ a (mod r_s) and
f ≡ b (mod r_d): one residue class `offset` modulo `every` = lcm(r_s, r_d), or none at all (that
pair of ranks never talks). Absent when the plan replicates nothing, which reads back as None.
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from ..compiler.diagnostics import UsageError
from ..compiler.program import Program
from .records import Fields, Record

ROUND_ROBIN = "frame f is computed by replica f mod r of a stage with r replicas"
MPI_ENGINES = ("onnxruntime", "tvm", "cpp")
"""The engines whose MPI ranks deal frames to replicas: the Python ranks (`runtime/replica_frames.py`) and the
generated C++ program (`cpp_mpi/codegen.py`, `edgec_stage.h`)."""
MPI_REFUSAL = ("replicated stages run on MPI with --engine onnxruntime, tvm or cpp only; "
               "this engine does not deal frames to replicas yet")


@dataclass(frozen=True)
class ReplicaEntry(Record):
    replica: int
    rank: int
    device: str
    resource: str
    threads: int | None
    model: str

    @classmethod
    def read(cls, f: Fields) -> ReplicaEntry:
        f.only(*cls.__dataclass_fields__)
        return cls(f.integer("replica"), f.integer("rank"), f.string("device"), f.string("resource"),
                   f.integer("threads", null=True, default=None), f.string("model"))


@dataclass(frozen=True)
class StageReplicaEntry(Record):
    stage: int
    statement: str
    replicas: tuple[ReplicaEntry, ...]

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "statement": self.statement, "replicas": [r.to_json() for r in self.replicas]}

    @classmethod
    def read(cls, f: Fields) -> StageReplicaEntry:
        f.only("stage", "statement", "replicas")
        return cls(f.integer("stage"), f.string("statement"), f.records("replicas", ReplicaEntry))


@dataclass(frozen=True)
class ReplicaInfo(Record):
    """The `replicas` section: the rule, and every replicated stage's replicas."""

    stages: tuple[StageReplicaEntry, ...] = ()
    rule: str = ROUND_ROBIN

    def to_json(self) -> dict[str, Any]:
        return {"rule": self.rule, "stages": [s.to_json() for s in self.stages]}

    @classmethod
    def read(cls, f: Fields) -> ReplicaInfo:
        f.only("rule", "stages")
        return cls(f.records("stages", StageReplicaEntry, default=[]), f.string("rule", default=ROUND_ROBIN))

    @classmethod
    def of(cls, program: Program, model_path) -> ReplicaInfo | None:
        """From `program.replicas`; `model_path(device, stage)` is where the stage's sub-model is written."""
        if not program.replicas:
            return None
        return cls(tuple(StageReplicaEntry(r.stage, r.statement, tuple(
            ReplicaEntry(i, rank, p.device, p.resource, p.threads, model_path(p.device, r.stage))
            for i, (rank, p) in enumerate(zip(r.ranks, r.placements)))) for r in program.replicas))

    def of_stage(self, stage: int) -> StageReplicaEntry | None:
        return next((s for s in self.stages if s.stage == stage), None)

    def count(self, stage: int) -> int:
        """How many replicas stage `stage` runs as (1 when it is not replicated)."""
        entry = self.of_stage(stage)
        return len(entry.replicas) if entry is not None else 1


def copy_replica_files(manifest, out: Path, external_data: dict[int, str | None]) -> list[str]:
    """Copy each replicated stage's written sub-model (and its external data file, `external_data[rank]`, a name
    beside it) to every further replica's `model` path; the copied paths, relative to `out`."""
    copied: list[str] = []
    if manifest.replicas is None:
        return copied
    for entry in manifest.replicas.stages:
        source = out / manifest.stage(entry.stage).model
        data = external_data.get(entry.stage)
        for replica in entry.replicas[1:]:
            target = out / replica.model
            target.parent.mkdir(parents=True, exist_ok=True)
            for name in (source.name, data) if data else (source.name,):
                shutil.copyfile(source.parent / name, target.parent / name)
                copied.append((Path(replica.model).parent / name).as_posix())
    return copied


def placed_ranks(program: Program) -> Iterator[tuple[int, int, str, int | None]]:
    """(rank, stage, device, threads) of every rank: the stages' own, then the further replicas'."""
    for stage in program.stages:
        yield stage.rank, stage.index, stage.device, stage.threads
    for r in program.replicas:
        for rank, p in zip(r.ranks[1:], r.placements[1:]):
            yield rank, r.stage, p.device, p.threads


def frame_class(a: int, r_src: int, b: int, r_dst: int) -> tuple[int, int] | None:
    """(every, offset): the frames f ≡ a (mod r_src) and f ≡ b (mod r_dst) are f ≡ offset (mod every); None if none."""
    every = math.lcm(r_src, r_dst)
    return next(((every, f) for f in range(every) if f % r_src == a and f % r_dst == b), None)


def replicated_comm_tables(program: Program, tables: dict, entry) -> dict:
    """`comm.json` with replicas: every rank a row, each send/recv row naming the peer rank and the frames it carries."""
    if not program.replicas:
        return tables
    of = {r.stage: r for r in program.replicas}

    def ranks(stage: int) -> tuple[int, ...]:
        return of[stage].ranks if stage in of else (stage,)

    rows = []
    for rank, stage, device, _threads in placed_ranks(program):
        me = ranks(stage).index(rank)
        resource = program.stages[stage].resource
        recvs, sends = [], []
        for t in program.transfers:
            for mine, other, rows_out in ((t.dst, t.src, recvs), (t.src, t.dst, sends)):
                if mine != stage:
                    continue
                r_me, peers = len(ranks(stage)), ranks(other)
                for b, peer in enumerate(peers):
                    cls = frame_class(me, r_me, b, len(peers))
                    if cls is not None:
                        rows_out.append({**entry(t, peer), "every": cls[0], "offset": cls[1]})
        rows.append({"rank": rank, "stage": stage, "replica": me, "device": device, "resource": resource,
                     "recvs": recvs, "sends": sends})
    return {"frames": "a row carries only frames f with f mod every == offset; " + ROUND_ROBIN, "ranks": rows}


def refuse_mpi_with_replicas(manifest, engine: str) -> None:
    """Only the engines of `MPI_ENGINES` load each replica's own file and deal frames to it; others are refused."""
    if getattr(manifest, "replicas", None) is not None and engine not in MPI_ENGINES:
        raise UsageError(MPI_REFUSAL, hint="use --engine onnxruntime, tvm or cpp, or `edgec verify OUT` (in-process)")
