"""A labelled data set for `edgec verify --dataset FILE.npz`, read one sample at a time.

The file holds one array per model input, first axis = samples, and `labels` (integers, one
per sample, or one per prediction row when the scored output has several rows). A sample of
an input is either exactly the input's shape or, for an input whose first dim is 1, the shape
without it (`images[N, 3, 32, 32]` for an input `[1, 3, 32, 32]`), of the input's kind of
number (float64 samples feed a float32 input; integer samples never feed a float input,
which would skip the model's normalization without a word).

Why streaming: a data set may be far larger than memory. Each input's member of the zip is
read straight from its (possibly compressed) stream, one sample's bytes at a time, after its
.npy header has been checked; only the labels are loaded whole. Everything is checked before
the first sample runs, so a bad file is one UsageError (exit 2), never a failed run.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

import numpy as np

from ..backends.manifest import GraphTensor, Manifest
from ..compiler.diagnostics import UsageError, first_line

LABELS = "labels"


@dataclass(frozen=True)
class _Member:
    """One input's array in the zip: its stream position is advanced sample by sample."""

    spec: GraphTensor
    member: str
    dtype: np.dtype
    sample_bytes: int


class Dataset:
    """An opened, checked `.npz` data set; iterate `samples()` once, or use it as a context manager."""

    def __init__(self, path: str | Path, manifest: Manifest, scored: GraphTensor) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise UsageError(f"data set '{self.path}' does not exist")
        try:
            self._zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise UsageError(f"cannot read data set '{self.path}' as a .npz: {first_line(exc)}") from None
        try:
            self._open(manifest, scored)
        except BaseException:
            self._zip.close()
            raise

    def _open(self, manifest: Manifest, scored: GraphTensor) -> None:
        members = {name[:-4] if name.endswith(".npy") else name: name for name in self._zip.namelist()}
        inputs = [spec.name for spec in manifest.model.inputs]
        known = (*inputs, LABELS)
        for name in members:
            if name not in known:
                raise self.error(f"holds an array '{name}' that is neither a model input nor '{LABELS}'",
                                 hint=f"its arrays must be named {', '.join(known)}")
        for name in known:
            if name not in members:
                what = "the labels" if name == LABELS else f"model input '{name}'"
                raise self.error(f"has no array '{name}' ({what})", hint=f"its arrays: {', '.join(members) or 'none'}")
        opened = [self._member(spec, members[spec.name]) for spec in manifest.model.inputs]
        self._members = [m for m, _ in opened]
        with self._zip.open(members[LABELS]) as stream:
            labels = self._read_whole(stream, LABELS)
        counts = {LABELS: len(labels), **{m.spec.name: count for m, count in opened}}
        if len(set(counts.values())) > 1:
            counted = ", ".join(f"'{n}' {c}" for n, c in counts.items())
            raise self.error(f"holds different numbers of samples: {counted}")
        if not len(labels):
            raise self.error("holds no samples")
        self.samples_count = len(labels)
        rows = math.prod(scored.shape[:-1])
        if labels.dtype.kind not in "iu":
            raise self.error(f"'{LABELS}' must hold integer class indices, not {labels.dtype}")
        if math.prod(labels.shape[1:]) != rows:
            per = "one label per sample" if rows == 1 else f"{rows} labels per sample ({scored.shape[:-1]})"
            raise self.error(f"'{LABELS}' is {list(labels.shape)}, but output '{scored.name}' "
                             f"{scored.typed} needs {per}")
        classes = scored.shape[-1] if scored.shape else 1
        labels = labels.reshape(len(labels), rows)
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise self.error(f"'{LABELS}' holds {int(labels.min())}..{int(labels.max())}, but output "
                             f"'{scored.name}' scores {classes} classes (0..{classes - 1})")
        self.labels = labels

    def error(self, message: str, hint: str | None = None) -> UsageError:
        return UsageError(f"data set '{self.path}' {message}", hint=hint)

    def _header(self, stream: IO[bytes], name: str) -> tuple[tuple[int, ...], np.dtype]:
        readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
        try:
            version = np.lib.format.read_magic(stream)
            if version not in readers:
                raise ValueError(f".npy format {version[0]}.{version[1]} (this reader knows 1.0 and 2.0)")
            shape, fortran, dtype = readers[version](stream)
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise self.error(f"array '{name}' is not a .npy array: {first_line(exc)}") from None
        if dtype.hasobject:
            raise self.error(f"array '{name}' holds Python objects, not numbers")
        if fortran and len(shape) > 1:
            raise self.error(f"array '{name}' is stored in Fortran order", hint="save it with np.ascontiguousarray")
        if not shape:
            raise self.error(f"array '{name}' is a scalar; its first axis must be the samples")
        return tuple(shape), dtype

    def _read_whole(self, stream: IO[bytes], name: str) -> np.ndarray:
        shape, dtype = self._header(stream, name)
        data = stream.read()
        if len(data) != math.prod(shape) * dtype.itemsize:
            raise self.error(f"array '{name}' is shorter than its header says")
        return np.frombuffer(data, dtype).reshape(shape)

    def _member(self, spec: GraphTensor, member: str) -> tuple[_Member, int]:
        """The input's member, checked, and its number of samples."""
        with self._zip.open(member) as stream:
            shape, dtype = self._header(stream, spec.name)
        sample = shape[1:]
        if sample != spec.shape and not (spec.shape[:1] == (1,) and sample == spec.shape[1:]):
            alt = f" or [samples, {', '.join(map(str, spec.shape[1:]))}]" if spec.shape[:1] == (1,) else ""
            raise self.error(f"array '{spec.name}' is {dtype}{list(shape)}; model input '{spec.name}' "
                             f"{spec.typed} needs [samples, {', '.join(map(str, spec.shape))}]{alt}")
        if dtype.kind != spec.np_dtype.kind or not np.can_cast(dtype, spec.np_dtype, "same_kind"):
            raise self.error(f"array '{spec.name}' holds {dtype}; model input '{spec.name}' is {spec.dtype}",
                             hint="store the samples as the model takes them (images as floats, normalized)")
        return _Member(spec, member, dtype, math.prod(sample) * dtype.itemsize), shape[0]

    def samples(self) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
        """(one frame of every input by name, its labels as a flat row) per sample, in file order."""
        streams = [self._zip.open(m.member) for m in self._members]
        try:
            for stream, m in zip(streams, self._members):
                self._header(stream, m.spec.name)
            for index in range(self.samples_count):
                feeds = {}
                for stream, m in zip(streams, self._members):
                    data = stream.read(m.sample_bytes)
                    if len(data) != m.sample_bytes:
                        raise self.error(f"array '{m.spec.name}' ends at sample {index} of {self.samples_count}")
                    feeds[m.spec.name] = np.frombuffer(data, m.dtype).astype(m.spec.np_dtype).reshape(m.spec.shape)
                yield feeds, self.labels[index]
        finally:
            for stream in streams:
                stream.close()

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
