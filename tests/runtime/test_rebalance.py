"""`edgec run --rebalance`: the rule, the re-split, the refusals, and a real switch under mpirun that keeps every frame.

The switch test runs a 4-stage chain with one rank made 50x slower (`--slow`), so the rule must
fire; the test hook EDGEC_TEST_REBALANCE_HOLD makes rank 0 wait at one decision point for the
launcher's candidate, so the switch happens however fast this machine runs the frames. Inputs
are a stack of distinct frames, so a lost or reordered frame would show in the outputs.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec import UsageError
from edgec.runtime.rebalance import Stage, imbalanced, window_means
from edgec.runtime.slow import parse_slow, slowdowns

DEVICES = "".join(f"device d{i} {{ arch x86_64 cores 1 }}\n" for i in range(5))
PLACES = "place c0 .. r1 on d0\nplace c2 .. r3 on d1\nplace c4 .. r5 on d2\nplace * on d3\n"


def chain_model(n: int = 8, c: int = 8, hw: int = 8) -> onnx.ModelProto:
    """x → n × (3x3 Conv c→c, Relu): nodes c0, r0, c1, r1, …"""
    rng = np.random.default_rng(0)
    nodes, inits, prev = [], [], "x"
    for i in range(n):
        inits.append(numpy_helper.from_array((rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32),
                                             f"w{i}"))
        nodes.append(helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}_y"], name=f"c{i}", pads=[1] * 4))
        nodes.append(helper.make_node("Relu", [f"c{i}_y"], [f"r{i}"], name=f"r{i}"))
        prev = f"r{i}"
    shape = [1, c, hw, hw]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """(model path, compiled 4-stage output, the output directory's parent)."""
    directory = tmp_path_factory.mktemp("rebalance")
    model = directory / "chain.onnx"
    onnx.save(chain_model(), model)
    out = directory / "out"
    edgec.compile(model, DEVICES + PLACES, out)
    return model, out, directory


def fake_profile(names: list[str]) -> dict:
    """1 ms per Conv, 0.2 ms per Relu."""
    seconds = [1e-3 if n.startswith("c") else 2e-4 for n in names]
    return {"format": "edgec-profile", "version": 1, "nodes": names, "threads": {"1": {"node_seconds": seconds}}}


def test_the_rule_fires_only_when_the_slowest_stage_exceeds_the_mean_by_the_margin():
    assert imbalanced([1.0, 3.0, 1.0, 1.0], 0.2)
    assert imbalanced([1.0, 1.4, 1.0, 1.0], 0.2)  # 1.4 > 1.2 x 1.1
    assert not imbalanced([1.0, 1.25, 1.0, 1.0], 0.2)  # 1.25 < 1.2 x 1.0625
    assert not imbalanced([1.0, 1.4, 1.0, 1.0], 0.5)
    assert not imbalanced([5.0], 0.2)


def test_window_means_wait_for_a_window_every_rank_has_finished():
    times = [np.full(40, np.nan) for _ in range(3)]
    for t, done in zip(times, (30, 25, 20)):
        t[:done] = np.arange(done, dtype=float)
    assert window_means(times, 2, 20) is None  # the slowest rank has 18 frames from 2
    means, hi = window_means(times, 0, 20)
    assert hi == 20 and np.allclose(means, np.mean(np.arange(20.0)))


def test_a_slow_stage_gives_its_layers_to_the_others(chain):
    from edgec.explorer.session import load
    from edgec.runtime.outputs import CompiledOutput
    from edgec.runtime.rebalance import Replanner, stage_ranges

    model, out, _ = chain
    loaded = load(model, DEVICES + PLACES)
    planner = Replanner(loaded, fake_profile(loaded.names))
    stages = stage_ranges(CompiledOutput.open(out).manifest, loaded.names)
    assert [(s.first, s.last, s.device) for s in stages] == [(0, 3, "d0"), (4, 7, "d1"), (8, 11, "d2"), (12, 15, "d3")]
    proposal = planner.replan(stages, [2.4e-3, 24e-3, 2.4e-3, 2.4e-3])  # rank 1 is 10x slower than the profile says
    assert proposal.factors == pytest.approx((1.0, 10.0, 1.0, 1.0))
    new = proposal.stages
    assert [s.device for s in new] == ["d0", "d1", "d2", "d3"]
    assert new[0].first == 0 and new[-1].last == 15 and all(a.last + 1 == b.first for a, b in zip(new, new[1:]))
    seconds = np.asarray(fake_profile(loaded.names)["threads"]["1"]["node_seconds"])
    factors = np.asarray(proposal.factors)

    def bottleneck(cuts) -> float:
        bounds = [0, *cuts, 16]
        return max(factors[k] * seconds[bounds[k]:bounds[k + 1]].sum() for k in range(4))

    best = min(bottleneck(cuts) for cuts in itertools.combinations(range(1, 16), 3))
    assert proposal.predicted_s == pytest.approx(best, abs=1e-6)  # the exact optimum over every 3-cut re-split
    assert bottleneck([s.first for s in new[1:]]) == pytest.approx(best, abs=1e-6)
    assert new[1].last - new[1].first < 3 and proposal.gain > 1.0
    text = planner.plan_text(new, ["test"])
    assert text.count("place ") == 4 and "model " in text


def test_a_plan_that_measures_slower_than_an_earlier_one_is_switched_back(chain, tmp_path):
    from edgec.explorer.session import load
    from edgec.runtime.outputs import CompiledOutput
    from edgec.runtime.rebalance import Replanner, stage_ranges
    from edgec.runtime.rebalance_rank import compute_file, finished_file, plan_dir, ready_file
    from edgec.runtime.rebalance_run import Rebalancer

    model, out, _ = chain
    loaded = load(model, DEVICES + PLACES)
    stages = stage_ranges(CompiledOutput.open(out).manifest, loaded.names)
    board = Rebalancer(Replanner(loaded, fake_profile(loaded.names)), stages, out, tmp_path, 4, 64, 0, 8, 0.2)
    board.plans[0]["measured_bottleneck_ms"] = 2.0
    board.plans.append({"plan": 1, "stages": board.plans[0]["stages"], "_stages": stages, "text": "plan 1"})
    board.current, board.epoch_start = 1, 16
    for rank in range(4):
        times = np.full(64, np.nan)
        times[:40] = 5e-3 if rank == 1 else 1e-3  # plan 1's slowest stage: 5 ms, worse than plan 0's 2 ms
        np.array(times).tofile(compute_file(tmp_path, rank))
    board.step()
    assert ready_file(tmp_path, 2).exists() and plan_dir(tmp_path, 2).resolve() == out.resolve()
    assert board.plans[2]["returns_to"] == 0 and board.finished.startswith("returned to plan 0")
    assert board.plans[1]["measured_bottleneck_ms"] == 5.0
    board.stop()
    assert finished_file(tmp_path).exists()


def test_slow_specs_are_checked():
    assert parse_slow("2:3", 4).factor == 3.0
    assert slowdowns(["0:1.5", "3:2"], 4) == {0: 1.5, 3: 2.0}
    for bad, why in (("2", "not RANK:FACTOR"), ("x:3", "not RANK:FACTOR"), ("2:fast", "must be a number"),
                     ("2:0.5", ">= 1"), ("2:inf", ">= 1"), ("4:2", "0..3")):
        with pytest.raises(UsageError, match=why):
            parse_slow(bad, 4)
    with pytest.raises(UsageError, match="given twice"):
        slowdowns(["1:2", "1:3"], 4)


def edgec_run(out: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGEC_TEST_")}
    environ.update(env or {})
    return subprocess.run([sys.executable, "-m", "edgec", "run", str(out), *args], env=environ, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.parametrize("args, message", [
    (["--rebalance", "--window", "7"], "--window 7: give an even number of frames, at least 8"),
    (["--rebalance", "--margin", "0"], "--margin 0.0: give a positive fraction"),
    (["--window", "16"], "--window and --margin need --rebalance"),
    (["--slow", "9:3"], "--slow '9:3': RANK must be a rank of this output, 0..3"),
    (["--slow", "1:0.5"], "FACTOR must be a finite number >= 1"),
    (["--rebalance", "--straggler", "1:0.01"], "--rebalance does not combine with --straggler"),
])
def test_bad_options_are_refused_with_one_message(chain, args, message):
    _, out, _ = chain
    done = edgec_run(out, "-n", "4", *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_engines_and_faults_it_cannot_switch_are_refused():
    from edgec.run_rebalance import rebalance_options

    assert rebalance_options(True, None, None, engine="onnxruntime", emulate=False, faults={}) == {"window": 32,
                                                                                                   "margin": 0.2}
    assert rebalance_options(False, None, None, engine="tvm", emulate=True, faults={"rate": 5.0}) is None
    for kwargs, message in (({"engine": "tvm", "emulate": False, "faults": {}}, "onnxruntime engine only"),
                            ({"engine": "onnxruntime", "emulate": True, "faults": {}}, "emulated cluster"),
                            ({"engine": "onnxruntime", "emulate": False, "faults": {"rate": 5.0, "kills": ("1@3",)}},
                             "does not combine with --rate, --kill")):
        with pytest.raises(UsageError, match=message):
            rebalance_options(True, None, None, **kwargs)


def test_outputs_it_cannot_rebalance_are_refused(chain, tmp_path):
    model, _, _ = chain
    replicated = tmp_path / "replicated"
    edgec.compile(model, DEVICES + PLACES + "replicate c2 .. r3 on d1, d4\n", replicated)
    done = edgec_run(replicated, "-n", "4", "--rebalance")
    assert done.returncode == 2 and "only plain pipelines are rebalanced" in done.stderr, done.stderr
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(model.read_bytes())
    changed = tmp_path / "changed"
    edgec.compile(copy, DEVICES + PLACES, changed)
    onnx.save(chain_model(n=8, c=8, hw=4), copy)
    done = edgec_run(changed, "-n", "4", "--rebalance")
    assert done.returncode == 2 and "changed since the output was compiled" in done.stderr, done.stderr
    copy.unlink()
    done = edgec_run(changed, "-n", "4", "--rebalance")
    assert done.returncode == 2 and "is gone" in done.stderr, done.stderr
    (tmp_path / "replicated.rebalanced.edge").write_text("# my own notes\n")
    done = edgec_run(replicated, "-n", "4", "--rebalance")
    assert done.returncode == 2 and "exists and edgec did not write it" in done.stderr, done.stderr
    assert (tmp_path / "replicated.rebalanced.edge").read_text() == "# my own notes\n"


@pytest.mark.slow
def test_a_switch_under_mpirun_keeps_every_frame_in_order(chain, monkeypatch):
    from edgec.runtime.outputs import CompiledOutput
    from edgec.runtime.rebalance_run import improved_plan_path, run_rebalanced

    model, out, directory = chain
    rng = np.random.default_rng(1)
    stack = rng.standard_normal((7, 1, 8, 8, 8)).astype(np.float32)
    monkeypatch.setenv("EDGEC_TEST_REBALANCE_HOLD", "48")
    result = run_rebalanced(out, {"x": stack}, frames=110, warmup=2, window=16, slow=("1:50",), keep_outputs=True,
                            workdir=directory)
    section = result.report["rebalance"]
    assert [s["frame"] for s in section["switches"]][:1] == [48], section
    first = section["switches"][0]
    assert first["old_stages"][1]["nodes"] == 4 and first["new_stages"][1]["nodes"] < 4
    assert first["before_fps"] and first["after_fps"] and first["pause_s"] > 0
    got = result.outputs["r7"]
    assert got.shape == (110, 1, 8, 8, 8)
    reference = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    want = np.stack([reference.run(None, {"x": stack[(f - 2) % 7]})[0] for f in range(2, 112)])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    plan = improved_plan_path(out)
    assert result.report["rebalanced_plan"] == str(plan) and plan.read_text().startswith("# edgec run --rebalance")
    recompiled = directory / "recompiled"
    edgec.compile(model, plan.read_text(), recompiled)
    assert [s.device for s in CompiledOutput.open(recompiled).stages] == ["d0", "d1", "d2", "d3"]
    left = subprocess.run(["pgrep", "-af", f"edgec.runtime.rebalance_rank {out}"], capture_output=True, text=True)
    assert [line for line in left.stdout.splitlines() if "pgrep" not in line] == []
