"""`edgec verify` on quantized outputs: agreement with the float model, accuracy on a labelled data set.

The compiled model is a hand-made QDQ network (`quantized_graphs.qdq`) whose Program records are
filled by hand, verified against its float twin (`--model float.onnx`). Because the compiled
program computes exactly what the QDQ model computes, the changed predictions can be counted
independently here with onnxruntime on the two models.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from typer.testing import CliRunner

import edgec
from edgec.backends.manifest import read_manifest
from edgec.cli import app
from edgec.runtime.dataset import Dataset
from edgec.runtime.verify import verify
from quantized_graphs import CLASSES, FLOAT_PLAN, compile_quantized, float_twin

runner = CliRunner()
CLIPPING = 0.02
"""An activation scale so small that int8 clips at ±2.54: some predictions change."""
SAMPLES = 150


def edgec_cli(*args):
    result = runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def _argmax(model: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return np.array([int(np.argmax(session.run(None, {"x": x[i:i + 1]})[0])) for i in range(len(x))])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A clipping quantized output, the same output without records, a float plan, and a data set labelled
    with the float model's own predictions (so the float model scores 100 %)."""
    root = tmp_path_factory.mktemp("verify-quantized")
    quantized = compile_quantized(root / "q", "int8", scale=CLIPPING)
    unrecorded = compile_quantized(root / "plain", "int8", scale=CLIPPING, quantized=False)
    onnx.save(float_twin(), root / "float.onnx")
    edgec.compile(root / "float.onnx", FLOAT_PLAN, root / "float-out")
    rng = np.random.default_rng(11)
    x = (rng.standard_normal((SAMPLES, 3, 8, 8)) + 2 * rng.standard_normal((SAMPLES, 3, 1, 1))).astype(np.float32)
    float_pred = _argmax(root / "float.onnx", x)
    np.savez(root / "data.npz", x=x, labels=float_pred)
    changed = int((_argmax(root / "q" / "m.onnx", x) != float_pred).sum())
    return dict(root=root, quantized=quantized, unrecorded=unrecorded, float_model=root / "float.onnx",
                float_out=root / "float-out", data=root / "data.npz", x=x, changed=changed)


def test_a_quantized_output_reports_agreement_instead_of_equality(setup):
    report = verify(setup["quantized"], model=setup["float_model"])
    assert report.quantized and report.outputs == [] and report.ok
    (agreement,) = report.agreement
    assert agreement.name == "out" and agreement.rows == 1 and agreement.finite
    assert agreement.top1_agreement in (0.0, 1.0) and 0 < agreement.mean_abs <= agreement.max_abs
    strict = verify(setup["unrecorded"], model=setup["float_model"])
    assert not strict.quantized and not strict.ok and strict.outputs[0].max_abs == pytest.approx(agreement.max_abs)


def test_cli_prints_agreement_and_json(setup):
    shown = edgec_cli("verify", setup["quantized"], "--model", setup["float_model"])
    assert shown.exit_code == 0, shown.output
    assert "agreement with the float model" in shown.output and "mean abs err" in shown.output
    assert "pass --dataset" in shown.output
    data = json.loads(edgec_cli("verify", setup["quantized"], "--model", setup["float_model"], "--json").output)
    assert data["ok"] and data["quantized"] and data["dataset"] is None
    assert set(data["agreement"][0]) == {"name", "top1_agreement", "rows", "max_abs", "mean_abs", "max_rel", "finite"}
    assert edgec_cli("verify", setup["unrecorded"], "--model", setup["float_model"]).exit_code == 1


def test_dataset_accuracy_and_changed_predictions(setup):
    assert setup["changed"] > 0, "the clipping scale should change some predictions"
    report = verify(setup["quantized"], model=setup["float_model"], dataset=setup["data"])
    d = report.dataset
    assert (d.samples, d.rows, d.output) == (SAMPLES, SAMPLES, "out")
    assert d.float_correct == SAMPLES and d.changed == setup["changed"]
    assert d.compiled_correct == SAMPLES - setup["changed"]
    assert d.drop == pytest.approx(100.0 * setup["changed"] / SAMPLES)
    assert d.max_drop == 1.0 and report.ok == (d.drop <= 1.0)
    (agreement,) = report.agreement
    assert agreement.rows == SAMPLES and agreement.top1_agreement == pytest.approx(1 - setup["changed"] / SAMPLES)


def test_max_drop_decides_the_exit_code(setup):
    drop = 100.0 * setup["changed"] / SAMPLES
    args = ("verify", setup["quantized"], "--model", setup["float_model"], "--dataset", setup["data"])
    failed = edgec_cli(*args, "--max-drop", f"{drop / 2:.4f}")
    assert failed.exit_code == 1 and "DROP ABOVE" in failed.output
    passed = edgec_cli(*args, "--max-drop", f"{drop + 0.5:.4f}", "--json")
    assert passed.exit_code == 0, passed.output
    data = json.loads(passed.output)["dataset"]
    assert data["changed_predictions"] == setup["changed"] and data["float_top1_pct"] == 100.0
    assert data["drop_points"] == pytest.approx(drop) and data["ok"]


def test_a_float_plan_on_a_dataset_changes_nothing_and_stays_strict(setup):
    report = verify(setup["float_out"], dataset=setup["data"])
    assert not report.quantized and report.ok
    assert report.dataset.changed == 0 and report.dataset.compiled_correct == SAMPLES
    assert report.outputs[0].max_rel <= 1e-4
    assert not verify(setup["unrecorded"], model=setup["float_model"], dataset=setup["data"], max_drop=100).ok


def _bad(root: Path, name: str, **arrays) -> Path:
    path = root / f"{name}.npz"
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("arrays, message", [
    (dict(labels=np.zeros(3, np.int64)), "has no array 'x' (model input 'x')"),
    (dict(x=np.zeros((3, 3, 8, 8), np.float32)), "has no array 'labels'"),
    (dict(x=np.zeros((3, 3, 8, 7), np.float32), labels=np.zeros(3, np.int64)), "array 'x' is float32[3, 3, 8, 7]"),
    (dict(x=np.zeros((3, 3, 8, 8), np.float32), labels=np.zeros(4, np.int64)), "different numbers of samples"),
    (dict(x=np.zeros((3, 3, 8, 8), np.float32), labels=np.zeros(3, np.float32)), "integer class indices"),
    (dict(x=np.zeros((3, 3, 8, 8), np.float32), labels=np.full(3, CLASSES)), "scores 4 classes"),
    (dict(x=np.zeros((3, 3, 8, 8), np.float32), labels=np.zeros(3, np.int64), extra=np.zeros(3)), "array 'extra'"),
    (dict(x=np.zeros((3, 3, 8, 8), np.int64), labels=np.zeros(3, np.int64)), "holds int64; model input 'x' is float32"),
])
def test_a_bad_dataset_is_one_clear_error(setup, tmp_path, arrays, message):
    path = _bad(tmp_path, "bad", **arrays)
    result = edgec_cli("verify", setup["quantized"], "--model", setup["float_model"], "--dataset", path)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


def test_misused_options_are_usage_errors(setup, tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    base = ("verify", setup["quantized"], "--model", setup["float_model"])
    for extra, message in [(("--dataset", tmp_path / "none.npz"), "does not exist"),
                           (("--dataset", tmp_path / "junk.npz"), "cannot read data set"),
                           (("--max-drop", "1"), "--max-drop needs --dataset"),
                           (("--dataset", setup["data"], "--max-drop", "-1"), "0 or more percentage points"),
                           (("--dataset", setup["data"], "--input", setup["data"]), "do not go together")]:
        result = edgec_cli(*base, *extra)
        assert result.exit_code == 2 and message in result.output, (extra, result.output)


def test_dataset_reader_streams_compressed_members_and_drops_a_leading_one(setup, tmp_path):
    x = setup["x"][:5, None]
    np.savez_compressed(tmp_path / "c.npz", x=x, labels=np.arange(5)[:, None] % CLASSES)
    manifest = read_manifest(setup["quantized"])
    with Dataset(tmp_path / "c.npz", manifest, manifest.model.outputs[0]) as data:
        samples = list(data.samples())
    assert len(samples) == 5
    for i, (feeds, labels) in enumerate(samples):
        np.testing.assert_array_equal(feeds["x"], x[i])
        assert labels.tolist() == [i % CLASSES]
        assert feeds["x"].shape == (1, 3, 8, 8) and feeds["x"].dtype == np.float32


@pytest.mark.slow
def test_dataset_through_mpirun_in_chunks_gives_the_same_figures(setup):
    """More samples than one mpirun chunk (64), so two launches; the figures equal the in-process run's."""
    local = verify(setup["quantized"], model=setup["float_model"], dataset=setup["data"]).dataset
    distributed = verify(setup["quantized"], model=setup["float_model"], dataset=setup["data"], mpi=True).dataset
    assert distributed == local


QUANTIZE_PLAN = FLOAT_PLAN + """quantize a int8 calibrate "cal"
quantize b int8 calibrate "cal"
"""


WIRE_PLAN = FLOAT_PLAN + 'quantize wire int8 calibrate "cal"\n'


@pytest.mark.parametrize("plan, wire", [(QUANTIZE_PLAN, "uint8"), (WIRE_PLAN, "int8")], ids=["devices", "wire"])
def test_a_real_quantize_statement_end_to_end(setup, tmp_path, plan, wire):
    """The quantize pass on the float model: the quantized tensor crosses (1 byte an element), the manifest
    and `show` say so, and verify judges agreement and accuracy against the float source itself."""
    (tmp_path / "cal").mkdir()
    np.save(tmp_path / "cal" / "x.npy", setup["x"][:32])
    model = tmp_path / "float.onnx"
    onnx.save(float_twin(), model)
    result = edgec.compile(model, plan.replace('"cal"', f'"{tmp_path / "cal"}"'), tmp_path / "out")
    quant = result.manifest.quantization
    assert quant is not None and [w.wire for w in quant.wires] == [wire]
    (transfer,) = result.manifest.transfers
    assert (transfer.dtype, transfer.nbytes) == (wire, 256) and transfer.tensor == quant.wires[0].wire_tensor
    report = verify(tmp_path / "out", dataset=setup["data"])
    assert report.quantized and report.ok and report.dataset.float_correct == SAMPLES
    assert report.agreement[0].max_abs > 0 and report.dataset.drop <= 1.0
    shown = edgec_cli("show", tmp_path / "out")
    assert "quantized wires" in shown.output and f"{wire} (of r1" in shown.output


def test_the_reference_kept_for_an_in_memory_model_is_the_float_model(setup, tmp_path):
    """A model given in memory is written to OUT/reference.onnx before any pass runs: the float model, no QDQ."""
    (tmp_path / "cal").mkdir()
    np.save(tmp_path / "cal" / "x.npy", setup["x"][:16])
    result = edgec.compile(float_twin(), QUANTIZE_PLAN.replace('"cal"', f'"{tmp_path / "cal"}"'), tmp_path / "out")
    assert result.manifest.model.path == "reference.onnx" and result.manifest.quantization is not None
    ops = {node.op_type for node in onnx.load(tmp_path / "out" / "reference.onnx").graph.node}
    assert ops == {"Conv", "Relu", "GlobalAveragePool", "Flatten"}
    assert verify(tmp_path / "out", dataset=setup["data"]).dataset.float_correct == SAMPLES
