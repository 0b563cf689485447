"""ONNX stage sub-model → Relax IRModule, with errors that name the ONNX node.

The importer takes the sub-model as the passes left it: the graph rewrites TVM's importer
needs happen in the IR, where every backend sees them — `canonicalize` (Dropout and Identity
removed, `Sum` as `Add` chains: TVM imports `Sum` as stack + sum, which its NHWC layout
conversion cannot take) and `fold-batchnorm` (TVM would keep BatchNorm as five elementwise ops
and compile a kernel per shape for their constants), which the tvm backend requires.

Why a custom importer subclass: TVM reports a failing converter without saying which node
it was converting; wrapping `_convert_operator` lets edgec say `node 'x': …` like the rest of
the compiler.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Mapping, Sequence

import onnx

from ...compiler.diagnostics import ModelError
from ...compiler.tensor_types import numpy_name


def input_specs(model: onnx.ModelProto) -> dict[str, tuple[list[int], str]]:
    """Shape and dtype of every real graph input (initializers excluded)."""
    inits = {i.name for i in model.graph.initializer}
    specs = {}
    for v in model.graph.input:
        if v.name in inits:
            continue
        t = v.type.tensor_type
        specs[v.name] = ([d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim], numpy_name(t.elem_type))
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
