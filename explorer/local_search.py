"""Hill climbing on the bottleneck: the memetic step after each NSGA-II level.

Why: NSGA-II spreads its population over the whole front, so the throughput extreme gets little
selection pressure, and moving one cut by one unit — what balances a pipeline — is a rare
mutation. From a plan, the moves are: shift a stage boundary by ±1, ±2, ±4, … units; give a
stage an unused device; swap two stages' devices; merge a stage into its neighbour; split the
slowest stage in two at any unit with an unused device before or after it. The first move to a feasible plan whose
stage times, sorted from the slowest, are lexicographically smaller is taken (the period first:
comparing the next-slowest stages too lets the climb cross the plateaus a bottleneck objective
has), until no move helps or the time is up.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

from .cost_model import CostModel, Plan, PlanCost


def _moves(plan: Plan, units: int, devices: int, slowest: int) -> Iterator[Plan]:
    starts, devs = list(plan.starts), list(plan.devices)
    k = len(starts)
    for i in range(1, k):
        lo, hi = starts[i - 1] + 1, (starts[i + 1] - 1 if i + 1 < k else units - 1)
        step = 1
        while step <= units:
            for s in (starts[i] - step, starts[i] + step):
                if lo <= s <= hi and s != starts[i]:
                    yield Plan(tuple(starts[:i] + [s] + starts[i + 1:]), plan.devices, plan.wire)
            step *= 2
    unused = [d for d in range(devices) if d not in devs]
    for i in range(k):
        for d in unused:
            yield Plan(plan.starts, tuple(devs[:i] + [d] + devs[i + 1:]), plan.wire)
        for j in range(i + 1, k):
            swapped = devs.copy()
            swapped[i], swapped[j] = swapped[j], swapped[i]
            yield Plan(plan.starts, tuple(swapped), plan.wire)
    for i in range(1, k):
        yield Plan(tuple(starts[:i] + starts[i + 1:]), tuple(devs[:i] + devs[i + 1:]), plan.wire)
        yield Plan(tuple(starts[:i] + starts[i + 1:]), tuple(devs[:i - 1] + devs[i:]), plan.wire)
    end = starts[slowest + 1] if slowest + 1 < k else units
    for cut in range(starts[slowest] + 1, end):
        for d in unused:
            yield Plan(tuple(starts[:slowest + 1] + [cut] + starts[slowest + 1:]),
                       tuple(devs[:slowest + 1] + [d] + devs[slowest + 1:]), plan.wire)
            yield Plan(tuple(starts[:slowest + 1] + [cut] + starts[slowest + 1:]),
                       tuple(devs[:slowest] + [d] + devs[slowest:]), plan.wire)


def _rank(cost: PlanCost) -> tuple[float, ...]:
    return tuple(sorted(cost.stage_time.tolist(), reverse=True))


def polish(model: CostModel, plan: Plan, cost_of: Callable[[Plan], PlanCost], budget_s: float) -> Plan:
    """The plan hill climbing reaches from `plan` (itself when no move helps); `cost_of` caches costs."""
    deadline = time.perf_counter() + budget_s
    best, best_cost = plan, cost_of(plan)
    improved = True
    while improved and time.perf_counter() < deadline:
        improved = False
        slowest = int(best_cost.stage_time.argmax())
        for candidate in _moves(best, model.units.count, model.platform.count, slowest):
            cost = cost_of(candidate)
            if cost.feasible and (not best_cost.feasible or _rank(cost) < _rank(best_cost)):
                best, best_cost, improved = candidate, cost, True
                break
            if time.perf_counter() >= deadline:
                break
    return best
