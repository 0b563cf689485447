"""The run-time half of cdc: first k of k + R rows at the merge, late rows drained, stragglers injected.

The `CodedMerge` tests run in this process on MPI_COMM_SELF (the rows are sent to itself, in
the order a straggler would send them); the others start real `mpirun` on a 6-rank coded FC
layer (an input rank, 3 parts, parity, merge) and compare every frame with onnxruntime.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from mpi4py import MPI
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent.parent / "passes" / "cdc"))

import edgec  # noqa: E402
from cdc_helpers import DEVICES, check_every_loss, coded, conv_model, plan, run_rows  # noqa: E402
from edgec.backends.cdc_records import CdcLayerEntry  # noqa: E402
from edgec.cli import app  # noqa: E402
from edgec.compiler.diagnostics import UsageError  # noqa: E402
from edgec.runtime.cdc_merge import CodedMerge, decodable  # noqa: E402
from edgec.runtime.faults import parse_straggler, part_ranks, schedule  # noqa: E402
from edgec.runtime.launcher import run  # noqa: E402
from edgec.runtime.outputs import CompiledOutput  # noqa: E402
from edgec.runtime.pipeline import Link, TensorSpec  # noqa: E402
from graphs import Net  # noqa: E402

runner = CliRunner()


def fc_net(conv: bool = False):
    """x -> Relu (the input rank) -> Gemm 6 -> 10 (or a 3x3 Conv 3 -> 7), the layer split and coded."""
    net = Net({"x": [1, 3, 6, 5] if conv else [2, 6]})
    net.op("Relu", "pre", ["x"])
    if conv:
        net.op("Conv", "fc", ["pre", net.weight("w", 7, 3, 3, 3), net.weight("b", 7)], pads=[1] * 4)
    else:
        net.op("Gemm", "fc", ["pre", net.weight("w", 10, 6), net.weight("b", 10)], transB=1)
    return net.model(["fc"])


@pytest.fixture(scope="module")
def coded_out(tmp_path_factory):
    """(model, compiled output) of `fc_net` with parts on d1..d3 and R parities after them: ranks 0 input, 1-3
    parts, then parities, then the merge."""
    directory = tmp_path_factory.mktemp("cdc-runtime")
    made = {}

    def make(parity: int, conv: bool = False) -> tuple:
        if (parity, conv) not in made:
            targets = ", ".join(f"d{4 + j}" for j in range(parity))
            kind = "filter" if conv else "output"
            text = (DEVICES + f"place * on d0\nsplit fc by {kind} into 3 on d1, d2, d3\n"
                    f"cdc fc parity {parity} on {targets}\n")
            out = directory / f"r{parity}{'conv' if conv else ''}"
            edgec.compile(fc_net(conv), text, out)
            made[(parity, conv)] = (fc_net(conv), out)
        return made[(parity, conv)]

    return make


def expected(model, frames: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString())
    return np.stack([session.run(None, {"x": frame})[0] for frame in frames])


def frames_for(model, count: int, seed: int) -> np.ndarray:
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return np.random.default_rng(seed).standard_normal((count, *shape)).astype(np.float32)


def test_the_merge_decodes_a_late_part_and_drains_it_in_frame_order():
    entry = CdcLayerEntry("fc", "Gemm", 1, 0, ("p0", "p1"), (1, 2), ("q0",), (3,), ((0, 2), (2, 4)), 2,
                          ((1.0, 1.0),))
    spec = TensorSpec((1, 2), np.dtype(np.float32))
    links = [Link(name, 0, tag, spec) for tag, name in enumerate(("p0", "p1", "q0"))]
    merge = CodedMerge(MPI.COMM_SELF, [entry], links, tag_stride=3, depth=2)
    rng = np.random.default_rng(1)
    rows = [{"p0": rng.standard_normal((1, 2)).astype(np.float32), "p1": rng.standard_normal((1, 2)).astype(np.float32)}
            for _ in range(3)]
    for r in rows:
        r["q0"] = r["p0"] + r["p1"]
    sent = []

    def send(frame: int, name: str) -> None:
        tag = ("p0", "p1", "q0").index(name) + (frame % 2) * 3
        sent.append(MPI.COMM_SELF.Isend([rows[frame][name], MPI.BYTE], 0, tag))

    merge.start(3)
    send(0, "p0"), send(0, "q0")
    merge.wait_rows(0)
    merge.fill(0, 0)
    np.testing.assert_allclose(merge.inputs[0]["p1"], rows[0]["p1"], rtol=1e-6)
    for name in ("p0", "p1", "q0"):
        send(1, name)
    merge.wait_rows(1)
    merge.fill(1, 1)
    send(0, "p1")  # frame 0's straggler arrives late, before its own next frame (MPI keeps a sender's order)
    for name in ("p1", "q0", "p0"):
        send(2, name)
    merge.wait_rows(2)
    merge.fill(2, 0)
    merge.drain()
    MPI.Request.Waitall(sent)
    assert merge.rebuilt[0] == ["p1"] and merge.rebuilt[1] == []
    assert merge.late == 1 and merge.errors["p1"] < 1e-6
    for name in ("p0", "p1"):
        np.testing.assert_array_equal(merge.inputs[1][name], rows[1][name])
        np.testing.assert_allclose(merge.inputs[0][name], rows[2][name], rtol=1e-6)
    merge.close()


def test_the_frame_loops_decoder_equals_the_reference_decoder_for_every_missing_set(tmp_path):
    """Conv cout=7 in 3 parts (3, 2, 2 filters, padded to 3) with 2 parities: `recover_into` (float32, only the
    missing parts) against `recover` (float64 solve) and the parts themselves, for every 1 or 2 rows lost."""
    model, text = conv_model(cout=7), plan(3, 2, kind="filter")
    edgec.compile(model, text, tmp_path / "out")
    (entry,) = CompiledOutput.open(tmp_path / "out").manifest.cdc.layers
    x = np.random.default_rng(4).standard_normal((1, 3, 6, 5)).astype(np.float32)
    _, rows = run_rows(coded(model, text), {"x": x})
    check_every_loss(entry, rows, most=2)


def test_straggler_specs_are_checked_and_the_schedule_repeats(coded_out):
    manifest = CompiledOutput.open(coded_out(1)[1]).manifest
    assert part_ranks(manifest) == [1, 2, 3]
    (entry,) = manifest.cdc.layers
    assert decodable(entry, entry.merge_stage) and not decodable(entry, 1)
    for bad in ("1", "x:1", "1:-1", "1:0.1:2", "9:0.1", "random:0.1:0.5", "1:nan", "-1:0.1"):
        with pytest.raises(UsageError):
            parse_straggler(bad, manifest)
    random = [parse_straggler("random:0.25", manifest)]
    per_rank = np.stack([schedule(random, manifest, r, 50) if r in (1, 2, 3) else np.zeros(50) for r in range(6)])
    assert (np.count_nonzero(per_rank, axis=0) == 1).all() and set(np.unique(per_rank)) == {0.0, 0.25}
    assert schedule(random, manifest, 0, 50) is None
    np.testing.assert_array_equal(schedule(random, manifest, 2, 50), per_rank[2])
    half = [schedule([parse_straggler("2:0.1:0.5", manifest)], manifest, 2, 400) for _ in range(2)]
    assert 120 < np.count_nonzero(half[0]) < 280 and np.array_equal(half[0], half[1])


@pytest.mark.parametrize("parity, conv, straggler", [(1, False, "2:0.02"), (2, True, "random:0.02")])
def test_with_a_straggler_every_frame_is_exact_and_the_late_parts_are_rebuilt(coded_out, parity, conv, straggler,
                                                                            leftover_ranks):
    model, out = coded_out(parity, conv)
    frames = frames_for(model, 4, 5)
    result = run(out, {"x": frames}, frames=12, warmup=1, keep_outputs=True, stragglers=(straggler,))
    np.testing.assert_allclose(result.outputs["fc"], expected(model, frames)[np.arange(12) % 4], rtol=1e-4, atol=1e-5)
    cdc = result.report["cdc"]
    assert cdc["decoding_ranks"] == [len(CompiledOutput.open(out).stages) - 1]
    assert cdc["frames_recovered"] >= 1 and sum(cdc["parts_recovered_by_rank"].values()) >= cdc["frames_recovered"]
    assert set(cdc["parts_recovered_by_rank"]) <= {"1", "2", "3"}
    assert cdc["late_parts_compared"] >= 1 and cdc["recovery_error"] < 1e-4
    if straggler.startswith("2:"):
        assert cdc["straggled_frames_by_rank"] == {"2": 12} and cdc["parts_recovered_by_rank"].get("2", 0) >= 1
    assert leftover_ranks(out) == []


def test_cdc_wait_waits_for_every_part(coded_out):
    model, out = coded_out(1)
    frames = frames_for(model, 1, 6)
    result = run(out, {"x": frames}, frames=4, warmup=0, keep_outputs=True, stragglers=("1:0.01",),
                 cdc_wait_ms=20_000)
    np.testing.assert_allclose(result.outputs["fc"], np.repeat(expected(model, frames), 4, 0), rtol=1e-4, atol=1e-5)
    assert result.report["cdc"]["frames_recovered"] == 0 and result.report["cdc"]["recovery_error"] is None


def test_fault_flags_that_cannot_work_exit_2(coded_out, tiny_out):
    out = coded_out(1)[1]
    for out, args, says in ((out, ["--straggler", "1:zzz"], "must be numbers"),
                            (tiny_out, ["--straggler", "random:0.1"], "no split or coded layer"),
                            (out, ["--straggler", "6:0.1"], "RANK must be a rank"),
                            (out, ["--cdc-wait", "-1"], "--cdc-wait must be at least 0"),
                            (out, ["--rate", "-3"], "--rate must be")):
        result = runner.invoke(app, ["run", str(out), "-n", "1", *args])
        assert result.exit_code == 2 and says in result.output, (args, result.output)


@pytest.mark.slow
def test_the_cpp_engine_says_it_does_not_inject_faults(tmp_path):
    edgec.compile(fc_net(), DEVICES + "place * on d0\nsplit fc by output into 2 on d1, d2\ncdc fc parity 1 on d3\n",
                  tmp_path / "out", backends=("onnx", "cpp"))
    for flag in (["--straggler", "1:0.1"], ["--kill", "1@0"]):
        result = runner.invoke(app, ["run", str(tmp_path / "out"), "-n", "1", "--engine", "cpp", *flag])
        assert result.exit_code == 2 and "--engine cpp does not support" in result.output, result.output
