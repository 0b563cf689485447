"""Compile every stage placed on a `vta` resource: its integer layers to VTA programs, the rest named as
CPU fallbacks. Reads the manifest's stages and the onnx backend's sub-models, so the layer and
tensor names are exactly those the runtime's onnxruntime pieces see."""

from __future__ import annotations

from pathlib import Path

import onnx_ir as ir

from ...compiler.diagnostics import UsageError
from ...vta.isa import DEFAULT
from ..backend import Progress
from ..manifest import Manifest
from .int_layers import IntAdd, extract
from .layer_programs import compile_layer, write_layer
from .section import VtaFallback, VtaSection, VtaStage

CONFIG_NAME = "1x16_i8w8a32_15_15_18_17"


def _shapes(graph: ir.Graph) -> dict[str, tuple[int, ...]]:
    values = list(graph.inputs) + [v for node in graph for v in node.outputs]
    return {v.name: tuple(int(d) for d in v.shape) for v in values
            if v.shape is not None and all(isinstance(d, int) for d in v.shape)}


def compile_stage(model: Path, out: Path, rank: int, device: str, resource: str) -> VtaStage:
    graph = ir.load(str(model)).graph
    found = extract(graph)
    shapes = _shapes(graph)
    layers, fallbacks = [], [VtaFallback(f.node, f.op, f.reason) for f in found.fallbacks]
    folder = model.with_suffix(".vta")  # beside the sub-model, in the device's folder (as TVM's stage<k>.so)
    ops = {node.name: node.op_type for node in graph}
    for layer in found.layers:
        op = ops.get(layer.name, type(layer).__name__)
        reads = (layer.a.name, layer.b.name) if isinstance(layer, IntAdd) else (layer.x.name,)
        if any(name not in shapes for name in (*reads, layer.y.name)):
            fallbacks.append(VtaFallback(layer.name, op, "a tensor's shape is not static"))
            continue
        try:
            compiled, kind = compile_layer(layer, shapes)
        except UsageError as exc:
            fallbacks.append(VtaFallback(layer.name, op, exc.message))
            continue
        layers.append(write_layer(layer, compiled, kind, folder, out, len(layers), shapes[layer.y.name][1:]))
    return VtaStage(rank, device, resource, tuple(layers), tuple(fallbacks), float(DEFAULT.clock_hz))


def compile_output(manifest: Manifest, out: Path, progress: Progress) -> VtaSection:
    stages = []
    for stage in manifest.stages:
        if stage.resource != "vta":
            continue
        progress(f"vta: stage {stage.rank} ({stage.device})")
        stages.append(compile_stage(out / stage.model, out, stage.rank, stage.device, stage.resource))
    return VtaSection(CONFIG_NAME, tuple(stages))
