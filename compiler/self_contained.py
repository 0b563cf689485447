"""The program's model as one self-contained `onnx.ModelProto`, for onnxruntime and the version converter.

A model loaded from a file keeps its weights memory-mapped (`ir.ExternalTensor`, paths relative
to the model's folder); onnxruntime refuses such references in a model given as bytes, and the
converter's output would lose the folder they are relative to. So external weights are read and
inlined here — in the copy only; the program keeps its memory-mapped tensors.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx import numpy_helper


def self_contained_proto(model: ir.Model) -> onnx.ModelProto:
    proto = ir.to_proto(model)
    external = {name: value for name, value in model.graph.initializers.items()
                if isinstance(value.const_value, ir.ExternalTensor)}
    if not external:
        return proto
    for i, tensor in enumerate(proto.graph.initializer):
        value = external.get(tensor.name)
        if value is not None:
            proto.graph.initializer[i].CopyFrom(numpy_helper.from_array(value.const_value.numpy(), tensor.name))
    return proto
