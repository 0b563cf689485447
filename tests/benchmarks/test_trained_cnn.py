"""The trained-CNN benchmark's torch-free parts: data loading, splits, graph figures, accuracy.

Why: the quantize and prune accuracy figures rest on these; a calibration set that leaked into
training or the test set, or a MAC count that is off, would make every figure built on them
wrong. Training itself needs torch (a benchmark-only extra) and is not run here.
"""

from __future__ import annotations

import gzip
import struct
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

import image_datasets  # noqa: E402
import trained_cnn  # noqa: E402


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_fashion_mnist_reads_idx_files(tmp_path):
    images = np.arange(3 * 2 * 2).reshape(3, 2, 2) * 20
    for prefix in ("train", "t10k"):
        _write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", np.array([4, 0, 9]))
    ds = image_datasets.fashion_mnist(tmp_path)
    x, y = ds.splits["test"]
    assert x.shape == (3, 1, 2, 2) and x.dtype == np.float32
    assert x[2, 0, 1, 1] == pytest.approx(220 / 255)
    assert y.tolist() == [4, 0, 9] and y.dtype == np.int64
    assert ds.image_shape == (1, 2, 2)


def test_missing_data_set_says_how_to_install(tmp_path):
    with pytest.raises(image_datasets.DatasetMissing, match="apt-get install dataset-fashion-mnist"):
        image_datasets.fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="unknown data set"):
        image_datasets.load("imagenet")


def _indexed(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Images whose single pixel is their index, so a split's members can be identified."""
    return np.arange(offset, offset + n, dtype=np.float32).reshape(n, 1, 1, 1), np.zeros(n, np.int64)


def _ids(images: np.ndarray) -> set[int]:
    return {int(v) for v in images.reshape(len(images))}


def test_calibration_is_disjoint_from_training_and_test(monkeypatch):
    monkeypatch.setattr(trained_cnn, "CALIBRATION_POOL", 40)
    ds = image_datasets.Dataset("fashion-mnist", "test", ("a",),
                                {"train": _indexed(100), "test": _indexed(30, offset=1000)})
    (train_x, _), calib_x, (test_x, _) = trained_cnn.splits(ds, calibration=10, test=20, seed=3)
    assert len(calib_x) == 10 and len(test_x) == 20 and len(train_x) == 60  # 40 held out as the pool
    assert not _ids(calib_x) & _ids(train_x)
    assert _ids(test_x) == set(range(1000, 1020))
    again = trained_cnn.splits(ds, calibration=30, test=20, seed=3)
    assert np.array_equal(again[1][:10], calib_x) and np.array_equal(again[0][0], train_x)
    with pytest.raises(ValueError, match="at most 40"):
        trained_cnn.splits(ds, calibration=41, test=20)


def test_single_split_data_set_is_cut_three_ways():
    ds = image_datasets.Dataset("digits", "test", ("a",), {"train": _indexed(90)})
    (train_x, _), calib_x, (test_x, _) = trained_cnn.splits(ds, calibration=500, test=None, seed=0)
    parts = [_ids(train_x), _ids(calib_x), _ids(test_x)]
    assert sum(map(len, parts)) == 90 and len(set().union(*parts)) == 90
    assert len(calib_x) == 15 and len(test_x) == 30


def _tiny_cnn(path: Path, batch: int | str = 1) -> None:
    """Conv 1->2 (3x3, pad 1) on 4x4, BN, global pool, Flatten, Gemm 2->3."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in [
        ("w", rng.normal(size=(2, 1, 3, 3))), ("s", np.ones(2)), ("b", np.zeros(2)),
        ("m", np.zeros(2)), ("v", np.ones(2)), ("fw", rng.normal(size=(3, 2))), ("fb", np.zeros(3))]]
    nodes = [helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"]),
             helper.make_node("GlobalAveragePool", ["n"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], transB=1)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 1, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, 3])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def test_graph_figures_count_macs_and_parameters(tmp_path):
    _tiny_cnn(tmp_path / "m.onnx")
    figures = trained_cnn.graph_figures(tmp_path / "m.onnx")
    assert figures["macs"] == 4 * 4 * 2 * 9 + 3 * 2
    assert figures["params"] == 18 + 2 + 2 + 6 + 3  # BN running mean / var are not parameters
    assert figures["ops"]["BatchNormalization"] == 1 and figures["ops"]["Gemm"] == 1


@pytest.mark.parametrize("batch", [1, "N"])
def test_accuracy_matches_hand_count(tmp_path, batch):
    _tiny_cnn(tmp_path / "m.onnx", batch)
    x = np.random.default_rng(1).normal(size=(7, 1, 4, 4)).astype(np.float32)
    logits = trained_cnn.predict(tmp_path / "m.onnx", x)
    assert logits.shape == (7, 3)
    labels = logits.argmax(1)
    labels[:2] = (labels[:2] + 1) % 3
    np.savez(tmp_path / "test.npz", input=x, labels=labels)
    assert trained_cnn.accuracy(tmp_path / "m.onnx", tmp_path / "test.npz") == pytest.approx(5 / 7)


def test_shared_initializers_get_their_own_copies():
    one = numpy_helper.from_array(np.ones(2, np.float32), "one")
    graph = helper.make_graph(
        [helper.make_node("Identity", ["one"], ["one_again"]),
         helper.make_node("Add", ["x", "one_again"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], [one])
    trained_cnn._undo_shared_initializers(graph)
    assert [n.op_type for n in graph.node] == ["Add"]
    assert numpy_helper.to_array(next(t for t in graph.initializer if t.name == "one_again")).tolist() == [1, 1]


def test_nodes_are_named_after_their_modules():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["/layer1/relu1/Relu_output_0"], name="/layer1/relu1/Relu"),
         helper.make_node("Add", ["/layer1/relu1/Relu_output_0", "x"], ["y"], name="/layer1/Add")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    trained_cnn._name_nodes(graph, leaves={"layer1.relu1"})
    assert [(n.name, list(n.input), list(n.output)) for n in graph.node] == [
        ("layer1_relu1", ["x"], ["layer1_relu1"]), ("layer1_add", ["layer1_relu1", "x"], ["y"])]
