"""The emulated cluster on the real kernel: namespaces, shaped veth links, MPI over them, and cleanup.

Needs root and iproute2 (CI runs as root). Every test checks that nothing is left behind: no
namespace, no veth (they live only inside the namespaces; the host's own interfaces are checked
for the cluster's names too), no qdisc, no rank, no state file — also when the run fails or is
terminated.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

import edgec
from edgec.cli import app
from edgec.cluster.netcmd import namespaces, qdisc_kinds
from edgec.runtime.inputs import random_inputs
from edgec.runtime.outputs import CompiledOutput
from edgec.runtime.verify import compare, run_reference
from tiny_cnn import build

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
                                reason="the emulated cluster needs root and iproute2")
GUARD = 600
PLATFORM = """
device cam { arch x86_64 cores 2 }
device hub { arch x86_64 cores 2 }
device box { arch x86_64 cores 2 }
link cam <-> hub { bandwidth 100Mbit latency 2ms }
link hub <-> box { bandwidth 20Mbit }
"""
PLACES = """
place stem .. pool1 on cam.cpu
place res_conv1 .. branch_b2 on hub.cpu
place * on box.cpu
"""


def edgec_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGEC_TEST_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "edgec", *args], env=environ, capture_output=True, text=True,
                          timeout=GUARD)


def leftovers(prefix: str, out: Path | None = None) -> list[str]:
    """Namespaces and host interfaces of the cluster `edgec-<id>`, and ranks of runs on `out`, still there."""
    cluster_id = prefix.removeprefix("edgec-")
    found = [ns for ns in namespaces() if ns.startswith(prefix + "-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line for line in links.splitlines() if f"edgec{cluster_id}" in line]
    if out is not None:
        ranks = subprocess.run(["pgrep", "-af", f"edgec.runtime.mpi_rank {out}"], capture_output=True, text=True)
        found += [line for line in ranks.stdout.splitlines() if "pgrep" not in line]
    return found


def clusters_in(state: Path) -> list[dict]:
    done = edgec_cli("cluster", "status", "--state-dir", str(state), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)["clusters"]


@pytest.fixture(scope="module")
def three_stage(tmp_path_factory) -> Path:
    """tiny_cnn on a 3-stage plan, one stage per device."""
    directory = tmp_path_factory.mktemp("cluster")
    onnx.save(build(), directory / "tiny_cnn.onnx")
    out = directory / "out"
    edgec.compile(directory / "tiny_cnn.onnx", PLATFORM + PLACES, out)
    return out


@pytest.fixture
def state(tmp_path) -> Path:
    directory = tmp_path / "state"
    yield directory
    for cluster in clusters_in(directory) if directory.exists() else []:
        edgec_cli("cluster", "down", cluster["name"], "--state-dir", str(directory))


def test_up_status_down_leaves_nothing(tmp_path, state):
    plan = tmp_path / "p.edge"
    plan.write_text(PLATFORM)
    done = edgec_cli("cluster", "up", str(plan), "--state-dir", str(state), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    made = json.loads(done.stdout)
    name = made["name"]
    assert made["status"] == "up" and {d["device"] for d in made["devices"]} == {"cam", "hub", "box"}
    assert {made["control_namespace"], *(d["namespace"] for d in made["devices"])} <= set(namespaces())
    layout = json.loads((state / name / "state.json").read_text())["layout"]
    for link in layout["links"]:
        for end, interface in (("a", link["a_if"]), ("b", link["b_if"])):
            ns = f"{name}-d-{link[end]}"
            assert qdisc_kinds(ns, interface) == ["tbf"], (ns, interface)
    assert [c["status"] for c in clusters_in(state)] == ["up"]
    done = edgec_cli("cluster", "down", "--state-dir", str(state))
    assert done.returncode == 0 and f"removed cluster {name}" in done.stdout, done.stdout + done.stderr
    assert leftovers(name, three_stage) == [] and clusters_in(state) == []


@pytest.mark.slow
def test_pipeline_over_the_cluster_matches_the_unsplit_model(three_stage, tmp_path, state):
    frames = np.random.default_rng(3).standard_normal((3, 1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "in.npy", frames)
    done = edgec_cli("run", str(three_stage), "--emulate", "--state-dir", str(state), "-n", "6", "--warmup", "1",
                     "-i", str(tmp_path / "in.npy"), "--save-outputs", str(tmp_path / "o.npz"), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    compiled = CompiledOutput.open(three_stage)
    probs = np.load(tmp_path / "o.npz")["probs"]
    for j in range(6):
        expected = run_reference(compiled.reference_model(), {"image": frames[j % 3]}, ["probs"])
        assert compare({"probs": probs[j]}, expected, 1e-4).ok, j
    rows = {(r["src_device"], r["dst_device"]): r for r in report["emulation"]["links"]}
    def boundary(src: int, dst: int) -> int:
        return sum(t.nbytes for t in compiled.manifest.transfers if (t.src, t.dst) == (src, dst))

    assert rows[("cam", "hub")]["boundary_bytes_per_frame"] == boundary(0, 1) > 0
    assert rows[("hub", "box")]["boundary_bytes_per_frame"] == boundary(1, 2) > 0
    for key in (("cam", "hub"), ("hub", "box")):
        row = rows[key]
        assert row["payload_bytes"] == 7 * row["boundary_bytes_per_frame"]
        assert row["payload_bytes"] <= row["wire_bytes"] <= 1.3 * row["payload_bytes"] + 65536, row
    gathered = 6 * int(np.prod(probs.shape[1:])) * 4
    for key in (("box", "hub"), ("hub", "cam")):  # the outputs go back to rank 0 through hub
        assert rows[key]["payload_bytes"] == gathered and rows[key]["wire_bytes"] >= gathered, rows[key]
    assert leftovers(report["emulation"]["cluster"], three_stage) == [] and clusters_in(state) == []


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_and_leaves_nothing(three_stage, state):
    done = edgec_cli("run", str(three_stage), "--emulate", "--state-dir", str(state), "-n", "4",
                     env={"EDGEC_TEST_CRASH_RANK": "1", "EDGEC_TEST_CRASH_HOW": "exit"})
    assert done.returncode == 2, done.stdout + done.stderr
    assert "rank 1" in done.stderr
    name = next(line.split()[2] for line in done.stderr.splitlines() if "up:" in line and "cluster edgec-" in line)
    assert leftovers(name, three_stage) == [] and clusters_in(state) == []


@pytest.mark.slow
def test_sigterm_during_a_run_tears_the_cluster_down(three_stage, state):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGEC_TEST_")}
    environ.update({"EDGEC_TEST_CRASH_RANK": "2", "EDGEC_TEST_CRASH_HOW": "hang"})
    proc = subprocess.Popen([sys.executable, "-m", "edgec", "run", str(three_stage), "--emulate", "--state-dir",
                             str(state), "-n", "4"], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + GUARD
    while time.monotonic() < deadline and not any(c["status"] == "stale" or c["status"] == "up"
                                                  for c in (clusters_in(state) if state.exists() else [])):
        time.sleep(0.2)
    while time.monotonic() < deadline and "mpi_rank" not in subprocess.run(
            ["pgrep", "-af", f"edgec.runtime.mpi_rank {three_stage}"], capture_output=True, text=True).stdout:
        time.sleep(0.2)
    name = clusters_in(state)[0]["name"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=GUARD)
    assert proc.returncode == 130, err
    assert leftovers(name, three_stage) == [] and clusters_in(state) == []


def test_a_cluster_whose_owner_died_is_stale_and_down_removes_it(state):
    script = ("import os, edgec\nfrom edgec.dsl.lower import lower_platform\nfrom edgec.cluster.lifecycle import up\n"
              f"up(lower_platform(edgec.load_plan({PLATFORM!r})), persistent=False, state_dir={str(state)!r})\n"
              "os.kill(os.getpid(), 9)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=GUARD)
    assert done.returncode == -9, done.stderr
    [cluster] = clusters_in(state)
    assert cluster["status"] == "stale" and all(d["present"] for d in cluster["devices"])
    done = edgec_cli("cluster", "down", "--state-dir", str(state))
    assert done.returncode == 0 and "stale" in done.stdout, done.stdout + done.stderr
    assert leftovers(cluster["name"]) == [] and clusters_in(state) == []


def test_refusals_exit_2(three_stage, tmp_path, state, monkeypatch):
    plan = tmp_path / "p.edge"
    plan.write_text(PLATFORM)
    done = edgec_cli("cluster", "up", str(plan), "--state-dir", str(state), env={"PATH": str(tmp_path)})
    assert done.returncode == 2 and "needs 'ip' and 'tc'" in done.stderr and "iproute2" in done.stderr
    lonely = tmp_path / "lonely.edge"
    lonely.write_text(PLATFORM.replace("link hub <-> box { bandwidth 20Mbit }", ""))
    done = edgec_cli("run", str(three_stage), "--emulate", "--cluster", str(lonely), "--state-dir", str(state))
    assert done.returncode == 2 and "'hub' and 'box' exchange data but no chain of links joins them" in done.stderr
    done = edgec_cli("run", str(three_stage), "--emulate", "--cluster", "nope", "--state-dir", str(state))
    assert done.returncode == 2 and "neither a plan file nor a cluster" in done.stderr
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(app, ["cluster", "up", str(plan), "--state-dir", str(state)])
    assert result.exit_code == 2 and "needs root" in result.output
    assert clusters_in(state) == []


@pytest.mark.slow
def test_two_stages_on_one_device_and_a_transfer_routed_through_another(tmp_path, state):
    """The built-in example: cam runs stages 0 and 2, and stage 2's tensor for box has no direct link, so it
    crosses cam → hub → box; both links must carry it, and the outputs still match the unsplit model."""
    onnx.save(build(), tmp_path / "tiny_cnn.onnx")
    out = tmp_path / "out"
    plan = (Path(__file__).resolve().parents[2] / "examples" / "tiny_cnn.edge").read_text()
    edgec.compile(tmp_path / "tiny_cnn.onnx", plan, out)
    done = edgec_cli("run", str(out), "--emulate", "--state-dir", str(state), "-n", "4", "--warmup", "0",
                     "--save-outputs", str(tmp_path / "o.npy"), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout)
    compiled = CompiledOutput.open(out)
    devices = [s.device for s in compiled.stages]
    routed = [t for t in compiled.manifest.transfers if (devices[t.src], devices[t.dst]) == ("cam", "box")]
    assert routed
    rows = {(r["src_device"], r["dst_device"]): r for r in report["emulation"]["links"]}
    for key in (("cam", "hub"), ("hub", "box")):
        assert set(t.tensor for t in routed) <= set(rows[key]["tensors"])
        assert rows[key]["wire_bytes"] >= rows[key]["payload_bytes"] > 0
    probs = np.load(tmp_path / "o.npy")
    expected = run_reference(compiled.reference_model(), random_inputs(compiled.manifest, 0), ["probs"])
    assert all(compare({"probs": probs[j]}, expected, 1e-4).ok for j in range(4))
    assert leftovers(report["emulation"]["cluster"], out) == [] and clusters_in(state) == []
