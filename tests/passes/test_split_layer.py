"""The split-layer pass: every kind on tiny graphs, exact against onnxruntime, with located errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgec.compiler.annotations import placement_of
from edgec.compiler.diagnostics import PlanError
from graphs import Net
from split_helpers import assert_split_equivalent


def conv_model(cin=5, cout=7, h=11, w=9, k=3, stride=1, pad=1, dilation=1, bias=True, group=1, auto_pad=None):
    net = Net({"x": [1, cin, h, w]})
    inputs = ["x", net.weight("c.w", cout, cin // group, k, k)] + ([net.weight("c.b", cout)] if bias else [])
    attrs = dict(kernel_shape=[k, k], strides=[stride, stride], dilations=[dilation, dilation], group=group)
    if auto_pad:
        attrs["auto_pad"] = auto_pad
    else:
        attrs["pads"] = [pad] * 4
    net.op("Conv", "c", inputs, **attrs)
    return net.model(["c"])


def test_filter_split_concats_output_channels():
    prog = assert_split_equivalent(conv_model(), ["c"], "filter", 3)
    (report,) = prog.splits
    assert [p.sends for p in report.parts] == [3 * 11 * 9 * 4, 2 * 11 * 9 * 4, 2 * 11 * 9 * 4]
    assert all(p.receives == 5 * 11 * 9 * 4 for p in report.parts)
    assert {placement_of(n).device for n in prog.nodes() if n.op_type == "Conv"} == {"a", "b", "c"}


def test_channel_split_sums_partial_results_and_adds_bias_once():
    prog = assert_split_equivalent(conv_model(), ["c"], "channel", 2, ratio=[3, 2])
    convs = [n for n in prog.nodes() if n.op_type == "Conv"]
    assert len(convs) == 2 and all(len(n.inputs) == 2 for n in convs)
    bias = [v for v in prog.graph.initializers.values() if v.name.endswith("merge.B")]
    assert len(bias) == 1 and len(bias[0].uses()) == 1
    assert [p.receives for p in prog.splits[0].parts] == [3 * 11 * 9 * 4, 2 * 11 * 9 * 4]


def test_depthwise_filter_split_sends_only_each_parts_channels():
    prog = assert_split_equivalent(conv_model(cin=6, cout=6, group=6), ["c"], "filter", 2)
    assert all(p.receives == 3 * 11 * 9 * 4 for p in prog.splits[0].parts)


def test_depthwise_channel_split_is_refused():
    with pytest.raises(PlanError, match="grouped or depthwise"):
        assert_split_equivalent(conv_model(cin=6, cout=6, group=6), ["c"], "channel", 2)


def test_more_parts_than_channels_is_refused():
    with pytest.raises(PlanError, match="4 parts but only 3 output channels"):
        assert_split_equivalent(conv_model(cout=3), ["c"], "filter", 4)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(kind=st.sampled_from(["filter", "channel", "spatial"]), stride=st.sampled_from([1, 2]),
       pad=st.sampled_from([0, 1, "same"]), dilation=st.sampled_from([1, 2]), k=st.sampled_from([1, 3, 5, 7]),
       bias=st.booleans(), parts=st.integers(2, 3), h=st.integers(9, 13), cin=st.sampled_from([4, 5]),
       cout=st.sampled_from([3, 7]))
def test_conv_splits_are_exact(kind, stride, pad, dilation, k, bias, parts, h, cin, cout):
    h += (k - 1) * dilation
    auto_pad = "SAME_UPPER" if pad == "same" and dilation == 1 else None
    if pad == "same" and dilation > 1:
        pad = (k - 1) * dilation // 2
    model = conv_model(cin=cin, cout=cout, h=h, w=h + 1, k=k, stride=stride, pad=0 if auto_pad else pad,
                       dilation=dilation, bias=bias, auto_pad=auto_pad)
    assert_split_equivalent(model, ["c"], kind, parts)


@settings(max_examples=20, deadline=None, derandomize=True)
@given(rows=st.integers(1, 3), cols=st.integers(1, 3), stride=st.sampled_from([1, 2]), ceil=st.booleans())
def test_spatial_grid_over_a_fused_chain(rows, cols, stride, ceil):
    net = Net({"x": [1, 3, 17, 15]})
    net.conv("c1", "x", 3, 4, 3)
    net.op("Relu", "r1", ["c1"])
    net.op("MaxPool", "p1", ["r1"], kernel_shape=[3, 3], strides=[stride, stride], pads=[1, 1, 1, 1], ceil_mode=int(ceil))
    net.op("Conv", "c2", ["p1", net.weight("c2.w", 5, 4, 3, 3)], strides=[stride, stride], dilations=[2, 2], pads=[2, 2, 2, 2])
    net.op("AveragePool", "p2", ["c2"], kernel_shape=[2, 2], strides=[1, 1], pads=[0, 0, 1, 1])
    model = net.model(["p2"])
    if rows * cols == 1:
        rows = 2
    prog = assert_split_equivalent(model, ["c1", "r1", "p1", "c2", "p2"], "spatial", rows * cols, grid=(rows, cols))
    assert len(prog.splits) == 1 and len(prog.splits[0].parts) == rows * cols


def test_spatial_halo_is_reported():
    prog = assert_split_equivalent(conv_model(k=5, pad=2), ["c"], "spatial", 2)
    parts = prog.splits[0].parts
    assert all(p.halo == 2 * 9 * 5 * 4 for p in parts)
    assert sum(p.receives - p.halo for p in parts) == 5 * 11 * 9 * 4


def test_spatial_chain_must_be_a_chain():
    net = Net({"x": [1, 2, 8, 8]})
    net.conv("a", "x", 2, 2)
    net.op("Relu", "b", ["a"])
    net.op("Add", "c", ["a", "b"])
    with pytest.raises(PlanError, match="also used outside"):
        assert_split_equivalent(net.model(["c"]), ["a", "b"], "spatial", 2)


def gemm_model(trans_b: int, bias: bool, beta: float = 1.0, n=7, k=10):
    net = Net({"x": [2, k]})
    w = net.weight("fc.w", *((n, k) if trans_b else (k, n)))
    inputs = ["x", w] + ([net.weight("fc.b", n)] if bias else [])
    net.op("Gemm", "fc", inputs, transB=trans_b, beta=beta, alpha=0.5)
    return net.model(["fc"])


@pytest.mark.parametrize("kind", ["output", "input"])
@pytest.mark.parametrize("trans_b,bias,beta", [(1, True, 1.0), (0, True, 2.0), (1, False, 1.0)])
def test_gemm_splits_are_exact(kind, trans_b, bias, beta):
    assert_split_equivalent(gemm_model(trans_b, bias, beta), ["fc"], kind, 3, ratio=[2, 1, 1])


@pytest.mark.parametrize("kind", ["output", "input"])
def test_matmul_splits_are_exact(kind):
    net = Net({"x": [3, 6]})
    net.op("MatMul", "mm", ["x", net.weight("w", 6, 5)])
    prog = assert_split_equivalent(net.model(["mm"]), ["mm"], kind, 2)
    expected = [3 * 6 * 4] * 2 if kind == "output" else [3 * 3 * 4] * 2
    assert [p.receives for p in prog.splits[0].parts] == expected


def test_channelwise_consumers_follow_an_output_split():
    net = Net({"x": [1, 3, 8, 8]})
    net.conv("c", "x", 3, 4)
    net.op("BatchNormalization", "bn", ["c", net.weight("s", 4), net.weight("b", 4), net.weight("m", 4),
                                         net.const("v", [0.5, 0.7, 0.9, 1.1])])
    net.op("Relu", "r", ["bn"])
    net.op("MaxPool", "p", ["r"], kernel_shape=[2, 2], strides=[2, 2])
    net.op("Sigmoid", "out", ["p"])
    prog = assert_split_equivalent(net.model(["out"]), ["c"], "filter", 2, merge="c")
    report = prog.splits[0]
    assert report.nodes == ["c", "bn", "r", "p", "out"]
    assert [p.sends for p in report.parts] == [2 * 4 * 4 * 4] * 2
    concat = next(n for n in prog.nodes() if n.op_type == "Concat")
    assert placement_of(concat).device == "c" and concat.outputs[0].name == "out"


def test_nonlinear_consumer_does_not_follow_a_sum_merge():
    net = Net({"x": [1, 4, 6, 6]})
    net.conv("c", "x", 4, 4)
    net.op("Relu", "r", ["c"])
    prog = assert_split_equivalent(net.model(["r"]), ["c"], "channel", 2)
    assert prog.splits[0].nodes == ["c"] and any(n.name == "r" for n in prog.nodes())
