"""The cdc-encode pass on tiny graphs: parity parts encode, every missing set decodes, errors are located."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from edgec.compiler.annotations import CDC_LAYERS, placement_of
from edgec.compiler.diagnostics import PlanError
from edgec.passes.cdc.code import worst_condition
from cdc_helpers import coded, conv_model, fc_model, plan, run_rows
from split_helpers import run

RNG = np.random.default_rng(0)


def _feeds(model):
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    return {"x": RNG.standard_normal(shape).astype(np.float32)}


def _rel(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def _check_recovery(model, k, parity, **kw):
    program = coded(model, plan(k, parity, **kw))
    feeds = _feeds(model)
    (expected,) = run(model, feeds)
    outputs, rows = run_rows(program, feeds)
    assert _rel(outputs[0], expected) < 1e-5
    (layer,) = program.model.meta[CDC_LAYERS]
    assert (layer.k, layer.parity) == (k, parity)
    checked = 0
    for lost in range(1, parity + 1):
        for missing in combinations(range(k + parity), lost):
            if all(m >= k for m in missing):
                continue
            received = {i: a for i, a in rows.items() if i not in missing}
            merged = np.concatenate(layer.recover(received), axis=layer.axis)
            assert _rel(merged, expected) < 1e-4, missing
            checked += 1
    assert checked > 0
    return program, layer


@pytest.mark.parametrize("k,parity", [(2, 1), (3, 1), (4, 1), (3, 2), (4, 2), (4, 3)])
def test_gemm_recovers_every_missing_set(k, parity):
    _check_recovery(fc_model(n=10), k, parity)


@pytest.mark.parametrize("k,parity", [(4, 1), (4, 2)])
def test_conv_and_matmul_recover_every_missing_set(k, parity):
    _check_recovery(conv_model(cout=7), k, parity)
    _check_recovery(fc_model(n=9, op="MatMul"), k, parity)


def test_gemm_without_transposed_weight():
    _check_recovery(fc_model(n=8, trans_b=0), 4, 1)


def test_sum_code_parity_is_the_sum_of_the_parts_on_its_target():
    program, layer = _check_recovery(fc_model(n=8), 4, 1)
    _, rows = run_rows(program, _feeds(fc_model(n=8)))
    np.testing.assert_allclose(rows[4], sum(rows[i] for i in range(4)), rtol=1e-5, atol=1e-5)
    parity = program.node(layer.parities[0])
    assert placement_of(parity).device == "d7" and layer.parity_devices == ("d7",)
    assert layer.part_devices == ("d0", "d1", "d2", "d3")


def test_uneven_parts_are_padded_for_the_code():
    _, layer = _check_recovery(fc_model(n=10), 3, 2)
    assert layer.padded == 4 and layer.ranges == ((0, 4), (4, 7), (7, 10))


def test_parity_targets_one_per_parity_part():
    program, layer = _check_recovery(fc_model(), 3, 2, targets="d5, d6")
    assert layer.parity_devices == ("d5", "d6")


def test_activation_runs_after_the_merge_not_inside_the_coded_parts():
    model = fc_model(n=8, follower="Relu")
    program = coded(model, plan(4, 1))
    feeds = _feeds(model)
    outputs, rows = run_rows(program, feeds)
    np.testing.assert_allclose(outputs[0], run(model, feeds)[0], rtol=1e-5, atol=1e-6)
    relu = [n for n in program.nodes() if n.op_type == "Relu"]
    assert len(relu) == 1 and relu[0].inputs[0].producer().op_type == "Concat"


def test_a_plan_without_cdc_is_unchanged_by_the_pass():
    import edgec
    from edgec.passes import CdcEncode, SplitLayer

    program = edgec.load_program(fc_model(), plan(2, 1).replace("cdc fc parity 1 on d7\n", ""))
    SplitLayer()(program)
    before = [n.name for n in program.nodes()]
    assert not CdcEncode()(program).modified
    assert [n.name for n in program.nodes()] == before and CDC_LAYERS not in program.model.meta


@pytest.mark.parametrize("text,match", [
    (plan(2, 1).replace("split fc by output into 2 on d0, d1\n", ""), "is not split"),
    (plan(2, 1, kind="input"), "split by input"),
    (plan(2, 1, targets="nowhere"), "unknown device 'nowhere'"),
    (plan(2, 2, targets="d5, d6, d7"), "parity 2 needs 2 targets"),
    (plan(2, 5), "parity 5 is not supported"),
    (plan(2, 1) + "cdc fc parity 1 on d6\n", "already coded"),
])
def test_plan_errors_are_located(text, match):
    with pytest.raises(PlanError, match=match) as info:
        coded(fc_model(), text)
    assert info.value.span is not None and info.value.span.line >= 9


def test_grouped_conv_is_refused():
    from graphs import Net

    net = Net({"x": [1, 4, 5, 5]})
    net.op("Conv", "fc", ["x", net.weight("w", 4, 1, 3, 3)], pads=[1] * 4, group=4)
    with pytest.raises(PlanError, match="grouped convolution"):
        coded(net.model(["fc"]), plan(2, 1, kind="filter"))


@pytest.mark.parametrize("k,parity,bound", [(4, 1, 5), (4, 2, 34), (8, 1, 9), (8, 2, 360)])
def test_generator_stays_well_conditioned(k, parity, bound):
    assert worst_condition(k, parity) < bound


def test_a_code_too_badly_conditioned_for_float32_is_refused():
    text = plan(8, 4).replace("split fc by output into 8 on d0, d1, d2, d3, d4, d5, d6, d7",
                              "split fc by output into 8 on d0")
    with pytest.raises(PlanError, match="worst condition number is 10805"):
        coded(fc_model(n=16), text)


def test_a_pruned_coded_layer_is_refused():
    with pytest.raises(PlanError, match="both pruned and coded"):
        coded(fc_model(n=8), plan(2, 1) + 'prune fc channels 25% by l1\n')


def test_float32_recovery_error_follows_the_condition_number():
    from edgec.passes.cdc.conditioning import worst_float32_error

    assert worst_float32_error(4, 1) < 1e-6 and worst_float32_error(4, 2) < 1e-5
