"""Replicated stages (`replicate`) compiled with `--backend cpp`: every replica gets its own TVM module, and the
generated C++ program deals the frames as the Python runtime does, outputs in frame order, replicas in the report.

Why two builds: a middle stage on 2 replicas (the plain case), and a 3-replica stage feeding a 2-replica output
stage (links every 6 frames, tag parities of consumers with even and odd replica counts, outputs gathered from
two replicas). Slow: each fixture compiles with TVM and builds with CMake (about 30 s together).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from cpp_helpers import TOLERANCE, reference, rel_err
from typer.testing import CliRunner

import edgec
from edgec.backends.cpp_mpi import build, generate_main
from edgec.backends.manifest import read_manifest, sha256_file
from edgec.backends.records import Fields
from edgec.backends.tvm.section import TvmSection
from edgec.cli import app
from edgec.dsl import parse_plan
from edgec.runtime import cpp_engine, launcher
from edgec.runtime.verify import verify
from graphs import Net

DEVICES = "".join(f"device {d} {{ cores 1 }}\n" for d in "abcde")
MIDDLE = "place c1 .. r1 on a\nplace c2 .. r2 on b\nreplicate c2 .. r2 on b, c\nplace * on e\n"
CORNER = ("place c1 .. r1 on a\nplace c2 .. r2 on b\nreplicate c2 .. r2 on b, c, d\n"
          "place c3 on e\nreplicate c3 on e, a\n")


def convs() -> onnx.ModelProto:
    """x → c1 → r1 → c2 → r2 → c3 (as tests/passes/replicate)."""
    net = Net({"x": [1, 2, 6, 6]})
    net.op("Relu", "r1", [net.conv("c1", "x", 2, 4)])
    net.op("Relu", "r2", [net.conv("c2", "r1", 4, 4)])
    return net.model([net.conv("c3", "r2", 4, 4)])


def _compiled(directory: Path, plan: str, devices: str = DEVICES, backends=("onnx", "cpp")) -> Path:
    out = directory / "out"
    edgec.compile(convs(), parse_plan(devices + plan, "plan.edge"), out, backends=backends)
    return out


@pytest.fixture(scope="module")
def middle(tmp_path_factory) -> Path:
    out = _compiled(tmp_path_factory.mktemp("cpp-replicas-middle"), MIDDLE)
    build(out)
    return out


@pytest.fixture(scope="module")
def corner(tmp_path_factory) -> Path:
    out = _compiled(tmp_path_factory.mktemp("cpp-replicas-corner"), CORNER)
    build(out)
    return out


def _run_in_order(out: Path, frames: int, warmup: int, samples: int = 4) -> dict:
    """Run the C++ program; every measured frame i equals the unsplit model on sample i % samples."""
    manifest = json.loads((out / "manifest.json").read_text())
    rng = np.random.default_rng(7)
    feeds = {i["name"]: rng.standard_normal((samples, *i["shape"])).astype(np.float32)
             for i in manifest["model"]["inputs"]}
    result = cpp_engine.run(out, feeds, frames=frames, warmup=warmup, keep_outputs=True, timeout=120)
    for i in range(frames):
        expected = reference(out / manifest["model"]["path"], {n: a[i % samples] for n, a in feeds.items()})
        for name, want in expected.items():
            assert result.outputs[name].shape == (frames, *want.shape)
            assert rel_err(result.outputs[name][i], want) <= TOLERANCE, (name, i)
    return result.report


@pytest.mark.slow
def test_a_middle_stage_on_two_replicas_runs_in_cpp_frame_by_frame(middle) -> None:
    report = _run_in_order(middle, frames=10, warmup=2)
    assert report["engine"] == "cpp" and report["ranks"] == 4
    rows = {s["rank"]: s for s in report["stages"]}
    assert [(rows[r]["stage"], rows[r]["replica"], rows[r]["frames"]) for r in (1, 3)] == [(1, 0, 5), (1, 1, 5)]
    assert "replica" not in rows[0] and rows[3]["device"] == "c"
    (rep,) = report["replicas"]
    assert (rep["stage"], rep["count"], rep["ranks"], rep["devices"]) == (1, 2, [1, 3], ["b", "c"])
    assert rep["frames"] == [5, 5] and len(rep["compute_ms"]) == 2
    links = {(link["src"], link["dst"]): link["bytes_total"] for link in report["links"]}
    assert links == {(0, 1): 5 * 576, (0, 3): 5 * 576, (1, 2): 5 * 576, (3, 2): 5 * 576}
    checked = verify(middle, engine="cpp")
    assert checked.ok and checked.replica_frames == 2
    ran = CliRunner().invoke(app, ["run", str(middle), "-n", "4", "--engine", "cpp", "--json"])
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.output[ran.output.index("{"):])["replicas"][0]["frames"] == [2, 2]


@pytest.mark.slow
def test_three_replicas_feeding_a_replicated_output_stage(corner) -> None:
    main = (corner / "cpp" / "main.cpp").read_text()
    assert "{4, false, \"r1\", 0, 0, 3, 2, 1}" in main  # rank 4 = stage 1 replica 2 takes f % 3 == 2 from rank 0
    report = _run_in_order(corner, frames=11, warmup=3)
    assert report["ranks"] == 6
    by_stage = {rep["stage"]: rep for rep in report["replicas"]}
    assert by_stage[1]["ranks"] == [1, 3, 4] and by_stage[1]["frames"] == [4, 4, 3]  # frames 3 … 13
    assert by_stage[2]["ranks"] == [2, 5] and by_stage[2]["devices"] == ["e", "a"] and by_stage[2]["frames"] == [5, 6]
    carried = {(link["src"], link["dst"]): link["bytes_total"] // 576 for link in report["links"]}
    assert sum(n for (src, _), n in carried.items() if src in (1, 3, 4)) == 11 and carried[(1, 2)] == 2


@pytest.mark.slow
def test_each_replica_has_its_module_in_the_manifest_and_its_device_package(middle) -> None:
    manifest = read_manifest(middle)
    section = manifest.section("tvm")
    (replica,) = section.replicas
    assert (replica.stage, replica.replica, replica.module.rank) == (1, 1, 3)
    assert replica.module.module == "devices/c/stage1.so" and section.module_of(3) == replica.module
    assert sha256_file(middle / replica.module.module) == replica.module.sha256 == section.stage(1).sha256
    assert "devices/c/stage1.so" in manifest.files
    with tarfile.open(middle / "packages" / "c.tar.gz") as tar:
        names = tar.getnames()
        run = tar.extractfile("edgec-reference/run.sh").read().decode()
    assert "edgec-reference/devices/c/stage1.so" in names and "-np 4 " in run


@pytest.mark.slow
def test_a_replica_on_another_cpu_gets_a_module_for_its_target_and_runs_on_the_python_tvm_ranks(tmp_path) -> None:
    devices = DEVICES.replace("device c { cores 1 }", 'device c { cores 1 target "llvm -mcpu=x86-64" }')
    out = _compiled(tmp_path, MIDDLE, devices, backends=("onnx", "tvm"))
    section = read_manifest(out).section("tvm")
    (replica,) = section.replicas
    assert replica.module.target.get("mcpu") == "x86-64" != section.stage(1).target.get("mcpu")
    assert replica.module.sha256 != section.stage(1).sha256 and replica.module.compile_seconds > 0
    assert verify(out, engine="tvm").ok
    feeds = {"x": np.random.default_rng(3).standard_normal((3, 1, 2, 6, 6)).astype(np.float32)}
    ran = launcher.run(out, feeds, frames=6, warmup=1, keep_outputs=True, engine="tvm", timeout=120)
    for i in range(6):
        want = reference(out / read_manifest(out).model.path, {"x": feeds["x"][i % 3]})["c3"]
        assert rel_err(ran.outputs["c3"][i], want) <= TOLERANCE, i
    assert [s.get("replica") for s in ran.report["stages"]] == [None, 0, None, 1]


def test_a_tvm_section_without_replicas_reads_as_before() -> None:
    old = {"versions": {"apache-tvm": "0.27"}, "wall_seconds": 1.0, "jobs": 1, "stages": []}
    section = TvmSection.read(Fields(old, "tvm", "manifest.json"))
    assert section.replicas == () and section.to_json() == old and section.module_of(0) is None


def test_main_cpp_with_replicas_comes_from_the_manifest(tmp_path) -> None:
    out = _compiled(tmp_path, MIDDLE, backends=("onnx",))
    main = generate_main(out)
    assert "mpirun -np 4 " in main and "{1, 1, 2},  // rank 3" in main
    assert "{2, false, \"r2\", 3, 1, 2, 1, 2}" in main and main.count("stage.connect();") == 3
    assert "case 1: return stage1(ctx);" in main and "edgec::parse_args(argc, argv, kStages, kRoles, kLinks)" in main
