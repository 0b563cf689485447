"""CPU schedules for the PrimFuncs of a stage, applied without tuning.

Why: TVM 0.27's default CPU pipeline leaves convolutions unscheduled (one scalar loop nest,
one thread), about 30x slower than onnxruntime. These rules give every conv the classic
register-blocked direct-convolution kernel in NHWC layout with packed weights (`lowering.py`
converts the layout): a tile of `wt` output pixels x `ot` output channels accumulates in
registers (`wt` broadcasts and `ot / lanes` vector loads feed `wt * ot / lanes` FMAs per
reduction step), its epilogue (bias, residual add, ReLU) is applied while the tile is hot,
and the outer loops run in parallel. Other functions get parallel outer loops and vectorized
inner channel loops; what no rule matches falls back to dlight's CPU rules or stays as it is.

Why per ISA: the tile is sized from the target's vector width and register count (`isa.py`):
AVX-512 14 pixels x 32 channels (28 zmm accumulators), AVX2 6 x 16 (12 ymm), aarch64 NEON
14 x 8 (28 q registers), so each device's tile fills its register file without spilling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import s_tir, tirx
from tvm.ir import IRModule
from tvm.s_tir import dlight
from tvm.target import Target

from .isa import isa_of

CONV_BLOCK = "conv2d_nhwc"


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    value = sch.get(loop).extent
    return int(value) if isinstance(value, tirx.IntImm) else None


def _lanes(target: Target) -> int:
    return max(4, isa_of(target).lanes)


def _divisor(extent: int, limit: int, prefer_at_least: int = 1) -> int:
    """The largest divisor of `extent` not above `limit` (1 when none reaches `prefer_at_least`)."""
    best = max(d for d in range(1, min(extent, limit) + 1) if extent % d == 0)
    return best if best >= prefer_at_least else 1


def max_accumulators(target: Target, weight_vectors: int = 2) -> int:
    """Vector registers a conv tile may keep as accumulators: all of the ISA's registers but the
    `weight_vectors` loaded per reduction step, the input broadcast and one spare (AVX-512 and
    aarch64: 32 - 2 - 2 = 28; AVX2, SSE, armv7: 16 - 2 - 2 = 12)."""
    return max(1, isa_of(target).registers - weight_vectors - 2)


def register_tiles(target: Target, channels: int, width: int) -> tuple[int, int]:
    """(ot, wt): output channels (two vectors where they divide the channels) and output pixels of
    one register tile; `width` 0 asks for `ot` only. Measured on AVX-512: two vectors x up to 14
    pixels beat four vectors x 7 (LLVM spills when accumulators + weights exceed 32 registers)."""
    lanes = _lanes(target)
    ot = next((k * lanes for k in (2, 1) if channels % (k * lanes) == 0), _divisor(channels, lanes))
    if width <= 0:
        return ot, 0
    vectors = max(1, ot // lanes)
    return ot, _divisor(width, max(1, max_accumulators(target, vectors) // vectors), prefer_at_least=2)


def _parallel(sch: s_tir.Schedule, loops: list) -> None:
    """Run `loops` (outermost first, at least one) as one parallel loop."""
    sch.parallel(sch.fuse(*loops) if len(loops) > 1 else loops[0])


def _is_reduction(sch: s_tir.Schedule, block) -> bool:
    return any(iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars)


@dataclass(frozen=True)
class ConvTile:
    """One point of the conv kernel's design space: `ot` output channels x `wt` output pixels in
    registers, and the parallel loop order. `rows_outer` runs output rows outside channel blocks,
    so each input row is read once for all output channels (activations stream, weights are
    re-read from cache per row); otherwise each channel block's weights are read once for all rows
    (activations are re-read per block)."""

    ot: int
    wt: int
    rows_outer: bool
    chunk: int | None = None
    """Input channels per step of a reduction run outside the rows (None: the whole reduction per
    tile): each chunk of a channel block's weights is used for all rows right after it arrives
    (the tile's accumulators then live in an L1 buffer across chunks). On ResNet-50's 7x7 convs
    it was 8-12 % faster timed alone with cold caches, but not faster inside the stage, so it is
    only a candidate of `edgec tune`, never the default."""


def _conv_parts(sch: s_tir.Schedule):
    """(conv block, blocks before it, blocks after it) of a fused conv PrimFunc, or None."""
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    names = [sch.get(b).name_hint for b in blocks]
    if names.count(CONV_BLOCK) != 1:
        return None
    at = names.index(CONV_BLOCK)
    conv, before, after = blocks[at], blocks[:at], blocks[at + 1:]
    if len(sch.get_loops(conv)) != 7 or any(_is_reduction(sch, b) for b in before + after):
        return None
    return conv, before, after


def _elements(buffer) -> int:
    return int(np.prod([int(d) for d in buffer.shape]))


def default_conv_tile(sch: s_tir.Schedule, conv, target: Target) -> ConvTile | None:
    """The untuned choice: `register_tiles`, rows outside channel blocks when the conv's
    activations (input + output) outweigh its weights. Measured on a ResNet-50 (AVX-512, 2
    threads): rows outside made the 56x56 convs 14-37 % faster and the 7x7 convs with 2-9 MB of
    weights 1.7x slower."""
    n, h, w, o, *_ = sch.get_loops(conv)
    width, channels = _extent(sch, w), _extent(sch, o)
    if width is None or channels is None:
        return None
    block = sch.get(conv)
    activations = _elements(block.reads[0].source) + _elements(block.writes[0].source)
    ot, wt = register_tiles(target, channels, width)
    return ConvTile(ot, wt, activations > _elements(block.reads[1].source))


CHUNKS = (32, 128)


def conv_tiles(target: Target, channels: int, width: int, in_channels: int = 0) -> list[ConvTile]:
    """Every tile `edgec tune` tries: one or two vectors of channels (more spill, measured), each
    pixel count dividing the width that fits the accumulators and keeps at least 8 FMAs per step,
    both loop orders, and the channel-block order with reduction chunks of `CHUNKS` input channels."""
    lanes = _lanes(target)
    found = []
    for vectors in (1, 2):
        ot = vectors * lanes
        if channels % ot:
            continue
        limit = max(1, max_accumulators(target, vectors) // vectors)
        for wt in range(1, min(width, limit) + 1):
            if width % wt == 0 and (wt * vectors >= min(8, limit * vectors) or wt == width):
                found += [ConvTile(ot, wt, True), ConvTile(ot, wt, False)]
                found += [ConvTile(ot, wt, False, chunk) for chunk in CHUNKS if in_channels % chunk == 0 and in_channels > chunk]
    return found


def schedule_conv_tile(sch: s_tir.Schedule, target: Target, tile: ConvTile | None = None) -> s_tir.Schedule | None:
    """Register-blocked NHWC conv with its epilogue fused per tile, scheduled in `sch` (one fused
    conv PrimFunc) with `tile` (default: `default_conv_tile`); None if it holds no such conv."""
    parts = _conv_parts(sch)
    if parts is None:
        return None
    conv, before, after = parts
    tile = tile or default_conv_tile(sch, conv, target)
    if tile is None:
        return None
    lanes = _lanes(target)
    n, h, w, o, kh, kw, ic = sch.get_loops(conv)
    for block in after[:-1]:
        sch.compute_inline(block)
    wo, wi = sch.split(w, [None, tile.wt])
    oo, oi = sch.split(o, [None, tile.ot])
    if tile.chunk:
        ico, ic = sch.split(ic, [None, tile.chunk])
        outer = (n, oo)
        sch.reorder(n, oo, ico, h, wo, kh, kw, ic, wi, oi)
    else:
        outer = (n, h, oo) if tile.rows_outer else (n, oo, h)
        sch.reorder(*outer, wo, kh, kw, ic, wi, oi)
    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, oo if tile.chunk else wo)
    if after:
        sch.reverse_compute_inline(after[-1])
    loops = sch.get_loops(acc)[len(outer) if tile.chunk else 4:]
    sch.vectorize(loops[-1])
    if len(loops) > 1 and not tile.chunk:
        sch.unroll(loops[-2])
    sch.unroll(wi)
    sch.vectorize(oi)
    sch.parallel(sch.fuse(*outer))
    sch.decompose_reduction(conv, ico if tile.chunk else kh)
    for block in before:
        _schedule_spatial(sch, block, lanes)
    return sch


def schedule_conv(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    """`schedule_conv_tile` with the default tile on a fresh schedule of `func` (a rule of
    `apply_cpu_schedules`)."""
    return schedule_conv_tile(s_tir.Schedule(func), target)


def _schedule_spatial(sch: s_tir.Schedule, block, lanes: int) -> None:
    loops = sch.get_loops(block)
    inner = _extent(sch, loops[-1])
    if inner is not None and inner % lanes == 0 and inner > lanes:
        outer_inner, vec = sch.split(loops[-1], [None, lanes])
        loops = [*loops[:-1], outer_inner, vec]
        sch.vectorize(vec)
    elif inner is not None and inner <= 4 * lanes:
        sch.vectorize(loops[-1])
    if len(loops) > 2:
        sch.parallel(sch.fuse(*loops[: max(1, min(2, len(loops) - 2))]))
    elif len(loops) == 2:
        sch.parallel(loops[0])


def _contiguous_axis(sch: s_tir.Schedule, block) -> int | None:
    """The block axis that indexes the last (contiguous) dimension of an input it reads, when that
    is not the block's own last axis (a layout change: NHWC <-> NCHW); None otherwise."""
    iter_vars = [iv.var for iv in sch.get(block).iter_vars]
    for region in sch.get(block).reads:
        if len(region.region) < 2:
            continue
        last = region.region[-1].min
        if isinstance(last, tirx.Var) and any(last.same_as(v) for v in iter_vars):
            axis = next(i for i, v in enumerate(iter_vars) if last.same_as(v))
            if axis != len(iter_vars) - 1:
                return axis
    return None


def _schedule_transpose(sch: s_tir.Schedule, block, lanes: int) -> bool:
    """A layout change in tiles of up to `lanes` x `lanes`: the tile's input lines stay in L1 while its
    output vectors are written. Why: the plain loop nest gathers one element per cache line with
    a stride of the channel count; a 56x56x256 NHWC->NCHW transpose took 1.8 ms, about ten times
    a 3x3 conv's share of that tensor."""
    loops = sch.get_loops(block)
    axis = _contiguous_axis(sch, block)
    if axis is None or len(loops) != len(sch.get(block).iter_vars):
        return False
    inner, across = _extent(sch, loops[-1]), _extent(sch, loops[axis])
    if inner is None or across is None:
        return False
    inner_tile, across_tile = _divisor(inner, lanes), _divisor(across, lanes)
    if min(inner_tile, across_tile) < 4:
        return False
    ao, ai = sch.split(loops[axis], [None, across_tile])
    lo, li = sch.split(loops[-1], [None, inner_tile])
    rest = [loop for i, loop in enumerate(loops[:-1]) if i != axis]
    sch.reorder(*rest, ao, lo, ai, li)
    sch.vectorize(li)
    sch.unroll(ai)
    _parallel(sch, [*rest, ao])
    return True


def _streams_rows(sch: s_tir.Schedule, block) -> bool:
    """Whether `block` reads a matrix as [reduction, last spatial axis]: a matmul with [K, N]
    weights, whose rows are contiguous in the output axis."""
    iters = sch.get(block).iter_vars
    last = iters[max(i for i, iv in enumerate(iters) if iv.iter_type != tirx.IterVar.CommReduce)].var
    reduced = [iv.var for iv in iters if iv.iter_type == tirx.IterVar.CommReduce]
    for region in sch.get(block).reads:
        if len(region.region) != 2:
            continue
        first, second = (r.min for r in region.region)
        if second.same_as(last) and any(first.same_as(v) for v in reduced):
            return True
    return False


def _schedule_row_stream(sch: s_tir.Schedule, block, spatial, reduction, last: int, lanes: int) -> bool:
    """A matmul with [K, N] weights as a few parallel column blocks, each streaming its part of
    every weight row (contiguous, prefetcher-friendly) into an accumulator row in L1. Why: the
    generic order (many narrow column blocks, the reduction inside) reads 100 bytes of each 4 kB
    row per block; ResNet-50's 2048x1000 classifier took 0.94 ms with cold weights, 0.36 ms so."""
    parts = next(p for p in (4, 2, 1) if last % p == 0)
    block_o, block_i = sch.split(spatial[-1], [parts, None])
    vec = _divisor(last // parts, lanes)
    inner_o, inner_i = sch.split(block_i, [None, vec])
    sch.reorder(*spatial[:-1], block_o, *reduction, inner_o, inner_i)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, block_o)
    sch.vectorize(inner_i)
    head = [*spatial[:-1], block_o]
    _parallel(sch, head)
    sch.decompose_reduction(block, reduction[0])
    return True


def _schedule_reduction(sch: s_tir.Schedule, block, lanes: int) -> bool:
    """Spatial loops then reduction loops: the last spatial loop goes innermost and is vectorized."""
    loops = sch.get_loops(block)
    kinds = [iv.iter_type == tirx.IterVar.CommReduce for iv in sch.get(block).iter_vars]
    if len(loops) != len(kinds) or kinds != sorted(kinds) or not kinds[0] is False:
        return False
    spatial = loops[: kinds.index(True)]
    reduction = loops[kinds.index(True):]
    last = _extent(sch, spatial[-1])
    if last is None:
        return False
    if _streams_rows(sch, block) and last >= 8 * lanes:
        return _schedule_row_stream(sch, block, spatial, reduction, last, lanes)
    vec = _divisor(last, lanes * 2, prefer_at_least=min(last, 4))
    outer, inner = sch.split(spatial[-1], [None, vec])
    sch.reorder(*spatial[:-1], outer, *reduction, inner)
    if vec > 1:
        sch.vectorize(inner)
    head = [*spatial[:-1], outer]
    _parallel(sch, head)
    sch.decompose_reduction(block, reduction[0])
    return True


def schedule_generic(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    """Pooling, layout changes, GEMV-like matmuls and elementwise chains."""
    sch = s_tir.Schedule(func)
    lanes = _lanes(target)
    blocks = list(sch.get_child_blocks(sch.get_sblock("root")))
    for block in blocks[:-1]:
        if not _is_reduction(sch, block):
            try:
                sch.compute_inline(block)
            except s_tir.ScheduleError:
                pass
    done = False
    for block in sch.get_child_blocks(sch.get_sblock("root")):
        if _is_reduction(sch, block):
            done = _schedule_reduction(sch, block, lanes) or done
        elif len(sch.get_loops(block)) > 0:
            if not _schedule_transpose(sch, block, lanes):
                _schedule_spatial(sch, block, lanes)
            done = True
    return sch if done else None


def apply_cpu_schedules(mod: IRModule, target: Target) -> IRModule:
    """Schedule every unscheduled PrimFunc of `mod` for the CPU `target`."""
    from .int8_schedules import schedule_int8_conv

    fallback = [dlight.cpu.GEMV(), dlight.cpu.Reduction()]
    updated = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
            continue
        sch = None
        for rule in (schedule_int8_conv, schedule_conv, schedule_generic):
            try:
                sch = rule(func, target)
            except Exception:  # noqa: BLE001 - a schedule is an optimization: unscheduled code is still right
                sch = None
            if sch is not None:
                break
        if sch is None:
            with target:
                for rule in fallback:
                    sch = rule.apply(func, target, False)
                    if sch is not None:
                        break
        if sch is not None:
            updated[gvar] = sch.mod["main"].with_attr("tirx.is_scheduled", True)
    for gvar, func in updated.items():
        mod[gvar] = func
    return mod
