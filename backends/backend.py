"""The interface every backend implements: a name, the facts it needs, and `write` returning its section.

Why one interface: the artifact writer (`artifacts.write_artifacts`) loops over the requested
backends through the registry instead of knowing each one, so a new target (VTA next) is one
folder with a `Backend` subclass plus one registration (`registry.py`, or the `edgec.backends`
entry-point group for a third-party package).

A backend only reads: the finished `Program` (never rewritten here; rewrites are passes) and
the manifest as built so far, which holds the core description of the output (stages, their
signatures, transfers, platform) and the sections of the backends that ran before it (those in
`needs`). It writes files under `out` (the temp directory that becomes the output) and returns
its section of `manifest.json`: a `Section` (typed, read back with `section_type`), a plain
JSON object, or None.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Mapping

from ..compiler.facts import Fact
from .records import Section

if TYPE_CHECKING:
    from ..compiler.program import Program
    from .manifest import Manifest

Progress = Callable[[str], None]

MANIFEST_KEYS = frozenset({"format", "model", "plan", "platform", "stages", "transfers", "splits", "passes", "tools",
                           "backends", "files", "quantization", "pruning", "cdc", "replicas"})
"""Top-level keys of manifest.json that are not backend sections: no backend may take one of these names."""


class Backend(ABC):
    """One way of turning a compiled `Program` into files. Subclass, set the class attributes, implement `write`.

    `requires`: facts the program must have (checked before anything is written).
    `needs`: backends whose artifacts or sections this one reads; they are run first, even when
    not asked for (`cpp` needs `tvm`). `section_type`: the `Section` subclass its part of the
    manifest is read back as (None: plain JSON).
    """

    name: ClassVar[str]
    summary: ClassVar[str] = ""
    requires: ClassVar[frozenset[Fact]] = frozenset({Fact.STAGED, Fact.COMM})
    needs: ClassVar[tuple[str, ...]] = ()
    section_type: ClassVar[type[Section] | None] = None

    @abstractmethod
    def write(self, program: Program, out: Path, *, manifest: Manifest,
              progress: Progress) -> Section | Mapping[str, Any] | None:
        """Write this backend's files under `out`; return its manifest section (or None)."""

    def __repr__(self) -> str:
        return f"<backend {self.name!r}>"
