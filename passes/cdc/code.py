"""The erasure code behind `cdc`: a systematic real-valued MDS code over k parts and R parities.

A layer split by output into k parts y_1..y_k (each y_i = W_i x + b_i) is linear in its
weights, so a parity part computed with weights sum_i P[j, i] W_i (and bias sum_i P[j, i] b_i)
outputs sum_i P[j, i] y_i. The generator G = [I_k; P] is MDS when every k of its k + R rows are
linearly independent; then the merge decodes the missing parts from any k received ones by
solving G[S] y = received.

R = 1 is the sum code (P = ones): a missing part is the parity minus the others, exactly what
Hadidi et al. use. For R > 1 a real Vandermonde matrix on equispaced points is badly
conditioned (about 1e9 at n = 20), so G is built from the Chebyshev basis T_0..T_{k-1}
evaluated at the n = k + R Chebyshev points: any k rows are a Chebyshev-Vandermonde matrix on
distinct points (invertible), and the systematic form G V_top^-1 keeps that. `worst_condition`
measures the worst condition number over every set of k received rows, the quantity that
bounds the float error of a recovery (relative error <= cond * float eps, roughly).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from typing import Sequence

import numpy as np

MAX_PARTS = 8
MAX_PARITY = 4
MAX_CONDITION = 2500.0
"""Codes whose worst condition number exceeds this are refused: beyond it the float32 recovery error
reaches 1e-4 (k = 7 and 8 with R = 4; see `conditioning`)."""


def chebyshev_points(n: int) -> np.ndarray:
    """The n Chebyshev points of the first kind on [-1, 1]."""
    return np.cos((2 * np.arange(n) + 1) * np.pi / (2 * n))


@lru_cache(maxsize=None)
def _parity_cached(k: int, parity: int) -> tuple[tuple[float, ...], ...]:
    if parity == 1:
        return (tuple([1.0] * k),)
    n = k + parity
    points = chebyshev_points(n)
    systematic = points[::2][:k] if n >= 2 * k else _interleave(points, k)
    rest = np.array([p for p in points if p not in set(systematic)])
    basis = np.polynomial.chebyshev.chebvander
    top, bottom = basis(systematic, k - 1), basis(rest, k - 1)
    return tuple(map(tuple, bottom @ np.linalg.inv(top)))


def _interleave(points: np.ndarray, k: int) -> np.ndarray:
    """k of the points for the systematic rows, spread evenly so the parity points sit between them."""
    n = len(points)
    index = np.round(np.linspace(0, n - 1, k)).astype(int)
    return points[index]


def parity_matrix(k: int, parity: int) -> np.ndarray:
    """P (parity x k): parity part j computes sum_i P[j, i] * part_i."""
    if not 1 <= parity <= MAX_PARITY or not 2 <= k <= MAX_PARTS:
        raise ValueError(f"cdc supports 2..{MAX_PARTS} parts and 1..{MAX_PARITY} parities, not k={k}, R={parity}")
    return np.array(_parity_cached(k, parity), dtype=np.float64)


def generator(k: int, parity: int) -> np.ndarray:
    """G = [I_k; P], (k + parity) x k."""
    return np.vstack([np.eye(k), parity_matrix(k, parity)])


def encode(parts: list[np.ndarray], matrix: np.ndarray) -> list[np.ndarray]:
    """Parity arrays sum_i P[j, i] * parts[i] (the parts share one shape)."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in parts])
    return [np.tensordot(row, stacked, axes=1).astype(parts[0].dtype) for row in matrix]


def decode(received: dict[int, np.ndarray], k: int, matrix: np.ndarray) -> list[np.ndarray]:
    """All k systematic parts from any k of the k + R rows (index < k: a part, k + j: parity j).

    Extra rows beyond k are ignored (the first k present, parts first): solving a square system
    keeps the error bounded by that subset's condition number, which `worst_condition` tabulates.
    """
    if all(i in received for i in range(k)):
        return [received[i] for i in range(k)]
    rows = sorted(received)[:k]
    if len(rows) < k:
        raise ValueError(f"cannot decode: {len(rows)} of {k} needed rows arrived")
    gen = np.vstack([np.eye(k), matrix])
    shape, dtype = received[rows[0]].shape, received[rows[0]].dtype
    stacked = np.stack([np.asarray(received[r], dtype=np.float64).reshape(-1) for r in rows])
    parts = np.linalg.solve(gen[rows], stacked)
    return [received[i] if i in received else parts[i].reshape(shape).astype(dtype) for i in range(k)]


@lru_cache(maxsize=None)
def worst_condition(k: int, parity: int) -> float:
    """The largest 2-norm condition number of G[S] over every set S of k rows with a part missing."""
    gen = generator(k, parity)
    worst = 1.0
    for rows in combinations(range(k + parity), k):
        worst = max(worst, float(np.linalg.cond(gen[list(rows)])))
    return worst


def recover_parts(received: dict[int, np.ndarray], matrix: np.ndarray, axis: int,
                  ranges: Sequence[tuple[int, int]], padded: int) -> list[np.ndarray]:
    """The k part outputs of a layer whose parts (ranges along `axis`) were zero-padded to `padded` for the code:
    pad the received parts, decode, crop (rows as in `decode`)."""
    k = len(ranges)

    def pad(array: np.ndarray, row: int) -> np.ndarray:
        if row >= k or array.shape[axis] == padded:
            return array
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, padded - array.shape[axis])
        return np.pad(array, widths)

    full = decode({i: pad(a, i) for i, a in received.items()}, k, matrix)
    return [np.take(a, np.arange(hi - lo), axis=axis) if a.shape[axis] != hi - lo else a
            for a, (lo, hi) in zip(full, ranges)]
