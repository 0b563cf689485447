"""Intra-layer splits of convolutions by output channels (`filter`/`output`) or input channels (`channel`).

`filter`: part i computes a slice of the output channels; merge = Concat on C. For a grouped
or depthwise conv the parts are whole groups, and each part receives only its groups' input
channels. `channel`: part i convolves a slice of the input channels with the matching weight
slice into a partial sum; merge = Sum, then the bias once. Grouped convs cannot take a
channel split (each output already sees only its group's inputs).
"""

from __future__ import annotations

import onnx_ir as ir

from .split_parts import ConcatParts, SplitContext, nbytes


def split_conv(ctx: SplitContext) -> ConcatParts | ir.Value:
    if ctx.kind == "output":
        return _by_filter(ctx)
    if ctx.kind == "input":
        return _by_channel(ctx)
    raise ctx.fail("a convolution splits by filter (output), channel (input) or spatial")


def _by_filter(ctx: SplitContext) -> ConcatParts:
    node, b = ctx.node, ctx.builder
    x, weight, bias = node.inputs[0], ctx.weight(1), ctx.weight(2)
    out = node.outputs[0]
    groups = node.attributes.get_int("group", 1)
    c_out, c_in = weight.shape[0], x.shape[1]
    per_group_out, per_group_in = c_out // groups, c_in // groups
    units = groups if groups > 1 else c_out
    ranges, values = [], []
    for i, ((lo, hi), place) in enumerate(zip(ctx.sizes(units, "groups" if groups > 1 else "output channels"), ctx.spec.parts)):
        o_lo, o_hi = (lo * per_group_out, hi * per_group_out) if groups > 1 else (lo, hi)
        x_i, attrs = x, {}
        if groups > 1:
            attrs["group"] = ir.AttrInt64("group", hi - lo)
            if (lo, hi) != (0, groups):
                x_i = b.slice(f"part{i}.x", x, [1], [lo * per_group_in], [hi * per_group_in], ctx.feed_placement(x, place))
        inputs = [x_i, b.const(f"part{i}.W", weight[o_lo:o_hi])]
        if bias is not None:
            inputs.append(b.const(f"part{i}.B", bias[o_lo:o_hi]))
        shape = list(out.shape)
        shape[1] = o_hi - o_lo
        values.append(b.clone(node, f"part{i}", inputs, shape, place, attrs))
        ranges.append((o_lo, o_hi))
        ctx.add_part(place, nbytes(x_i), nbytes(values[-1]))
    return ConcatParts(values, 1, ranges)


def _by_channel(ctx: SplitContext) -> ir.Value:
    node, b = ctx.node, ctx.builder
    if node.attributes.get_int("group", 1) != 1:
        raise ctx.fail("a grouped or depthwise convolution cannot be split by input channel",
                       hint="split it by filter: whole groups go to each part")
    x, weight, bias = node.inputs[0], ctx.weight(1), ctx.weight(2)
    out = node.outputs[0]
    partial = []
    for i, ((lo, hi), place) in enumerate(zip(ctx.sizes(weight.shape[1], "input channels"), ctx.spec.parts)):
        x_i = b.slice(f"part{i}.x", x, [1], [lo], [hi], ctx.feed_placement(x, place))
        partial.append(b.clone(node, f"part{i}", [x_i, b.const(f"part{i}.W", weight[:, lo:hi])], list(out.shape), place))
        ctx.add_part(place, nbytes(x_i), nbytes(out))
    total = b.sum("merge", partial, ctx.merge_at)
    if bias is None:
        return total
    shape = [1, bias.shape[0]] + [1] * (len(out.shape) - 2)
    return b.op("Add", "merge.bias", [total, b.const("merge.B", bias.reshape(shape))], list(out.shape), out.dtype, ctx.merge_at)
