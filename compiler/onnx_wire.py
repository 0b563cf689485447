"""Read a single-file ONNX model without reading its weights: a protobuf wire-format scan.

`onnx.load` and `onnx_ir.load` read the whole file and then parse it, so a 550 MB model
occupies memory twice before any pass runs. Here the file is memory-mapped, the
initializers' `raw_data` fields are located and cut out of a copy of the message (field
framing is re-encoded), and only that small, weight-free message is parsed. Each weight
becomes an `onnx_ir.ExternalTensor` pointing at its bytes inside the model file itself, so
it is paged in only when a backend actually writes it.

Only the framing of ModelProto.graph (7) → GraphProto.initializer (5) → TensorProto.raw_data
(9) is touched; everything else is copied byte for byte and parsed by protobuf as usual.

The scan also tells a truncated file from one that is no ONNX model, so the error says which:
a file is *truncated* when every top-level field up to the one that runs past the end of the
file is a field an ONNX model has (with its wire type); anything else (text, another protobuf
message, random bytes) is *not an ONNX model*.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Iterator

import onnx
import onnx_ir as ir

class WireFormatError(ValueError):
    """The bytes are not a complete ONNX model; `kind` says why: "empty", "truncated" or "not-onnx"."""

    def __init__(self, message: str, kind: str = "not-onnx") -> None:
        super().__init__(message)
        self.kind = kind


MODEL_GRAPH, GRAPH_INITIALIZER, TENSOR_RAW_DATA = 7, 5, 9
LENGTH_DELIMITED = 2
KEEP_INLINE_BYTES = 4096
VARINT = 0
MODEL_FIELDS = {1: ("ir_version", VARINT), 2: ("producer_name", LENGTH_DELIMITED),
                3: ("producer_version", LENGTH_DELIMITED), 4: ("domain", LENGTH_DELIMITED), 5: ("model_version", VARINT),
                6: ("doc_string", LENGTH_DELIMITED), 7: ("graph", LENGTH_DELIMITED),
                8: ("opset_import", LENGTH_DELIMITED), 14: ("metadata_props", LENGTH_DELIMITED),
                20: ("training_info", LENGTH_DELIMITED), 25: ("functions", LENGTH_DELIMITED),
                26: ("configuration", LENGTH_DELIMITED)}
"""ModelProto's fields (onnx.proto3) and their wire types: what tells a truncated model from other bytes."""


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
        raise WireFormatError(f"a field needs {end} bytes but the file has {len(buf)}", "truncated")
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


def _runs_off(buf, pos: int) -> bool:
    """Whether a number starting at `pos` is cut off by the end of the file (every byte left says "more follows")."""
    return len(buf) - pos <= 10 and all(buf[i] & 0x80 for i in range(pos, len(buf)))


def _model_fields(buf) -> Iterator[tuple[int, int, int, int]]:
    """The top-level fields of a ModelProto, classifying what goes wrong: a field an ONNX model has that
    runs past the end of the file is truncation; a field no ONNX model has (or bad framing) is other bytes."""
    pos, size = 0, len(buf)
    while pos < size:
        field_start = pos
        try:
            key, pos = _varint(buf, pos)
        except WireFormatError as exc:
            raise WireFormatError(str(exc), "truncated" if field_start > 0 and _runs_off(buf, pos) else "not-onnx") from None
        number, wire = key >> 3, key & 7
        known = MODEL_FIELDS.get(number)
        if known is None or known[1] != wire:
            raise WireFormatError(f"byte {field_start} starts protobuf field {number} with wire type {wire}, "
                                  "which no ONNX model has")
        try:
            if wire == VARINT:
                payload, after = pos, _varint(buf, pos)[1]
            else:
                length, payload = _varint(buf, pos)
                after = payload + length
        except WireFormatError as exc:
            if not _runs_off(buf, pos):
                raise
            raise WireFormatError(f"the file ends inside the model's '{known[0]}' field at byte {field_start}",
                                  "truncated") from exc
        if after > size:
            raise WireFormatError(f"the model's '{known[0]}' field at byte {field_start} runs to byte {after}, but the "
                                  f"file ends at byte {size}", "truncated")
        yield number, field_start, payload, after
        pos = after


def _framed(number: int, payload: bytes) -> bytes:
    return _encode_varint(number << 3 | LENGTH_DELIMITED) + _encode_varint(len(payload)) + payload


def strip_weights(buf) -> tuple[bytes, list[tuple[int, int] | None]]:
    """The model message without large initializers' raw_data, and their (offset, length) in `buf`.

    Small tensors (shapes, scalars) keep their bytes: shape inference and folding read them.
    """
    model, places, has_graph = bytearray(), [], False
    for number, field_start, start, end in _model_fields(buf):
        if number != MODEL_GRAPH:
            model += buf[field_start:end]
            continue
        has_graph = True
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
    if not has_graph:
        raise WireFormatError(f"the file ends at byte {len(buf)} before the model's graph", "truncated")
    return bytes(model), places


def parse_without_weights(path: Path) -> tuple[onnx.ModelProto, list[tuple[int, int] | None]]:
    """The weight-free ModelProto of `path` and, per top-level initializer, where its raw_data lies in the file."""
    with open(path, "rb") as f:
        if path.stat().st_size == 0:
            raise WireFormatError("the file is empty", "empty")
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            stripped, places = strip_weights(buf)
    try:
        proto = onnx.ModelProto.FromString(stripped)
    except Exception as exc:  # google.protobuf.message.DecodeError; its text is one line
        raise WireFormatError(f"protobuf cannot parse it: {exc}") from None
    return proto, places


def attach_weights(model: ir.Model, proto: onnx.ModelProto, places: list[tuple[int, int] | None], path: Path) -> None:
    """Point every initializer whose raw_data was left on disk at its bytes inside `path`."""
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


def load_without_weights(path: Path) -> ir.Model:
    """Parse `path` with every raw_data initializer left on disk as an ExternalTensor into the file."""
    proto, places = parse_without_weights(path)
    model = ir.from_proto(proto)
    attach_weights(model, proto, places, path)
    return model
