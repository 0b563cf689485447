"""A failing distributed run ends within its time limit with one message naming the rank, stage and cause.

Exit code 2, never a hang, never a rank left running. Ranks are made to fail through the test
hook in `edgec.runtime.mpi_rank` (EDGEC_TEST_CRASH_RANK/FRAME/HOW).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from edgec import UsageError
from edgec.cli import app
from edgec.runtime import launcher
from edgec.runtime.failure import RuntimeFailure
from edgec.runtime.outputs import CompiledOutput, random_inputs

runner = CliRunner()


def edgec_run(out, *args: str, crash: dict[str, str] | None = None, timeout: float = 120) -> tuple[int, str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEC_TEST_")}
    env.update(crash or {})
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "edgec", "run", str(out), *args], env=env,
                          capture_output=True, text=True, timeout=timeout)
    return done.returncode, done.stderr, time.monotonic() - start


def crash(rank: int, frame: int, how: str) -> dict[str, str]:
    return {"EDGEC_TEST_CRASH_RANK": str(rank), "EDGEC_TEST_CRASH_FRAME": str(frame), "EDGEC_TEST_CRASH_HOW": how}


def test_a_rank_that_dies_mid_run_is_named(tiny_out, leftover_ranks):
    rc, err, seconds = edgec_run(tiny_out, "--frames", "50", "--timeout", "30", crash=crash(1, 3, "exit"))
    assert rc == 2, err
    assert "rank 1 (stage 1 on device 'hub') exited with code 17" in err, err
    assert "Traceback" not in err and seconds < 30
    assert leftover_ranks(tiny_out) == []


def test_a_rank_that_raises_is_named_with_its_cause_and_frame(tiny_out, leftover_ranks):
    rc, err, seconds = edgec_run(tiny_out, "--frames", "50", "--timeout", "30", crash=crash(2, 4, "raise"))
    assert rc == 2, err
    assert "rank 2 (stage 2 on device 'cam') failed at frame 4: RuntimeError: injected failure" in err, err
    assert "Traceback" not in err and seconds < 30
    assert leftover_ranks(tiny_out) == []


@pytest.mark.slow
def test_a_stuck_rank_is_stopped_at_the_timeout_and_blamed(tiny_out, leftover_ranks):
    rc, err, seconds = edgec_run(tiny_out, "--frames", "50", "--timeout", "8", crash=crash(1, 3, "hang"))
    assert rc == 2, err
    assert "did not finish within 8 s" in err, err
    assert "stopped: rank 1 (stage 1 on device 'hub') was computing frame 3;" in err, err
    assert "rank 3 (stage 3 on device 'box') was waiting for its inputs of frame 3" in err, err
    assert seconds < 8 + 10
    assert leftover_ranks(tiny_out) == []


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
        launcher.run(tiny_out, {}, frames=2, timeout=30)
    message = caught.value.format()
    assert "rank 0 (stage 0 on device 'cam') failed: input 'image' must be float32[frames, 1, 3, 32, 32], " \
           "got float32[1, 2, 2]" in message
    assert leftover_ranks(tiny_out) == []


def test_usage_errors_exit_2(tiny_out, tmp_path):
    cases = [
        (["--frames", "0"], "--frames must be at least 1"),
        (["--timeout", "0"], "--timeout must be positive"),
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
