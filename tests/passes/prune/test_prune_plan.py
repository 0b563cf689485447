"""`prune` statements end to end: parsing, located plan errors, compile, manifest, show and verify."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import edgec
from edgec.compiler.diagnostics import PlanError
from edgec.dsl.parser import parse_plan
from test_prune_graphs import residual

HEAD = "device a { cores 2 }\ndevice b { cores 2 }\nlink a <-> b { bandwidth 100Mbit }\nplace c0 .. r1 on a\nplace * on b\n"


def test_statement_parses_every_clause():
    stmt = parse_plan(HEAD + 'prune "c*" filters 30% per_layer by bn_gamma calibrate "cal" reconstruct').prunes[0]
    assert (stmt.what, stmt.amount, stmt.per_layer, stmt.metric, stmt.calibrate, stmt.reconstruct) == \
        ("filters", 0.3, True, "bn_gamma", "cal", True)
    assert parse_plan(HEAD + "prune c0 channels 0%").prunes[0].amount == 0.0


@pytest.mark.parametrize("line, message", [
    ("prune c0 channels 30% by activation", "by activation"),
    ("prune c0 channels 30% reconstruct", "`reconstruct` refits"),
    ('prune c0 channels 30% calibrate "nowhere"', "does not exist"),
    ("prune r1 channels 30%", "no Conv, Gemm or MatMul"),
    ("prune c9 channels 30%", "c9"),
])
def test_plan_errors_are_located(tmp_path, line, message):
    with pytest.raises(PlanError) as err:
        edgec.load_program(residual(), HEAD + line)
    assert message in str(err.value) and err.value.span is not None and err.value.span.line == 6


def test_an_empty_calibration_directory_is_refused(tmp_path):
    with pytest.raises(PlanError, match="no .npy or .npz"):
        edgec.load_program(residual(), HEAD + f'prune c0 channels 30% calibrate "{tmp_path}"')


def test_a_corrupt_calibration_file_is_an_error_at_the_statement(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"PK-not-a-zip")
    with pytest.raises(PlanError, match="cannot read calibration data .*x.npz"):
        edgec.compile(residual(), HEAD + f'prune c0 channels 30% calibrate "{tmp_path}"', tmp_path / "out")


def test_calibration_files_are_found_as_quantize_finds_them(tmp_path):
    """An input named with `:` (tf2onnx's `img:0`) is read from `img_0.npy`, as quantize reads it; the limit
    counts samples."""
    from edgec.passes.prune.calibration import feeds
    from graphs import Net

    net = Net({"img:0": [1, 2, 4, 4]})
    net.conv("c", "img:0", 2, 4)
    graph = edgec.load_model(net.model(["c"])).graph
    np.save(tmp_path / "img_0.npy", np.zeros((5, 1, 2, 4, 4), np.float32))
    assert len(list(feeds(str(tmp_path), graph, limit=3))) == 3
    assert [f["img:0"].shape for f in feeds(str(tmp_path), graph, limit=100)] == [(1, 2, 4, 4)] * 5


def test_a_layer_selected_twice_is_refused():
    with pytest.raises(PlanError, match="already pruned"):
        edgec.load_program(residual(), HEAD + "prune c0 channels 30%\nprune [c0, c1] channels 10%")


def test_compile_writes_the_pruning_section_and_verify_judges_agreement(tmp_path):
    cal = tmp_path / "cal"
    cal.mkdir()
    np.save(cal / "x.npy", np.random.default_rng(0).standard_normal((16, 3, 8, 8)).astype(np.float32))
    plan = HEAD + f'prune [c0, c1, c2] channels 30% calibrate "{cal}"\n'
    result = edgec.compile(residual(), plan, tmp_path / "out")
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    layers = {entry["node"]: entry for entry in manifest["pruning"]["layers"]}
    assert layers["c0"]["channels_after"] < layers["c0"]["channels_before"]
    total = [c for c in manifest["pruning"]["costs"] if c["stage"] is None][0]
    assert total["macs_after"] < total["macs_before"] and {c["stage"] for c in manifest["pruning"]["costs"]} == {None, 0, 1}
    assert any(p["pass"] == "prune" and p["modified"] for p in manifest["passes"])
    assert result.manifest.pruning.totals()[0].params_after == total["params_after"]
    for stage in (tmp_path / "out" / "devices").rglob("*.onnx"):
        onnx.checker.check_model(onnx.load(stage), full_check=True)
    from edgec.runtime.verify import verify

    report = verify(tmp_path / "out")
    assert report.quantized and report.ok


def test_a_pipeline_without_prune_refuses_the_statement(tmp_path):
    with pytest.raises(PlanError, match="no 'prune' pass") as err:
        edgec.compile(residual(), HEAD + "prune c0 channels 30%", tmp_path / "out",
                      passes="canonicalize,split-layer,split,comm-insert")
    assert err.value.span is not None and err.value.span.line == 6
    assert not (tmp_path / "out").exists()


def test_a_plan_without_prune_leaves_the_pass_unmodified(tmp_path):
    result = edgec.compile(residual(), HEAD, tmp_path / "out")
    assert result.manifest.pruning is None
    assert [p for p in result.program.pass_log if p["pass"] == "prune"][0]["modified"] is False


def test_prune_after_batchnorm_folding_prunes_the_folded_layers(tmp_path):
    from edgec.compiler.facts import Fact
    from edgec.passes import default_pipeline

    passes = default_pipeline([Fact.BATCHNORM_FOLDED])
    names = [p.name for p in passes]
    assert names.index("fold-batchnorm") < names.index("prune")
    result = edgec.compile(residual(), HEAD + "prune [c0, c1, c2] channels 30% by bn_gamma\n", passes=passes)
    prog = result.program
    assert not any(n.op_type == "BatchNormalization" for n in prog.nodes())
    assert prog.pruning and any("no BatchNormalization" in w.message for w in prog.warnings)
