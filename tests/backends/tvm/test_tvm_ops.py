"""Single-operator graphs through edgec's TVM CPU pipeline match onnxruntime.

Why: the hand-written conv schedule, the weight packing and what the IR passes hand TVM
(canonicalize: Sum → Add, Dropout removed; fold-batchnorm) each have corner cases the zoo models
do not reach: channel counts that are no multiple of the vector width, strides with asymmetric
padding, dilation, grouped and depthwise convs (which must fall back to TOPI's conv), 2-D
BatchNorm. Every case goes through those passes first, as a stage of a compiled output does; TVM's
result is compared with onnxruntime on the original graph.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper
from tvm_helpers import TOLERANCE, ort_run, random_feeds, rel_err, single_op_model, through_passes

from edgec.backends.tvm import compile_stage, select_target
from edgec.compiler.platform import Device
from edgec.runtime.tvm_stage import TvmSession

RNG = np.random.default_rng(0)


def _w(*shape: int) -> np.ndarray:
    return (RNG.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)


def _conv(cin: int, cout: int, k: int, hw: int, **attrs) -> tuple:
    groups = attrs.get("group", 1)
    weights = {"w": _w(cout, cin // groups, k, k), "b": _w(cout)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], **attrs), helper.make_node("Relu", ["c"], ["y"])]
    return nodes, {"x": [1, cin, hw, hw]}, weights, ["y"]


def _bn(c: int) -> dict[str, np.ndarray]:
    return {"s": RNG.uniform(0.5, 1.5, c).astype(np.float32), "t": _w(c), "m": _w(c),
            "v": RNG.uniform(0.5, 1.5, c).astype(np.float32)}


CASES = {
    "conv3x3_pad": _conv(16, 32, 3, 14, pads=[1, 1, 1, 1]),
    "conv_odd_channels": _conv(3, 10, 3, 9, pads=[1, 1, 1, 1]),
    "conv7x7_stride2_asym": _conv(3, 64, 7, 23, strides=[2, 2], pads=[3, 2, 3, 2]),
    "conv_dilated": _conv(8, 16, 3, 12, dilations=[2, 2], pads=[2, 2, 2, 2]),
    "conv_grouped": _conv(16, 32, 3, 8, group=4, pads=[1, 1, 1, 1]),
    "conv_depthwise": _conv(32, 32, 3, 8, group=32, pads=[1, 1, 1, 1]),
    "conv1x1_wide": _conv(96, 48, 1, 7),
    "conv_bn_folded": (
        [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
         helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"], ["y"], epsilon=1e-3)],
        {"x": [1, 8, 10, 10]}, {"w": _w(16, 8, 3, 3), **_bn(16)}, ["y"]),
    "bn_standalone_2d": (
        [helper.make_node("BatchNormalization", ["x", "s", "t", "m", "v"], ["y"])], {"x": [4, 16]}, _bn(16), ["y"]),
    "sum3_dropout": (
        [helper.make_node("Sum", ["x", "x2", "x3"], ["s"]), helper.make_node("Dropout", ["s"], ["y"])],
        {"x": [1, 8, 5, 5], "x2": [1, 8, 5, 5], "x3": [1, 8, 5, 5]}, {}, ["y"]),
    "pools_concat": (
        [helper.make_node("MaxPool", ["x"], ["a"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
         helper.make_node("AveragePool", ["x"], ["b"], kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1),
         helper.make_node("Concat", ["a", "b"], ["y"], axis=1)], {"x": [1, 24, 13, 13]}, {}, ["y"]),
    "gemm_softmax": (
        [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
         helper.make_node("Gemm", ["f", "w", "b"], ["z"], transB=1), helper.make_node("Softmax", ["z"], ["y"])],
        {"x": [1, 40, 6, 6]}, {"w": _w(1000, 40), "b": _w(1000)}, ["y", "z"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_operator_matches_onnxruntime(case: str, tmp_path) -> None:
    nodes, inputs, weights, outputs = CASES[case]
    model = single_op_model(tmp_path / f"{case}.onnx", nodes, inputs, weights, outputs)
    stage = through_passes(model)
    assert not {n.op_type for n in onnx.load(str(stage)).graph.node} & {"BatchNormalization", "Sum", "Dropout"}
    info = compile_stage(stage, None, select_target(Device("host")), tmp_path / f"{case}.so")
    assert info["sha256"] and info["compile_seconds"] > 0
    feeds = random_feeds(model)
    session = TvmSession.from_onnx(tmp_path / f"{case}.so", stage, threads=2)
    for got, want in zip(session.run(None, feeds), ort_run(model, feeds)):
        assert got.shape == want.shape
        assert rel_err(got, want) <= TOLERANCE


def test_session_returns_named_outputs_in_requested_order(tmp_path) -> None:
    nodes, inputs, weights, outputs = CASES["gemm_softmax"]
    model = single_op_model(tmp_path / "m.onnx", nodes, inputs, weights, outputs)
    compile_stage(model, None, select_target(Device("host")), tmp_path / "m.so")
    session = TvmSession.from_onnx(tmp_path / "m.so", model)
    assert [o.name for o in session.get_outputs()] == ["y", "z"]
    assert session.get_inputs()[0].shape == [1, 40, 6, 6] and session.get_inputs()[0].type == "tensor(float)"
    feeds = random_feeds(model)
    z, y = session.run(["z", "y"], feeds)
    assert z.shape == (1, 1000) and np.allclose(y.sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("aligned", [True, False])
def test_kernel_binds_frame_buffers_like_ort_kernel(aligned: bool, tmp_path) -> None:
    from edgec.runtime.pipeline import TensorSpec
    from edgec.runtime.stage_kernel import output_specs
    from edgec.runtime.tvm_stage import TvmKernel

    nodes, inputs, weights, outputs = CASES["conv3x3_pad"]
    model = single_op_model(tmp_path / "k.onnx", nodes, inputs, weights, outputs)
    compile_stage(model, None, select_target(Device("host")), tmp_path / "k.so")
    session = TvmSession.from_onnx(tmp_path / "k.so", model, threads=2, spin=False)
    specs = output_specs(session, {})
    assert specs["y"] == TensorSpec((1, 32, 14, 14), np.dtype("float32"))

    def buffer(shape: tuple[int, ...]) -> np.ndarray:
        raw = np.empty(int(np.prod(shape)) * 4 + 128, np.uint8)
        offset = (-raw.ctypes.data) % 64 + (0 if aligned else 4)
        return raw[offset:offset + int(np.prod(shape)) * 4].view(np.float32).reshape(shape)

    kernel = TvmKernel(session)
    feeds = random_feeds(model)
    frames = []
    for parity in (0, 1):
        x, y = buffer((1, 16, 14, 14)), buffer((1, 32, 14, 14))
        kernel.bind(parity, {"x": x}, {"y": y})
        frames.append((x, y))
    for parity, (x, y) in enumerate(frames):
        x[...] = feeds["x"] * (parity + 1)
        kernel.run(parity)
        (want,) = ort_run(model, {"x": x.copy()})
        assert rel_err(y, want) <= TOLERANCE
