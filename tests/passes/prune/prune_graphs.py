"""Tiny graphs with *dead* channels (zero filters) for the prune tests, and the checks they share.

A dead channel is zero after its layer, so removing it must leave every model output exactly
as it was; L1 ranking removes dead channels first. The checks compare with onnxruntime.
"""

from __future__ import annotations

import numpy as np
import onnx

from edgec.compiler.annotations import PRUNE
from edgec.passes.prune import Prune, PruneRequest
from edgec.passes.prune.calibration import session
from graphs import Net, program
from split_helpers import run


def dead_conv(net: Net, name: str, x: str, cin: int, cout: int, dead: list[int], k: int = 3, group: int = 1) -> str:
    w = net.rng.standard_normal((cout, cin // group, k, k)).astype(np.float32) * 0.5
    b = net.rng.standard_normal(cout).astype(np.float32) * 0.1
    w[dead], b[dead] = 0.0, 0.0
    return net.op("Conv", name, [x, net.const(f"{name}.w", w), net.const(f"{name}.b", b)], pads=[k // 2] * 4,
                  group=group)


def bn(net: Net, name: str, x: str, channels: int, dead: list[int] = ()) -> str:
    beta = net.rng.normal(0, 0.2, channels)
    beta[list(dead)] = 0.0
    stats = [net.rng.uniform(0.5, 1.5, channels), beta, net.rng.normal(0, 0.1, channels), net.rng.uniform(0.5, 1.5, channels)]
    mean = stats[2]
    mean[list(dead)] = 0.0
    return net.op("BatchNormalization", name, [x, *(net.const(f"{name}.{i}", s) for i, s in enumerate(stats))])


def prepared(model: onnx.ModelProto, select: list[str], fraction: float, **request):
    prog = program(model, {"*": "a"})
    req = PruneRequest(fraction, **request)
    for node in prog.nodes():
        if node.name in select:
            node.meta[PRUNE] = req
    return prog


def feeds(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


def pruned(model: onnx.ModelProto, select: list[str], fraction: float, **request):
    prog = prepared(model, select, fraction, **request)
    result = Prune()(prog)
    prog.verify()
    onnx.checker.check_model(onnx.shape_inference.infer_shapes(_proto(prog), strict_mode=True), full_check=True)
    return prog, result


def _proto(prog):
    import onnx_ir as ir

    return ir.to_proto(prog.model)


def same_outputs(model: onnx.ModelProto, prog, tolerance: float = 1e-5) -> None:
    x = feeds(model)
    for got, want in zip(run(prog.model, x), run(model, x)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=tolerance, atol=tolerance)


def channels_kept(model: onnx.ModelProto, prog, names: list[str]) -> dict[str, int]:
    """For each named tensor: every channel of the pruned tensor equals an original channel, in order."""
    import edgec

    x = feeds(model)
    original = edgec.load_model(model)
    values = {v.name: v for n in original.graph for v in n.outputs}
    mine = {v.name: v for n in prog.model.graph for v in n.outputs}
    want = session(original, [values[n] for n in names]).run(names, x)
    got = session(prog.model, [mine[n] for n in names]).run(names, x)
    counts = {}
    for name, a, b in zip(names, want, got):
        axis = next((i for i, (p, q) in enumerate(zip(a.shape, b.shape)) if p != q), 1)
        cols = [np.take(a, i, axis=axis) for i in range(a.shape[axis])]
        j = 0
        for i in range(b.shape[axis]):
            target = np.take(b, i, axis=axis)
            while j < len(cols) and not np.allclose(cols[j], target, atol=1e-5):
                j += 1
            assert j < len(cols), f"channel {i} of '{name}' matches no remaining original channel"
            j += 1
        counts[name] = b.shape[axis]
    return counts
