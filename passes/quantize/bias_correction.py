"""Bias correction: quantizing a layer's weights and inputs shifts the mean of its output; the shift,
measured per output channel on the calibration data, is folded into the layer's bias.

`shift_c = E[y_float,c] − E[y_quantized,c]`, the means over the calibration samples and every
position but the channel axis; the float means are collected before any Q/DQ is inserted, the
quantized ones with every Q/DQ in place but the biases still float, so each layer is corrected
for the error of everything upstream of it too (empirical bias correction); a second round
removes the shift the first round's upstream corrections caused downstream.
A Conv or Gemm without a bias gets one. Sums are streamed, never the activations.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ...compiler.builder import Builder
from ...compiler.program import Program
from ..calibration_data import for_program
from .ranges import run_observed
from .selection import Selection

CORRECTED = ("Conv", "Gemm")
SAMPLES = 128
"""Calibration samples the means are taken over (a layer's mean over 128 images and every position is
steady; the sequential correction runs the model once per layer)."""


def _layers(sel: Selection) -> list[ir.Node]:
    return [use.node for use in sel.weights if use.node.op_type in CORRECTED and sel.requests[use.node.name].correct_bias]


def _channel_means(program: Program, sel: Selection, layers: list[ir.Node]) -> dict[str, np.ndarray]:
    by_folder: dict[str, list[ir.Node]] = {}
    for node in layers:
        by_folder.setdefault(sel.requests[node.name].calibrate, []).append(node)
    means: dict[str, np.ndarray] = {}
    for folder, nodes in by_folder.items():
        names = [n.outputs[0].name for n in nodes]
        sums = {name: 0.0 for name in names}
        count = 0
        for values in run_observed(program, names, for_program(program, folder, SAMPLES)):
            count += 1
            for name in names:
                y = values[name]
                sums[name] = sums[name] + np.moveaxis(y, 1, 0).reshape(y.shape[1], -1).mean(axis=1)
        for node, name in zip(nodes, names):
            means[node.name] = np.asarray(sums[name], dtype=np.float64) / max(count, 1)
    return means


def float_means(program: Program, sel: Selection) -> dict[str, np.ndarray]:
    """Per corrected layer, the float model's mean output per channel (before any Q/DQ)."""
    return _channel_means(program, sel, _layers(sel))


def correct(program: Program, sel: Selection, float_mean: dict[str, np.ndarray]) -> int:
    """Fold each layer's measured shift into its bias, layer after layer in graph order (each measured
    with every correction upstream of it in place); the number of layers corrected."""
    layers = _layers(sel)
    for node in layers:
        shift = float_mean[node.name] - _channel_means(program, sel, [node])[node.name]
        _fold(program, sel, node, shift)
    return len(layers)


def _fold(program: Program, sel: Selection, node: ir.Node, shift: np.ndarray) -> None:
    channels = node.outputs[0].shape[1]
    bias = node.inputs[2] if len(node.inputs) > 2 and node.inputs[2] is not None else None
    old = bias.const_value.numpy().astype(np.float64) if bias is not None else np.zeros(channels)
    new = (np.broadcast_to(old, (channels,)) + shift).astype(np.float32)
    if bias is not None and bias.is_initializer() and len(list(bias.uses())) == 1 and list(bias.shape) == [channels]:
        bias.const_value = ir.Tensor(new, name=bias.name)
        return
    value = Builder(program.graph, node, f"{node.name}/corrected", like=node).const("bias", new)
    if bias is None:
        node.resize_inputs(3)
        sel.biases.append((node, 2, sel.layer_input[node.name]))
    node.replace_input_with(2, value)
    if bias is not None and bias.is_initializer() and not bias.uses() and not bias.is_graph_output():
        del program.graph.initializers[bias.name]
