"""A rank SIGKILLed mid-run (`edgec run --kill RANK@FRAME`): survived under ULFM when it only computes coded rows,
otherwise one clear message.

The survival tests start the real ULFM Open MPI (`edgec fetch-runtime ulfm`, run by `make setup`) on tiny coded
layers (an input rank, 4 parts, R parities, the merge) and compare every frame with the unsplit model in
onnxruntime; the failure tests run on the default Open MPI too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent.parent / "passes" / "cdc"))

import edgec  # noqa: E402
from cdc_helpers import DEVICES  # noqa: E402
from edgec.cli import app  # noqa: E402
from edgec.compiler.diagnostics import UsageError  # noqa: E402
from edgec.runtime.failure import RuntimeFailure  # noqa: E402
from edgec.runtime.fault_model import (  # noqa: E402
    Kill, live_states, not_survivable, parse_kills, render_losses, survivable_ranks, too_many,
)
from edgec.runtime.launcher import run  # noqa: E402
from edgec.runtime.outputs import CompiledOutput  # noqa: E402
from edgec.runtime.progress import COMPUTE, DONE, Limits, RunWatch, open_progress  # noqa: E402
from edgec.runtime.ulfm_runtime import find_ulfm  # noqa: E402
from graphs import Net  # noqa: E402

runner = CliRunner()
FRAMES, WARMUP = 20, 1
needs_ulfm = pytest.mark.skipif(find_ulfm() is None,
                                reason="the ULFM Open MPI is not installed: edgec fetch-runtime ulfm")


def coded_net(conv: bool):
    """x -> Relu (the input rank) -> Gemm 6 -> 12 (or a 3x3 Conv 3 -> 8), the layer split in 4 and coded."""
    net = Net({"x": [1, 3, 6, 5] if conv else [2, 6]})
    net.op("Relu", "pre", ["x"])
    if conv:
        net.op("Conv", "fc", ["pre", net.weight("w", 8, 3, 3, 3), net.weight("b", 8)], pads=[1] * 4)
    else:
        net.op("Gemm", "fc", ["pre", net.weight("w", 12, 6), net.weight("b", 12)], transB=1)
    return net.model(["fc"])


@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """(model, output) with ranks 0 input, 1-4 parts, 5.. parities, then the merge (on d0)."""
    directory, made = tmp_path_factory.mktemp("kill"), {}

    def make(parity: int = 1, conv: bool = False):
        if (parity, conv) not in made:
            targets = ", ".join(f"d{5 + j}" for j in range(parity))
            text = (DEVICES + f"place * on d0\nsplit fc by {'filter' if conv else 'output'} into 4 on d1, d2, d3, d4\n"
                    f"cdc fc parity {parity} on {targets}\n")
            out = directory / f"r{parity}{'conv' if conv else ''}"
            edgec.compile(coded_net(conv), text, out)
            made[(parity, conv)] = (coded_net(conv), out)
        return made[(parity, conv)]

    return make


def frames_for(model, count: int = 4) -> np.ndarray:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(3).standard_normal((count, *shape)).astype(np.float32)


def expected(model, frames: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString())
    return np.stack([session.run(None, {"x": frame})[0] for frame in frames])[np.arange(FRAMES) % len(frames)]


def test_which_ranks_a_run_can_lose(coded):
    manifest = CompiledOutput.open(coded(1)[1]).manifest
    assert survivable_ranks(manifest) == {1, 2, 3, 4, 5}
    assert "rank 0" in not_survivable(manifest, 0) and "merge" in not_survivable(manifest, 6)
    assert too_many(manifest, {2}) is None and "can rebuild at most 1" in too_many(manifest, {1, 5})
    assert too_many(CompiledOutput.open(coded(2)[1]).manifest, {1, 3}) is None


def test_kill_specs_are_checked(coded):
    manifest = CompiledOutput.open(coded(1)[1]).manifest
    assert parse_kills(["2@5", "5@0"], manifest, 21) == (Kill(2, 5), Kill(5, 0))
    for bad, says in (("2", "not a kill spec"), ("x@1", "not a kill spec"), ("2@-1", "not a kill spec"),
                      ("7@1", "RANK must be a rank"), ("2@21", "FRAME must be below")):
        with pytest.raises(UsageError, match=says):
            parse_kills([bad], manifest, 21)
    with pytest.raises(UsageError, match="twice"):
        parse_kills(["2@1", "2@3"], manifest, 21)


def test_a_killed_rank_does_not_stall_the_watch(tmp_path):
    """Its progress stops for good at the kill; the watch counts it done, so the survivors finishing is no stall."""
    for rank, state in enumerate(((9, DONE), (4, COMPUTE))):
        open_progress(tmp_path, rank)[:] = state
    (tmp_path / "killed-rank1.json").write_text(json.dumps({"rank": 1, "frame": 4, "time": 0.0}))
    states = live_states(tmp_path, 2)
    assert states == [(9, DONE), (4, DONE)]
    watch = RunWatch(Limits(stall=1.0), 0.0)
    assert watch.observe(0.0, states) is None and watch.observe(100.0, states) is None


@needs_ulfm
@pytest.mark.parametrize("conv, parity, kills", [
    (False, 1, ("2@5",)),
    pytest.param(True, 1, ("3@5",), marks=pytest.mark.slow),
    pytest.param(False, 2, ("1@4", "3@9"), marks=pytest.mark.slow),
    pytest.param(False, 1, ("5@5",), marks=pytest.mark.slow),
])
def test_a_killed_coded_rank_is_survived_with_every_frame_exact(coded, conv, parity, kills, leftover_ranks):
    model, out = coded(parity, conv)
    frames = frames_for(model)
    result = run(out, {"x": frames}, frames=FRAMES, warmup=WARMUP, keep_outputs=True, kills=kills)
    np.testing.assert_allclose(result.outputs["fc"], expected(model, frames), rtol=1e-4, atol=1e-5)
    report = result.report
    assert "Open MPI v5" in report["mpi_library"] and report["frames_lost"] == 0
    killed = {int(k.split("@")[0]): int(k.split("@")[1]) for k in kills}
    assert {lost["rank"]: lost["frame"] for lost in report["lost_ranks"]} == killed
    assert all(lost["device"] == f"d{lost['rank']}" for lost in report["lost_ranks"])
    assert "frames lost: 0" in render_losses(report)
    recovered = report["cdc"]["parts_recovered_by_rank"]
    for rank, frame in killed.items():
        if rank <= 4:
            assert recovered[str(rank)] >= FRAMES + WARMUP - frame - 1
    assert leftover_ranks(out) == []


@needs_ulfm
@pytest.mark.slow
def test_a_part_lost_without_kill_is_survived_too(coded, monkeypatch, leftover_ranks):
    """A coded output runs on ULFM whenever it is installed, so a part that dies unannounced (SIGKILL from the test
    hook, no kill record) is rebuilt like a killed one; the report names it, with no kill frame."""
    model, out = coded(1)
    frames = frames_for(model)
    for name, value in (("RANK", "3"), ("FRAME", "6"), ("HOW", "kill")):
        monkeypatch.setenv(f"EDGEC_TEST_CRASH_{name}", value)
    result = run(out, {"x": frames}, frames=FRAMES, warmup=WARMUP, keep_outputs=True)
    np.testing.assert_allclose(result.outputs["fc"], expected(model, frames), rtol=1e-4, atol=1e-5)
    (lost,) = result.report["lost_ranks"]
    assert lost["rank"] == 3 and lost["frame"] is None and lost["detected_by"] == 6
    assert result.report["frames_lost"] == 0
    assert "rank 3 (stage 3 on device 'd3') died (no --kill), noticed by rank 6" in render_losses(result.report)
    assert leftover_ranks(out) == []


@needs_ulfm
def test_a_killed_merge_ends_the_run_with_the_kill_named(coded, leftover_ranks):
    model, out = coded(1)
    with pytest.raises(RuntimeFailure, match=r"rank 6 \(stage 6 on device 'd0'\) was killed by signal 9 at frame 3 "
                                             r"\(--kill 6@3\); the run cannot survive that: it is the merge"):
        run(out, {"x": frames_for(model)}, frames=FRAMES, warmup=WARMUP, kills=("6@3",))
    assert leftover_ranks(out) == []


def test_a_kill_without_cdc_exits_2_naming_the_rank(tiny_out, leftover_ranks):
    result = runner.invoke(app, ["run", str(tiny_out), "-n", "10", "--kill", "1@4"])
    assert result.exit_code == 2
    assert "rank 1 (stage 1 on device" in result.output and "killed by signal 9 at frame 4" in result.output
    assert "no coded layer" in result.output
    assert leftover_ranks(tiny_out) == []


def test_kill_flags_that_cannot_work_exit_2(coded, tiny_out, tmp_path, monkeypatch):
    out = coded(1)[1]
    for args, says in ((["--kill", "2:5"], "not a kill spec"), (["--kill", "9@1"], "RANK must be a rank"),
                       (["--kill", "2@3"], "FRAME must be below")):
        result = runner.invoke(app, ["run", str(out), "-n", "1", "--warmup", "2", *args])
        assert result.exit_code == 2 and says in result.output, (args, result.output)
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path))
    result = runner.invoke(app, ["run", str(out), "-n", "5", "--kill", "2@1"])
    assert result.exit_code == 2 and "edgec fetch-runtime ulfm" in result.output, result.output
