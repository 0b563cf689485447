"""The exact optimum of the throughput objective for chains: minimum bottleneck stage time.

Over an ordered device sequence (the plan's declaration order; a device may be left out, none
used twice), contiguous stages of units, each within its device's memory:

    f[b, d] = min( T(0..b on d),
                   min over a ≤ b, d' < d of max(f[a-1, d'], T(a..b on d, received over d'→d)) )
    optimum = min over d of f[U-1, d]

with T = compute + received bytes ÷ bandwidth + messages × latency (the cost model's stage
time). Time O(U²·D²) and memory O(U² + U·D) for U units and D devices; each (d', d) pair is one
vectorized U×U step. It is exact for the cost model when every tensor a stage receives comes
from the stage just before it — a chain, or any topological order where cuts are crossed only
by the previous stage's outputs. On a DAG it assumes that (a skip tensor from two stages back
is charged to the previous device's link), which is why the search re-costs its plans with the
full model and the benchmark measures what a DAG-aware search gains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cost_model import CostModel, Plan


@dataclass(frozen=True)
class ChainOptimum:
    period: float
    """The minimum bottleneck stage time in seconds; inf when no plan fits in memory."""
    plan: Plan | None

    @property
    def throughput(self) -> float:
        return 1.0 / self.period if self.period > 0 else float("inf")


def chain_optimum(model: CostModel, order: list[int] | None = None, wires: tuple[str, ...] = ("float32",),
                  max_replicas: int = 1) -> ChainOptimum:
    """The DP above over devices in `order` (default: declaration order), the best over the wire formats;
    with `max_replicas` > 1, stages may also run as replicas on consecutive devices (`replicated_dp.py`)."""
    if max_replicas > 1:
        from .replicated_dp import replicated_chain_optimum

        results = [replicated_chain_optimum(model, order, wire, max_replicas) for wire in wires]
    else:
        results = [_chain_optimum(model, order, wire) for wire in wires]
    return min(results, key=lambda r: r.period)


def relax(best: np.ndarray, arg: np.ndarray, f_prev: np.ndarray, t: np.ndarray, prev: int, cols: np.ndarray) -> None:
    """One DP step in place: for every last unit b, a stage a..b costing `t[a, b]` after the best plan
    `f_prev[a-1]` of units 0..a-1 (a later stage never starts at unit 0) improves `best[b]` when its
    bottleneck is lower; `arg[b]` keeps (a, prev) for the backtrack."""
    before = np.concatenate([[np.inf], f_prev[:-1]])
    cand = np.maximum(before[:, None], t)
    a = np.argmin(cand, axis=0)
    value = cand[a, cols]
    better = value < best
    best[better] = value[better]
    arg[better, 0] = a[better]
    arg[better, 1] = prev


def backtrack(f: np.ndarray, back: np.ndarray) -> tuple[float, list[tuple[int, int]]] | None:
    """The optimum of the filled tables and its stages in order, each as (first unit, DP state of its last unit);
    None when no plan fits. `f[state, b]` is the best bottleneck covering units 0..b ending in `state`, `back` the
    (first unit, previous state) that `relax` kept."""
    last = f[:, -1]
    if not np.isfinite(last).any():
        return None
    state = int(np.argmin(last))
    period, stages, b = float(last[state]), [], f.shape[1] - 1
    while True:
        a, prev = (int(x) for x in back[state, b])
        stages.append((a, state))
        if prev < 0:
            return period, stages[::-1]
        b, state = a - 1, prev


def _chain_optimum(model: CostModel, order: list[int] | None, wire: str) -> ChainOptimum:
    p = model.platform
    order = list(range(p.count)) if order is None else list(order)
    u, d_count = model.units.count, len(order)
    a_idx, b_idx = np.meshgrid(np.arange(u), np.arange(u), indexing="ij")
    valid = a_idx <= b_idx
    memory = np.where(valid, model.memory_range(a_idx, b_idx), np.inf)
    inf = np.inf
    f = np.full((d_count, u), inf)  # f[j, b]: best bottleneck covering units 0..b, the last stage on order[j]
    back = np.full((d_count, u, 2), -1, dtype=np.int64)  # (first unit of that stage, previous j); -1: first stage
    cols = np.arange(u)
    for j, d in enumerate(order):
        c = model.time_prefix[d][None, 1:] - model.time_prefix[d][:-1, None]
        c = np.where(valid & (memory <= p.mem_bytes[d]), c, inf)
        best = c[0].copy()
        arg = np.full((u, 2), -1, dtype=np.int64)
        arg[:, 0] = 0
        for i in range(j):
            if not np.isfinite(f[i]).any():
                continue
            src = order[i]
            t = c + model.in_bytes * (model.wire(src, d, wire) / p.bandwidth[src, d]) + model.in_msgs * p.latency[src, d]
            relax(best, arg, f[i], t, i, cols)
        f[j] = best
        back[j] = arg
    found = backtrack(f, back)
    if found is None:
        return ChainOptimum(inf, None)
    period, stages = found
    return ChainOptimum(period, Plan(tuple(a for a, _ in stages), tuple(order[j] for _, j in stages), wire))
