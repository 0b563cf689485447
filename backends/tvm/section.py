"""The `tvm` section of manifest.json: per stage the module, its target and how it was built.

Read by the TVM engine (which module a stage runs, and on which device kind), by the C++ backend
(the module each rank loads) and by `edgec show`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import Fields, Section, plain


@dataclass(frozen=True)
class TvmStage(Section):
    """One stage's module: path relative to the output, TVM target (TVM's JSON form), CPU arch it is
    linked for, the cross compiler used (None: this machine's), sha256, size and compile time.
    GPU modules also say how many device kernels they hold and in which form."""

    rank: int
    device: str
    resource: str
    module: str
    target: dict[str, Any]
    arch: str
    cross_compiler: str | None
    sha256: str
    nbytes: int
    compile_seconds: float
    device_kernels: int | None = None
    device_code: tuple[str, ...] | None = None

    @property
    def kind(self) -> str:
        """The TVM target kind (`llvm`, `cuda`)."""
        return str(self.target.get("kind", "llvm"))

    def to_json(self) -> dict[str, Any]:
        data = {"rank": self.rank, "device": self.device, "resource": self.resource, "module": self.module,
                "target": plain(self.target), "arch": self.arch, "cross_compiler": self.cross_compiler,
                "sha256": self.sha256, "bytes": self.nbytes, "compile_seconds": self.compile_seconds}
        if self.device_kernels is not None:
            data["device_kernels"] = self.device_kernels
        if self.device_code is not None:
            data["device_code"] = list(self.device_code)
        return data

    @classmethod
    def read(cls, f: Fields) -> TvmStage:
        f.only("rank", "device", "resource", "module", "target", "arch", "cross_compiler", "sha256", "bytes",
               "compile_seconds", "device_kernels", "device_code")
        code = f.strs("device_code") if f.has("device_code") else None
        return cls(f.integer("rank"), f.string("device"), f.string("resource"), f.string("module"),
                   dict(f.get("target", "an object")), f.string("arch"), f.string("cross_compiler", null=True),
                   f.string("sha256"), f.integer("bytes"), f.number("compile_seconds"),
                   f.integer("device_kernels", default=None, null=True), code)


@dataclass(frozen=True)
class TvmReplica(Section):
    """A further replica's module (`replicate`): replica `replica` (1 or more) of stage `stage`, built for its
    own device's target; `module.rank` is the replica's rank. JSON: `stage`, `replica` and the TvmStage keys."""

    stage: int
    replica: int
    module: TvmStage

    def to_json(self) -> dict[str, Any]:
        return {"stage": self.stage, "replica": self.replica, **self.module.to_json()}

    @classmethod
    def read(cls, f: Fields) -> TvmReplica:
        rest = Fields({k: v for k, v in f.data.items() if k not in ("stage", "replica")}, f.where, f.source)
        return cls(f.integer("stage"), f.integer("replica"), TvmStage.read(rest))


@dataclass(frozen=True)
class TvmSection(Section):
    """What the tvm backend built: a module per stage (`stage(rank)`, None for a stage it did not build),
    one per further replica of a replicated stage (`replicas`; absent in manifests without replicas),
    the TVM versions, and the wall time and parallel jobs of the build."""

    versions: dict[str, str]
    wall_seconds: float
    jobs: int
    stages: tuple[TvmStage, ...]
    replicas: tuple[TvmReplica, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data = {"versions": dict(self.versions), "wall_seconds": self.wall_seconds, "jobs": self.jobs,
                "stages": [s.to_json() for s in self.stages]}
        if self.replicas:
            data["replicas"] = [r.to_json() for r in self.replicas]
        return data

    @classmethod
    def read(cls, f: Fields) -> TvmSection:
        f.only("versions", "wall_seconds", "jobs", "stages", "replicas")
        return cls(f.str_map("versions"), f.number("wall_seconds"), f.integer("jobs"),
                   tuple(TvmStage.read(c) for c in f.children("stages")),
                   tuple(TvmReplica.read(c) for c in f.children("replicas", default=[])))

    def stage(self, rank: int) -> TvmStage | None:
        return next((s for s in self.stages if s.rank == rank), None)

    def module_of(self, rank: int) -> TvmStage | None:
        """The module rank `rank` runs: its stage's, or, for a further replica's rank, that replica's own."""
        return self.stage(rank) or next((r.module for r in self.replicas if r.module.rank == rank), None)
