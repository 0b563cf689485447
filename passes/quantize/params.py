"""Quantization parameters from ranges: the formulas every other module uses.

Activations (per tensor, asymmetric): the range is widened to hold 0, then
`scale = (hi - lo) / (qmax - qmin)` and `zero_point = clip(round(qmin - lo / scale), qmin, qmax)`
(uint8: 0..255, int8: -128..127); with `symmetric` (VTA) `scale = max(|lo|, |hi|) / 127`,
`zero_point = 0`. A constant tensor (hi == lo == 0) gets scale 1.
Weights (symmetric int8, zero point 0, range -127..127 so that -w quantizes to -q): per output
channel `scale_c = max|w_c| / 127` (per tensor: one `max|w| / 127`); an all-zero channel gets 1.
Bias (int32, zero point 0): `scale_c = scale_x * scale_w_c`, `q = round(b / scale_c)`.
Power of two (VTA): every scale above is rounded UP to the next power of two, `2^ceil(log2 s)`, so
nothing that fitted the range is clipped and each layer's requantization factor
`scale_x · scale_w_c / scale_y` is `2^-shift_c`: an arithmetic shift, which is all VTA's ALU has
(it cannot multiply by a fraction). Costs at most one bit of resolution per tensor.

`mse_search` picks, from a histogram, the clipped range whose quantize-dequantize error
`Σ count · (center − dq(q(center)))²` is least (edgec's `mse` method).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QRANGE = {"uint8": (0, 255), "int8": (-128, 127)}
NUMPY = {"uint8": np.uint8, "int8": np.int8}


@dataclass(frozen=True)
class Histogram:
    """A tensor's value counts in fixed bins (what the `mse` method searches over)."""

    counts: np.ndarray
    edges: np.ndarray


@dataclass(frozen=True)
class TensorParams:
    """Per-tensor quantization of one activation: `dtype` (uint8/int8), scale, zero point."""

    dtype: str
    scale: float
    zero_point: int

    def quantize(self, x: np.ndarray) -> np.ndarray:
        qmin, qmax = QRANGE[self.dtype]
        return np.clip(np.rint(x / self.scale) + self.zero_point, qmin, qmax).astype(NUMPY[self.dtype])

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        return ((q.astype(np.int32) - self.zero_point) * np.float32(self.scale)).astype(np.float32)


def power_of_two_ceil(scale: np.ndarray | float) -> np.ndarray:
    """`2^ceil(log2 s)` elementwise (a power of two is kept as it is), as float32."""
    s = np.asarray(scale, dtype=np.float64)
    return np.exp2(np.ceil(np.log2(s))).astype(np.float32)


def activation_params(lo: float, hi: float, dtype: str, symmetric: bool = False,
                      power_of_two: bool = False) -> TensorParams:
    qmin, qmax = QRANGE[dtype]
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if symmetric or power_of_two:
        bound = max(-lo, hi) if symmetric else hi - lo
        scale = bound / (127.0 if symmetric else qmax - qmin) if bound > 0 else 1.0
        scale = float(power_of_two_ceil(scale)) if power_of_two else float(np.float32(scale))
        if symmetric:
            return TensorParams(dtype, scale, 0)
        return TensorParams(dtype, scale, int(np.clip(np.rint(qmin - lo / scale), qmin, qmax)))
    if hi == lo:
        return TensorParams(dtype, 1.0, 0)
    scale = float(np.float32((hi - lo) / (qmax - qmin)))
    zero_point = int(np.clip(np.rint(qmin - lo / scale), qmin, qmax))
    return TensorParams(dtype, scale, zero_point)


def weight_scales(w: np.ndarray, axis: int | None, power_of_two: bool = False) -> np.ndarray:
    """Symmetric int8 scales: one per slice along `axis`, or a single one when `axis` is None."""
    w = np.asarray(w, dtype=np.float64)
    if axis is None:
        bound = np.array(np.abs(w).max() if w.size else 0.0)
    else:
        bound = np.abs(np.moveaxis(w, axis, 0)).reshape(w.shape[axis], -1).max(axis=1)
    scales = np.where(bound > 0, bound / 127.0, 1.0)
    return power_of_two_ceil(scales) if power_of_two else scales.astype(np.float32)


def quantize_weight(w: np.ndarray, scales: np.ndarray, axis: int | None) -> np.ndarray:
    shape = [1] * w.ndim
    if axis is not None:
        shape[axis] = -1
    return np.clip(np.rint(w / scales.reshape(shape)), -127, 127).astype(np.int8)


def quantize_bias(b: np.ndarray, x_scale: float, w_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scales = (np.float32(x_scale) * w_scales.astype(np.float32)).astype(np.float32)
    scales = np.broadcast_to(scales, b.shape).astype(np.float32)
    safe = np.where(scales > 0, scales, 1.0)
    q = np.clip(np.rint(b.astype(np.float64) / safe), -(2**31), 2**31 - 1).astype(np.int32)
    return q, scales


def mse_search(counts: np.ndarray, edges: np.ndarray, dtype: str, symmetric: bool = False,
               steps: int = 100, power_of_two: bool = False) -> tuple[float, float]:
    """The range (lo, hi), shrunk from the histogram's by a common factor in (0, 1], that gives the
    least expected squared quantize-dequantize error over the histogram's bin centers."""
    centers = (edges[:-1] + edges[1:]) / 2
    weights = counts.astype(np.float64)
    lo, hi = float(edges[0]), float(edges[-1])
    best, best_err = (lo, hi), np.inf
    for factor in np.linspace(1.0, 0.05, steps):
        p = activation_params(lo * factor, hi * factor, dtype, symmetric, power_of_two)
        err = float(weights @ (centers - p.dequantize(p.quantize(centers))) ** 2)
        if best_err == np.inf or err < best_err * (1 - 1e-9):
            best, best_err = (lo * factor, hi * factor), err
    return best


def params_for(found: "tuple[float, float] | Histogram", dtype: str, symmetric: bool = False,
               power_of_two: bool = False) -> TensorParams:
    """Parameters from a collected range, or from the mse search over a histogram."""
    if isinstance(found, Histogram):
        lo, hi = mse_search(found.counts, found.edges, dtype, symmetric, power_of_two=power_of_two)
    else:
        lo, hi = found
    return activation_params(lo, hi, dtype, symmetric, power_of_two)
