"""The conv template `edgec tune` searches, and the layout-change and row-stream schedules.

Every tile of the template (register tile, loop order, reduction chunk) must compute the same
conv as TVM's unscheduled kernel; the transposes around NHWC convs and a matmul with [K, N]
weights (ResNet's classifier) must match onnxruntime end to end.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from onnx import helper
from tvm import s_tir
from tvm.s_tir.meta_schedule.arg_info import ArgInfo

from edgec.backends.tvm.frontend import import_onnx
from edgec.backends.tvm.lowering import cpu_build_pipeline, fused_module
from edgec.backends.tvm.schedules import ConvTile, _conv_parts, conv_tiles, default_conv_tile, schedule_conv_tile
from edgec.backends.tvm.targets import parse_target
from edgec.runtime.tvm_stage import TvmSession
from tvm_helpers import TOLERANCE, conv_relu_model, ort_run, random_feeds, rel_err, single_op_model

AVX512 = tvm.target.Target(parse_target("llvm -mtriple=x86_64-linux-gnu -mcpu=skylake-avx512"))


@pytest.fixture(scope="module")
def conv_kernel(tmp_path_factory):
    """The fused conv+bias+relu PrimFunc of a 3x3 conv with 64 input channels (so chunks apply)."""
    model = conv_relu_model(tmp_path_factory.mktemp("tiles") / "conv.onnx", 64, 64, 8)
    mod = fused_module(import_onnx(model, None, str(AVX512)), AVX512)
    return next(f for _, f in mod.functions_items()
                if isinstance(f, tvm.tirx.PrimFunc) and _conv_parts(s_tir.Schedule(f)) is not None)


def _run(mod, func) -> np.ndarray:
    """The kernel's last argument (its output) after one call on seeded random arguments."""
    rng = np.random.default_rng(1)
    args = [tvm.runtime.tensor(rng.standard_normal([int(d) for d in info.as_json()[2]]).astype("float32"))
            for info in ArgInfo.from_prim_func(func)]
    tvm.tirx.build(mod, target=AVX512)(*args)
    return args[-1].numpy()


def test_the_template_spans_tiles_orders_and_chunks() -> None:
    tiles = conv_tiles(AVX512, 64, 28, 256)
    assert {t.ot for t in tiles} == {16, 32} and {t.rows_outer for t in tiles} == {True, False}
    assert {t.chunk for t in tiles} == {None, 32, 128}
    assert all(t.wt * t.ot // 16 <= 28 and 28 % t.wt == 0 for t in tiles)


def test_every_template_tile_computes_the_same_conv(conv_kernel) -> None:
    from edgec.backends.tvm.tuning import _as_task

    reference = _run(_as_task(conv_kernel), conv_kernel)
    tiles = conv_tiles(AVX512, 64, 8, 64)
    assert ConvTile(32, 8, False, 32) in tiles
    for tile in tiles:
        sch = s_tir.Schedule(_as_task(conv_kernel))
        assert schedule_conv_tile(sch, AVX512, tile) is not None
        assert rel_err(_run(sch.mod, conv_kernel), reference) < TOLERANCE, tile


def test_default_tile_orders_by_what_outweighs(conv_kernel) -> None:
    sch = s_tir.Schedule(conv_kernel)
    tile = default_conv_tile(sch, _conv_parts(sch)[0], AVX512)
    assert (tile.ot, tile.wt) == (32, 8) and not tile.rows_outer  # 147 kB of weights, 41 kB of activations


@pytest.mark.parametrize("nodes, inputs, weights", [
    ([helper.make_node("Transpose", ["x"], ["t"], perm=[0, 2, 3, 1]), helper.make_node("Relu", ["t"], ["y"])],
     {"x": [1, 48, 14, 28]}, {}),
    ([helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])],
     {"x": [1, 512]}, {"w": np.random.default_rng(2).standard_normal((512, 1000)).astype(np.float32),
                       "b": np.random.default_rng(3).standard_normal(1000).astype(np.float32)}),
], ids=["transpose", "matmul-rows"])
def test_layout_changes_and_row_streams_match_onnxruntime(nodes, inputs, weights, tmp_path) -> None:
    model = single_op_model(tmp_path / "m.onnx", nodes, inputs, weights, ["y"])
    executable = tvm.compile(import_onnx(model, None, str(AVX512)), AVX512, relax_pipeline=cpu_build_pipeline(AVX512))
    executable.export_library(str(tmp_path / "m.so"))
    feeds = random_feeds(model)
    got = TvmSession.from_onnx(tmp_path / "m.so", model, threads=2).run(None, feeds)
    assert rel_err(got[0], ort_run(model, feeds)[0]) < TOLERANCE
