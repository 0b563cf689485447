"""`edgec profile` and `edgec explore` end to end on the tiny CNN: emitted plans compile and verify."""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from edgec import api
from edgec.cli import app
from edgec.runtime.verify import verify
from tiny_cnn import build

runner = CliRunner()

PLATFORM = """\
device a { cores 1 mem 1GiB power_active 6W power_idle 2W }
device b { cores 1 mem 2GiB speed 50% power_active 3W power_idle 1W }
device c { cores 1 mem 512MiB power_active 4W power_idle 1W }
link a <-> b { bandwidth 100Mbit latency 1ms }
link b <-> c { bandwidth 1Gbit latency 500us }
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("explore")
    onnx.save(build(), root / "tiny.onnx")
    (root / "platform.edge").write_text(PLATFORM)
    from edgec.explorer.profile import profile
    from edgec.explorer.session import load

    loaded = load(root / "tiny.onnx", root / "platform.edge")
    (root / "profile.json").write_text(json.dumps(profile(loaded.model, [1], repeats=2, with_mpi=False)))
    return root


def test_explore_writes_plans_that_compile_and_verify(setup, tmp_path):
    root = setup
    out = tmp_path / "front"
    result = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(root / "platform.edge"),
                                 "--profile", str(root / "profile.json"), "--budget", "1", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["plans"] and doc["dp_optimum_fps"] > 0 and doc["gap_percent"] <= 1e-9
    index = json.loads((out / "front.json").read_text())
    assert set(index["files"]) == {r["plan"] for r in doc["plans"]} | ({"front.png"} if index["png"] else set())
    for r in doc["plans"][:3]:
        compiled = api.compile(None, out / r["plan"], tmp_path / r["plan"].replace(".edge", ""))
        assert len(compiled.program.stages) == r["stages"]
        assert verify(tmp_path / r["plan"].replace(".edge", ""), None).ok
    again = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(root / "platform.edge"),
                                "--profile", str(root / "profile.json"), "--budget", "0.5", "-o", str(out), "-q"])
    assert again.exit_code == 0, again.output  # an earlier explore output is replaced


def test_memory_infeasible_plans_are_never_written(setup, tmp_path):
    root = setup
    (tmp_path / "small.edge").write_text(PLATFORM.replace("mem 2GiB", "mem 1MiB").replace("mem 512MiB", "mem 1MiB"))
    result = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(tmp_path / "small.edge"),
                                 "--profile", str(root / "profile.json"), "--budget", "0.5", "-o", str(tmp_path / "o"),
                                 "--json"])
    assert result.exit_code == 0, result.output
    for r in json.loads(result.output)["plans"]:
        assert r["devices"] == ["a"]  # only `a` holds the runtime's overhead; b and c have 1 MiB


@pytest.mark.parametrize("args, message", [
    (["--objectives", "speed"], "unknown objective 'speed'"),
    (["--objectives", "latency"], "must include throughput"),
    (["--budget", "0"], "--budget must be at least"),
])
def test_bad_requests_exit_2(setup, tmp_path, args, message):
    root = setup
    result = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(root / "platform.edge"),
                                 "--profile", str(root / "profile.json"), "-o", str(tmp_path / "o"), *args])
    assert result.exit_code == 2 and message in result.output


def test_foreign_output_directory_is_refused(setup, tmp_path):
    root = setup
    (tmp_path / "mine.txt").write_text("keep me")
    result = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(root / "platform.edge"),
                                 "--profile", str(root / "profile.json"), "--budget", "0.3", "-o", str(tmp_path)])
    assert result.exit_code == 2 and (tmp_path / "mine.txt").read_text() == "keep me"


def test_profile_of_another_model_is_refused(setup, tmp_path):
    root = setup
    other = json.loads((root / "profile.json").read_text())
    other["nodes"] = other["nodes"][:-1]
    (tmp_path / "p.json").write_text(json.dumps(other))
    result = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(root / "platform.edge"),
                                 "--profile", str(tmp_path / "p.json"), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "measured on another model" in result.output


def test_fp16_wire_plans_compile_with_quantize_wire(setup, tmp_path):
    root = setup
    out = tmp_path / "front"
    result = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(root / "platform.edge"),
                                 "--profile", str(root / "profile.json"), "--budget", "1", "--wire", "float32,fp16",
                                 "--objectives", "throughput,latency", "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output
    fp16 = [r for r in json.loads(result.output)["plans"] if r["wire"] == "fp16" and r["stages"] > 1]
    assert fp16, "with 10x slower links somewhere, fp16 wire plans reach the front"
    assert "quantize wire fp16" in (out / fp16[0]["plan"]).read_text()
    compiled = api.compile(None, out / fp16[0]["plan"], tmp_path / "c")
    assert {w.wire for w in compiled.program.wire_quantization} == {"fp16"}


def test_int8_wire_needs_calibration(setup, tmp_path):
    root = setup
    result = runner.invoke(app, ["explore", str(root / "tiny.onnx"), "--plan", str(root / "platform.edge"),
                                 "--profile", str(root / "profile.json"), "--wire", "int8", "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "needs --calibrate" in result.output
