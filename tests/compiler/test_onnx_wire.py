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
    assert message.startswith(f"cannot read '{path}' ({size} bytes) as an ONNX model: the file is truncated or not an "
                              "ONNX model (")
    assert "mmap" not in message and "index out of range" not in message


@pytest.mark.parametrize("data", [b"hello, this is a text file\n", b"\x08\x07garbage \xff\xff\xff", b"\x0a\xff"])
def test_a_file_that_is_not_onnx_says_so(tmp_path, data):
    path = tmp_path / "notes.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match=rf"\({len(data)} bytes\) as an ONNX model: the file is truncated or not an ONNX model"):
        edgec.load_model(path)
