"""The schedule of an `int8_conv` PrimFunc (int8_lowering.py): a register-blocked integer conv.

The tile is the float conv's (schedules.py): `wt` output pixels x `ot` output channels of int32
accumulators kept in registers, the outer loops parallel, the epilogue (zero-point correction,
requantization, Relu clamp) applied per tile while it is hot. What differs is the innermost step,
chosen by the target's int8 dot-product instruction (`isa.int8_dot`):
- `avx512-vnni` / `avx-vnni`: the 16- (8-) channel x 4-byte step is tensorized to `vpdpbusd` (one
  broadcast of 4 activation bytes times 64 (32) weight bytes into 16 (8) int32 lanes);
- `sdot` (aarch64 +dotprod): the 4 x 4 step is tensorized to `sdot`;
- other x86 (AVX2, AVX-512 without VNNI, SSE): activations and weights are widened to int16 and
  the 2-element step is tensorized to `pmaddwd` (exact s16 x s16 pair sums into int32);
- otherwise (NEON without dotprod): the channel lanes are vectorized and the reduction unrolled
  (only when the rewrite is forced: `int8_lowering.int8_wanted`).
Why not `vpmaddubsw` (TVM's `dot_16x4_avx512`) for x86 without VNNI: it adds pairs of u8 x s8
products in int16 with saturation, and 255 x 127 x 2 exceeds int16, so it is not exact for
full-range activations; the integer result must match onnxruntime's. Measured on AVX2 (ResNet-50
stage, 1 thread): float path 169 ms, vectorized int32 schedule 412 ms, `pmaddwd` 75 ms.
"""

from __future__ import annotations

from tvm import s_tir, tirx
from tvm.target import Target

from .int8_intrinsics import dot_intrinsic
from .int8_lowering import CONV_BLOCK, OUT_BLOCK, PAD_BLOCK
from .isa import isa_of
from .schedules import _divisor, _extent, max_accumulators

INSTRUCTION = {"avx512-vnni": "vpdpbusd", "avx-vnni": "vpdpbusd", "sdot": "sdot"}


def intrinsic_for(target: Target, lanes: int) -> str | None:
    """The dot-product intrinsic of `target` for a `lanes`-channel step (int8_intrinsics.py), if any."""
    isa = isa_of(target)
    instruction = INSTRUCTION.get(isa.int8_dot or "", "pmaddwd" if isa.name.startswith(("avx", "sse")) else None)
    return dot_intrinsic(instruction, lanes) if instruction else None


def schedule_int8_conv(func: tirx.PrimFunc, target: Target) -> s_tir.Schedule | None:
    """The int8 conv schedule; None if `func` is not an `int8_conv` PrimFunc."""
    sch = s_tir.Schedule(func)
    blocks = sch.get_child_blocks(sch.get_sblock("root"))
    names = [sch.get(b).name_hint for b in blocks]
    if names.count(CONV_BLOCK) != 1 or names[names.index(CONV_BLOCK) - 1: names.index(CONV_BLOCK) + 2] != [
            PAD_BLOCK, CONV_BLOCK, OUT_BLOCK]:
        return None
    at = names.index(CONV_BLOCK)
    pad, conv, out = blocks[at - 1: at + 2]
    for block in blocks[: at - 1]:
        sch.compute_inline(block)
    for block in reversed(blocks[at + 2:]):
        sch.reverse_compute_inline(block)
    n, h, w, f, ry, rx, rco, rci = sch.get_loops(conv)
    width, channels = _extent(sch, w), _extent(sch, f)
    lanes = int(sch.get(conv).reads[-1].source.shape[4])
    vectors = 2 if channels % (2 * lanes) == 0 and lanes >= 8 else 1
    ot = vectors * lanes
    wt = _divisor(width, max(1, max_accumulators(target, vectors) // vectors), prefer_at_least=2)
    wo, wi = sch.split(w, [None, wt])
    fo, fv, fl = sch.split(f, [None, vectors, lanes])
    intrinsic = intrinsic_for(target, lanes)
    if intrinsic is not None:
        sch.reorder(n, fo, h, wo, ry, rx, rco, wi, fv, fl, rci)
    else:
        sch.reorder(n, fo, h, wo, ry, rx, rco, wi, fv, rci, fl)
    sch.reverse_compute_at(out, wo)
    sch.parallel(sch.fuse(n, fo, h))
    sch.set_scope(conv, 0, "local")
    if intrinsic is None:
        sch.unroll(rci)
        sch.vectorize(fl)
    init = sch.decompose_reduction(conv, ry)
    if intrinsic is not None:
        sch.tensorize(fl, intrinsic)
    sch.unroll(fv)
    sch.unroll(wi)
    init_loops = sch.get_loops(init)[4:]
    if init_loops:
        sch.vectorize(sch.fuse(*init_loops) if len(init_loops) > 1 else init_loops[0])
    out_loops = sch.get_loops(out)[4:]
    if len(out_loops) > 1:
        sch.unroll(out_loops[-2])
    if out_loops and _extent(sch, out_loops[-1]) in (lanes, ot):
        sch.vectorize(out_loops[-1])
    pad_loops = sch.get_loops(pad)
    sch.parallel(sch.fuse(*pad_loops[:2]))
    inner = _extent(sch, pad_loops[-1])
    if inner is not None and inner <= 64:
        sch.vectorize(pad_loops[-1])
    return sch
