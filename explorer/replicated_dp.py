"""The chain DP with replication: the exact optimum of `replication.py`'s model over runs of devices.

Over the ordered device sequence of `chain_dp.py`, a stage now takes a *run* R = order[i..j] of
consecutive devices (r = j − i + 1 ≤ `max_replicas` replicas; r = 1 is an ordinary stage), runs
are disjoint and in order, devices may be left out. With c_d(a..b) the compute of units a..b on d,

    T(a..b on R | from P) = max_{d∈R} [ c_d(a..b) + in_bytes(a,b) · max_{p∈P} wire(p,d)/bw(p,d)
                                                  + in_msgs(a,b) · max_{p∈P} latency(p,d) ] / r
    f[b, R] = min( T(0..b on R),  min over a ≤ b, runs P before R of max(f[a−1, P], T(a..b on R | from P)) )
    optimum = min over R of f[U−1, R]

each stage within the memory of every device of its run. For r = 1 everywhere this is
`chain_dp.py`'s recurrence, so its optimum is never worse. There are N ≤ D·ρ runs (ρ =
`max_replicas`); each (P, R) pair is one vectorized U×U step over r devices: time O(U²·N²·ρ),
memory O(ρ·U² + U·N). Exact for the model under `chain_dp.py`'s condition (a stage receives only
from the stage before it); on a DAG the search re-costs the plan with the full model.
"""

from __future__ import annotations

import numpy as np

from .chain_dp import ChainOptimum, backtrack, relax
from .cost_model import CostModel, Plan


def replicated_chain_optimum(model: CostModel, order: list[int] | None = None, wire: str = "float32",
                             max_replicas: int | None = None) -> ChainOptimum:
    p = model.platform
    order = list(range(p.count)) if order is None else list(order)
    most = len(order) if max_replicas is None else max(1, min(max_replicas, len(order)))
    runs = [(i, j) for j in range(len(order)) for i in range(max(0, j - most + 1), j + 1)]
    u = model.units.count
    a_idx, b_idx = np.meshgrid(np.arange(u), np.arange(u), indexing="ij")
    valid = a_idx <= b_idx
    memory = np.where(valid, model.memory_range(a_idx, b_idx), np.inf)
    inf = np.inf
    f = np.full((len(runs), u), inf)
    back = np.full((len(runs), u, 2), -1, dtype=np.int64)
    cols = np.arange(u)
    for n, (i, j) in enumerate(runs):
        devices = order[i:j + 1]
        r = len(devices)
        cap = min(p.mem_bytes[d] for d in devices)
        fits = valid & (memory <= cap)
        computes = [np.where(fits, model.time_prefix[d][None, 1:] - model.time_prefix[d][:-1, None], inf) for d in devices]
        best = np.max(computes, axis=0)[0] / r
        arg = np.full((u, 2), -1, dtype=np.int64)
        arg[:, 0] = 0
        for m, (pi, pj) in enumerate(runs):
            if pj >= i or not np.isfinite(f[m]).any():
                continue
            sources = order[pi:pj + 1]
            t = np.full((u, u), -inf)
            for d, c in zip(devices, computes):
                per_byte = max(model.wire(s, d, wire) / p.bandwidth[s, d] for s in sources)
                per_msg = max(p.latency[s, d] for s in sources)
                t = np.maximum(t, c + model.in_bytes * per_byte + model.in_msgs * per_msg)
            relax(best, arg, f[m], t / r, m, cols)
        f[n] = best
        back[n] = arg
    found = backtrack(f, back)
    if found is None:
        return ChainOptimum(inf, None)
    period, stages = found
    groups = [tuple(order[runs[n][0]:runs[n][1] + 1]) for _, n in stages]
    replicas = tuple(g[1:] for g in groups)
    return ChainOptimum(period, Plan(tuple(a for a, _ in stages), tuple(g[0] for g in groups), wire,
                                     replicas if any(replicas) else ()))
