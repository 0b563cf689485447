"""Tensor element types in one place: the bytes of a dense tensor, and a type's name in each tool.

Why one module: the compiler counts the bytes of transfers and split parts, the manifest
records them, the runtime allocates buffers for them, the TVM frontend reads ONNX element
types and the runtime speaks onnxruntime's `tensor(float)` strings. Each used to carry its own
formula or table, and the tables knew different types. Names here come from ONNX's own
mapping (`onnx.helper`), so every type that ONNX and numpy share is covered; numpy names
(`float32`) are edgec's own spelling, as in the manifest.

onnx is imported on first use only: an MPI rank starts without it.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Iterable

import numpy as np

from .diagnostics import ModelError

__all__ = ["nbytes", "numpy_name", "ort_numpy_name", "ort_type"]


def nbytes(shape: Iterable[int], dtype: Any) -> int:
    """Bytes of a dense tensor of `shape` and `dtype`: a numpy dtype or its name, or an onnx-ir `DataType`
    (whose 4-bit types count half a byte an element, rounded up for the whole tensor)."""
    itemsize = dtype.itemsize if hasattr(dtype, "itemsize") else np.dtype(dtype).itemsize
    bits = round(itemsize * 8)
    return -(-math.prod(int(d) for d in shape) * bits // 8)


@functools.lru_cache(maxsize=None)
def numpy_name(elem_type: int) -> str:
    """The numpy name of an ONNX element type (`TensorProto.FLOAT` → `float32`)."""
    import onnx.helper

    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        raise ModelError(f"ONNX element type {elem_type} has no numpy equivalent") from None


@functools.lru_cache(maxsize=None)
def ort_type(dtype: str) -> str:
    """onnxruntime's type string of a numpy dtype name (`float32` → `tensor(float)`): ONNX's type name,
    lower case; `tensor(<dtype>)` for a dtype that ONNX has no type for."""
    import onnx
    import onnx.helper

    try:
        elem_type = onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
    except (KeyError, TypeError, ValueError):
        return f"tensor({dtype})"
    return f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"


@functools.lru_cache(maxsize=None)
def ort_numpy_name(type_string: str) -> str | None:
    """The numpy dtype name of an onnxruntime type string (`tensor(float)` → `float32`); None for one that is
    not a tensor of an ONNX element type numpy has (a sequence, a map, an unknown name)."""
    import onnx

    if not (type_string.startswith("tensor(") and type_string.endswith(")")):
        return None
    try:
        return numpy_name(onnx.TensorProto.DataType.Value(type_string[len("tensor("):-1].upper()))
    except (ValueError, ModelError):
        return None
