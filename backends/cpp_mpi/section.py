"""The `cpp` section of manifest.json: the generated sources, where `edgec build` puts the program,
and one deployment package per device (its architecture, and whether it carries the TVM runtime)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..records import Fields, Section


@dataclass(frozen=True)
class CppPackage(Section):
    """One device's deployment package: the tarball `path` (relative to the output), the CPU `arch` its
    modules are built for, and whether it carries the TVM runtime libraries for that arch."""

    device: str
    path: str
    arch: str
    tvm_runtime: bool


@dataclass(frozen=True)
class CppSection(Section):
    """What the cpp backend wrote: the generated `sources` under cpp/, the path `edgec build` builds the
    `program` at, and the per-device packages (none until they are written)."""

    sources: tuple[str, ...]
    program: str
    packages: tuple[CppPackage, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"sources": list(self.sources), "program": self.program, "packages": [p.to_json() for p in self.packages]}

    @classmethod
    def read(cls, f: Fields) -> CppSection:
        f.only("sources", "program", "packages")
        return cls(f.strs("sources"), f.string("program"),
                   tuple(CppPackage.read(c) for c in f.children("packages", default=[])))
