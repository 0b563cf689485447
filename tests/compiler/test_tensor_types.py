"""Bytes and element-type names of tensors, from one module (`edgec.compiler.tensor_types`).

Why: transfer bytes (compiler), split-part bytes (passes), manifest bytes and the runtime's
buffers must agree, and the TVM frontend and the runtime must name every type ONNX and numpy
share, not the eight a hand-written table knew.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest

from edgec.backends.manifest import TensorSpec
from edgec.compiler.diagnostics import ModelError
from edgec.compiler.program import Transfer
from edgec.compiler.tensor_types import nbytes, numpy_name, ort_numpy_name, ort_type
from edgec.runtime.pipeline import TensorSpec as BufferSpec


def test_bytes_of_a_tensor_from_any_spelling_of_its_type():
    assert nbytes((1, 3, 32, 32), "float32") == nbytes([1, 3, 32, 32], np.dtype(np.float32)) == 12288
    assert nbytes(ir.Shape([1, 3, 32, 32]), ir.DataType.FLOAT) == 12288
    assert nbytes((3, 3), ir.DataType.INT4) == 5 and nbytes((), "int64") == 8 and nbytes((0, 4), "float16") == 0
    assert isinstance(nbytes((2,), ir.DataType.DOUBLE), int)


def test_every_byte_count_is_the_same_one():
    shape = (2, 5, 7)
    assert Transfer("t", 0, 1, 0, shape, "float16").nbytes == TensorSpec("t", shape, "float16").nbytes == \
        BufferSpec(shape, np.dtype("float16")).nbytes == nbytes(shape, "float16") == 140


def test_names_follow_onnx():
    assert numpy_name(onnx.TensorProto.FLOAT) == "float32" and numpy_name(onnx.TensorProto.UINT16) == "uint16"
    assert numpy_name(onnx.TensorProto.BFLOAT16) == "bfloat16"
    with pytest.raises(ModelError, match="ONNX element type 0 has no numpy equivalent"):
        numpy_name(0)
    for name, ort in (("float32", "tensor(float)"), ("float64", "tensor(double)"), ("bool", "tensor(bool)"),
                      ("int16", "tensor(int16)"), ("float16", "tensor(float16)")):
        assert ort_type(name) == ort and ort_numpy_name(ort) == name
    assert ort_numpy_name("seq(tensor(float))") is None and ort_numpy_name("tensor(nothing)") is None
