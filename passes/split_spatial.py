"""Spatial (tile) split of a chain of conv/pool/pointwise layers, with the halo propagated backwards.

The chain's output is cut into row bands (`into N`) or an R×C grid (`into RxC`). For each tile
the input region each layer needs is computed from the last layer back to the first (as in
DeepThings' fused tile partitioning): output rows [a, b) of a window with effective kernel
k, stride s and leading pad p need input rows [a·s − p, (b−1)·s − p + k). Rows that fall
outside the tensor become that tile's own padding, so a tile computes exactly the same
numbers as the whole layer. The first layer's input tile is cut where it is produced and
travels once per chain, not once per layer; the tiles are concatenated on the merge device.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..compiler.builder import bounds, part_sizes
from .split_parts import SplitContext, nbytes
from ..compiler.split_rules import SPATIALLY_POINTWISE, WINDOWED


Window = tuple[int, int, int, int]  # effective kernel, stride, pad begin, pad end (per axis)


def _windows(ctx: SplitContext, node: ir.Node) -> list[Window]:
    """(k_eff, s, pad_begin, pad_end) for H and W, with auto_pad resolved from the real shapes."""
    if node.op_type not in WINDOWED:
        return [(1, 1, 0, 0), (1, 1, 0, 0)]
    attrs = node.attributes
    if node.op_type == "Conv":
        kernel = list(node.inputs[1].shape)[2:]
    else:
        kernel = list(attrs.get_ints("kernel_shape"))
    if len(kernel) != 2:
        raise ctx.fail(f"'{node.name}' is not a 2-D window")
    strides = list(attrs.get_ints("strides", [1, 1]))
    dilations = list(attrs.get_ints("dilations", [1, 1]))
    pads = list(attrs.get_ints("pads", [0, 0, 0, 0]))
    auto_pad = attrs.get_string("auto_pad", "NOTSET")
    windows = []
    for axis in range(2):
        k_eff = (kernel[axis] - 1) * dilations[axis] + 1
        size_in, size_out = node.inputs[0].shape[2 + axis], node.outputs[0].shape[2 + axis]
        if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
            total = max(0, (size_out - 1) * strides[axis] + k_eff - size_in)
            begin = total // 2 if auto_pad == "SAME_UPPER" else total - total // 2
            windows.append((k_eff, strides[axis], begin, total - begin))
        elif auto_pad == "VALID":
            windows.append((k_eff, strides[axis], 0, 0))
        else:
            windows.append((k_eff, strides[axis], pads[axis], pads[axis + 2]))
    return windows


def _check_chain(ctx: SplitContext, chain: list[ir.Node]) -> None:
    for i, node in enumerate(chain):
        if node.op_type not in SPATIALLY_POINTWISE | WINDOWED:
            raise ctx.fail(f"'{node.name}' ({node.op_type}) cannot be tiled spatially",
                           hint="spatial splits take chains of Conv, MaxPool, AveragePool and pointwise layers")
        if len(node.outputs) != 1 or len(node.outputs[0].shape) != 4:
            raise ctx.fail(f"'{node.name}' must have one 4-D (NCHW) output")
        for extra in node.inputs[1:]:
            if extra is not None and extra.const_value is None:
                raise ctx.fail(f"'{node.name}' has a non-constant second input '{extra.name}'")
            if extra is not None and node.op_type in ("Add", "Sub", "Mul", "Div", "PRelu"):
                dims = [1] * (4 - len(extra.shape)) + list(extra.shape)
                if dims[2] != 1 or dims[3] != 1:
                    raise ctx.fail(f"'{node.name}' broadcasts a constant over H or W")
        if node.op_type == "AveragePool" and node.attributes.get_int("ceil_mode", 0) and node.attributes.get_int("count_include_pad", 0):
            raise ctx.fail(f"'{node.name}': AveragePool with ceil_mode and count_include_pad cannot be tiled exactly")
        if i > 0:
            prev = chain[i - 1].outputs[0]
            if node.inputs[0] is not prev:
                raise ctx.fail(f"'{node.name}' does not consume '{chain[i - 1].name}': the selection is not a chain")
            if len(prev.uses()) != 1 or prev.is_graph_output():
                raise ctx.fail(f"'{prev.name}' inside the chain is also used outside it")


def _back(window: Window, out_range: tuple[int, int], size_in: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Input range needed for `out_range`, and the tile's own (pad_begin, pad_end)."""
    k_eff, stride, pad_begin, _ = window
    a, b = out_range
    lo_u, hi_u = a * stride - pad_begin, (b - 1) * stride - pad_begin + k_eff
    lo, hi = max(0, lo_u), min(size_in, hi_u)
    return (lo, hi), (lo - lo_u, hi_u - hi)


def split_spatial(ctx: SplitContext, chain: list[ir.Node]) -> ir.Value:
    _check_chain(ctx, chain)
    spec, b = ctx.spec, ctx.builder
    last = chain[-1].outputs[0]
    rows, cols = spec.grid or (spec.count, 1)
    h_out, w_out = last.shape[2], last.shape[3]
    if rows > h_out or cols > w_out:
        raise ctx.fail(f"a {rows}x{cols} grid does not fit the {h_out}x{w_out} output")
    row_ranges = bounds(part_sizes(h_out, rows, None if spec.grid else spec.ratio))
    col_ranges = bounds(part_sizes(w_out, cols, None))
    windows = [_windows(ctx, node) for node in chain]
    bands = []
    for r, row_range in enumerate(row_ranges):
        tiles = []
        for c, col_range in enumerate(col_ranges):
            index = r * cols + c
            tiles.append(_tile(ctx, chain, windows, (row_range, col_range), index))
        bands.append(tiles[0] if cols == 1 else b.concat(f"merge.row{r}", tiles, 3, ctx.merge_at))
    return bands[0] if rows == 1 else b.concat("merge", bands, 2, ctx.merge_at)


def _tile(ctx: SplitContext, chain: list[ir.Node], windows: list[list[Window]], out_ranges, index: int) -> ir.Value:
    b, place = ctx.builder, ctx.spec.parts[index]
    plans = []
    ranges = list(out_ranges)
    for node, node_windows in zip(reversed(chain), reversed(windows)):
        sizes_in = node.inputs[0].shape[2:]
        backs = [_back(w, rng, size) for w, rng, size in zip(node_windows, ranges, sizes_in)]
        plans.append((node, list(ranges), [p for _, p in backs]))
        ranges = [rng for rng, _ in backs]
    x = chain[0].inputs[0]
    (h_lo, h_hi), (w_lo, w_hi) = ranges
    axes = [a for a, (lo, hi), size in zip((2, 3), ranges, x.shape[2:]) if (lo, hi) != (0, size)]
    current = x
    if axes:
        starts = [ranges[a - 2][0] for a in axes]
        ends = [ranges[a - 2][1] for a in axes]
        current = b.slice(f"part{index}.x", x, axes, starts, ends, ctx.feed_placement(x, place))
    received = current
    for node, (rows, cols), ((ph0, ph1), (pw0, pw1)) in reversed(plans):
        shape = list(node.outputs[0].shape)
        shape[2], shape[3] = rows[1] - rows[0], cols[1] - cols[0]
        attrs = {}
        if node.op_type in WINDOWED:
            attrs = {"pads": ir.AttrInt64s("pads", [ph0, pw0, ph1, pw1])}
            if "auto_pad" in node.attributes:
                attrs["auto_pad"] = ir.AttrString("auto_pad", "NOTSET")
            if "ceil_mode" in node.attributes:
                attrs["ceil_mode"] = ir.AttrInt64("ceil_mode", 0)
        current = b.clone(node, f"part{index}/{node.name}", [current, *node.inputs[1:]], shape, place, attrs)
    ctx.add_part(place, nbytes(received), nbytes(current), _halo_bytes(x, ranges, out_ranges, chain[-1].outputs[0]))
    return current


def _halo_bytes(x: ir.Value, in_ranges, out_ranges, out: ir.Value) -> int:
    """Bytes of the input tile outside this tile's own share of the input (a proportional partition)."""
    own = []
    for (a, b), size_in, size_out in zip(out_ranges, x.shape[2:], out.shape[2:]):
        own.append((round(a * size_in / size_out), round(b * size_in / size_out)))
    tile = [hi - lo for lo, hi in in_ranges]
    overlap = [max(0, min(hi, ohi) - max(lo, olo)) for (lo, hi), (olo, ohi) in zip(in_ranges, own)]
    per_pixel = int(np.prod(list(x.shape[:2]))) * int(x.dtype.itemsize)
    return per_pixel * (tile[0] * tile[1] - overlap[0] * overlap[1])
