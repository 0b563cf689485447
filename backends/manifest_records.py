"""The records of manifest.json's core: tensors, stages, transfers, split reports, the pass log.

Each is a frozen dataclass that writes its own JSON and reads it back checked (`records.py`);
JSON keys differ from field names only where a field needs its unit or Python reserves the word
(`"bytes"` is `nbytes`, a stage input's `"from"` is `src`, a send's `"to"` is `dst`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..compiler.tensor_types import nbytes
from .records import Fields, Record, plain


@dataclass(frozen=True)
class TensorSpec(Record):
    """A named tensor with its static shape and numpy dtype name (`float32`), the manifest's unit of I/O."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def nbytes(self) -> int:
        return nbytes(self.shape, self.dtype)

    @property
    def typed(self) -> str:
        """`float32[1, 3, 32, 32]`, as error messages and generated comments show a tensor."""
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"

    @classmethod
    def read(cls, f: Fields) -> TensorSpec:
        f.only("name", "shape", "dtype")
        return cls(f.string("name"), f.ints("shape"), _dtype(f, "dtype"))


@dataclass(frozen=True)
class GraphTensor(TensorSpec):
    """A graph input (`stage`: the stage that reads it) or output (`stage`: the one that computes it)."""

    stage: int | None = None

    @classmethod
    def read(cls, f: Fields) -> GraphTensor:
        f.only("name", "shape", "dtype", "stage")
        return cls(f.string("name"), f.ints("shape"), _dtype(f, "dtype"), f.integer("stage", null=True))


def _dtype(f: Fields, key: str) -> str:
    text = f.string(key)
    try:
        np.dtype(text)
    except TypeError:
        raise f.error(f"'{text}' is not a numpy dtype name", key) from None
    return text


@dataclass(frozen=True)
class ModelInfo(Record):
    """The source model: its path (None for a model given in memory) and sha256, and the graph's inputs and
    outputs in order, each with the stage that reads or computes it."""

    path: str | None
    sha256: str | None
    inputs: tuple[GraphTensor, ...] = ()
    outputs: tuple[GraphTensor, ...] = ()

    @classmethod
    def read(cls, f: Fields) -> ModelInfo:
        f.only("path", "sha256", "inputs", "outputs")
        return cls(f.string("path", null=True), f.string("sha256", null=True),
                   f.records("inputs", GraphTensor), f.records("outputs", GraphTensor))


@dataclass(frozen=True)
class PlanInfo(Record):
    """The plan the output was compiled with: its path, sha256 and full source (so an output explains itself)."""

    path: str
    sha256: str
    source: str

    @classmethod
    def read(cls, f: Fields) -> PlanInfo:
        f.only("path", "sha256", "source")
        return cls(f.string("path"), f.string("sha256"), f.string("source"))


@dataclass(frozen=True)
class StageInput(Record):
    """A tensor a stage reads: a graph input (`src` None) or a transfer from stage `src` with `tag`."""

    tensor: str
    src: int | None = None
    tag: int | None = None

    def to_json(self) -> dict[str, Any]:
        if self.src is None:
            return {"tensor": self.tensor, "from": "input"}
        return {"tensor": self.tensor, "from": self.src, "tag": self.tag}

    @classmethod
    def read(cls, f: Fields) -> StageInput:
        f.only("tensor", "from", "tag")
        if f.raw("from") == "input":
            return cls(f.string("tensor"))
        return cls(f.string("tensor"), f.integer("from"), f.integer("tag"))


@dataclass(frozen=True)
class StageSend(Record):
    """A tensor a stage sends to stage `dst` with `tag` (the tag of the transfer it belongs to)."""

    tensor: str
    dst: int
    tag: int

    def to_json(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "to": self.dst, "tag": self.tag}

    @classmethod
    def read(cls, f: Fields) -> StageSend:
        f.only("tensor", "to", "tag")
        return cls(f.string("tensor"), f.integer("to"), f.integer("tag"))


@dataclass(frozen=True)
class StageSignature(Record):
    """The stage's sub-model (and TVM `main`) inputs and outputs, in order (see `stage_io.py`)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]

    @classmethod
    def read(cls, f: Fields) -> StageSignature:
        f.only("inputs", "outputs")
        return cls(f.records("inputs", TensorSpec), f.records("outputs", TensorSpec))


@dataclass(frozen=True)
class StageEntry(Record):
    """One stage, run by MPI rank `rank`: where it runs (device, resource, `threads`, None meaning one), what
    it holds (node count and first/last node, for people), its sub-model path, what it reads (`inputs`),
    the graph outputs it computes, what it sends, and its `signature` (None in format 1 manifests)."""

    rank: int
    device: str
    resource: str
    threads: int | None
    nodes: int
    first_node: str | None
    last_node: str | None
    model: str
    inputs: tuple[StageInput, ...] = ()
    outputs: tuple[str, ...] = ()
    sends: tuple[StageSend, ...] = ()
    signature: StageSignature | None = None

    def to_json(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in ("rank", "device", "resource", "threads", "nodes", "first_node",
                                             "last_node", "model")}
        data["inputs"] = [i.to_json() for i in self.inputs]
        data["outputs"] = [{"tensor": name, "to": "output"} for name in self.outputs]
        data["sends"] = [s.to_json() for s in self.sends]
        if self.signature is not None:
            data["signature"] = self.signature.to_json()
        return data

    @classmethod
    def read(cls, f: Fields) -> StageEntry:
        f.only("rank", "device", "resource", "threads", "nodes", "first_node", "last_node", "model", "inputs",
               "outputs", "sends", "signature")
        outputs = []
        for c in f.children("outputs"):
            c.only("tensor", "to")
            if c.raw("to") != "output":
                raise c.error("expected \"to\": \"output\"", "to")
            outputs.append(c.string("tensor"))
        signature = f.child("signature", null=True) if f.has("signature") else None
        return cls(f.integer("rank"), f.string("device"), f.string("resource"), f.integer("threads", null=True),
                   f.integer("nodes"), f.string("first_node", null=True), f.string("last_node", null=True),
                   f.string("model"), f.records("inputs", StageInput), tuple(outputs), f.records("sends", StageSend),
                   StageSignature.read(signature) if signature is not None else None)


@dataclass(frozen=True)
class TransferEntry(Record):
    """One boundary tensor moving from stage `src` to stage `dst` with `tag`: its shape, dtype, wire format
    and bytes per frame (`nbytes`, JSON `"bytes"`), as the compiler's `Transfer` counted them."""

    tensor: str
    src: int
    dst: int
    tag: int
    shape: tuple[int, ...]
    dtype: str
    wire: str
    nbytes: int

    def to_json(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "src": self.src, "dst": self.dst, "tag": self.tag, "shape": list(self.shape),
                "dtype": self.dtype, "wire": self.wire, "bytes": self.nbytes}

    @classmethod
    def read(cls, f: Fields) -> TransferEntry:
        f.only("tensor", "src", "dst", "tag", "shape", "dtype", "wire", "bytes")
        return cls(f.string("tensor"), f.integer("src"), f.integer("dst"), f.integer("tag"), f.ints("shape"),
                   _dtype(f, "dtype"), f.string("wire"), f.integer("bytes"))

    @property
    def spec(self) -> TensorSpec:
        return TensorSpec(self.tensor, self.shape, self.dtype)


@dataclass(frozen=True)
class SplitPart(Record):
    """One part of an intra-layer split: where it runs, and the bytes it receives, sends and reads as halo."""

    device: str
    resource: str
    receives_bytes: int
    sends_bytes: int
    halo_bytes: int = 0

    @classmethod
    def read(cls, f: Fields) -> SplitPart:
        """Reads format 2's `*_bytes` keys and format 1's `receives`/`sends`/`halo`."""
        old = not f.has("receives_bytes") and f.has("receives")
        names = ("receives", "sends", "halo") if old else ("receives_bytes", "sends_bytes", "halo_bytes")
        f.only("device", "resource", *names)
        return cls(f.string("device"), f.string("resource"), f.integer(names[0]), f.integer(names[1]),
                   f.integer(names[2], default=0))


@dataclass(frozen=True)
class SplitEntry(Record):
    """The cost report of one intra-layer split: per part, bytes received, sent and of halo."""

    layer: str
    op: str
    kind: str
    merge: str
    nodes: tuple[str, ...] = ()
    parts: tuple[SplitPart, ...] = ()

    @classmethod
    def read(cls, f: Fields) -> SplitEntry:
        f.only("layer", "op", "kind", "merge", "nodes", "parts")
        return cls(f.string("layer"), f.string("op"), f.string("kind"), f.string("merge"), f.strs("nodes", default=[]),
                   f.records("parts", SplitPart))


@dataclass(frozen=True)
class PassRecord(Record):
    """One entry of the PassManager's log; keys it adds beyond these are kept in `extra`."""

    name: str
    modified: bool
    summary: str
    seconds: float
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"pass": self.name, "modified": self.modified, "summary": self.summary, "seconds": self.seconds,
                **plain(dict(self.extra))}

    @classmethod
    def read(cls, f: Fields) -> PassRecord:
        extra = {k: v for k, v in f.data.items() if k not in ("pass", "modified", "summary", "seconds")}
        return cls(f.string("pass"), f.boolean("modified"), f.string("summary"), f.number("seconds"), extra)
