"""Tiny models and platforms for the explorer tests, each made in a few lines."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgec.compiler.model_loader import load_model
from edgec.explorer.cost_model import PlatformCosts
from edgec.explorer.graph_facts import graph_facts


def chain_model(widths: list[int]) -> onnx.ModelProto:
    """x[1, w0] → MatMul → … : node i multiplies by a [w_i, w_{i+1}] weight, so cut i carries w_{i+1} floats."""
    rng = np.random.default_rng(0)
    nodes, weights, x = [], [], "x"
    for i, (a, b) in enumerate(zip(widths, widths[1:])):
        weights.append(numpy_helper.from_array(rng.standard_normal((a, b)).astype(np.float32), f"w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"w{i}"], [f"y{i}"], name=f"mm{i}"))
        x = f"y{i}"
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, widths[0]])],
                              [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, widths[-1]])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def facts_of(proto: onnx.ModelProto):
    return graph_facts(load_model(proto).graph)


def platform(node_time: np.ndarray, bandwidth: float | np.ndarray = 1e6, latency: float = 0.0,
             mem: list[float] | None = None, power: tuple[float, float] | None = None) -> PlatformCosts:
    d = node_time.shape[0]
    bw = np.full((d, d), bandwidth, dtype=float) if np.isscalar(bandwidth) else np.asarray(bandwidth, dtype=float)
    return PlatformCosts(
        devices=tuple(f"d{i}" for i in range(d)), node_time=np.asarray(node_time, dtype=float),
        mem_bytes=np.asarray(mem if mem is not None else [np.inf] * d, dtype=float), bandwidth=bw,
        latency=np.full((d, d), latency), power_active=np.full(d, power[0] if power else np.nan),
        power_idle=np.full(d, power[1] if power else np.nan))
