"""Least-squares reconstruction of each consumer's weights from calibration activations.

What channel-pruning papers do instead of fine-tuning (He et al. 2017, ThiNet): a layer that
lost input channels gets new weights and bias `[W'; b'] = argmin ||[X' 1][W'; b'] - Y||²`, where
X' is its input in the pruned model and Y its output in the model before the statement (bias
included), both on the same calibration samples. The normal equations `AᵀA`, `AᵀY` are
accumulated batch by batch (a few random output positions per image for a Conv, whose rows
are im2col patches), so no activation is held beyond one batch; a small ridge term keeps the
solve stable. This also subsumes bias compensation for these layers.

Applies to 2-D Conv (group 1) and Gemm/MatMul with float constant weights; a layer whose patch
length exceeds `MAX_FEATURES` or whose weights are quantized keeps its compensated weights.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from . import params
from .calibration import session

MAX_FEATURES = 4096
POSITIONS = 16
RIDGE = 1e-4


def _patches(x: np.ndarray, node: ir.Node, rows: np.ndarray, cols: np.ndarray, batch: np.ndarray) -> np.ndarray:
    """im2col rows of x [N, C, H, W] at the given output positions: [len, C*kh*kw] in (c, kh, kw) order."""
    kh, kw = node.inputs[1].shape[2], node.inputs[1].shape[3]
    sh, sw = (list(node.attributes["strides"].as_ints()) if "strides" in node.attributes else [1, 1])
    dh, dw = (list(node.attributes["dilations"].as_ints()) if "dilations" in node.attributes else [1, 1])
    pads = list(node.attributes["pads"].as_ints()) if "pads" in node.attributes else [0, 0, 0, 0]
    padded = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    ih = rows[:, None] * sh + np.arange(kh)[None, :] * dh
    iw = cols[:, None] * sw + np.arange(kw)[None, :] * dw
    patch = padded[batch[:, None, None, None], np.arange(x.shape[1])[None, :, None, None],
                   ih[:, None, :, None], iw[:, None, None, :]]
    return patch.reshape(len(rows), -1)


def _usable(node: ir.Node) -> bool:
    w = node.inputs[1]
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if w.const_value is None or (bias is not None and bias.const_value is None):
        return False
    attrs = node.attributes
    if node.op_type == "Conv":
        flat = attrs.get_string("auto_pad", "NOTSET") == "NOTSET" and attrs.get_int("group", 1) == 1
        return flat and len(w.shape) == 4 and w.shape[1] * w.shape[2] * w.shape[3] + 1 <= MAX_FEATURES
    if node.op_type == "Gemm" and (attrs.get_float("alpha", 1.0) != 1.0 or attrs.get_float("beta", 1.0) != 1.0
                                   or attrs.get_int("transA", 0)):
        return False
    return len(w.shape) == 2 and min(w.shape) + 1 <= MAX_FEATURES


def reconstruct(model: ir.Model, original, layers: list[ir.Node], batches, kept_out: dict[str, np.ndarray],
                seed: int = 0) -> list[str]:
    """Refit `layers` (nodes of the pruned `model`); `original` is a session of the model before the
    statement that returns each layer's output (same names). Returns the layers refitted."""
    layers = [n for n in layers if _usable(n)]
    if not layers:
        return []
    pruned = session(model, [n.inputs[0] for n in layers])
    in_names = [n.inputs[0].name for n in layers]
    out_names = [n.outputs[0].name for n in layers]
    rng = np.random.default_rng(seed)
    normal: dict[str, list[np.ndarray]] = {}
    for feed in batches():
        xs = pruned.run(in_names, feed)
        ys = original.run(out_names, feed)
        for node, x, y in zip(layers, xs, ys):
            keep = kept_out.get(node.name)
            a, target = _rows(node, x, y, keep, rng)
            if node.op_type != "MatMul":
                a = np.concatenate([a, np.ones((len(a), 1))], axis=1)
            acc = normal.setdefault(node.name, [np.zeros((a.shape[1], a.shape[1])), np.zeros((a.shape[1], target.shape[1]))])
            acc[0] += a.T @ a
            acc[1] += a.T @ target
    done = []
    for node in layers:
        ata, aty = normal[node.name]
        ridge = RIDGE * np.trace(ata) / len(ata) + 1e-12
        solution = np.linalg.solve(ata + ridge * np.eye(len(ata)), aty)
        _set(model.graph, node, solution)
        done.append(node.name)
    return done


def _rows(node: ir.Node, x: np.ndarray, y: np.ndarray, keep: np.ndarray | None, rng) -> tuple[np.ndarray, np.ndarray]:
    x, y = x.astype(np.float64), y.astype(np.float64)
    if node.op_type == "Conv":
        if keep is not None:
            y = y[:, keep]
        n, _, oh, ow = y.shape
        count = min(POSITIONS, oh * ow) * n
        batch, flat = rng.integers(0, n, count), rng.integers(0, oh * ow, count)
        rows, cols = flat // ow, flat % ow
        return _patches(x, node, rows, cols, batch), y[batch, :, rows, cols]
    if keep is not None:
        y = np.take(y, keep, axis=-1)
    return x.reshape(-1, x.shape[-1]), y.reshape(-1, y.shape[-1])


def _set(graph: ir.Graph, node: ir.Node, solution: np.ndarray) -> None:
    w = node.inputs[1]
    dtype = w.const_value.numpy().dtype
    weights, bias = (solution, None) if node.op_type == "MatMul" else (solution[:-1], solution[-1])
    if node.op_type == "Conv":
        params.set_constant(graph, node, 1, weights.T.reshape(list(w.shape)).astype(dtype))
    elif node.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        params.set_constant(graph, node, 1, weights.T.astype(dtype))
    else:
        params.set_constant(graph, node, 1, weights.astype(dtype))
    if node.op_type == "MatMul":
        return
    existing = node.inputs[2] if len(node.inputs) > 2 else None
    if existing is None:
        params.add_input_constant(graph, node, 2, bias.astype(dtype), f"{node.name}.bias")
    elif existing.const_value is not None:
        params.set_constant(graph, node, 2, bias.reshape(existing.const_value.numpy().shape).astype(dtype))
