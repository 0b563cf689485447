"""`manifest.json`: the typed, versioned description of a compiled output, written and read here.

Devices, ranks (one per stage) with their sub-model, signature (the sub-model's and TVM
module's inputs and outputs, in order, with shape and dtype), boundary tensors with shape,
dtype, wire format and bytes, split cost reports, the pass log, tool versions, the backends
that wrote the output and their sections (top-level keys named after them), and the sha256 of
every file. Everything downstream (runtime, `edgec show`, the C++ backend) reads these records
instead of re-parsing sub-models.

Format 2 (this edgec) added `backends`, each stage's `signature`, and byte units in split part
keys (`receives_bytes`, `sends_bytes`, `halo_bytes`). Format 1 manifests are still read (no
signatures; old split keys); a manifest from a newer edgec is refused by name. The optional
`quantization` key (`quantization_records.py`) is written only for quantized plans, so float
outputs are unchanged and manifests written before it read back with `quantization` None.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import os
import platform as host_platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..compiler.diagnostics import UsageError
from ..compiler.platform import Device, Link, Platform
from .backend import MANIFEST_KEYS
from .manifest_records import (
    GraphTensor, ModelInfo, PassRecord, PlanInfo, SplitEntry, SplitPart, StageEntry, StageInput, StageSend,
    StageSignature, TensorSpec, TransferEntry,
)
from .pruning_records import PruningInfo
from .cdc_records import CdcInfo
from .replica_records import ReplicaInfo
from .quantization_records import QuantizationInfo
from .records import Fields, JsonSection, ManifestError, Record, Section

__all__ = [
    "FORMAT_VERSION", "GraphTensor", "Manifest", "ManifestError", "ModelInfo", "PassRecord", "PlanInfo", "Section",
    "SplitEntry", "SplitPart", "StageEntry", "StageInput", "StageSend", "StageSignature", "TensorSpec",
    "TransferEntry", "as_manifest", "read_manifest", "record_sha256", "sha256_file", "tool_versions",
    "write_manifest",
]

FORMAT_VERSION = 2
MANIFEST = "manifest.json"


_WRITTEN: dict[str, tuple[tuple[int, int, int, int], str]] = {}


def _identity(path: str | os.PathLike) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def record_sha256(path: str | os.PathLike, digest: str) -> None:
    """Remember the sha256 of a file this process just wrote (hashed on the way to disk), so the
    manifest does not read it again; a file changed since (inode, size or times) is hashed anew."""
    _WRITTEN[os.path.abspath(path)] = (_identity(path), digest)


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    known = _WRITTEN.get(os.path.abspath(path))
    if known is not None and known[0] == _identity(path):
        return known[1]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def tool_versions() -> dict[str, str]:
    versions = {"python": host_platform.python_version()}
    for dist in ("edgec", "onnx", "onnx-ir", "onnxruntime", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def _platform(f: Fields) -> Platform:
    f.only("devices", "links")
    devices = {}
    for name, props in f.get("devices", "an object").items():
        where = Fields(props, f"platform.devices.{name}", f.source)
        try:
            devices[name] = Device(name=name, **where.data)
        except TypeError as exc:
            raise where.error(f"not a device description: {exc}") from None
    links = []
    for c in f.children("links", default=[]):
        try:
            links.append(Link(**c.data))
        except TypeError as exc:
            raise c.error(f"not a link description: {exc}") from None
    return Platform(devices, links)


def _section(name: str, data: Any, source: str) -> Section:
    from .registry import section_type

    kind = section_type(name) or JsonSection
    return kind.from_json(data, where=name, source=source)


@dataclass(frozen=True)
class Manifest(Record):
    """An output directory's manifest.json, typed: what every reader of an output relies on.

    `read_manifest` checks a file key by key into this; `write_manifest` writes it back. Backends
    add their sections with `with_section`; readers look them up with `section(name)` and get the
    backend's own Section type (a `JsonSection` when that backend is not installed). `format` is
    the version the file was written in; a newer one than this edgec's is refused when read.
    """

    model: ModelInfo
    plan: PlanInfo | None
    platform: Platform
    stages: tuple[StageEntry, ...]
    transfers: tuple[TransferEntry, ...] = ()
    splits: tuple[SplitEntry, ...] = ()
    passes: tuple[PassRecord, ...] = ()
    tools: Mapping[str, str] = field(default_factory=dict)
    backends: tuple[str, ...] = ("onnx",)
    sections: Mapping[str, Section] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    format: int = FORMAT_VERSION
    quantization: QuantizationInfo | None = None
    """What the quantize pass did (`quantization_records.py`); None for a float plan and in older manifests."""
    pruning: PruningInfo | None = None
    """What the prune pass removed and saved (`pruning_records.py`); None when nothing was pruned."""
    cdc: CdcInfo | None = None
    """The coded layers and their parity parts (`cdc_records.py`); None when the plan codes nothing."""
    replicas: ReplicaInfo | None = None
    """The replicated stages and their ranks (`replica_records.py`); None when the plan replicates nothing."""

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": self.format, "model": self.model.to_json(), "plan": self.plan.to_json() if self.plan else None,
            "platform": self.platform.to_json(), "stages": [s.to_json() for s in self.stages],
            "transfers": [t.to_json() for t in self.transfers], "splits": [s.to_json() for s in self.splits],
            "passes": [p.to_json() for p in self.passes], "tools": dict(self.tools), "backends": list(self.backends),
        }
        if self.quantization is not None:
            data["quantization"] = self.quantization.to_json()
        if self.pruning is not None:
            data["pruning"] = self.pruning.to_json()
        if self.cdc is not None:
            data["cdc"] = self.cdc.to_json()
        if self.replicas is not None:
            data["replicas"] = self.replicas.to_json()
        data.update({name: section.to_json() for name, section in self.sections.items()})
        data["files"] = dict(self.files)
        return data

    @classmethod
    def read(cls, f: Fields) -> Manifest:
        version = f.data.get("format")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise f.error(f"no valid \"format\" number ({_describe(version)}); this is not an edgec manifest")
        if version > FORMAT_VERSION:
            raise ManifestError(
                f"{f.source} was written by a newer edgec (manifest format {version}; this edgec reads formats 1 to "
                f"{FORMAT_VERSION})", hint="upgrade edgec, or compile the output again with this one")
        plan = f.child("plan", null=True)
        files = f.str_map("files", default={})
        sections = {k: _section(k, v, f.source) for k, v in f.data.items() if k not in MANIFEST_KEYS}
        backends = f.strs("backends") if version >= 2 else _format1_backends(sections, files)
        return cls(ModelInfo.read(f.child("model")), PlanInfo.read(plan) if plan else None,
                   _platform(f.child("platform")), f.records("stages", StageEntry),
                   f.records("transfers", TransferEntry, default=[]), f.records("splits", SplitEntry, default=[]),
                   f.records("passes", PassRecord, default=[]), f.str_map("tools", default={}), backends, sections,
                   files, version, quantization=_quantization(f), pruning=_pruning(f), cdc=_cdc(f),
                   replicas=_replicas(f))

    def stage(self, rank: int) -> StageEntry:
        if not 0 <= rank < len(self.stages):
            raise UsageError(f"the output has no stage {rank} (it has {len(self.stages)})")
        return self.stages[rank]

    def device(self, name: str) -> Device:
        return self.platform.devices.get(name) or Device(name)

    def section(self, name: str) -> Section | None:
        return self.sections.get(name)

    def with_section(self, name: str, section: Section) -> Manifest:
        backends = self.backends if name in self.backends else (*self.backends, name)
        return dataclasses.replace(self, sections={**self.sections, name: section}, backends=backends)

    def replace_files(self, files: Mapping[str, str]) -> Manifest:
        return dataclasses.replace(self, files=dict(files))

    def stage_inputs(self, rank: int) -> list[tuple[int, GraphTensor]]:
        """(index in `model.inputs`, spec) of the graph inputs stage `rank` reads."""
        return [(i, spec) for i, spec in enumerate(self.model.inputs) if spec.stage == rank]

    def stage_outputs(self, rank: int) -> list[tuple[int, GraphTensor]]:
        """(index in `model.outputs`, spec) of the graph outputs stage `rank` computes."""
        return [(i, spec) for i, spec in enumerate(self.model.outputs) if spec.stage == rank]


def _quantization(f: Fields) -> QuantizationInfo | None:
    """The `quantization` section, None where absent (float plans, manifests from before quantization)."""
    section = f.child("quantization", null=True) if f.has("quantization") else None
    return QuantizationInfo.read(section) if section is not None else None


def _pruning(f: Fields) -> PruningInfo | None:
    """The `pruning` section, None where absent (nothing pruned, manifests from before pruning)."""
    section = f.child("pruning", null=True) if f.has("pruning") else None
    return PruningInfo.read(section) if section is not None else None


def _cdc(f: Fields) -> CdcInfo | None:
    """The `cdc` section, None where absent (nothing coded, manifests from before cdc)."""
    section = f.child("cdc", null=True) if f.has("cdc") else None
    return CdcInfo.read(section) if section is not None else None


def _replicas(f: Fields) -> ReplicaInfo | None:
    """The `replicas` section, None where absent (nothing replicated, manifests from before replication)."""
    section = f.child("replicas", null=True) if f.has("replicas") else None
    return ReplicaInfo.read(section) if section is not None else None


def _describe(value: Any) -> str:
    return "missing" if value is None else f"got {json.dumps(value)[:40]}"


def _format1_backends(sections: Mapping[str, Section], files: Mapping[str, str]) -> tuple[str, ...]:
    """Format 1 did not list its backends; its files and sections tell."""
    found = ["onnx", *(name for name in sections if name != "onnx")]
    if any(path.startswith("cpp/") for path in files) and "cpp" not in found:
        found.append("cpp")
    return tuple(found)


def read_manifest(path: str | os.PathLike) -> Manifest:
    """The manifest of an output directory (or of a manifest.json path), checked; ManifestError if malformed."""
    path = Path(path)
    file = path / MANIFEST if path.is_dir() else path
    if not file.is_file():
        raise UsageError(f"'{path}' is not an edgec output directory (no {MANIFEST})")
    try:
        data = json.loads(file.read_text())
    except UnicodeDecodeError:
        raise ManifestError(f"{file}: not a text file") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{file}: invalid JSON at line {exc.lineno} column {exc.colno}") from None
    return Manifest.from_json(data, source=str(file))


def write_manifest(manifest: Manifest, path: str | os.PathLike) -> None:
    """Write `manifest` as JSON (temp file, then rename, so a reader never sees half a manifest)."""
    path = Path(path)
    file = path / MANIFEST if path.is_dir() else path
    tmp = file.with_name(file.name + ".part")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
    tmp.replace(file)


def as_manifest(manifest: Manifest | Mapping[str, Any]) -> Manifest:
    """A Manifest from a Manifest or its JSON form (as `json.load` gives it)."""
    return manifest if isinstance(manifest, Manifest) else Manifest.from_json(dict(manifest), source="manifest")
