"""Opset upgrade for quantization: per-channel DequantizeLinear (its `axis`) needs opset 13.

onnxscript's version converter works on the IR in place (annotations kept) but converts only to
opset 18 and up, and fails on TorchScript exports of opset 9–12 (Upsample, Squeeze with `axes`);
so edgec uses `onnx.version_converter` on the serialized model, then normalizes the result like a
loaded model and carries every node's annotations over by node name. A node the converter made
(a Constant holding axes, a Resize for an Upsample) takes the annotations of the node that reads
it, or of the one it replaced.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

from ...compiler.diagnostics import ModelError
from ...compiler.model_loader import normalize_model
from ...compiler.program import Program
from ...compiler.self_contained import self_contained_proto

QDQ_OPSET = 13


def default_opset(model: ir.Model) -> int:
    return model.opset_imports.get("", model.opset_imports.get("ai.onnx", QDQ_OPSET))


def upgrade(program: Program) -> int | None:
    """Convert the program's model to opset 13 when it is older; the old opset, or None if unchanged."""
    old = default_opset(program.model)
    if old >= QDQ_OPSET:
        return None
    metas = {n.name: dict(n.meta) for n in program.nodes() if n.name}
    try:
        converted = onnx.version_converter.convert_version(self_contained_proto(program.model), QDQ_OPSET)
    except Exception as exc:
        raise ModelError(f"quantization needs opset {QDQ_OPSET} (per-channel DequantizeLinear) and the ONNX version "
                         f"converter cannot convert this opset-{old} model: {str(exc).splitlines()[0]}",
                         hint=f"re-export the model at opset {QDQ_OPSET} or newer") from None
    fresh = normalize_model(ir.from_proto(converted))
    for key, value in program.model.meta.items():
        fresh.meta[key] = value
    for node in fresh.graph:
        if node.name in metas:
            node.meta.update(metas[node.name])
    for i, node in enumerate(fresh.graph):
        if node.name in metas:
            continue
        readers = [u.node for v in node.outputs for u in v.uses()]
        template = next((r for r in readers if r.name in metas), None)
        if template is None:
            producers = [v.producer() for v in node.inputs if v is not None and v.producer() is not None]
            template = next((p for p in producers if p.name in metas), None)
        if template is not None:
            node.meta.update(metas[template.name])
        if not node.name:
            node.name = f"{template.name if template is not None else 'node'}/opset{QDQ_OPSET}.{i}"
    program.model = fresh
    return old
