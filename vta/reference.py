"""The numpy integer reference a VTA layer must equal exactly: int32 accumulation with wrap-around,
rounding `(acc + 2^(n-1)) >> n` (round half up, arithmetic shift), clip, int8."""

from __future__ import annotations

import numpy as np


def requantize(acc: np.ndarray, shift, clip: tuple[int, int]) -> np.ndarray:
    """int32 accumulators (wrapping) → int8: add the rounding half, arithmetic shift, clip. `shift` is one
    amount or one per output channel (axis 1 of `acc`); a negative amount shifts left, in 32 bits."""
    shift = np.asarray(shift, np.int64)
    if shift.ndim:
        shift = shift.reshape((1, -1) + (1,) * (acc.ndim - 2))
    acc = _wrap32(acc + np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0))
    acc = _wrap32(np.where(shift >= 0, acc >> np.maximum(shift, 0), acc << np.maximum(-shift, 0)))
    return np.clip(acc, clip[0], clip[1]).astype(np.int8)


def _wrap32(acc: np.ndarray) -> np.ndarray:
    return np.asarray(acc).astype(np.int64).astype(np.uint32).view(np.int32).astype(np.int64)


def conv2d(x, w, bias=None, *, stride=1, pads=(0, 0, 0, 0), shift=0, clip=(-128, 127)) -> np.ndarray:
    """int8 NCHW Conv, groups 1, via an im2col of strided views and one int64 matmul; `stride` is one
    number or (height, width)."""
    sh, sw = (stride, stride) if np.isscalar(stride) else stride
    pt, pl, pb, pr = pads
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    o, c, kh, kw = w.shape
    n, _, hp, wp = xp.shape
    ho, wo = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw][:, :, :ho, :wo]
    acc = np.einsum("nchwij,ocij->nohw", win, w.astype(np.int64), optimize=True)
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)[None, :, None, None]
    return requantize(acc, shift, clip)


def gemm(a, w, bias=None, *, shift=0, clip=(-128, 127)) -> np.ndarray:
    acc = a.astype(np.int64) @ w.astype(np.int64).T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)[None, :]
    return requantize(acc, shift, clip)


def add(a, b, *, shift_a=0, shift_b=0, shift=0, clip=(-128, 127)) -> np.ndarray:
    acc = (a.astype(np.int64) << shift_a) + (b.astype(np.int64) << shift_b)
    return requantize(acc, shift, clip)
