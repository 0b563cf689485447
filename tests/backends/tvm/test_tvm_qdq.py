"""A QDQ (int8-weight) conv stage: its constant weights are dequantized at compile time, so the
conv gets the packed-weight kernel (a 5-D weight argument; TOPI's conv, which it got before,
takes the 4-D one), and the stage matches onnxruntime.

This is the float path of a QDQ stage (`int8=False`; also what a layer the integer rewrite
does not match gets); test_tvm_int8.py covers the integer kernels the rewrite makes by default.
"""

from __future__ import annotations

import numpy as np
import tvm
from onnx import helper
from tvm.s_tir.meta_schedule.arg_info import ArgInfo

from edgec.backends.tvm.frontend import import_onnx
from edgec.backends.tvm.lowering import cpu_build_pipeline, fused_module
from edgec.backends.tvm.schedules import CONV_BLOCK
from edgec.backends.tvm.targets import _cpu_target
from edgec.runtime.tvm_stage import TvmSession
from tvm_helpers import TOLERANCE, ort_run, random_feeds, rel_err, single_op_model


def _qdq_conv(path):
    rng = np.random.default_rng(0)
    weights = {"wq": rng.integers(-127, 128, (16, 8, 3, 3)).astype(np.int8),
               "ws": rng.uniform(0.001, 0.01, 16).astype(np.float32), "wz": np.zeros(16, np.int8),
               "xs": np.array(0.05, np.float32), "xz": np.array(3, np.int8)}
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], pads=[1, 1, 1, 1])]
    return single_op_model(path, nodes, {"x": [1, 8, 10, 10]}, weights, ["y"])


def test_qdq_conv_gets_the_packed_kernel_and_matches_onnxruntime(tmp_path) -> None:
    model = _qdq_conv(tmp_path / "qdq.onnx")
    target = tvm.target.Target(_cpu_target("x86_64"))
    fused = fused_module(import_onnx(model, None, "host"), target, int8=False)
    packed = [f for _, f in fused.functions_items() if isinstance(f, tvm.tirx.PrimFunc) and CONV_BLOCK in f.script()
              and any(len(a.shape) == 5 for a in ArgInfo.from_prim_func(f))]
    assert len(packed) == 1
    pipeline = cpu_build_pipeline(target, int8=False)
    executable = tvm.compile(import_onnx(model, None, "host"), target, relax_pipeline=pipeline)
    executable.export_library(str(tmp_path / "qdq.so"))
    feeds = random_feeds(model)
    got = TvmSession.from_onnx(tmp_path / "qdq.so", model, threads=1).run(None, feeds)
    assert rel_err(got[0], ort_run(model, feeds)[0]) < TOLERANCE
