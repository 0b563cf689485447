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


@pytest.mark.parametrize("cut", [1, 100, 5000])
def test_truncated_file_is_an_error(tmp_path, cut):
    path = tmp_path / "m.onnx"
    onnx.save(build(), path)
    data = path.read_bytes()
    path.write_bytes(data[:-cut])
    with pytest.raises(ModelError, match="cannot read"):
        edgec.load_model(path)
