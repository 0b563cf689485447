"""Build and run the generated C++/MPI program: outputs equal the unsplit model, same report, clear failures.

Why slow: each fixture compiles stages with TVM and builds with CMake (about 10 s together);
the runs themselves take about a second each.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
from cpp_helpers import TOLERANCE, reference, rel_err

from edgec.backends.cpp_mpi import program_path, write_packages
from edgec.backends.manifest import as_manifest
from edgec.runtime import cpp_engine
from edgec.runtime.failure import RuntimeFailure
from edgec.runtime.launcher import mpi_env
from edgec.runtime.outputs import random_inputs
from edgec.runtime.report import summarize

pytestmark = pytest.mark.slow


def _stacked_feeds(manifest: dict, samples: int) -> dict[str, np.ndarray]:
    frames = [random_inputs(manifest, seed=s) for s in range(samples)]
    return {name: np.stack([f[name] for f in frames]) for name in frames[0]}


def _check_outputs(out: Path, samples: int = 3, frames: int = 5, warmup: int = 2) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    feeds = _stacked_feeds(manifest, samples)
    result = cpp_engine.run(out, feeds, frames=frames, warmup=warmup, keep_outputs=True, timeout=120)
    for j in range(frames):
        expected = reference(Path(manifest["model"]["path"]), {n: a[j % samples] for n, a in feeds.items()})
        for spec in manifest["model"]["outputs"]:
            got = result.outputs[spec["name"]]
            assert got.shape == (frames, *spec["shape"])
            assert rel_err(got[j], expected[spec["name"]]) <= TOLERANCE, (spec["name"], j)
    return result.report


def test_tiny_cnn_matches_onnxruntime(tiny_built) -> None:
    report = _check_outputs(tiny_built)
    assert report["engine"] == "cpp" and report["ranks"] == 4 and report["throughput_fps"] > 0


def test_squeezenet_three_stages_on_two_devices(squeezenet_built) -> None:
    manifest = json.loads((squeezenet_built / "manifest.json").read_text())
    assert len(manifest["stages"]) == 3 and {s["device"] for s in manifest["stages"]} == {"a", "b"}
    _check_outputs(squeezenet_built, samples=2, frames=3, warmup=1)


def test_report_has_the_python_runtime_format(tiny_built) -> None:
    manifest = json.loads((tiny_built / "manifest.json").read_text())
    report = cpp_engine.run(tiny_built, random_inputs(manifest), frames=4, warmup=1).report
    fake = [{"rank": r, "host": "h", "origin": 0.0, "stats": {k: list(np.arange(5.0) + r) for k in
                                                           ("start", "end", "compute", "wait", "send")}}
            for r in range(len(manifest["stages"]))]
    python = summarize(as_manifest(manifest), fake, frames=4, warmup=1)
    assert set(python) <= set(report) and set(python["latency_ms"]) == set(report["latency_ms"])
    assert [set(s) for s in python["stages"]] == [set(s) for s in report["stages"]]
    strip = lambda links: [{k: v for k, v in link.items() if k != "mb_per_s"} for link in links]  # noqa: E731
    assert strip(python["links"]) == strip(report["links"])
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert all(s["compute_ms"] > 0 for s in report["stages"])


def test_packages_hold_each_devices_modules_only(tiny_built) -> None:
    paths = write_packages(tiny_built)
    manifest = json.loads((tiny_built / "manifest.json").read_text())
    assert sorted(p.name for p in paths) == sorted(f"{d}.tar.gz" for d in {s["device"] for s in manifest["stages"]})
    for path in paths:
        device, top = path.name.removesuffix(".tar.gz"), "edgec-tiny_cnn"
        with tarfile.open(path) as tar:
            names = set(tar.getnames())
        mine = {f"{top}/devices/{device}/stage{s['rank']}.so" for s in manifest["stages"] if s["device"] == device}
        assert {f"{top}/cpp/main.cpp", f"{top}/cpp/CMakeLists.txt", f"{top}/cpp/edgec_support.h", f"{top}/rankfile",
                f"{top}/run.sh", f"{top}/tvm/lib/libtvm_runtime.so", f"{top}/tvm/lib/libtvm_ffi.so"} | mine <= names
        assert {n for n in names if n.startswith(f"{top}/devices/")} == mine


def test_missing_module_names_rank_and_file(tiny_built, tmp_path) -> None:
    copy = tmp_path / "out"
    shutil.copytree(tiny_built, copy, ignore=shutil.ignore_patterns("build", "packages"))
    (copy / "devices" / "hub" / "stage1.so").unlink()
    manifest = json.loads((copy / "manifest.json").read_text())
    with pytest.raises(RuntimeFailure, match=r"rank 1 \(stage 1 on device 'hub'\).*stage1\.so' is missing"):
        cpp_engine.run(copy, random_inputs(manifest), program=program_path(tiny_built), timeout=60)


def test_dead_peer_ends_the_run(tiny_built, monkeypatch) -> None:
    monkeypatch.setenv("EDGEC_TEST_CRASH_RANK", "2")
    monkeypatch.setenv("EDGEC_TEST_CRASH_FRAME", "1")
    manifest = json.loads((tiny_built / "manifest.json").read_text())
    start = time.monotonic()
    with pytest.raises(RuntimeFailure, match=r"rank 2"):
        cpp_engine.run(tiny_built, random_inputs(manifest), frames=20, timeout=60)
    assert time.monotonic() - start < 30


def test_npy_of_the_wrong_type_is_refused(tiny_built, tmp_path) -> None:
    np.save(tmp_path / "input0.npy", np.zeros((1, 1, 3, 32, 32), np.int64))
    cmd = ["mpirun", "-np", "4", "--oversubscribe", str(program_path(tiny_built)), str(tiny_built), str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=mpi_env(), timeout=60)
    assert done.returncode != 0
    assert "rank 0 (stage 0 on device 'cam')" in done.stderr and "must hold float32" in done.stderr
    assert json.loads((tmp_path / "error-rank0.json").read_text())["rank"] == 0
