"""Quantized plans with pipeline and intra-layer splits, end to end on a graph with branches.

tiny_cnn (residual block, inception-style branches) split four ways within layers and over
three devices, one device quantized and every wire int8: it compiles for the ONNX and C++
backends, and `verify` judges it by agreement with the float model in process, under mpirun
and through the C++ program. Labels are the float model's own predictions, so the float
accuracy is 100 % and the drop counts exactly the changed predictions.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import edgec
from edgec.runtime.verify import verify
from tiny_cnn import build

PLAN = """
device cam { cores 2 }
device hub { cores 2 }
device box { cores 2 }
split res_conv1 by filter into 2 ratio 3:1 on hub, box
split branch_c by channel into 2 on cam, box
place stem .. pool1 on cam
place res_conv2 .. branch_b2 on hub
place * on box
quantize hub int8 calibrate "cal"
quantize wire int8 calibrate "cal"
"""


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("quantized")
    model = build()
    onnx.save(model, root / "m.onnx")
    rng = np.random.default_rng(0)
    (root / "cal").mkdir()
    np.save(root / "cal" / "image.npy", rng.random((32, 3, 32, 32), dtype=np.float32))
    samples = rng.random((24, 3, 32, 32), dtype=np.float32)
    session = ort.InferenceSession(str(root / "m.onnx"), providers=["CPUExecutionProvider"])
    labels = np.array([session.run(None, {"image": s[None]})[0].argmax() for s in samples], dtype=np.int64)
    np.savez(root / "data.npz", image=samples, labels=labels)
    (root / "p.edge").write_text(PLAN)
    result = edgec.compile(root / "m.onnx", root / "p.edge", root / "out", backends=("onnx", "cpp"))
    return root, result


@pytest.mark.slow
def test_quantized_split_plan_compiles_with_int8_wires(compiled):
    _, result = compiled
    quantization = result.manifest.quantization
    assert quantization is not None
    assert {s.device for s in quantization.stages} == {"hub"}
    assert {s.activation_dtype for s in quantization.stages} == {"int8"}  # the cpp backend runs TVM: int8
    assert result.manifest.transfers and all(t.dtype == "int8" for t in result.manifest.transfers)


@pytest.mark.slow
@pytest.mark.parametrize("how", [{"engine": "onnxruntime"}, {"engine": "onnxruntime", "mpi": True},
                                 {"engine": "cpp"}], ids=["in-process", "mpirun", "cpp"])
def test_quantized_split_plan_agrees_with_the_float_model(compiled, how):
    root, _ = compiled
    report = verify(root / "out", dataset=root / "data.npz", max_drop=10.0, **how)
    assert report.quantized and report.ok
    assert report.dataset is not None and report.dataset.samples == 24
    assert report.dataset.float_accuracy == 100.0
    assert report.dataset.changed <= 2
    assert all(a.finite for a in report.agreement)
