"""The cdc code's condition-number table and its float32 error (`python -m edgec.passes.cdc.conditioning`).

For each k and R: the worst 2-norm condition number of G[S] over every set S of k received
rows, and the worst relative error of a recovery measured on float32 data (parts and parities
rounded to float32 as a stage computes them, decoded in float64), over every set of missing
rows that loses at least one part. The error follows the condition number times float32's
rounding (about 6e-8); the README's table is this module's output.
"""

from __future__ import annotations

import argparse
from itertools import combinations

import numpy as np

from .code import MAX_PARITY, MAX_PARTS, decode, encode, parity_matrix, worst_condition


def worst_float32_error(k: int, parity: int, size: int = 4096, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    parts = [rng.standard_normal(size).astype(np.float32) for _ in range(k)]
    matrix = parity_matrix(k, parity)
    rows = dict(enumerate(parts + encode(parts, matrix)))
    scale = max(float(np.max(np.abs(p))) for p in parts)
    worst = 0.0
    for lost in range(1, parity + 1):
        for missing in combinations(range(k + parity), lost):
            if all(m >= k for m in missing):
                continue
            got = decode({i: a for i, a in rows.items() if i not in missing}, k, matrix)
            worst = max(worst, max(float(np.max(np.abs(g.astype(np.float64) - p))) for g, p in zip(got, parts)) / scale)
    return worst


def table(ks: range, parities: range) -> list[tuple[int, int, float, float]]:
    return [(k, r, worst_condition(k, r), worst_float32_error(k, r)) for k in ks for r in parities]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-k", type=int, default=MAX_PARTS)
    parser.add_argument("--max-parity", type=int, default=MAX_PARITY)
    args = parser.parse_args(argv)
    print(f"{'k':>3} {'R':>3} {'worst cond':>12} {'worst float32 rel. error':>26}")
    for k, r, cond, err in table(range(2, args.max_k + 1), range(1, args.max_parity + 1)):
        print(f"{k:>3} {r:>3} {cond:>12.1f} {err:>26.2e}")


if __name__ == "__main__":
    main()
