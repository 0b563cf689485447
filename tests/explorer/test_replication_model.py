"""Replication in the explorer: the replicated cost model, its chain DP (exact against brute force), and
the 3x-slower-device case where a replica pays off."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgec.explorer.chain_dp import chain_optimum
from edgec.explorer.cost_model import CostModel, Plan
from edgec.explorer.replication import evaluate_replicated
from edgec.explorer.units import all_units
from explorer_helpers import chain_model, facts_of, platform


def runs_in_order(d: int, count: int, most: int, first: int = 0):
    """Every way of giving `count` stages disjoint, increasing runs of at most `most` devices out of 0..d-1."""
    if count == 0:
        yield ()
        return
    for i in range(first, d):
        for j in range(i, min(d, i + most)):
            for rest in runs_in_order(d, count - 1, most, j + 1):
                yield (tuple(range(i, j + 1)), *rest)


def brute_force(model: CostModel, most: int) -> float:
    u, d = model.units.count, model.platform.count
    best = np.inf
    for stages in range(1, min(u, d) + 1):
        for cuts in itertools.combinations(range(1, u), stages - 1):
            for groups in runs_in_order(d, stages, most):
                plan = Plan((0, *cuts), tuple(g[0] for g in groups), replicas=tuple(g[1:] for g in groups))
                cost = model.evaluate(plan)
                if cost.feasible:
                    best = min(best, cost.period)
    return best


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_replicated_dp_equals_brute_force_on_chains(data):
    widths = data.draw(st.lists(st.integers(1, 64), min_size=2, max_size=5))
    n, d = len(widths) - 1, data.draw(st.integers(1, 3))
    times = np.asarray(data.draw(st.lists(st.floats(0.0, 10.0), min_size=n * d, max_size=n * d))).reshape(d, n)
    bw = np.asarray(data.draw(st.lists(st.floats(1.0, 1e3), min_size=d * d, max_size=d * d))).reshape(d, d)
    mem = data.draw(st.lists(st.sampled_from([np.inf, 3000.0, 100.0]), min_size=d, max_size=d))
    facts = facts_of(chain_model(widths))
    model = CostModel(facts, all_units(facts), platform(times, bandwidth=bw, latency=data.draw(st.floats(0, 1)), mem=mem))
    optimum = chain_optimum(model, max_replicas=d)
    assert optimum.period == pytest.approx(brute_force(model, d), rel=1e-9, abs=1e-12)
    assert optimum.period <= chain_optimum(model).period + 1e-12
    if optimum.plan is not None:
        cost = model.evaluate(optimum.plan)
        assert cost.feasible and cost.period == pytest.approx(optimum.period, rel=1e-9, abs=1e-12)


def test_without_replicas_the_replicated_model_is_the_plain_one():
    facts = facts_of(chain_model([4, 8, 2, 6, 3]))
    rng = np.random.default_rng(1)
    model = CostModel(facts, all_units(facts), platform(rng.uniform(0.1, 2.0, (3, 4)), bandwidth=rng.uniform(1, 9, (3, 3)),
                                                        latency=0.1, power=(5.0, 1.0)))
    plan = Plan((0, 1, 3), (2, 0, 1))
    plain, replicated = model.evaluate(plan), evaluate_replicated(model, plan)
    for key in ("compute", "comm", "memory"):
        np.testing.assert_allclose(getattr(replicated, key), getattr(plain, key))
    assert (replicated.period, replicated.transfers) == (pytest.approx(plain.period), plain.transfers)
    assert replicated.latency == pytest.approx(plain.latency) and replicated.energy == pytest.approx(plain.energy)


def test_a_replica_halves_its_stage_and_each_link_carries_half_the_frames():
    facts = facts_of(chain_model([4, 8, 2]))
    model = CostModel(facts, all_units(facts), platform(np.array([[1.0, 0.0]] * 3), bandwidth=320.0))
    one = model.evaluate(Plan((0, 1), (0, 1)))
    two = model.evaluate(Plan((0, 1), (0, 1), replicas=((2,), ())))
    assert one.period == pytest.approx(1.0) and two.period == pytest.approx(0.5)
    assert two.comm[1] == pytest.approx(8 * 4 / 320.0)  # the consumer still receives every frame
    assert two.latency == pytest.approx(one.latency)


def test_a_slow_device_is_best_relieved_by_a_replica():
    """One unit that cannot be cut, on the one device of four that is 3x slower in a fixed chain."""
    facts = facts_of(chain_model([4, 4, 4, 4, 4]))
    times = np.ones((4, 4))
    times[1] *= 3.0
    model = CostModel(facts, all_units(facts), platform(times, bandwidth=1e9))
    plain, replicated = chain_optimum(model), chain_optimum(model, max_replicas=4)
    assert plain.period == pytest.approx(2.0)  # the slow device is left out, so a fast one takes two units
    assert replicated.period == pytest.approx(1.5)  # e.g. one unit on d0, three on d2 and d3 as two replicas
    assert any(replicated.plan.replicas)


def test_an_idle_spare_joins_the_bottleneck_stage_wherever_it_is_in_the_order():
    from edgec.explorer.replication import grow_replicas

    facts = facts_of(chain_model([4, 4, 4, 4, 4]))
    times = np.ones((5, 4))
    times[1] *= 3.0  # d1 is 3x slower; d4 is a spare the plan leaves idle
    model = CostModel(facts, all_units(facts), platform(times, bandwidth=1e9))
    plan = Plan((0, 1, 2, 3), (0, 1, 2, 3))
    grown = grow_replicas(model, plan, 2)
    assert grown.replicas == ((), (4,), (), ()) and model.evaluate(grown).period == pytest.approx(1.5)
    assert grow_replicas(model, plan, 1) == plan
