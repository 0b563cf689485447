"""NSGA-II (pymoo) over the split-point encoding, multi-stage as AutoDiCE does, seeded by the DP.

Levels of 2, 4, 8, … up to min(devices, units) stages each get an equal share of the time
budget; a level starts from the previous level's front (re-encoded: padding cut genes with 0
keeps the plan), the chain DP's optimum (unless `use_dp=False`), one speed-balanced plan and
random genomes. Every genome is costed with the
full analytic model (`cost_model.py`), which also charges DAG skip tensors to their real links.
After each level, hill climbing (`local_search.py`) polishes the level's three fastest plans and
the speed-balanced one (a fifth of the level's time), and the results join the next level's seeds. The memory constraint (each stage within its device's
`mem`) is a pymoo inequality constraint;
the front returned holds feasible plans only, non-dominated over all levels. With `max_replicas` > 1
the DP may replicate stages (`replicated_dp.py`); NSGA-II does not, so replicated plans enter the
front through the DP's optimum and through the fastest plans seen, each given replicas on its idle
devices (`replication.grow_replicas`: the DP's runs are consecutive devices, this reaches the rest).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

from .chain_dp import ChainOptimum, chain_optimum
from .cost_model import CostModel, Plan, PlanCost
from .encoding import Encoding
from .local_search import polish

OBJECTIVES = ("throughput", "latency", "memory", "energy")


def objective_values(cost: PlanCost, objectives: tuple[str, ...]) -> list[float]:
    """All minimized: the period (1/throughput), latency s, peak device memory bytes, energy J/frame."""
    table = {"throughput": cost.period, "latency": cost.latency, "memory": cost.peak_memory, "energy": cost.energy}
    return [table[o] for o in objectives]


@dataclass
class Candidate:
    plan: Plan
    cost: PlanCost


@dataclass
class SearchResult:
    front: list[Candidate]
    optimum: ChainOptimum
    seconds: float
    evaluations: int
    best_found_s: float
    """Seconds from the start until the best throughput of the front was first reached."""
    levels: list[dict] = field(default_factory=list)
    history: list[tuple[float, float]] = field(default_factory=list)
    """(seconds, best feasible period) at every improvement."""

    def time_to(self, period: float) -> float | None:
        """Seconds until a feasible plan with at most `period` was first found (None: never)."""
        return next((t for t, p in self.history if p <= period), None)


def _cost(model: CostModel, plan: Plan, seen: dict, stats: dict) -> PlanCost:
    """The plan's cost, computed once; records the time of every new best feasible period."""
    cost = seen.get(plan)
    if cost is None:
        cost = model.evaluate(plan)
        seen[plan] = cost
        if cost.feasible and cost.period < stats["best"]:
            stats["best"], stats["at"] = cost.period, time.perf_counter() - stats["start"]
            stats["history"].append((stats["at"], cost.period))
    return cost


def _violation(model: CostModel, cost: PlanCost, plan: Plan) -> float:
    caps = model.platform.mem_bytes[list(plan.devices)]
    return float(np.max(np.where(np.isfinite(caps), cost.memory / caps - 1.0, -1.0)))


def _problem(model: CostModel, encoding: Encoding, objectives: tuple[str, ...], seen: dict, stats: dict):
    from pymoo.core.problem import Problem

    class SplitProblem(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=encoding.size, n_obj=len(objectives), n_ieq_constr=1,
                             xl=encoding.lower, xu=encoding.upper, vtype=int)

        def _evaluate(self, x, out, *args, **kwargs) -> None:
            f = np.empty((len(x), len(objectives)))
            g = np.empty((len(x), 1))
            for i, genome in enumerate(x):
                plan = encoding.decode(genome)
                cost = _cost(model, plan, seen, stats)
                stats["evaluations"] += 1
                f[i] = objective_values(cost, objectives)
                g[i, 0] = _violation(model, cost, plan)
            out["F"], out["G"] = f, g

    return SplitProblem()


def balanced_plan(model: CostModel, stages: int) -> Plan:
    """A heuristic seed: a chain of devices that starts at the fastest and always goes on over the
    widest link (the faster device on a tie), each device given a share of the compute in
    proportion to its speed, cut at the nearest unit boundaries (memory is left to the search)."""
    total = model.time_prefix[:, -1]
    bandwidth = model.platform.bandwidth
    order = [int(np.argmin(total))]
    while len(order) < stages:
        rest = [d for d in range(len(total)) if d not in order]
        order.append(max(rest, key=lambda d: (bandwidth[order[-1], d], -total[d])))
    share = 1.0 / np.maximum(total[order], 1e-12)
    done = model.time_prefix[order[0], 1:] / max(total[order[0]], 1e-12)
    cuts = np.searchsorted(done, np.cumsum(share / share.sum())[:-1]) + 1
    starts = sorted({0, *(int(c) for c in cuts if 0 < c < model.units.count)})
    return Plan(tuple(starts), tuple(order[: len(starts)]))


def levels_for(max_stages: int) -> list[int]:
    levels, s = [], 2
    while s < max_stages:
        levels.append(s)
        s *= 2
    return levels + [max_stages]


def nondominated(candidates: list[Candidate], objectives: tuple[str, ...]) -> list[Candidate]:
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    feasible = [c for c in candidates if c.cost.feasible]
    if not feasible:
        return []
    f = np.asarray([objective_values(c.cost, objectives) for c in feasible])
    front = NonDominatedSorting().do(f, only_non_dominated_front=True)
    chosen = sorted((feasible[i] for i in front), key=lambda c: (c.cost.period, c.cost.latency))
    unique: dict[tuple, Candidate] = {}
    for c in chosen:
        unique.setdefault(tuple(objective_values(c.cost, objectives)), c)
    return list(unique.values())


def explore(model: CostModel, objectives: tuple[str, ...] = ("throughput", "latency", "memory"), *,
            budget_s: float = 20.0, population: int = 64, seed: int = 0, use_dp: bool = True,
            wires: tuple[str, ...] = ("float32",),
            max_stages: int | None = None, max_replicas: int = 1,
            progress: Callable[[str], None] = lambda _m: None) -> SearchResult:
    try:
        from pymoo.algorithms.moo.nsga2 import NSGA2
    except ImportError:
        from ..compiler.diagnostics import UsageError

        raise UsageError("edgec explore needs pymoo", hint="pip install 'edgec[explore]'") from None
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.mutation.pm import PM
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.optimize import minimize
    from pymoo.termination.max_time import TimeBasedTermination

    start = time.perf_counter()
    optimum = chain_optimum(model, wires=wires, max_replicas=max_replicas) if use_dp else ChainOptimum(np.inf, None)
    stats = {"best": np.inf, "at": 0.0, "start": start, "evaluations": 0, "history": []}
    seen: dict[Plan, PlanCost] = {}
    top = min(model.platform.count, model.units.count, max_stages or model.platform.count)
    if optimum.plan is not None:
        cost = model.evaluate(optimum.plan)
        seen[optimum.plan] = cost
        if use_dp and cost.feasible:
            stats["best"], stats["at"] = cost.period, time.perf_counter() - start
            stats["history"].append((stats["at"], cost.period))
    rng = np.random.default_rng(seed)
    previous: list[Plan] = []
    records = []
    levels = levels_for(top) if top >= 2 else [1]
    remaining = budget_s - (time.perf_counter() - start)
    for n, stages in enumerate(levels):
        share = max(remaining / (len(levels) - n), 0.05)
        level_start = time.perf_counter()
        encoding = Encoding(model.units.count, model.platform.count, stages, wires)
        seeds = [encoding.encode(p) for p in previous if len(p.starts) <= stages]
        seeds += [encoding.encode(replace(balanced_plan(model, stages), wire=w)) for w in wires]
        if use_dp and optimum.plan is not None and len(optimum.plan.starts) <= stages:
            seeds.append(encoding.encode(optimum.plan))
        seeds = seeds[:population]
        randoms = rng.integers(encoding.lower, encoding.upper + 1, size=(population - len(seeds), encoding.size))
        sampling = np.vstack([np.asarray(seeds).reshape(-1, encoding.size), randoms]) if seeds else randoms
        algorithm = NSGA2(pop_size=population, sampling=sampling,
                          crossover=SBX(prob=0.9, eta=3.0, vtype=float, repair=RoundingRepair()),
                          mutation=PM(prob=1.0, eta=3.0, vtype=float, repair=RoundingRepair()),
                          eliminate_duplicates=True)
        progress(f"NSGA-II level {n + 1}/{len(levels)}: up to {stages} stages, {share:.1f} s")
        result = minimize(_problem(model, encoding, objectives, seen, stats), algorithm,
                          TimeBasedTermination(0.8 * share), seed=seed + n, verbose=False)
        population_x = result.pop.get("X") if result.pop is not None else np.empty((0, encoding.size))
        plans = [encoding.decode(x) for x in population_x]
        level_front = nondominated([Candidate(p, seen[p]) for p in dict.fromkeys(plans)], objectives)
        previous = [c.plan for c in level_front]
        starts_from = [c.plan for c in sorted(level_front, key=lambda c: c.cost.period)[:3]]
        for plan in starts_from + [balanced_plan(model, stages)]:
            polished = polish(model, plan, lambda p: _cost(model, p, seen, stats), 0.05 * share)
            if len(polished.starts) <= stages and polished not in previous:
                previous.insert(0, polished)
        records.append({"stages": stages, "seconds": time.perf_counter() - level_start,
                        "generations": int(result.algorithm.n_gen or 0), "front": len(level_front)})
        remaining = budget_s - (time.perf_counter() - start)
    if max_replicas > 1:
        _grow_fastest(model, seen, max_replicas)
    front = nondominated([Candidate(p, c) for p, c in seen.items()], objectives)
    return SearchResult(front, optimum, time.perf_counter() - start, stats["evaluations"], stats["at"], records,
                        stats["history"])


def _grow_fastest(model: CostModel, seen: dict[Plan, PlanCost], max_replicas: int, count: int = 8) -> None:
    """The `count` fastest feasible plans seen, each with replicas grown on its idle devices (`grow_replicas`)."""
    from .replication import grow_replicas

    fastest = sorted((p for p, c in seen.items() if c.feasible), key=lambda p: seen[p].period)[:count]
    for plan in fastest:
        grown = grow_replicas(model, plan, max_replicas)
        if grown not in seen:
            seen[grown] = model.evaluate(grown)


def random_search(model: CostModel, objectives: tuple[str, ...], budget_s: float, seed: int = 0,
                  wires: tuple[str, ...] = ("float32",)) -> list[Candidate]:
    """The baseline: uniformly random genomes of the largest encoding for the same time."""
    top = min(model.platform.count, model.units.count)
    encoding = Encoding(model.units.count, model.platform.count, top, wires)
    rng = np.random.default_rng(seed)
    seen: dict[Plan, PlanCost] = {}
    start = time.perf_counter()
    while time.perf_counter() - start < budget_s:
        for genome in rng.integers(encoding.lower, encoding.upper + 1, size=(64, encoding.size)):
            plan = encoding.decode(genome)
            if plan not in seen:
                seen[plan] = model.evaluate(plan)
    return nondominated([Candidate(p, c) for p, c in seen.items()], objectives)
