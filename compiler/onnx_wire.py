"""Read a single-file ONNX model without reading its weights: a protobuf wire-format scan.

`onnx.load` and `onnx_ir.load` read the whole file and then parse it, so a 550 MB model
occupies memory twice before any pass runs. Here the file is memory-mapped, the
initializers' `raw_data` fields are located and cut out of a copy of the message (field
framing is re-encoded), and only that small, weight-free message is parsed. Each weight
becomes an `onnx_ir.ExternalTensor` pointing at its bytes inside the model file itself, so
it is paged in only when a backend actually writes it.

Only the framing of ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto.raw_data
(9) is touched; everything else is copied byte for byte and parsed by protobuf as usual.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Iterator

import onnx
import onnx_ir as ir

class WireFormatError(ValueError):
    """The bytes are not a complete protobuf message: the file is truncated or is no ONNX model."""


MODEL_GRAPH, GRAPH_INITIALIZER, TENSOR_RAW_DATA = 7, 5, 9
LENGTH_DELIMITED = 2
KEEP_INLINE_BYTES = 4096


def _varint(buf, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise WireFormatError(f"a number runs past the end of the file at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireFormatError(f"malformed number at byte {pos}")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, field start, payload start, payload end) for each field of a message."""
    if end > len(buf):
        raise WireFormatError(f"a field needs {end} bytes but the file has {len(buf)}")
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            payload, after = pos, _varint(buf, pos)[1]
        elif wire == LENGTH_DELIMITED:
            length, payload = _varint(buf, pos)
            after = payload + length
        elif wire in (1, 5):
            payload, after = pos, pos + (8 if wire == 1 else 4)
        else:
            raise WireFormatError(f"invalid protobuf wire type {wire} at byte {field_start}")
        if after > end:
            raise WireFormatError(f"a field at byte {field_start} runs to byte {after}, past the end of its "
                                  f"message at byte {end}")
        yield number, field_start, payload, after
        pos = after


def _framed(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def strip_weights(buf) -> tuple[bytes, list[tuple[int, int] | None]]:
    """The model message without large initializers' raw_data, and their (offset, length) in `buf`.

    Small tensors (shapes, scalars) keep their bytes: shape inference and folding read them.
    """
    model, places = bytearray(), []
    for number, field_start, start, end in _fields(buf, 0, len(buf)):
        if number != MODEL_GRAPH:
            model += buf[field_start:end]
            continue
        graph = bytearray()
        for g_number, g_field_start, g_start, g_end in _fields(buf, start, end):
            if g_number != GRAPH_INITIALIZER:
                graph += buf[g_field_start:g_end]
                continue
            tensor, raw = bytearray(), None
            for t_number, t_field_start, t_start, t_end in _fields(buf, g_start, g_end):
                if t_number == TENSOR_RAW_DATA and t_end - t_start > KEEP_INLINE_BYTES:
                    raw = (t_start, t_end - t_start)
                else:
                    tensor += buf[t_field_start:t_end]
            places.append(raw)
            graph += _framed(GRAPH_INITIALIZER, bytes(tensor))
        model += _framed(MODEL_GRAPH, bytes(graph))
    return bytes(model), places


def load_without_weights(path: Path) -> ir.Model:
    """Parse `path` with every raw_data initializer left on disk as an ExternalTensor into the file."""
    with open(path, "rb") as f:
        if path.stat().st_size == 0:
            raise WireFormatError("the file is empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            stripped, places = strip_weights(buf)
    proto = onnx.ModelProto.FromString(stripped)
    model = ir.from_proto(proto)
    ir.external_data.set_base_dir(model.graph, path.parent)
    for tensor_proto, place in zip(proto.graph.initializer, places):
        if place is None:
            continue
        value = model.graph.initializers[tensor_proto.name]
        offset, length = place
        value.const_value = ir.ExternalTensor(
            path.name, offset, length, ir.DataType(tensor_proto.data_type),
            shape=ir.Shape(list(tensor_proto.dims)), name=tensor_proto.name, base_dir=path.parent,
        )
    return model
