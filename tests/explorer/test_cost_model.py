"""The analytic model on hand-computed cases, and the chain DP against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from edgec.explorer.chain_dp import chain_optimum
from edgec.explorer.cost_model import CostModel, Plan
from edgec.explorer.units import all_units, candidate_units
from explorer_helpers import chain_model, facts_of, platform


def test_two_stage_chain_by_hand():
    facts = facts_of(chain_model([4, 8, 2, 3]))  # mm0 [1,8], mm1 [1,2], mm2 [1,3]
    times = np.array([[1.0, 2.0, 3.0], [0.5, 1.0, 1.5]])
    model = CostModel(facts, all_units(facts), platform(times, bandwidth=4.0, latency=0.25, power=(10.0, 1.0)))
    cost = model.evaluate(Plan((0, 2), (0, 1)))  # mm0, mm1 on d0; mm2 on d1 receives y1: 2 floats = 8 bytes
    assert cost.compute.tolist() == [3.0, 1.5]
    assert cost.comm.tolist() == [0.0, 8 / 4.0 + 0.25]
    assert cost.period == 3.75 and cost.throughput == pytest.approx(1 / 3.75)
    assert cost.latency == 3.0 + 3.75
    assert cost.energy == pytest.approx(10 * 3.0 + 1 * 0.75 + 10 * 3.75)
    weights = [4 * 8 * 4 + 8 * 2 * 4, 2 * 3 * 4]
    work = [(4 + 8) * 4, (2 + 3) * 4]  # the largest node working set of each stage
    assert cost.memory.tolist() == [weights[0] + 8 + work[0], weights[1] + 8 + work[1]]
    assert cost.transfers == [(0, 1, 8)]


def test_skip_tensor_goes_from_its_producer_to_each_reader():
    from onnx import TensorProto, helper

    relu = lambda name, x: helper.make_node("Relu", [x], [name], name=name)  # noqa: E731
    graph = helper.make_graph([relu("a", "x"), relu("b", "a"), relu("c", "b"),
                               helper.make_node("Add", ["a", "c"], ["d"], name="d")], "skip",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                              [helper.make_tensor_value_info("d", TensorProto.FLOAT, [1, 10])])
    facts = facts_of(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    bw = np.array([[1.0, 40.0, 20.0], [40.0, 1.0, 40.0], [20.0, 40.0, 1.0]])
    model = CostModel(facts, all_units(facts), platform(np.ones((3, 4)), bandwidth=bw))
    cost = model.evaluate(Plan((0, 1, 3), (0, 1, 2)))  # a | b c | d: `a` goes to stage 1 and to stage 2
    assert cost.comm.tolist() == [0.0, 40 / 40.0, 40 / 40.0 + 40 / 20.0]
    assert sorted(cost.transfers) == [(0, 1, 40), (0, 2, 40), (1, 2, 40)]
    assert cost.latency == 1 + (2 + 1) + (1 + 3)  # finish: 1, then 1 + 3, then max(1, 4) + 4


def test_memory_over_capacity_is_infeasible():
    facts = facts_of(chain_model([4, 8, 2]))
    model = CostModel(facts, all_units(facts), platform(np.ones((2, 2)), mem=[200.0, 1e9]))
    assert not model.evaluate(Plan((0,), (0,))).feasible
    assert model.evaluate(Plan((0,), (1,))).feasible


def brute_force(model: CostModel) -> float:
    u, d = model.units.count, model.platform.count
    best = np.inf
    for stages in range(1, min(u, d) + 1):
        for cuts in itertools.combinations(range(1, u), stages - 1):
            for devices in itertools.combinations(range(d), stages):
                cost = model.evaluate(Plan((0, *cuts), devices))
                if cost.feasible:
                    best = min(best, cost.period)
    return best


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_dp_equals_brute_force_on_chains(data):
    widths = data.draw(st.lists(st.integers(1, 64), min_size=2, max_size=7))
    n, d = len(widths) - 1, data.draw(st.integers(1, 3))
    times = np.asarray(data.draw(st.lists(st.floats(0.0, 10.0), min_size=n * d, max_size=n * d))).reshape(d, n)
    bw = np.asarray(data.draw(st.lists(st.floats(1.0, 1e3), min_size=d * d, max_size=d * d))).reshape(d, d)
    latency = data.draw(st.floats(0.0, 1.0))
    mem = data.draw(st.lists(st.sampled_from([np.inf, 3000.0, 800.0, 100.0]), min_size=d, max_size=d))
    facts = facts_of(chain_model(widths))
    model = CostModel(facts, all_units(facts), platform(times, bandwidth=bw, latency=latency, mem=mem))
    optimum = chain_optimum(model)
    expected = brute_force(model)
    assert optimum.period == pytest.approx(expected, rel=1e-9, abs=1e-12)
    if optimum.plan is not None:
        cost = model.evaluate(optimum.plan)
        assert cost.feasible and cost.period == pytest.approx(optimum.period, rel=1e-9, abs=1e-12)
        assert list(optimum.plan.devices) == sorted(set(optimum.plan.devices))


def test_candidate_units_keep_the_cheapest_cuts():
    facts = facts_of(chain_model([8, 64, 2, 64, 4, 64]))
    units = candidate_units(facts, np.ones(facts.size), points=2)
    assert units.starts.tolist() == [0, 2, 4]  # after mm1 (2 floats) and mm3 (4 floats)


def test_wire_format_scales_the_bytes_on_each_link():
    from dataclasses import replace

    facts = facts_of(chain_model([4, 8, 2, 3]))
    base = platform(np.ones((2, 3)), bandwidth=4.0)
    half = replace(base, wire_factor=np.full((2, 2), 0.5))
    plan = Plan((0, 2), (0, 1))
    assert CostModel(facts, all_units(facts), half).evaluate(plan).comm[1] == 8 * 0.5 / 4.0
    assert CostModel(facts, all_units(facts), half).evaluate(plan).transfers == [(0, 1, 4)]
    assert CostModel(facts, all_units(facts), base).evaluate(plan).comm[1] == 8 / 4.0


def test_balanced_seed_gives_the_faster_device_the_larger_share():
    from edgec.explorer.search import balanced_plan

    facts = facts_of(chain_model([4] * 9))  # 8 equal nodes
    times = np.vstack([np.ones(8), 3 * np.ones(8)])  # d0 three times as fast as d1
    plan = balanced_plan(CostModel(facts, all_units(facts), platform(times)), 2)
    assert plan == Plan((0, 6), (0, 1))


def test_platform_costs_from_speed_own_profile_and_links(tmp_path):
    import json

    from edgec.dsl.lower import lower_platform
    from edgec.dsl.parser import parse_plan
    from edgec.explorer.platform_costs import platform_costs

    names = ["a", "b"]
    base = {"format": "edgec-profile", "nodes": names, "mpi": {"message_overhead_s": 0.001, "bandwidth_Bps": 1e9},
            "threads": {"1": {"node_seconds": [1.0, 2.0]}, "2": {"node_seconds": [0.6, 1.2]}}}
    (tmp_path / "own.json").write_text(json.dumps({**base, "threads": {"4": {"node_seconds": [5.0, 5.0]}}}))
    plan = parse_plan('device x { cores 2 speed 50% }\ndevice y { cores 4 profile "own.json" }\ndevice z { cores 1 }\n'
                      "link x <-> y { bandwidth 8Mbit latency 2ms }\n", str(tmp_path / "p.edge"))
    costs = platform_costs(lower_platform(plan), base, names, tmp_path)
    assert costs.node_time.tolist() == [[1.2, 2.4], [5.0, 5.0], [1.0, 2.0]]
    assert costs.bandwidth[0, 1] == 1e6 and costs.latency[0, 1] == pytest.approx(0.003)
    assert costs.bandwidth[0, 2] == 1e9 and costs.latency[0, 2] == 0.001


def test_polish_balances_a_two_stage_chain():
    from edgec.explorer.local_search import polish

    facts = facts_of(chain_model([4] * 9))
    model = CostModel(facts, all_units(facts), platform(np.ones((2, 8)), bandwidth=1e12))
    best = polish(model, Plan((0, 1), (0, 1)), model.evaluate, budget_s=5.0)
    assert model.evaluate(best).period == pytest.approx(4.0)
    assert model.evaluate(best).period == pytest.approx(chain_optimum(model).period)
