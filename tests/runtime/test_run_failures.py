"""A failing distributed run ends with one message naming the rank, stage and cause; a slow start is no hang.

Exit code 2, never a hang, never a rank left running. Ranks are made to fail through the test
hooks in `edgec.runtime.mpi_rank` (EDGEC_TEST_CRASH_RANK/FRAME/HOW, EDGEC_TEST_SLOW_START). No
test depends on how fast this machine starts processes: the stall clock starts only once every
rank has reported ready, and the tests assert on what was reported, never on elapsed seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from edgec import UsageError
from edgec.backends.manifest import StageEntry
from edgec.cli import app
from edgec.runtime import launcher
from edgec.runtime.failure import RuntimeFailure, stopped
from edgec.runtime.outputs import CompiledOutput, random_inputs
from edgec.runtime.progress import COMPUTE, CONNECT, DONE, READY, SETUP, WAIT_INPUTS, WAIT_SENDS, Limits, RunWatch

runner = CliRunner()
HANG_GUARD = 900


def edgec_run(out, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`edgec run` in a real process; the subprocess timeout only guards the test suite against a hang."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EDGEC_TEST_")}
    environ.update(env or {})
    done = subprocess.run([sys.executable, "-m", "edgec", "run", str(out), *args], env=environ,
                          capture_output=True, text=True, timeout=HANG_GUARD)
    return done.returncode, done.stderr


def crash(rank: int, frame: int, how: str) -> dict[str, str]:
    return {"EDGEC_TEST_CRASH_RANK": str(rank), "EDGEC_TEST_CRASH_FRAME": str(frame), "EDGEC_TEST_CRASH_HOW": how}


def test_a_rank_that_dies_mid_run_is_named(tiny_out, leftover_ranks):
    rc, err = edgec_run(tiny_out, "--frames", "50", env=crash(1, 3, "exit"))
    assert rc == 2, err
    assert "rank 1 (stage 1 on device 'hub') exited with code 17" in err, err
    assert "Traceback" not in err
    assert leftover_ranks(tiny_out) == []


def test_a_rank_that_raises_is_named_with_its_cause_and_frame(tiny_out, leftover_ranks):
    rc, err = edgec_run(tiny_out, "--frames", "50", env=crash(2, 4, "raise"))
    assert rc == 2, err
    assert "rank 2 (stage 2 on device 'cam') failed at frame 4: RuntimeError: injected failure" in err, err
    assert "Traceback" not in err
    assert leftover_ranks(tiny_out) == []


@pytest.mark.slow
def test_a_stuck_rank_is_stopped_once_no_frame_completes_and_blamed(tiny_out, leftover_ranks):
    rc, err = edgec_run(tiny_out, "--frames", "50", "--stall-timeout", "3", env=crash(1, 3, "hang"))
    assert rc == 2, err
    assert "no frame completed on any rank for 3 s (--stall-timeout) and the run was stopped: " \
           "rank 1 (stage 1 on device 'hub') holds the oldest frame (3) and was computing it;" in err, err
    assert "rank 3 (stage 3 on device 'box') was waiting for its inputs of frame 3" in err, err
    assert "rank 2 (stage 2 on device 'cam') was waiting for its inputs of frame 3" in err, err
    assert "had not started" not in err and "Traceback" not in err
    assert leftover_ranks(tiny_out) == []


@pytest.mark.slow
def test_a_slow_start_is_not_a_hang(tiny_out, leftover_ranks):
    """Rank 2 takes 6 s longer to start than the 2 s stall limit: the run still succeeds."""
    rc, err = edgec_run(tiny_out, "--frames", "20", "--json", "--stall-timeout", "2",
                        env={"EDGEC_TEST_SLOW_START": "2:6"})
    assert rc == 0, err
    assert leftover_ranks(tiny_out) == []


@pytest.mark.slow
def test_a_rank_that_never_gets_ready_is_stopped_at_the_startup_timeout(tiny_out, leftover_ranks):
    rc, err = edgec_run(tiny_out, "--frames", "5", "--startup-timeout", "5", env={"EDGEC_TEST_SLOW_START": "1:inf"})
    assert rc == 2, err
    message = " ".join(err.split())
    assert "the ranks were not all ready within 5 s (--startup-timeout) and the run was stopped; not ready: " in message
    not_ready = message.split("not ready: ", 1)[1].split("; ready: ", 1)[0]
    assert re.search(r"rank 1 \(stage 1 on device 'hub'\) (had not started|was starting up)", not_ready), message
    assert "--stall-timeout" not in message and "Traceback" not in err
    assert leftover_ranks(tiny_out) == []


STAGES = [StageEntry(rank, device, "cpu", None, 1, None, None, f"stage{rank}.onnx")
          for rank, device in enumerate(("cam", "hub", "cam", "box"))]


def test_the_stall_clock_starts_only_when_every_rank_is_ready():
    """The watch on a made-up clock: 1000 s of start-up is no stall; a stall is caught once running."""
    watch = RunWatch(Limits(overall=None, startup=2000.0, stall=5.0), start=0.0)
    starting = [None, (-1, SETUP), (-1, READY), (-1, SETUP)]
    for now in range(0, 1000, 10):
        assert watch.observe(float(now), starting) is None
    running = [(2, WAIT_SENDS), (1, COMPUTE), (1, WAIT_INPUTS), (0, WAIT_INPUTS)]
    assert watch.observe(1000.0, [(-1, READY)] * 4) is None
    assert watch.observe(1001.0, running) is None
    assert watch.observe(1005.5, running) is None
    stop = watch.observe(1006.5, running)
    assert stop is not None and stop.reason == "stall" and stop.limit == 5.0
    message = stopped(stop, STAGES).message
    assert "rank 1 (stage 1 on device 'hub') holds the oldest frame (1) and was computing it" in message
    assert message.index("rank 3 (stage 3 on device 'box') was waiting") > message.index("holds the oldest")


def test_frames_completing_anywhere_keep_a_run_alive():
    watch = RunWatch(Limits(overall=None, startup=10.0, stall=5.0), start=0.0)
    assert watch.observe(1.0, [(-1, READY)] * 2) is None
    for step in range(1, 50):
        states = [(step, WAIT_SENDS), (step // 4, COMPUTE)]
        assert watch.observe(1.0 + 4 * step, states) is None
    done = [(9, DONE), (9, DONE)]
    assert watch.observe(300.0, done) is None
    assert watch.observe(900.0, done) is None


def test_ranks_all_stuck_in_their_first_collective_stop_at_the_stall_limit():
    """MPI wire-up that never completes (every rank inside the first collective) is caught at the stall
    limit, long before the start-up limit; one rank still loading keeps the start-up clock alone."""
    watch = RunWatch(Limits(overall=None, startup=600.0, stall=5.0), start=0.0)
    assert watch.observe(1.0, [(-1, CONNECT), (-1, SETUP)]) is None
    assert watch.observe(100.0, [(-1, CONNECT), (-1, SETUP)]) is None
    assert watch.observe(101.0, [(-1, CONNECT), (-1, CONNECT)]) is None
    assert watch.observe(105.0, [(-1, CONNECT), (-1, CONNECT)]) is None
    stop = watch.observe(106.5, [(-1, CONNECT), (-1, CONNECT)])
    assert stop is not None and stop.reason == "connect" and stop.limit == 5.0
    assert "MPI did not connect them within 5 s" in stopped(stop, STAGES[:2]).message
    assert RunWatch(Limits(startup=600.0, stall=5.0), 0.0).observe(50.0, [(-1, CONNECT), (-1, READY)]) is None


def test_startup_and_overall_limits():
    watch = RunWatch(Limits(overall=None, startup=10.0, stall=5.0), start=0.0)
    assert watch.observe(9.0, [(-1, READY), None]) is None
    stop = watch.observe(10.5, [(-1, READY), (-1, SETUP)])
    assert stop is not None and stop.reason == "startup"
    message = stopped(stop, STAGES[:2]).message
    assert "not ready: rank 1 (stage 1 on device 'hub') was starting up; ready: rank 0 (stage 0 on device 'cam')" \
        in message
    overall = RunWatch(Limits(overall=30.0, startup=None, stall=None), start=0.0)
    assert overall.observe(29.0, [None]) is None
    stop = overall.observe(31.0, [(4, COMPUTE)])
    assert stop is not None and stop.reason == "timeout"
    assert "did not finish within 30 s (--timeout)" in stopped(stop, STAGES[:1]).message


def test_a_pipeline_waiting_on_itself_blames_the_oldest_frame():
    watch = RunWatch(Limits(stall=1.0), start=0.0)
    states = [(7, WAIT_SENDS), (4, WAIT_SENDS), (4, WAIT_INPUTS), (3, WAIT_INPUTS)]
    watch.observe(0.0, states)
    stop = watch.observe(2.0, states)
    assert stop is not None
    assert "rank 1 (stage 1 on device 'hub') holds the oldest frame (2) and was waiting for consumers" in \
        stopped(stop, STAGES).message


@pytest.mark.parametrize("shape, dtype", [((1, 3, 31, 32), np.float32), ((1, 3, 32, 32), np.float64)])
def test_a_wrong_input_is_refused_before_anything_starts(tiny_out, tmp_path, shape, dtype):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros(shape, dtype))
    result = runner.invoke(app, ["run", str(tiny_out), "--input", str(bad)])
    assert result.exit_code == 2
    got = f"{np.dtype(dtype)}{list(shape)}"
    assert "input 'image' must be float32[1, 3, 32, 32]" in result.output and f"got {got}" in result.output


def test_a_wrong_input_that_reaches_a_rank_is_reported_by_that_rank(tiny_out, monkeypatch, leftover_ranks):
    """Ranks check their inputs too (a run directory can be written by other tools)."""
    monkeypatch.setattr(launcher, "stack_feeds", lambda manifest, feeds: {"image": np.zeros((1, 2, 2), np.float32)})
    with pytest.raises(RuntimeFailure) as caught:
        launcher.run(tiny_out, {}, frames=2)
    message = caught.value.format()
    assert "rank 0 (stage 0 on device 'cam') failed: input 'image' must be float32[frames, 1, 3, 32, 32], " \
           "got float32[1, 2, 2]" in message
    assert leftover_ranks(tiny_out) == []


def test_usage_errors_exit_2(tiny_out, tmp_path):
    cases = [
        (["--frames", "0"], "--frames must be at least 1"),
        (["--timeout", "0"], "--timeout must be positive"),
        (["--startup-timeout", "0"], "--startup-timeout must be positive"),
        (["--stall-timeout", "-1"], "--stall-timeout must be positive"),
        (["--save-outputs", str(tmp_path / "y.txt")], "must end in .npy or .npz"),
        (["--save-outputs", str(tmp_path / "missing" / "y.npy")], "parent directory does not exist"),
        (["--hosts", str(tmp_path / "nohosts")], "does not exist"),
        (["--random", "--input", str(tmp_path / "x.npy")], "either --input or --random"),
    ]
    for args, text in cases:
        result = runner.invoke(app, ["run", str(tiny_out), *args])
        assert result.exit_code == 2, (args, result.output)
        assert text in result.output, (args, result.output)
    result = runner.invoke(app, ["run", str(tmp_path)])
    assert result.exit_code == 2 and "not an edgec output directory" in result.output


def test_input_stacks_are_checked_against_the_manifest(tiny_out):
    manifest = CompiledOutput.open(tiny_out).manifest
    with pytest.raises(UsageError, match="not an input of the model"):
        launcher.stack_feeds(manifest, {**random_inputs(manifest), "other": np.zeros(1)})
    stacks = launcher.stack_feeds(manifest, {"image": np.zeros((4, 1, 3, 32, 32), np.float32)})
    assert stacks["image"].shape == (4, 1, 3, 32, 32)
    assert launcher.stack_feeds(manifest, random_inputs(manifest))["image"].shape == (1, 1, 3, 32, 32)
