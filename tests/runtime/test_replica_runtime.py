"""Replicated stages on real `mpirun`: frames dealt round-robin to the replicas come back in frame order and
equal the unsplit model's outputs, frame by frame. Tiny conv chains, 4 to 7 ranks, a few frames each."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import edgec
from edgec.backends.manifest import read_manifest
from edgec.backends.replica_records import refuse_mpi_with_replicas
from edgec.cli import app
from edgec.compiler.diagnostics import UsageError
from edgec.dsl import parse_plan
from edgec.runtime.launcher import run
from edgec.runtime.outputs import CompiledOutput
from edgec.runtime.replica_frames import check_replicated_run
from edgec.runtime.verify import run_reference, verify
from graphs import Net

DEVICES = "".join(f"device {d} {{ cores 1 }}\n" for d in "abcdefg")
MIDDLE = "place c1 .. r1 on a\nplace c2 .. r2 on b\nreplicate c2 .. r2 on b, c\nplace * on d\n"
ENDS = ("place c1 .. r1 on a\nreplicate c1 .. r1 on a, b, c\nplace c2 .. r2 on d\n"
        "place * on e\nreplicate c3 on e, f\n")


def convs() -> onnx.ModelProto:
    net = Net({"x": [1, 2, 6, 6]})
    net.op("Relu", "r1", [net.conv("c1", "x", 2, 4)])
    net.op("Relu", "r2", [net.conv("c2", "r1", 4, 4)])
    return net.model([net.conv("c3", "r2", 4, 4)])


def compiled(tmp_path, body: str):
    model = tmp_path / "convs.onnx"
    onnx.save(convs(), model)
    out = tmp_path / "out"
    edgec.compile(model, parse_plan(DEVICES + body, "plan.edge"), out)
    return out


def expected(out, frames: np.ndarray) -> list[np.ndarray]:
    manifest = CompiledOutput.open(out).manifest
    (name,) = [spec.name for spec in manifest.model.outputs]
    (source,) = [spec.name for spec in manifest.model.inputs]
    reference = CompiledOutput.open(out).reference_model()
    return [run_reference(reference, {source: frame}, [name])[name] for frame in frames]


ADJACENT = ("place c1 .. r1 on a\nreplicate c1 .. r1 on a, b, c\nplace c2 .. r2 on d\nreplicate c2 .. r2 on d, e\n"
            "place * on f\n")


@pytest.mark.parametrize("body, ranks", [(MIDDLE, 4), (ENDS, 6), (ADJACENT, 6)],
                         ids=["middle-x2", "input-x3-output-x2", "x3-feeds-x2"])
def test_replicated_stages_keep_frame_order_and_equal_the_unsplit_model(tmp_path, body, ranks) -> None:
    out = compiled(tmp_path, body)
    frames = np.random.default_rng(3).standard_normal((5, 1, 2, 6, 6)).astype(np.float32)
    result = run(out, {"x": frames}, frames=11, warmup=2, keep_outputs=True)
    (name,) = result.outputs
    got, want = result.outputs[name], expected(out, frames)
    assert got.shape[0] == 11 and result.report["ranks"] == ranks
    for i in range(11):
        np.testing.assert_allclose(got[i], want[i % 5], rtol=1e-4, atol=1e-5, err_msg=f"measured frame {i}")
    assert not np.allclose(want[0], want[1])
    replicas = {rep["stage"]: rep for rep in result.report["replicas"]}
    for rep in replicas.values():  # measured frames are global 2 … 12; replica a of r computes those ≡ a mod r
        r = rep["count"]
        assert rep["frames"] == [sum(1 for f in range(2, 13) if f % r == a) for a in range(r)]
        assert rep["effective_ms"] > 0


def test_link_bytes_count_only_the_frames_each_replica_link_carried(tmp_path) -> None:
    out = compiled(tmp_path, MIDDLE)
    x = np.random.default_rng(0).standard_normal((1, 2, 6, 6)).astype(np.float32)
    report = run(out, {"x": x}, frames=9, warmup=1).report
    links = {(link["src"], link["dst"]): link for link in report["links"]}
    assert set(links) == {(0, 1), (0, 3), (1, 2), (3, 2)}
    per_frame = links[(0, 1)]["bytes_per_frame"]
    # measured frames 1..9: replica 0 (rank 1) takes the even ones (4), replica 1 (rank 3) the odd ones (5)
    assert (links[(0, 1)]["bytes_total"], links[(0, 3)]["bytes_total"]) == (4 * per_frame, 5 * per_frame)
    rows = {s["rank"]: s for s in report["stages"]}
    assert (rows[1]["replica"], rows[1]["frames"], rows[3]["replica"], rows[3]["frames"]) == (0, 4, 1, 5)


def test_cli_run_saves_every_frame_and_verify_mpi_passes(tmp_path) -> None:
    out = compiled(tmp_path, MIDDLE)
    frames = np.random.default_rng(5).standard_normal((3, 1, 2, 6, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", frames)
    saved = tmp_path / "y.npy"
    runner = CliRunner()
    ran = runner.invoke(app, ["run", str(out), "-n", "6", "--input", str(tmp_path / "x.npy"),
                              "--save-outputs", str(saved), "--json"])
    assert ran.exit_code == 0, ran.output
    got, want = np.load(saved), expected(out, frames)
    assert got.shape[0] == 6
    for i in range(6):
        np.testing.assert_allclose(got[i], want[i % 3], rtol=1e-4, atol=1e-5, err_msg=f"frame {i}")
    assert json.loads(ran.output[ran.output.index("{"):])["replicas"][0]["count"] == 2
    report = verify(out, mpi=True)
    assert report.ok and report.replica_frames == 2 and report.mpi


def test_engines_without_replica_ranks_and_the_emulated_cluster_are_refused(tmp_path) -> None:
    out = compiled(tmp_path, MIDDLE)
    manifest = read_manifest(out)
    with pytest.raises(UsageError, match="onnxruntime, tvm or cpp only"):
        refuse_mpi_with_replicas(manifest, "vta")
    with pytest.raises(UsageError, match="--emulate"):
        check_replicated_run(manifest, "onnxruntime", emulated=True)
    check_replicated_run(manifest, "onnxruntime", emulated=False)
    ran = CliRunner().invoke(app, ["run", str(out), "-n", "2", "--engine", "vta"])
    assert ran.exit_code == 2 and "onnxruntime, tvm or cpp only" in ran.output
