"""The weight-free wire-format reader: same model as onnx.load, weights left on disk."""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from onnx import numpy_helper

import edgec
from edgec.compiler.diagnostics import ModelError
from edgec.compiler.onnx_wire import KEEP_INLINE_BYTES, load_without_weights
from tiny_cnn import build


def test_weights_match_onnx_load_and_stay_on_disk(tmp_path):
    model = build()
    model.graph.initializer.append(onnx.helper.make_tensor("as_floats", onnx.TensorProto.FLOAT, [3], [1.0, 2.0, 3.0]))
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    loaded = load_without_weights(path)
    reference = onnx.load(path)
    for tensor in reference.graph.initializer:
        value = loaded.graph.initializers[tensor.name]
        np.testing.assert_array_equal(value.const_value.numpy(), numpy_helper.to_array(tensor))
        big = tensor.HasField("raw_data") and len(tensor.raw_data) > KEEP_INLINE_BYTES
        assert isinstance(value.const_value, ir.ExternalTensor) == big
    assert [n.name for n in loaded.graph] == [n.name for n in reference.graph.node]


@pytest.mark.parametrize("cut", [1, 3, 100, 5000, -40], ids=["1", "3", "100", "5000", "all-but-40"])
def test_truncated_file_is_an_error_that_says_so_with_its_size(tmp_path, cut):
    path = tmp_path / "m.onnx"
    onnx.save(build(), path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    size = path.stat().st_size
    with pytest.raises(ModelError) as info:
        edgec.load_model(path)
    message = info.value.message
    assert message.startswith(f"cannot read '{path}' ({size} bytes) as an ONNX model: the file is truncated (the model's ")
    assert f"but the file ends at byte {size})" in message
    assert "not an ONNX model" not in message and "mmap" not in message and "index out of range" not in message


def test_a_file_cut_right_before_its_graph_is_truncated(tmp_path):
    """Every field before the cut is whole, so only the missing graph says the file was cut short."""
    model = build()
    header = onnx.ModelProto(ir_version=model.ir_version, producer_name="edgec-test").SerializeToString()
    path = tmp_path / "m.onnx"
    path.write_bytes(header)
    with pytest.raises(ModelError, match=rf"\({len(header)} bytes\) as an ONNX model: the file is truncated \(the file "
                                         rf"ends at byte {len(header)} before the model's graph\)$"):
        edgec.load_model(path)


@pytest.mark.parametrize("data", [b"hello, this is a text file\n", b"\x08\x07garbage \xff\xff\xff", b"\x0a\xff",
                                  numpy_helper.from_array(np.ones(3, np.float32), "t").SerializeToString()],
                         ids=["text", "garbage", "ir_version-as-bytes", "a-TensorProto"])
def test_a_file_that_is_not_onnx_says_so_and_not_that_it_is_truncated(tmp_path, data):
    path = tmp_path / "notes.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=rf"^cannot read '.*notes.onnx' \({len(data)} bytes\) as an ONNX model: it is not "
                                         r"an ONNX model \(byte \d+ starts protobuf field \d+ with wire type \d, which no "
                                         r"ONNX model has\)$"):
        edgec.load_model(path)


def test_an_empty_file_says_so(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match=r"\(0 bytes\) as an ONNX model: the file is empty$"):
        edgec.load_model(path)
