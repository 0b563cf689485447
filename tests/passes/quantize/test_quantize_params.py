"""Scale and zero-point math against values computed by hand."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.passes.quantize.params import (activation_params, mse_search, quantize_bias, quantize_weight,
                                          weight_scales)


def test_uint8_activation_range_widened_to_zero():
    p = activation_params(-1.0, 3.0, "uint8")
    assert p.scale == pytest.approx(4 / 255) and p.zero_point == 64  # round(0 + 1 / (4/255)) = round(63.75)
    assert activation_params(0.5, 2.0, "uint8") == activation_params(0.0, 2.0, "uint8")
    assert activation_params(0.0, 2.0, "uint8").zero_point == 0


def test_int8_activation_and_symmetric():
    p = activation_params(-1.0, 3.0, "int8")
    assert p.scale == pytest.approx(4 / 255) and p.zero_point == -64  # round(-128 + 63.75)
    s = activation_params(-1.0, 3.0, "int8", symmetric=True)
    assert s.scale == pytest.approx(3 / 127) and s.zero_point == 0


def test_constant_zero_tensor_gets_scale_one():
    assert activation_params(0.0, 0.0, "uint8").scale == 1.0


def test_quantize_dequantize_round_trip():
    p = activation_params(-1.0, 3.0, "uint8")
    x = np.array([-1.0, 0.0, 1.5, 3.0, 10.0], dtype=np.float32)
    q = p.quantize(x)
    assert q.dtype == np.uint8 and list(q) == [0, 64, 160, 255, 255]
    assert np.abs(p.dequantize(q)[:4] - x[:4]).max() <= p.scale / 2 + 1e-6


def test_per_channel_weight_scales_and_values():
    w = np.array([[1.0, -2.0], [0.5, 0.25], [0.0, 0.0]], dtype=np.float32)
    s = weight_scales(w, 0)
    assert s == pytest.approx([2 / 127, 0.5 / 127, 1.0])
    q = quantize_weight(w, s, 0)
    assert q.dtype == np.int8 and q.tolist() == [[64, -127], [127, 64], [0, 0]]  # 1 / (2/127) = 63.5 -> 64
    assert weight_scales(w, 1) == pytest.approx([1 / 127, 2 / 127])
    assert weight_scales(w, None) == pytest.approx(2 / 127)


def test_bias_int32_at_input_times_weight_scale():
    q, s = quantize_bias(np.array([1.0, 2.0]), 0.1, np.array([0.01, 0.02], dtype=np.float32))
    assert q.dtype == np.int32 and q.tolist() == [1000, 1000] and s == pytest.approx([0.001, 0.002])


def test_mse_clips_a_rare_outlier_minmax_keeps():
    edges = np.linspace(0.0, 100.0, 2049)
    counts = np.zeros(2048, dtype=np.int64)
    counts[:40] = 1_000_000  # the mass is in [0, 2): its rounding error outweighs clipping one value
    counts[-1] = 1      # one value near 100
    lo, hi = mse_search(counts, edges, "uint8")
    assert lo == 0.0 and hi < 50.0
    dense = np.full(2048, 10, dtype=np.int64)  # uniform: clipping only hurts
    assert mse_search(dense, edges, "uint8")[1] == pytest.approx(100.0)
