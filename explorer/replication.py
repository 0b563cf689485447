"""The cost of a plan whose stages may run as several replicas (`replicate`): frame f on replica f mod r.

For stage k with replica devices G_k (its device first), r_k = |G_k|, and for each replica d ∈ G_k:

    compute_{k,d} = Σ profiled time of the stage's nodes on d
    comm_{k,d}    = Σ over stages m it receives from:
                        bytes(m→k) · max_{p∈G_m} wire(p, d) / bandwidth(p, d) + msgs(m→k) · max_{p∈G_m} latency(p, d)
    t_{k,d}       = compute_{k,d} + comm_{k,d}
    stage_k       = max_{d∈G_k} t_{k,d} / r_k

Round-robin dealing gives each replica every r_k-th frame, so a replica's time (its compute and
its link's transfers alike: each link carries 1/r of the frames) is spread over r_k frames, and the
slowest replica sets the stage's pace. A frame may come from any producer replica, so the model
charges the slowest bandwidth and the slowest latency among them (exact for uniform links, an
upper bound otherwise). With every r_k = 1 this is `CostModel.evaluate`'s model term for term.
Latency follows a frame through one replica per stage (the slowest, undivided); memory: each
replica's device holds the whole stage; energy: replica d is busy t_{k,d} / r_k per frame.
"""

from __future__ import annotations

import numpy as np

from .cost_model import WIRE_FACTORS, CostModel, Plan, PlanCost


def replica_sets(plan: Plan) -> list[tuple[int, ...]]:
    """G_k per stage: the stage's device, then its further replicas' (`plan.replicas`, () when none)."""
    extra = plan.replicas or ((),) * len(plan.devices)
    return [(d, *more) for d, more in zip(plan.devices, extra)]


def link_factors(model: CostModel, wire: str, sources: tuple[int, ...], d: int) -> tuple[float, float]:
    """(seconds per byte, seconds per message) charged to a replica on `d` receiving from replicas on `sources`."""
    p = model.platform
    per_byte = max(model.wire(s, d, wire) / p.bandwidth[s, d] for s in sources)
    return float(per_byte), float(max(p.latency[s, d] for s in sources))


def stage_pairs(model: CostModel, plan: Plan) -> dict[tuple[int, int], tuple[float, int]]:
    """(src stage, dst stage) → (float32 bytes, messages) of the tensors the dst stage receives from the src stage."""
    starts = np.asarray(plan.starts, dtype=np.int64)
    k = len(starts)
    stage_of = np.searchsorted(starts, np.arange(model.units.count), side="right") - 1
    pairs: dict[tuple[int, int], tuple[float, int]] = {}
    if not len(model.pair_value):
        return pairs
    src = stage_of[model.producer_unit[model.pair_value]]
    dst = stage_of[model.pair_unit]
    cross = src != dst
    keys = np.unique(model.pair_value[cross] * k + dst[cross])
    for value, d in zip((keys // k).tolist(), (keys % k).tolist()):
        s = int(stage_of[model.producer_unit[value]])
        size, count = pairs.get((s, d), (0.0, 0))
        pairs[(s, d)] = (size + float(model.value_bytes[value]), count + 1)
    return pairs


def evaluate_replicated(model: CostModel, plan: Plan) -> PlanCost:
    """The module docstring's model for `plan` (replicas or not)."""
    groups = replica_sets(plan)
    k = len(groups)
    starts = np.asarray(plan.starts, dtype=np.int64)
    ends = np.append(starts[1:] - 1, model.units.count - 1)
    pairs = stage_pairs(model, plan)
    p = model.platform
    times = []
    for i, group in enumerate(groups):
        row = []
        for d in group:
            compute = float(model.time_prefix[d, ends[i] + 1] - model.time_prefix[d, starts[i]])
            comm = 0.0
            for (s, t), (size, count) in pairs.items():
                if t == i:
                    per_byte, per_msg = link_factors(model, plan.wire, groups[s], d)
                    comm += size * per_byte + count * per_msg
            row.append((compute, comm))
        times.append(row)
    compute, comm, full = np.zeros(k), np.zeros(k), np.zeros(k)
    for i, row in enumerate(times):
        c, m = max(row, key=lambda cm: cm[0] + cm[1])
        r = len(row)
        compute[i], comm[i], full[i] = c / r, m / r, c + m
    period = float((compute + comm).max())
    senders: list[set[int]] = [set() for _ in range(k)]
    for s, t in pairs:
        senders[t].add(s)
    finish = np.zeros(k)
    for i in range(k):
        finish[i] = max((finish[m] for m in senders[i]), default=0.0) + full[i]
    memory = np.asarray(model.memory_range(starts, ends), dtype=float)
    energy = sum(p.power_active[d] * (c + m) / len(row) + p.power_idle[d] * (period - (c + m) / len(row))
                 for group, row in zip(groups, times) for d, (c, m) in zip(group, row))
    feasible = all(memory[i] <= min(p.mem_bytes[d] for d in group) for i, group in enumerate(groups))
    transfers = [(s, t, int(round(size * WIRE_FACTORS[plan.wire]))) for (s, t), (size, _n) in sorted(pairs.items())]
    return PlanCost(compute, comm, memory, period, float(finish.max()), float(energy), bool(feasible), transfers)


def grow_replicas(model: CostModel, plan: Plan, max_replicas: int) -> Plan:
    """Greedily give the bottleneck stage one more replica on a device the plan leaves idle, the one that
    lowers the period most, while one does and the stage has fewer than `max_replicas`.

    Why beside the DP: `replicated_dp.py` is exact only over runs of consecutive devices in one order,
    so an idle device elsewhere in the order (a spare added last) never joins a stage there; this
    reaches such plans from any seed. Not an optimum: one device per step, the bottleneck only."""
    best, cost = plan, model.evaluate(plan)
    while cost.feasible:
        groups = replica_sets(best)
        used = {d for g in groups for d in g}
        k = int(np.argmax(cost.stage_time))
        if len(groups[k]) >= max_replicas:
            break
        trials = []
        for d in range(model.platform.count):
            if d in used:
                continue
            extra = tuple(g[1:] + ((d,) if i == k else ()) for i, g in enumerate(groups))
            candidate = Plan(best.starts, best.devices, best.wire, extra)
            trial = model.evaluate(candidate)
            if trial.feasible and trial.period < cost.period * (1 - 1e-9):
                trials.append((trial.period, d, candidate, trial))
        if not trials:
            break
        _period, _d, best, cost = min(trials, key=lambda t: (t[0], t[1]))
    return best
