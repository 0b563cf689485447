"""Intra-layer splits of fully connected layers (Gemm, MatMul with a constant weight).

`output`: part i computes a slice of the output neurons (weight rows for Gemm transB=1) from
the whole input; merge = Concat. `input`: part i takes a slice of the input features and the
matching weight columns and produces a partial sum; merge = Sum, then the bias once, so any
activation (a separate node) applies after the merge, where it is exact.

Opsets: before opset 11 Gemm's C is a required input, so a partial Gemm there gets a zero C
(scalar-broadcast, with beta 0): the parts compute exactly what they compute without C.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .split_parts import ConcatParts, SplitContext, nbytes


def _gemm_axes(node: ir.Node) -> tuple[int, int, int]:
    """(K axis of A, N axis of B, K axis of B) given transA/transB."""
    trans_a = node.attributes.get_int("transA", 0)
    trans_b = node.attributes.get_int("transB", 0)
    return (0 if trans_a else 1), (0 if trans_b else 1), (1 if trans_b else 0)


def split_gemm(ctx: SplitContext) -> ConcatParts | ir.Value:
    node, b = ctx.node, ctx.builder
    a, weight_b, bias = node.inputs[0], ctx.weight(1), ctx.weight(2)
    out = node.outputs[0]
    k_a, n_b, k_b = _gemm_axes(node)
    m, n = out.shape
    if ctx.kind == "output":
        parts, ranges = [], ctx.sizes(n, "output neurons")
        for i, ((lo, hi), place) in enumerate(zip(ranges, ctx.spec.parts)):
            w = b.const(f"part{i}.B", np.take(weight_b, np.arange(lo, hi), axis=n_b))
            inputs = [a, w]
            if bias is not None:
                c = bias[..., lo:hi] if bias.ndim >= 1 and bias.shape[-1] == n else bias
                inputs.append(b.const(f"part{i}.C", c))
            parts.append(b.clone(node, f"part{i}", inputs, [m, hi - lo], place))
            ctx.add_part(place, nbytes(a), nbytes(parts[-1]))
        return ConcatParts(parts, 1, ranges)
    if ctx.kind == "input":
        k = a.shape[k_a]
        partial = []
        for i, ((lo, hi), place) in enumerate(zip(ctx.sizes(k, "input features"), ctx.spec.parts)):
            a_i = b.slice(f"part{i}.A", a, [k_a], [lo], [hi], ctx.feed_placement(a, place))
            w = b.const(f"part{i}.B", np.take(weight_b, np.arange(lo, hi), axis=k_b))
            inputs = [a_i, w] + ([] if b.opset >= 11 else [b.const(f"part{i}.C", np.zeros((1,), weight_b.dtype))])
            partial.append(b.clone(node, f"part{i}", inputs, [m, n], place, {"beta": ir.AttrFloat32("beta", 0.0)}))
            ctx.add_part(place, nbytes(a_i), nbytes(out))
        total = b.sum("merge", partial, ctx.merge_at)
        if bias is None:
            return total
        beta = node.attributes.get_float("beta", 1.0)
        c = b.const("merge.C", (beta * bias).astype(bias.dtype))
        return b.op("Add", "merge.bias", [total, c], [m, n], out.dtype, ctx.merge_at)
    raise ctx.fail("a fully connected layer splits by output or input")


def split_matmul(ctx: SplitContext) -> ConcatParts | ir.Value:
    node, b = ctx.node, ctx.builder
    x, weight = node.inputs[0], ctx.weight(1)
    out = node.outputs[0]
    if weight.ndim != 2:
        raise ctx.fail(f"the weight must be 2-D, it is {weight.ndim}-D")
    shape = list(out.shape)
    if ctx.kind == "output":
        parts, ranges = [], ctx.sizes(weight.shape[1], "output neurons")
        for i, ((lo, hi), place) in enumerate(zip(ranges, ctx.spec.parts)):
            w = b.const(f"part{i}.W", weight[:, lo:hi])
            parts.append(b.clone(node, f"part{i}", [x, w], shape[:-1] + [hi - lo], place))
            ctx.add_part(place, nbytes(x), nbytes(parts[-1]))
        return ConcatParts(parts, len(shape) - 1, ranges)
    if ctx.kind == "input":
        partial = []
        last = len(x.shape) - 1
        for i, ((lo, hi), place) in enumerate(zip(ctx.sizes(weight.shape[0], "input features"), ctx.spec.parts)):
            x_i = b.slice(f"part{i}.x", x, [last], [lo], [hi], ctx.feed_placement(x, place))
            partial.append(b.clone(node, f"part{i}", [x_i, b.const(f"part{i}.W", weight[lo:hi])], shape, place))
            ctx.add_part(place, nbytes(x_i), nbytes(out))
        return b.sum("merge", partial, ctx.merge_at)
    raise ctx.fail("a fully connected layer splits by output or input")
