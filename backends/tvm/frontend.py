"""ONNX stage sub-model → Relax IRModule, with errors that name the ONNX node.

Why a pre-pass on the ONNX graph: TVM's importer turns `Sum` into `stack` + `sum` (a copy,
and a 5-D tensor that breaks the NHWC layout conversion) and keeps BatchNormalization as five
elementwise ops whose constants TVM would fold by compiling one kernel per shape. Folding
BatchNorm into the preceding Conv's weights (or into one scale and shift), and `Sum` into a
chain of `Add`, in numpy first is exact up to float rounding, fast, and what onnxruntime does
too.

Why a custom importer subclass: TVM reports a failing converter without saying which node
it was converting; wrapping `_convert_operator` lets edgec say `node 'x': …` like the rest of
the compiler.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ...compiler.diagnostics import ModelError

_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16", onnx.TensorProto.DOUBLE: "float64",
           onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32", onnx.TensorProto.INT8: "int8",
           onnx.TensorProto.UINT8: "uint8", onnx.TensorProto.BOOL: "bool"}


def _attr(node: onnx.NodeProto, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _fold_batchnorm(graph: onnx.GraphProto, ranks: Mapping[str, int]) -> None:
    """BN after a single-use Conv with constant weights → Conv weights; other inference BNs of known
    rank → Mul + Add."""
    inits = {i.name: i for i in graph.initializer}
    uses: dict[str, int] = {}
    for n in graph.node:
        for x in n.input:
            uses[x] = uses.get(x, 0) + 1
    outputs = {o.name for o in graph.output}
    producer = {o: n for n in graph.node for o in n.output}
    nodes: list[onnx.NodeProto] = []
    for n in graph.node:
        if n.op_type != "BatchNormalization" or any(o for o in n.output[1:]) or not all(x in inits for x in n.input[1:5]):
            nodes.append(n)
            continue
        eps = _attr(n, "epsilon", 1e-5)
        scale, bias, mean, var = (numpy_helper.to_array(inits[x]).astype(np.float64) for x in n.input[1:5])
        k = scale / np.sqrt(var + eps)
        shift = bias - mean * k
        conv = producer.get(n.input[0])
        if (conv is not None and conv.op_type == "Conv" and uses.get(conv.output[0]) == 1 and conv.output[0] not in outputs
                and conv.input[1] in inits and (len(conv.input) < 3 or not conv.input[2] or conv.input[2] in inits)):
            w = numpy_helper.to_array(inits[conv.input[1]])
            b = numpy_helper.to_array(inits[conv.input[2]]) if len(conv.input) > 2 and conv.input[2] else np.zeros(w.shape[0])
            w2 = (w.astype(np.float64) * k.reshape(-1, *[1] * (w.ndim - 1))).astype(w.dtype)
            b2 = (b.astype(np.float64) * k + shift).astype(w.dtype)
            names = (f"{n.name}/folded_w", f"{n.name}/folded_b")
            graph.initializer.extend([numpy_helper.from_array(w2, names[0]), numpy_helper.from_array(b2, names[1])])
            del conv.input[1:]
            conv.input.extend(names)
            conv.output[0] = n.output[0]
            continue
        if ranks.get(n.input[0], 0) < 2:
            nodes.append(n)
            continue
        dtype = numpy_helper.to_array(inits[n.input[1]]).dtype
        rank_tail = [1] * (ranks[n.input[0]] - 2)
        s_name, t_name, mid = f"{n.name}/scale", f"{n.name}/shift", f"{n.name}/scaled"
        graph.initializer.extend([numpy_helper.from_array(k.astype(dtype).reshape(-1, *rank_tail), s_name),
                                  numpy_helper.from_array(shift.astype(dtype).reshape(-1, *rank_tail), t_name)])
        nodes.append(helper.make_node("Mul", [n.input[0], s_name], [mid], name=f"{n.name}/mul"))
        nodes.append(helper.make_node("Add", [mid, t_name], [n.output[0]], name=n.name))
    del graph.node[:]
    graph.node.extend(nodes)


def _sum_to_add(graph: onnx.GraphProto) -> None:
    nodes: list[onnx.NodeProto] = []
    for n in graph.node:
        if n.op_type != "Sum" or len(n.input) < 2:
            nodes.append(n)
            continue
        acc = n.input[0]
        for i, x in enumerate(n.input[1:]):
            out = n.output[0] if i == len(n.input) - 2 else f"{n.output[0]}/partial{i}"
            nodes.append(helper.make_node("Add", [acc, x], [out], name=n.name if out == n.output[0] else f"{n.name}/add{i}"))
            acc = out
    del graph.node[:]
    graph.node.extend(nodes)


def _dropout_to_identity(graph: onnx.GraphProto) -> None:
    """Inference Dropout is the identity; TVM imports it as a (value, mask) tuple that the layout
    conversion cannot see through."""
    used = {x for n in graph.node for x in n.input} | {o.name for o in graph.output}
    for n in graph.node:
        if n.op_type == "Dropout" and not (len(n.output) > 1 and n.output[1] in used) and len(n.input) < 3:
            attrs = [a for a in n.attribute if a.name != "seed" and a.name != "ratio"]
            if attrs:
                continue
            n.op_type = "Identity"
            del n.input[1:]
            del n.output[1:]
            del n.attribute[:]


def preprocess(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model`, changed in place: BatchNorm folded, `Sum` as `Add` chains, Dropout as Identity."""
    values = [*model.graph.value_info, *model.graph.input, *model.graph.output]
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")}
    _fold_batchnorm(model.graph, ranks)
    _sum_to_add(model.graph)
    _dropout_to_identity(model.graph)
    return model


def input_specs(model: onnx.ModelProto) -> dict[str, tuple[list[int], str]]:
    """Shape and dtype of every real graph input (initializers excluded)."""
    inits = {i.name for i in model.graph.initializer}
    specs = {}
    for v in model.graph.input:
        if v.name in inits:
            continue
        t = v.type.tensor_type
        specs[v.name] = ([d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim], _DTYPES.get(t.elem_type, "float32"))
    return specs


def check_supported(model: onnx.ModelProto, target: str) -> None:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx") or (node.op_type not in known and node.op_type != "Constant"):
            raise ModelError(f"operator {node.domain + '.' if node.domain else ''}{node.op_type} is not supported by "
                             f"TVM's ONNX frontend (target {target})", node=node.name or node.op_type,
                             hint="place this node on a device compiled with the onnx backend only")


def import_onnx(path: Path, input_shapes: Mapping[str, Sequence[int]] | None, target: str):
    """The stage as a Relax IRModule (weights as constants); ModelError naming the node on failure."""
    from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter

    model = onnx.load(str(path))
    check_supported(model, target)
    specs = input_specs(model)
    shapes = {name: list((input_shapes or {}).get(name, shape)) for name, (shape, _) in specs.items()}
    for name, shape in shapes.items():
        if any(d < 1 for d in shape):
            raise ModelError(f"input '{name}' of {path.name} has a symbolic shape {shape}; give a static input shape")
    model = preprocess(model)

    class _Importer(ONNXGraphImporter):
        def _convert_operator(self, op_name, inputs, attrs, opset):
            try:
                return super()._convert_operator(op_name, inputs, attrs, opset)
            except Exception as exc:  # noqa: BLE001 - any converter failure is this node's fault
                node = attrs.get("tvm_custom", {}).get("name") or op_name
                raise ModelError(f"TVM cannot import {op_name} for target {target}: {str(exc).strip().splitlines()[-1]}",
                                 node=str(node)) from None

    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    importer = _Importer(shapes, {n: d for n, (_, d) in specs.items()}, keep_params_in_input=False, sanitize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return importer.from_onnx(model.graph, opset)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001 - TVM raises many types; the user needs one message
            raise ModelError(f"TVM cannot import {path.name} for target {target}: {str(exc).strip().splitlines()[-1]}") from None
