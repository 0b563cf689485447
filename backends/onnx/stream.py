"""Write an ONNX model without holding its weights in memory: a weight-free header plus streamed bytes.

Why: `ir.save` (like `onnx.save`) first builds the whole ModelProto with every weight copied
into it, serializes it (a second copy), writes it, and the manifest then reads the file back
to hash it. For ResNet-101 in 24 stages that was most of the compile. Here each large weight
stays where it is — on disk in the source model or its external data (read through one small
buffer, never all at once), or in the array a pass produced — and the file is assembled on the
way to disk:

1. every large initializer is swapped for a stand-in `ir.ExternalTensor` (no bytes), so
   `ir.to_proto` gives a small header proto;
2. the ONNX checker runs on that header in memory, with the stand-ins declared as graph
   inputs of the same type and shape (their bytes are checked here instead: exactly the size
   their dims and type require);
3. the header is serialized and cut at the wire level (`compiler/onnx_wire.py`'s field scan):
   each stand-in's `external_data`/`data_location` fields give way to a `raw_data` field at
   its canonical position, the enclosing `initializer` and `graph` lengths are re-encoded, and
   the weight bytes are written between the pieces, straight from their source;
4. the sha256 of every file is computed from the bytes as they are written.

A stage with external data (`data_file`) keeps small initializers inline (as above) and writes
the others densely, in declaration order, into the data file, as `ir.save(external_data=…)`
does. The inline result is byte for byte what `ir.save` writes for the same model.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Union

import numpy as np
import onnx
import onnx_ir as ir

from ...compiler.onnx_wire import GRAPH_INITIALIZER, LENGTH_DELIMITED, MODEL_GRAPH, TENSOR_RAW_DATA, _encode_varint, _fields

TENSOR_NAME, TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION = 8, 13, 14
STREAM_MIN_BYTES = 4096
"""Initializers at least this big (and every external one) are streamed; smaller ones go through protobuf."""
DATA_FILE_MIN_BYTES = 256
"""With a data file, initializers above this many bytes go into it (`ir.save`'s default threshold)."""
CHUNK = 1 << 20
OVERLAP_MIN_BYTES = 256 << 10
"""Chunks at least this big are hashed in a second thread while they are written and the next one read."""
_PACKED = {getattr(ir.DataType, name) for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2", "FLOAT6E2M3",
                                                    "FLOAT6E3M2") if hasattr(ir.DataType, name)}
_STANDIN_LOCATION = "edgec-streamed-weight"


class Sources:
    """The files weights are streamed from, each opened once per compile, read through two reused buffers.

    Reads, not a memory map: on the 2-core KVM guest edgec is measured on, hashing a mapped
    548 MiB model ran at 60 MB/s (page faults) where `preadv` into a 1 MiB buffer ran at
    1.3 GB/s, and a small buffer stays in the CPU cache while it is hashed and written.
    """

    def __init__(self) -> None:
        self._files: dict[str, int] = {}
        self._buffers = [memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK))]
        self._turn = 0

    def chunks(self, path: str, offset: int, length: int) -> Iterator[memoryview]:
        """The bytes [offset, offset + length) of `path`, read into two buffers in turn: a chunk stays
        valid while the next one is read (`HashingWriter` still hashes it then)."""
        fd = self._files.get(path)
        if fd is None:
            fd = self._files[path] = os.open(path, os.O_RDONLY)
        end = offset + length
        while offset < end:
            self._turn ^= 1
            want = self._buffers[self._turn][:min(CHUNK, end - offset)]
            got = os.preadv(fd, [want], offset) if hasattr(os, "preadv") else _pread_into(fd, want, offset)
            if got == 0:
                raise ValueError(f"external data '{path}' ends at byte {offset}; a weight needs bytes up to {end}")
            yield want[:got]
            offset += got

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files.clear()

    def __enter__(self) -> Sources:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pread_into(fd: int, into: memoryview, offset: int) -> int:
    data = os.pread(fd, len(into), offset)
    into[:len(data)] = data
    return len(data)


@dataclass(frozen=True)
class Weight:
    """One initializer whose bytes are streamed: the tensor and how many bytes it takes."""

    tensor: ir.TensorProtocol
    nbytes: int

    def chunks(self, sources: Sources) -> Iterator[memoryview]:
        """Its little-endian raw bytes in pieces of at most `CHUNK` (an in-memory array: views, no copy)."""
        tensor = self.tensor
        if isinstance(tensor, ir.ExternalTensor):
            yield from sources.chunks(tensor.path, tensor.offset or 0, self.nbytes)
            return
        data = _in_memory_bytes(tensor)
        if len(data) != self.nbytes:
            raise ValueError(f"initializer '{tensor.name}' has {len(data)} bytes, its type and shape need {self.nbytes}")
        for start in range(0, self.nbytes, CHUNK):
            yield data[start:start + CHUNK]


def _in_memory_bytes(tensor: ir.TensorProtocol) -> memoryview:
    """A numpy-backed tensor as a byte view of its array (no copy); anything else through `tobytes`."""
    if isinstance(tensor, ir.Tensor) and tensor.dtype not in _PACKED and sys.byteorder == "little":
        array = tensor.numpy()
        if isinstance(array, np.ndarray) and array.dtype.itemsize == tensor.dtype.itemsize:
            return memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    return memoryview(tensor.tobytes())


Piece = Union[bytes, Weight]


@functools.cache
def _hasher() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="edgec-sha256")


class HashingWriter:
    """A file written front to back whose sha256 and size are known when it is closed.

    A big chunk is hashed in a second thread while it is written and while the next chunk is
    read (hashing, reading and writing all release the GIL), so `write` returns before its
    chunk is hashed: the chunk must stay unchanged until the next `write` or `close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.digest = hashlib.sha256()
        self.size = 0
        self._file: BinaryIO = open(path, "wb")
        self._hashing: Future | None = None

    def _wait(self) -> None:
        if self._hashing is not None:
            self._hashing.result()
            self._hashing = None

    def write(self, data: bytes | memoryview) -> None:
        self._wait()
        if len(data) < OVERLAP_MIN_BYTES:
            self.digest.update(data)
        else:
            self._hashing = _hasher().submit(self.digest.update, data)
        self._file.write(data)
        self.size += len(data)

    def close(self) -> str:
        self._wait()
        self._file.close()
        return self.digest.hexdigest()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._file.closed:
            self._wait()
            self._file.close()


def _key(number: int) -> bytes:
    return _encode_varint(number << 3 | LENGTH_DELIMITED)


def _tensor_pieces(header: bytes, start: int, end: int, streamed: dict[str, Weight]) -> tuple[list[Piece], int] | None:
    """A streamed TensorProto's pieces (raw_data in place of its stand-in's external fields) and length."""
    fields = list(_fields(header, start, end))
    names = [header[s:e] for number, _, s, e in fields if number == TENSOR_NAME]
    weight = streamed.get(names[0].decode()) if names else None
    if weight is None:
        return None
    before, after = bytearray(), bytearray()
    for number, field_start, _, field_end in fields:
        if number not in (TENSOR_EXTERNAL_DATA, TENSOR_DATA_LOCATION, TENSOR_RAW_DATA):
            (before if number < TENSOR_RAW_DATA else after).extend(header[field_start:field_end])
    before += _key(TENSOR_RAW_DATA) + _encode_varint(weight.nbytes)
    return [bytes(before), weight, bytes(after)], len(before) + weight.nbytes + len(after)


def splice(header: bytes, streamed: dict[str, Weight]) -> list[Piece]:
    """The pieces of the full model: `header`'s bytes with each streamed initializer's raw_data in place."""
    pieces: list[Piece] = []
    for number, field_start, start, end in _fields(header, 0, len(header)):
        if number != MODEL_GRAPH:
            pieces.append(header[field_start:end])
            continue
        graph: list[Piece] = []
        length = 0
        for g_number, g_field_start, g_start, g_end in _fields(header, start, end):
            tensor = _tensor_pieces(header, g_start, g_end, streamed) if g_number == GRAPH_INITIALIZER else None
            if tensor is None:
                graph.append(header[g_field_start:g_end])
                length += g_end - g_field_start
                continue
            parts, size = tensor
            framing = _key(GRAPH_INITIALIZER) + _encode_varint(size)
            graph += [framing, *parts]
            length += len(framing) + size
        pieces += [_key(MODEL_GRAPH) + _encode_varint(length), *graph]
    return _merged(pieces)


def _merged(pieces: list[Piece]) -> list[Piece]:
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, bytes) and out and isinstance(out[-1], bytes):
            out[-1] += piece
        elif not isinstance(piece, bytes) or piece:
            out.append(piece)
    return out


def _standin(tensor: ir.TensorProtocol, name: str, location: str = _STANDIN_LOCATION, offset: int = 0) -> ir.ExternalTensor:
    return ir.ExternalTensor(location, offset, tensor.nbytes, tensor.dtype, shape=tensor.shape, name=name,
                             doc_string=tensor.doc_string, metadata_props=dict(tensor.metadata_props) or None)


def _materialize(tensor: ir.TensorProtocol, name: str) -> ir.Tensor:
    return ir.Tensor(tensor.numpy(), dtype=tensor.dtype, name=name, doc_string=tensor.doc_string)


def _check(proto: onnx.ModelProto, streamed: set[str]) -> None:
    """The ONNX checker on the header, each streamed initializer declared as an input of its type and shape."""
    checked = onnx.ModelProto()
    checked.CopyFrom(proto)
    graph = checked.graph
    kept = [t for t in graph.initializer if t.name not in streamed]
    moved = [t for t in graph.initializer if t.name in streamed]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    declared = {v.name for v in graph.input}
    graph.input.extend(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
                       for t in moved if t.name not in declared)
    onnx.checker.check_model(checked, full_check=True)


@dataclass
class Written:
    """What `write_model` wrote: each file's path, sha256 and size."""

    files: dict[Path, tuple[str, int]]


def write_model(model: ir.Model, path: Path, *, data_file: str | None = None, sources: Sources) -> Written:
    """Write `model` to `path` (and its large weights to `data_file` beside it, when given), checked and hashed.

    The model is left as it was. Raises `onnx.checker.ValidationError` (and writes nothing) when
    the header fails the checker."""
    graph = model.graph
    streamed: dict[str, Weight] = {}
    to_file: list[Weight] = []
    in_file: set[str] = set()
    saved: list[tuple[ir.Value, ir.TensorProtocol]] = []
    offset = 0
    try:
        for value in graph.initializers.values():
            tensor = value.const_value
            if tensor is None or isinstance(tensor, ir.StringTensor):
                continue
            weight = Weight(tensor, tensor.nbytes)
            if data_file is not None and weight.nbytes > DATA_FILE_MIN_BYTES:
                saved.append((value, tensor))
                value.const_value = _standin(tensor, value.name, data_file, offset)
                to_file.append(weight)
                in_file.add(value.name)
                offset += weight.nbytes
            elif isinstance(tensor, ir.ExternalTensor) or weight.nbytes >= STREAM_MIN_BYTES:
                saved.append((value, tensor))
                value.const_value = _standin(tensor, value.name)
                streamed[value.name] = weight
        for sub in model.graphs():
            if sub is not graph:
                for value in sub.initializers.values():
                    if isinstance(value.const_value, ir.ExternalTensor):
                        saved.append((value, value.const_value))
                        value.const_value = _materialize(value.const_value, value.name)
        for node in ir.traversal.RecursiveGraphIterator(graph):
            for attr in node.attributes.values():
                if isinstance(getattr(attr, "value", None), ir.ExternalTensor):
                    raise ValueError(f"node '{node.name}': attribute '{attr.name}' holds external data; "
                                     "edgec writes self-contained sub-models")
        proto = ir.to_proto(model)
    finally:
        for value, tensor in reversed(saved):
            value.const_value = tensor
    _check(proto, set(streamed) | in_file)
    written: dict[Path, tuple[str, int]] = {}
    if data_file is not None:
        data_path = path.parent / data_file
        with HashingWriter(data_path) as out:
            for weight in to_file:
                for chunk in weight.chunks(sources):
                    out.write(chunk)
            written[data_path] = (out.close(), out.size)
    with HashingWriter(path) as out:
        for piece in splice(proto.SerializeToString(), streamed):
            if isinstance(piece, bytes):
                out.write(piece)
            else:
                for chunk in piece.chunks(sources):
                    out.write(chunk)
        written[path] = (out.close(), out.size)
    return Written(written)
