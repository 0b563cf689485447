"""`edgec run` and `edgec verify --mpi` on real `mpirun`: the distributed outputs equal the unsplit model's.

Every test here starts Open MPI with one rank per stage (2 to 4 ranks) on this machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import edgec
from edgec.cli import app
from edgec.runtime.launcher import run
from edgec.runtime.outputs import CompiledOutput, random_inputs
from edgec.runtime.verify import compare, run_reference
from tiny_cnn import build

runner = CliRunner()


def reference(out, feeds):
    compiled = CompiledOutput.open(out)
    names = [spec.name for spec in compiled.manifest.model.outputs]
    return run_reference(compiled.reference_model(), feeds, names)


def test_frames_stay_in_order_through_the_double_buffers(tiny_out, leftover_ranks):
    """Five different frames, cycled over 13 measured frames after 3 warm-up frames: every saved
    output must belong to its own frame, so no buffer or tag ever mixes two frames."""
    frames = np.random.default_rng(7).standard_normal((5, 1, 3, 32, 32)).astype(np.float32)
    result = run(tiny_out, {"image": frames}, frames=13, warmup=3, keep_outputs=True)
    probs = result.outputs["probs"]
    assert probs.shape == (13, 1, 10)
    expected = [reference(tiny_out, {"image": frame})["probs"] for frame in frames]
    for j in range(13):
        report = compare({"probs": probs[j]}, {"probs": expected[j % 5]}, 1e-4)
        assert report.ok, (j, report.outputs)
    assert not np.allclose(expected[0], expected[1])
    assert leftover_ranks(tiny_out) == []


def test_report_figures(tiny_out):
    result = run(tiny_out, random_inputs(CompiledOutput.open(tiny_out).manifest), frames=20, warmup=2)
    report = result.report
    assert report["frames"] == 20 and report["ranks"] == 4
    assert report["throughput_fps"] > 0 and 0 < report["efficiency"] <= 1.5
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
    assert [s["rank"] for s in report["stages"]] == [0, 1, 2, 3]
    assert all(s["compute_ms"] > 0 and s["wait_ms"] >= 0 and s["send_ms"] >= 0 for s in report["stages"])
    links = {(link["src"], link["dst"]): link for link in report["links"]}
    assert set(links) == {(0, 1), (1, 2), (1, 3), (2, 3)}
    assert links[(1, 3)]["bytes_per_frame"] == 2 * 8192 and links[(1, 3)]["bytes_total"] == 20 * 2 * 8192
    assert "Open MPI" in report["mpi_library"]
    assert "--oversubscribe" in result.command


def test_cli_run_json_and_saved_outputs(tiny_out, tmp_path):
    saved = tmp_path / "y.npy"
    result = runner.invoke(app, ["run", str(tiny_out), "--frames", "4", "--warmup", "1", "--json",
                                 "--save-outputs", str(saved)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["frames"] == 4 and len(report["stages"]) == 4
    assert report["command"] == "run" and report["mpirun_command"][0].endswith("mpirun")
    probs = np.load(saved)
    assert probs.shape == (4, 1, 10)
    expected = reference(tiny_out, random_inputs(CompiledOutput.open(tiny_out).manifest, 0))["probs"]
    assert all(compare({"probs": p}, {"probs": expected}, 1e-4).ok for p in probs)


def test_cli_run_table_and_input_file(tiny_out, tmp_path):
    image = tmp_path / "image.npy"
    np.save(image, np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32))
    saved = tmp_path / "y.npz"
    result = runner.invoke(app, ["run", str(tiny_out), "--frames", "3", "-i", str(image), "--save-outputs", str(saved)])
    assert result.exit_code == 0, result.output
    for text in ("frames/s", "pipeline efficiency", "compute ms", "0 (cam) → 1 (hub)", "wrote"):
        assert text in result.stdout
    with np.load(saved) as data:
        got = data["probs"]
    expected = reference(tiny_out, {"image": np.load(image)})["probs"]
    assert compare({"probs": got[2]}, {"probs": expected}, 1e-4).ok


def test_cli_verify_mpi_tiny(tiny_out):
    result = runner.invoke(app, ["verify", str(tiny_out), "--mpi", "--json", "--seed", "4"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and all(o["max_rel"] <= 1e-4 for o in report["outputs"])


@pytest.mark.slow
@pytest.mark.parametrize("name, stages", [("inception_v1", 2), ("resnet50", 3)])
def test_cli_verify_mpi_zoo(zoo_out, name, stages, leftover_ranks):
    out = zoo_out(name, stages)
    assert len(CompiledOutput.open(out).stages) == stages
    result = runner.invoke(app, ["verify", str(out), "--mpi", "--json", "--seed", "1"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] and all(o["max_rel"] <= 1e-4 for o in report["outputs"])
    assert leftover_ranks(out) == []


@pytest.mark.slow
def test_hosts_file_uses_the_rankfile(tmp_path, leftover_ranks):
    """`--hosts` hands mpirun the hostfile and OUT/rankfile; here every device's host is localhost."""
    model = tmp_path / "tiny.onnx"
    onnx.save(build(), model)
    plan = ('device cam { arch x86_64 cores 2 host "localhost" }\n'
            'device hub { arch x86_64 cores 2 host "localhost" }\n'
            "place stem .. res_out on cam.cpu\nplace * on hub.cpu\n")
    out = tmp_path / "out"
    edgec.compile(model, plan, out)
    hosts = tmp_path / "hostfile"
    hosts.write_text("localhost slots=4\n")
    feeds = random_inputs(CompiledOutput.open(out).manifest, 2)
    result = run(out, feeds, frames=2, hosts=hosts, keep_outputs=True)
    assert "--rankfile" in result.command and str(hosts) in result.command
    assert compare({"probs": result.outputs["probs"][1]}, reference(out, feeds), 1e-4).ok
    assert leftover_ranks(out) == []


def test_cli_verify_mpi_reports_a_mismatch(tiny_out, tmp_path):
    other = tmp_path / "other.onnx"
    onnx.save(build(seed=1), other)
    result = runner.invoke(app, ["verify", str(tiny_out), "--mpi", "--model", str(other)])
    assert result.exit_code == 1, result.output
    assert "MISMATCH" in result.stdout and "mpirun" in result.stdout


def test_intra_layer_split_plan_runs_distributed(tmp_path, leftover_ranks):
    """The split example (spatial, filter, channel and FC-input splits plus a pipeline) on 9 real ranks."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    model = tmp_path / "tiny_cnn.onnx"
    onnx.save(build(), model)
    out = tmp_path / "out"
    edgec.compile(model, (examples / "tiny_cnn_split.edge").read_text(), out)
    feeds = random_inputs(CompiledOutput.open(out).manifest, seed=4)
    result = run(out, feeds, frames=3, warmup=1, keep_outputs=True)
    report = compare({"probs": result.outputs["probs"][0]}, reference(out, feeds), 1e-4)
    assert report.ok, report.outputs
    assert result.report["ranks"] == 9
    assert leftover_ranks(out) == []
