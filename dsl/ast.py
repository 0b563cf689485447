"""The parsed plan: immutable statement and selector records that the lowering codes against.

Every record carries the `SourceSpan` it came from, so any later stage (selector resolution,
lowering, passes) can report an error at the exact place in the plan. Spans never take part in
equality, so two plans that say the same thing compare equal wherever they were written.
Values are already normalized (bytes, bits per second, seconds, fractions) by the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from edgec.compiler.diagnostics import SourceSpan

KEYWORDS = frozenset(
    "model input device link place split quantize prune cdc on threads by into ratio merge "
    "per_channel per_tensor calibrate method correct_bias equalize parity wire per_layer reconstruct replicate".split()
)
GLOB_CHARS = frozenset("*?[")
_BARE_NAME = re.compile(r"[A-Za-z_](?:[A-Za-z0-9_-]*[A-Za-z0-9_])?")


def quote(text: str) -> str:
    """`text` as a plan string literal (only `\\` and `"` need escaping)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def format_name(name: str) -> str:
    """`name` as plan text: bare when the lexer reads it back as the same name, else quoted."""
    return name if _BARE_NAME.fullmatch(name) and name not in KEYWORDS else quote(name)


def _span() -> SourceSpan | None:
    return field(default=None, compare=False, repr=False, kw_only=True)


@dataclass(frozen=True)
class NameSel:
    """One node by its exact name."""

    name: str
    span: SourceSpan | None = _span()

    def __str__(self) -> str:
        return format_name(self.name)


@dataclass(frozen=True)
class GlobSel:
    """Nodes whose full name matches an fnmatch pattern (`*` also crosses `/`)."""

    pattern: str
    span: SourceSpan | None = _span()

    def __str__(self) -> str:
        return format_name(self.pattern)


@dataclass(frozen=True)
class RangeSel:
    """The inclusive slice `start .. end` of the model's topological order."""

    start: NameSel
    end: NameSel
    span: SourceSpan | None = _span()

    def __str__(self) -> str:
        return f"{self.start} .. {self.end}"


@dataclass(frozen=True)
class AllSel:
    """`*`: every node no earlier statement has placed."""

    span: SourceSpan | None = _span()

    def __str__(self) -> str:
        return "*"


@dataclass(frozen=True)
class ListSel:
    """The union of several selectors, kept in topological order when resolved."""

    items: list[Selector]
    span: SourceSpan | None = _span()

    def __str__(self) -> str:
        return "[" + ", ".join(str(item) for item in self.items) + "]"


Selector = NameSel | GlobSel | RangeSel | AllSel | ListSel


@dataclass(frozen=True)
class Target:
    """Where work runs: a device and optionally one of its resources (cpu, gpu, vta, …)."""

    device: str
    resource: str | None = None
    span: SourceSpan | None = _span()

    @property
    def effective_resource(self) -> str:
        """The resource, defaulting to `cpu` when the plan names only the device."""
        return self.resource or "cpu"

    def __str__(self) -> str:
        return f"{self.device}.{self.resource}" if self.resource else self.device


@dataclass(frozen=True)
class Property:
    """`key value` inside a device or link block; `value` is normalized per `unit_kind`."""

    key: str
    value: str | int | float
    unit_kind: Literal["bytes", "rate", "time", "fraction"] | None = None
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class ModelStmt:
    path: str
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class InputStmt:
    name: str
    dims: list[int]
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class DeviceStmt:
    name: str
    props: dict[str, Property]
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class LinkStmt:
    a: str
    b: str
    bidirectional: bool
    props: dict[str, Property]
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class PlaceStmt:
    selector: Selector
    target: Target
    threads: int | None = None
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class SplitStmt:
    """An intra-layer split; with a single target, every part runs on that target."""

    selector: Selector
    kind: str
    parts: int
    grid: tuple[int, int] | None
    ratio: list[int] | None
    targets: list[Target]
    merge: Target | None = None
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class QuantizeStmt:
    """`subject_kind` is "wire", "selector", or "device_or_node" for a bare name (resolved later)."""

    subject: str | Selector
    subject_kind: Literal["wire", "device", "selector", "device_or_node"]
    dtype: str
    granularity: str | None = None
    calibrate: str | None = None
    method: str | None = None
    correct_bias: bool = False
    equalize: bool = False
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class PruneStmt:
    selector: Selector
    what: str
    amount: float
    metric: str | None = None
    per_layer: bool = False
    calibrate: str | None = None
    reconstruct: bool = False
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class CdcStmt:
    """Parity shards for an output-split layer; with a single target, all shards run there."""

    selector: Selector
    parity: int
    targets: list[Target]
    span: SourceSpan | None = _span()


@dataclass(frozen=True)
class ReplicateStmt:
    """The stage(s) holding the selected nodes run as one replica on each target; frame f goes to replica f mod r."""

    selector: Selector
    targets: list[Target]
    span: SourceSpan | None = _span()


Statement = (
    ModelStmt | InputStmt | DeviceStmt | LinkStmt | PlaceStmt | SplitStmt | QuantizeStmt | PruneStmt | CdcStmt
    | ReplicateStmt
)


@dataclass(frozen=True)
class Plan:
    """A whole plan file: its statements in source order, plus views by statement kind."""

    statements: list[Statement]
    filename: str = "<plan>"
    source: str = field(default="", compare=False, repr=False)

    def _of(self, kind: type) -> list:
        return [s for s in self.statements if isinstance(s, kind)]

    @property
    def model(self) -> ModelStmt | None:
        found = self._of(ModelStmt)
        return found[0] if found else None

    @property
    def inputs(self) -> list[InputStmt]:
        return self._of(InputStmt)

    @property
    def devices(self) -> list[DeviceStmt]:
        return self._of(DeviceStmt)

    @property
    def device_map(self) -> dict[str, DeviceStmt]:
        return {d.name: d for d in self.devices}

    @property
    def links(self) -> list[LinkStmt]:
        return self._of(LinkStmt)

    @property
    def places(self) -> list[PlaceStmt]:
        return self._of(PlaceStmt)

    @property
    def splits(self) -> list[SplitStmt]:
        return self._of(SplitStmt)

    @property
    def quantizes(self) -> list[QuantizeStmt]:
        return self._of(QuantizeStmt)

    @property
    def prunes(self) -> list[PruneStmt]:
        return self._of(PruneStmt)

    @property
    def cdcs(self) -> list[CdcStmt]:
        return self._of(CdcStmt)

    @property
    def replicates(self) -> list[ReplicateStmt]:
        return self._of(ReplicateStmt)
