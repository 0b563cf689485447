"""The pieces of the runtime that need no MPI: report figures, failure parsing, rank progress.

Fast checks of the arithmetic behind `edgec run`'s report and error messages, on synthetic data.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console

from edgec.backends.manifest import GraphTensor, Manifest, ModelInfo, StageEntry, TransferEntry
from edgec.compiler.platform import Platform
from edgec.runtime.failure import crashed_rank, read_rank_errors, stuck_ranks
from edgec.runtime.progress import COMPUTE, WAIT_INPUTS, open_progress, read_all
from edgec.runtime.report import render, summarize


def stage(rank: int, device: str, threads: int | None = None) -> StageEntry:
    return StageEntry(rank, device, "cpu", threads, 1, None, None, f"devices/{device}/stage{rank}.onnx")


MANIFEST = Manifest(
    ModelInfo(None, None, (GraphTensor("x", (1, 4), "float32", 0),), (GraphTensor("y", (1, 2), "float32", 1),)),
    None, Platform(), (stage(0, "cam", threads=2), stage(1, "hub")),
    (TransferEntry("a", 0, 1, 0, (250,), "float32", "float32", 1000),
     TransferEntry("b", 0, 1, 1, (6,), "float32", "float32", 24)),
)


def records(frames: int, host1: str = "h") -> list[dict]:
    """Stage 0 computes 10 ms per frame, stage 1 20 ms, one frame every 20 ms (a perfect pipeline)."""
    k = np.arange(frames, dtype=float)
    start0 = 0.020 * k
    start1 = start0 + 0.010
    return [
        {"rank": 0, "host": "h", "origin": 0.0, "stats": {"start": start0, "end": start0 + 0.010, "compute": np.full(frames, 0.010),
                                                            "wait": np.zeros(frames), "send": np.full(frames, 0.010)}},
        {"rank": 1, "host": host1, "origin": 0.0, "stats": {"start": start1, "end": start1 + 0.020, "compute": np.full(frames, 0.020),
                                                              "wait": np.zeros(frames), "send": np.zeros(frames)}},
    ]


def test_summary_of_a_perfect_pipeline():
    report = summarize(MANIFEST, records(12), frames=10, warmup=2)
    assert report["throughput_fps"] == pytest.approx(50.0)
    assert report["efficiency"] == pytest.approx(1.0)
    assert report["slowest_stage"] == 1
    assert report["latency_ms"]["p50"] == pytest.approx(30.0)
    assert report["stages"][0]["compute_ms"] == pytest.approx(10.0) and report["stages"][1]["threads"] == 1
    assert report["stages"][1]["busy"] == pytest.approx(1.0)
    assert report["links"] == [{"src": 0, "dst": 1, "src_device": "cam", "dst_device": "hub", "tensors": ["a", "b"],
                                "bytes_per_frame": 1024, "bytes_total": 10240,
                                "mb_per_s": pytest.approx(1024 * 50 / 1e6)}]
    json.dumps(report)


def test_without_warmup_the_first_frame_counts_from_its_start():
    report = summarize(MANIFEST, records(4), frames=4, warmup=0)
    assert report["seconds"] == pytest.approx(0.090)


def test_ranks_on_other_hosts_count_from_their_barrier():
    recs = records(4, host1="other")
    recs[1]["origin"] = 100.0
    for key in ("start", "end"):
        recs[1]["stats"][key] = recs[1]["stats"][key] + 100.0
    assert summarize(MANIFEST, recs, frames=4, warmup=0)["latency_ms"]["p50"] == pytest.approx(30.0)


def test_render_prints_every_table():
    console = Console(record=True, width=160)
    render(summarize(MANIFEST, records(6), frames=4, warmup=2), console, "edgec run out")
    text = console.export_text()
    for part in ("50.0 frames/s", "pipeline efficiency 1.00", "stages", "0 (cam) → 1 (hub)", "a, b", "1.0 KiB"):
        assert part in text


MPIRUN_EXIT = """\
--------------------------------------------------------------------------
mpirun detected that one or more processes exited with non-zero status, thus causing
the job to be terminated. The first process to do so was:

  Process name: [[22998,1],3]
  Exit code:    17
--------------------------------------------------------------------------
"""
MPIRUN_SIGNAL = "mpirun noticed that process rank 2 with PID 4242 on node vm exited on signal 9 (Killed).\n"


def test_mpirun_output_names_the_rank():
    assert crashed_rank(MPIRUN_EXIT) == (3, "exited with code 17 without finishing")
    assert crashed_rank(MPIRUN_SIGNAL) == (2, "was killed by signal 9 (Killed)")
    assert crashed_rank("all good") is None


def test_rank_errors_come_from_files_or_stderr(tmp_path):
    line = 'EDGEC_RANK_ERROR {"rank": 1, "cause": "ValueError: x", "frame": 2, "time": 5}'
    assert [e.rank for e in read_rank_errors(tmp_path, f"noise\n[1,1]<stderr>:{line}\n")] == [1]
    (tmp_path / "error-rank3.json").write_text(json.dumps({"rank": 3, "cause": "late", "time": 9}))
    (tmp_path / "error-rank0.json").write_text(json.dumps({"rank": 0, "cause": "first", "frame": None, "time": 1}))
    errors = read_rank_errors(tmp_path, line)
    assert [e.rank for e in errors] == [0, 3]
    assert errors[0].describe(MANIFEST.stages) == "rank 0 (stage 0 on device 'cam') failed: first"


def test_stuck_ranks_blame_the_busy_one_first(tmp_path):
    waiting, busy = open_progress(tmp_path, 0), open_progress(tmp_path, 1)
    waiting[:] = (7, WAIT_INPUTS)
    busy[:] = (6, COMPUTE)
    waiting.flush()
    busy.flush()
    states = tuple(read_all(tmp_path, 2))
    assert states == ((7, WAIT_INPUTS), (6, COMPUTE))
    assert stuck_ranks(states, MANIFEST.stages) == (
        "rank 1 (stage 1 on device 'hub') was computing frame 6; "
        "rank 0 (stage 0 on device 'cam') was waiting for its inputs of frame 7")
    three = tuple(read_all(tmp_path, 3))
    assert three[2] is None
    assert "rank 2 (stage 2 on device 'box') had not started" in stuck_ranks(
        three, (*MANIFEST.stages, stage(2, "box")))
