"""CDC and replication on real exported models (tests/corpus): TorchScript, dynamo, tf2onnx and Paddle exports.

A coded layer of each model is split in 3 with 1 or 2 parities; every single (and pair of) missing
rows rebuilt from the others equals the row itself, and the compiled output verifies. One stage of
each model is replicated on two devices and every replica verifies. Two of them also run under
mpirun: a straggling part is rebuilt at the merge, and frames dealt to replicas come back in order,
both equal to the unsplit model frame by frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "passes" / "cdc"))

import edgec  # noqa: E402
from cdc_helpers import check_every_loss, coded, run_rows  # noqa: E402
from edgec.dsl.ast import quote  # noqa: E402
from edgec.runtime.launcher import run  # noqa: E402
from edgec.runtime.outputs import CompiledOutput  # noqa: E402
from edgec.runtime.verify import verify  # noqa: E402

MODELS = Path(__file__).parents[1] / "corpus" / "models"
DEVICES = "".join(f"device d{i} {{ cores 1 }}\n" for i in range(7))
CODED = [("mobilenetv3_ts", "input", [1, 3, 64, 64], "/classifier/classifier.0/Gemm", "output"),
         ("yolo_dynamo", "images", [1, 3, 64, 64], "node_Conv_265", "filter"),
         ("paddle_cnn", "x", [1, 3, 32, 32], "MatMul.0", "output"),
         ("keras_cnn_nhwc", "image", [1, 32, 32, 3], "functional_1/conv2d_1_2/convolution", "filter")]
REPLICATED = [("mobilenetv3_ts", "input", [1, 3, 64, 64], "/features/features.4/block/block.0/block.0.0/Conv"),
              ("yolo_dynamo", "images", [1, 3, 64, 64], "node_Conv_267"),
              ("paddle_cnn", "x", [1, 3, 32, 32], "Conv.1"),
              ("keras_cnn_nhwc", "image", [1, 32, 32, 3], "functional_1/conv2d_1_2/convolution")]


def coded_plan(input_name: str, shape: list[int], layer: str, kind: str, parity: int) -> str:
    parities = ", ".join(f"d{4 + j}" for j in range(parity))
    return (f"input {quote(input_name)} {shape}\n{DEVICES}place * on d0\n"
            f"split {quote(layer)} by {kind} into 3 on d1, d2, d3\ncdc {quote(layer)} parity {parity} on {parities}\n")


def replicated_plan(name: str, input_name: str, shape: list[int], first: str) -> str:
    """d0 runs the nodes before `first`; `first` to the last node is one stage, replicated on d1 and d2."""
    last = quote(onnx.load(MODELS / f"{name}.onnx").graph.node[-1].name)
    return (f"input {quote(input_name)} {shape}\n{DEVICES}place {quote(first)} .. {last} on d1\nplace * on d0\n"
            f"replicate {quote(first)} .. {last} on d1, d2\n")


def samples(shape: list[int], count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((count, *shape), dtype=np.float32)


def unsplit(name: str, input_name: str, frames: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(MODELS / f"{name}.onnx"))
    return [np.stack(column) for column in zip(*(session.run(None, {input_name: f}) for f in frames))]


@pytest.mark.parametrize("name, input_name, shape, layer, kind", CODED)
def test_a_coded_layer_of_a_real_model_rebuilds_every_missing_row_and_verifies(tmp_path, name, input_name, shape,
                                                                              layer, kind):
    text = coded_plan(input_name, shape, layer, kind, parity=2)
    edgec.compile(MODELS / f"{name}.onnx", text, tmp_path / "out")
    assert verify(tmp_path / "out").ok
    (entry,) = CompiledOutput.open(tmp_path / "out").manifest.cdc.layers
    _, rows = run_rows(coded(onnx.load(MODELS / f"{name}.onnx"), text), {input_name: samples(shape, 1, 0)[0]})
    check_every_loss(entry, rows, most=2)


@pytest.mark.parametrize("name, input_name, shape, first", REPLICATED)
def test_a_replicated_stage_of_a_real_model_verifies_on_every_replica(tmp_path, name, input_name, shape, first):
    result = edgec.compile(MODELS / f"{name}.onnx", replicated_plan(name, input_name, shape, first), tmp_path / "out")
    (stage,) = result.manifest.replicas.stages
    assert [r.device for r in stage.replicas] == ["d1", "d2"]
    report = verify(tmp_path / "out")
    assert report.ok and report.replica_frames == 2


@pytest.mark.slow
@pytest.mark.parametrize("name, input_name, shape, layer, kind", [CODED[0], CODED[1]])
def test_under_mpirun_a_straggling_part_of_a_real_model_is_rebuilt_exactly(tmp_path, name, input_name, shape,
                                                                           layer, kind, leftover_ranks):
    out = tmp_path / "out"
    edgec.compile(MODELS / f"{name}.onnx", coded_plan(input_name, shape, layer, kind, parity=1), out)
    frames = samples(shape, 3, 1)
    result = run(out, {input_name: frames}, frames=9, warmup=1, keep_outputs=True, stragglers=("random:0.05",))
    want = unsplit(name, input_name, frames)
    for spec, expected in zip(CompiledOutput.open(out).manifest.model.outputs, want):
        got = result.outputs[spec.name]
        np.testing.assert_allclose(got, expected[np.arange(9) % 3], rtol=1e-4, atol=1e-5 * np.abs(expected).max())
    assert result.report["cdc"]["frames_recovered"] >= 1 and result.report["cdc"]["recovery_error"] < 1e-4
    assert leftover_ranks(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("name, input_name, shape, first", [REPLICATED[0], REPLICATED[3]])
def test_under_mpirun_frames_dealt_to_replicas_of_a_real_model_stay_in_order(tmp_path, name, input_name, shape, first,
                                                                            leftover_ranks):
    out = tmp_path / "out"
    edgec.compile(MODELS / f"{name}.onnx", replicated_plan(name, input_name, shape, first), out)
    frames = samples(shape, 5, 2)
    result = run(out, {input_name: frames}, frames=10, warmup=0, keep_outputs=True)
    want = unsplit(name, input_name, frames)
    for spec, expected in zip(CompiledOutput.open(out).manifest.model.outputs, want):
        np.testing.assert_allclose(result.outputs[spec.name], expected[np.arange(10) % 5], rtol=1e-4,
                                   atol=1e-5 * np.abs(expected).max())
    assert leftover_ranks(out) == []
