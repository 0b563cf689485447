"""The `quantize` statement: parsing its clauses, and the located errors of its lowering."""

from __future__ import annotations

import numpy as np
import pytest

import edgec
from edgec.compiler.annotations import QUANTIZE_REQUESTS
from edgec.compiler.diagnostics import PlanError
from edgec.dsl import parse_plan
from graphs import Net
from qhelpers import calibration


def _model():
    net = Net({"x": [1, 4]})
    net.op("Gemm", "g", ["x", net.weight("g.w", 4, 4)])
    net.op("Relu", "r", ["g"])
    return net.model(["r"])


def _lower(text: str):
    return edgec.load_program(_model(), parse_plan(text, "plan.edge"))


def test_clauses_parse():
    q, = parse_plan('quantize hub int8 per_tensor calibrate "c" method entropy correct_bias equalize').quantizes
    assert (q.dtype, q.granularity, q.calibrate, q.method, q.correct_bias, q.equalize) == \
        ("int8", "per_tensor", "c", "entropy", True, True)
    with pytest.raises(PlanError, match="unknown calibration method 'kl'"):
        parse_plan('quantize hub int8 calibrate "c" method kl')


def test_request_recorded_with_defaults(tmp_path):
    cal = calibration(tmp_path / "c", {"x": [1, 4]})
    prog = _lower(f'device a {{}}\nplace * on a\nquantize a int8 calibrate "{cal}"\n')
    request, = prog.model.meta[QUANTIZE_REQUESTS]
    assert (request.device, request.granularity, request.method, request.calibrate) == ("a", "per_channel", "minmax",
                                                                                        str(cal.resolve()))


@pytest.mark.parametrize("clause, message", [
    ("", "needs calibration data"),
    ('calibrate "missing"', "does not exist"),
    ('calibrate "empty"', "holds no .npy or .npz"),
    ('calibrate "other"', "has no data for input 'x'"),
])
def test_calibration_problems_are_located(tmp_path, clause, message):
    (tmp_path / "empty").mkdir()
    calibration(tmp_path / "other", {"y": [1, 4]})
    plan = tmp_path / "plan.edge"
    plan.write_text(f"device a {{}}\nplace * on a\nquantize a int8 {clause}\n")
    with pytest.raises(PlanError, match=message) as info:
        edgec.load_program(_model(), plan)
    assert info.value.span.line == 3


def test_npz_keyed_by_input_is_accepted(tmp_path):
    (tmp_path / "c").mkdir()
    np.savez(tmp_path / "c" / "batch0.npz", x=np.zeros((3, 1, 4), dtype=np.float32))
    prog = _lower(f'device a {{}}\nplace * on a\nquantize a int8 calibrate "{tmp_path / "c"}"\n')
    assert prog.model.meta[QUANTIZE_REQUESTS][0].calibrate


@pytest.mark.parametrize("statement, message", [
    ("quantize a bf16", "bf16 quantization is not supported"),
    ("quantize a fp16", "fp16 is supported for `quantize wire fp16` only"),
    ("quantize nowhere int8 calibrate \"c\"", "neither a device nor a node"),
    ("quantize wire int8 per_channel calibrate \"c\"", "`quantize wire` takes"),
])
def test_bad_statements(tmp_path, statement, message):
    calibration(tmp_path / "c", {"x": [1, 4]})
    plan = tmp_path / "plan.edge"
    plan.write_text(f"device a {{}}\nplace * on a\n{statement}\n")
    with pytest.raises(PlanError, match=message) as info:
        edgec.load_program(_model(), plan)
    assert info.value.span.line == 3


def test_twice_is_refused(tmp_path):
    cal = calibration(tmp_path / "c", {"x": [1, 4]})
    with pytest.raises(PlanError, match="node 'g' is quantized twice"):
        _lower(f'device a {{}}\nplace * on a\nquantize g int8 calibrate "{cal}"\nquantize [g, r] int8 calibrate "{cal}"\n')
    with pytest.raises(PlanError, match="device a is quantized twice"):
        _lower(f'device a {{}}\nplace * on a\nquantize a int8 calibrate "{cal}"\nquantize a uint8 calibrate "{cal}"\n')


def test_wire_fp16_needs_no_calibration():
    prog = _lower("device a {}\nplace * on a\nquantize wire fp16\n")
    assert prog.model.meta[QUANTIZE_REQUESTS][0].wire
