"""A QDQ stage's quantized layers as integer kernels: int8 conv/dense with int32 accumulation.

The quantize pass writes each quantized layer as `DequantizeLinear(x_q)`, `DequantizeLinear(w_q)`
(int8, per channel, zero point 0), an int32 bias at `scale_x · scale_w`, the Conv/Gemm/MatMul, an
optional Relu and `QuantizeLinear` of the result. TVM imports that literally (dequantize, float
conv, quantize), so the layer ran in float. This rewrite replaces each such chain by one PrimFunc
(`int8_conv`) that computes what onnxruntime's QLinearConv computes:

    acc[f]  = Σ (x_q - z_x) · w_q[f]  + b_q[f]                       (int32)
    y_q[f]  = clip(round_half_even(acc[f] · s_x s_w[f] / s_y) + z_y)  (int8/uint8; Relu: clip at z_y)

A layer whose float result is a graph output or feeds a float op (the last Gemm) ends at
`acc · s_x s_w[f]` in float32 instead.

Why NHWC between integer layers: each conv kernel writes NHWC (contiguous channels, what its tile
produces) and the rewrite hands the NCHW graph a `permute_dims` of it; the next integer layer
reads the NHWC tensor under that permute directly, so a chain of quantized convs never
transposes (the permute is dead there and removed); float consumers (a residual Add) get the
permute.

Why a Relax rewrite after the importer rather than an ONNX rewrite before it: the Relax ops
(`relax.dequantize`, `relax.nn.conv2d`, `relax.matmul`, `relax.quantize`) have one meaning each,
whatever ONNX spelled (Conv with or without bias, Gemm's `transB`, MatMul), while an ONNX rewrite
would need an op TVM's importer accepts and then lowers to integers (its importer has no
QLinearConv/ConvInteger, and a custom op would need its private hooks). Anything that does not
match exactly (groups, a non-zero weight zero point, alpha/beta, a float value used twice) keeps
the float path, which is still correct.

Why the activation is shifted to uint8 on x86: VNNI's `vpdpbusd` multiplies unsigned by signed
bytes, so int8 activations get +128 (and their zero point with them); the zero point is taken out
of the accumulator as one constant per output channel, `z · Σ w[f]` (padding is filled with the
zero point, so the correction is the same at the borders). aarch64's `sdot` is signed × signed,
so activations stay int8 there; x86 without VNNI widens both operands to int16 for `pmaddwd`.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, tirx
from tvm.ir import IRModule
from tvm.target import Target

from .int8_patterns import QRANGE, Int8Layer, find_layers, op_name
from .isa import _has, isa_of

PAD_BLOCK = "int8_pad"
CONV_BLOCK = "conv2d_int8_nhwc"
OUT_BLOCK = "int8_requantize"
TO_NCHW = (0, 3, 1, 2)


def int8_lanes(target: Target) -> tuple[int, str]:
    """(output channels per dot-product instruction, activation dtype it takes) for `target`: x86
    without VNNI widens to int16 for `pmaddwd` (exact: s16 x s16 pair sums into int32)."""
    isa = isa_of(target)
    if isa.int8_dot == "sdot":
        return 4, "int8"
    if isa.name.startswith(("avx", "sse")):
        bits = 256 if isa.vector_bits == 512 and not isa.int8_dot and not _has(target, "avx512bw") else isa.vector_bits
        return bits // 32, "uint8" if isa.int8_dot else "int16"
    return 4, "int8"


def _pack(layer: Int8Layer, lanes: int, data_dtype: str):
    """Weights as [O/lanes, KH, KW, C/4, lanes, 4] int8 (C zero-padded to a multiple of 4), and the
    per-channel int32 correction `b_q - z · Σ w` and float multiplier of the epilogue."""
    out_c, in_c, kh, kw = layer.weight.shape
    reduce = 2 if data_dtype == "int16" else 4
    in_pad = -in_c % reduce
    w = np.pad(layer.weight, ((0, 0), (0, in_pad), (0, 0), (0, 0))).astype(np.int16 if reduce == 2 else np.int8)
    packed = w.reshape(out_c // lanes, lanes, (in_c + in_pad) // reduce, reduce, kh, kw).transpose(0, 4, 5, 2, 1, 3)
    shift = 128 if data_dtype == "uint8" and str(layer.x_q.ty.dtype) == "int8" else (
        -128 if data_dtype == "int8" and str(layer.x_q.ty.dtype) == "uint8" else 0)
    zero = layer.x_zero + shift
    acc_scale = (np.float32(layer.x_scale) * layer.w_scale.astype(np.float32)).astype(np.float32)
    bias = np.zeros(out_c) if layer.bias is None else np.rint(layer.bias / acc_scale.astype(np.float64))
    correction = (bias - zero * layer.weight.astype(np.int64).sum(axis=(1, 2, 3))).astype(np.int32)
    multiplier = acc_scale if layer.out_scale is None else (acc_scale / np.float32(layer.out_scale)).astype(np.float32)
    return np.ascontiguousarray(packed), correction, multiplier.astype(np.float32), shift, zero


def int8_conv(x_q: te.Tensor, weight: te.Tensor, correction: te.Tensor, multiplier: te.Tensor, *, strides, padding,
              dilation, shift: int, zero: int, data_dtype: str, relu: bool, out_zero: int, out_dtype: str,
              channels: int, layout: str) -> te.Tensor:
    """`layout` (NCHW, NHWC, or NC for a dense) int8/uint8 in, NHWC (NC) int8/uint8 or float32 out,
    through an NHWC copy shifted to `data_dtype` and padded with the zero point, an int32 conv on
    packed weights (block `conv2d_int8_nhwc`) and the requantizing epilogue."""
    if layout == "NC":
        batch, in_c = (int(d) for d in x_q.shape)
        height = width = 1
        read = lambda n, y, x, c: x_q[n, c]  # noqa: E731
    elif layout == "NHWC":
        batch, height, width, in_c = (int(d) for d in x_q.shape)
        read = lambda n, y, x, c: x_q[n, y, x, c]  # noqa: E731
    else:
        batch, in_c, height, width = (int(d) for d in x_q.shape)
        read = lambda n, y, x, c: x_q[n, c, y, x]  # noqa: E731
    blocks, kh, kw, cblocks, lanes, reduce = (int(d) for d in weight.shape)
    top, left, bottom, right = padding
    sh, sw = strides
    dh, dw = dilation
    fill = tirx.const(zero, data_dtype)

    def padded(n, y, x, c):
        inside = tirx.all(y >= top, y < top + height, x >= left, x < left + width, c < in_c)
        value = (read(n, y - top, x - left, c).astype("int32") + shift).astype(data_dtype)
        return tirx.if_then_else(inside, value, fill)

    data = te.compute((batch, height + top + bottom, width + left + right, cblocks * reduce), padded, name=PAD_BLOCK)
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    rco, rci = te.reduce_axis((0, cblocks), "rco"), te.reduce_axis((0, reduce), "rci")
    acc = te.compute(
        (batch, out_h, out_w, blocks * lanes),
        lambda n, y, x, f: te.sum(
            data[n, y * sh + ry * dh, x * sw + rx * dw, rco * reduce + rci].astype("int32")
            * weight[f // lanes, ry, rx, rco, f % lanes, rci].astype("int32"), axis=[ry, rx, rco, rci]),
        name=CONV_BLOCK)

    def requantize(n, y, x, f):
        value = (acc[n, y, x, f] + correction[f]).astype("float32") * multiplier[f]
        if out_dtype == "float32":
            return value
        low, high = QRANGE[out_dtype]
        low = max(low, out_zero) if relu else low
        rounded = tirx.nearbyint(value) + tirx.const(float(out_zero), "float32")
        return tirx.max(tirx.min(rounded, float(high)), float(low)).astype(out_dtype)

    if layout == "NC":
        return te.compute((batch, channels), lambda n, f: requantize(n, 0, 0, f), name=OUT_BLOCK)
    return te.compute((batch, out_h, out_w, channels), requantize, name=OUT_BLOCK)


@relax.expr_functor.mutator
class _Int8Rewriter(relax.PyExprMutator):
    """Replaces each matched layer's root call (its quantize, or its float result) by `int8_conv`."""

    def __init__(self, mod: IRModule, layers: dict, lanes: int, data_dtype: str) -> None:
        super().__init__(mod)
        self.layers, self.lanes, self.data_dtype, self.rewritten = layers, lanes, data_dtype, 0

    def visit_call_(self, call):
        layer = self.layers.get(call)
        if layer is None:
            return super().visit_call_(call)
        lanes = next(k for k in (self.lanes, 8, 4, 2, 1) if k <= self.lanes and layer.weight.shape[0] % k == 0)
        packed, correction, multiplier, shift, zero = _pack(layer, lanes, self.data_dtype)
        self.rewritten += 1
        x, layout = self.visit_expr(layer.x_q), "NC" if layer.dense else "NCHW"
        bound = self.lookup_binding(x) if isinstance(x, relax.Var) and not layer.dense else None
        if op_name(bound) == "relax.permute_dims" and bound.attrs.axes is not None and \
                [int(a) for a in bound.attrs.axes] == list(TO_NCHW):
            x, layout = bound.args[0], "NHWC"
        out = self.builder_.call_te(
            int8_conv, x, relax.const(packed), relax.const(correction), relax.const(multiplier),
            strides=layer.strides, padding=layer.padding, dilation=layer.dilation, shift=shift, zero=zero,
            data_dtype=self.data_dtype, relu=layer.relu, out_zero=layer.out_zero, out_dtype=layer.out_dtype,
            channels=int(layer.weight.shape[0]), layout=layout,
            primfunc_name_hint="conv2d_int8" if not layer.dense else "dense_int8")
        return out if layer.dense else relax.op.permute_dims(self.builder_.emit(out), TO_NCHW)


def rewrite_int8(mod: IRModule, target: Target) -> tuple[IRModule, int]:
    """`mod` with every matched quantized layer as an integer kernel, and how many there were."""
    lanes, data_dtype = int8_lanes(target)
    total = 0
    for gvar, func in list(mod.functions_items()):
        if not isinstance(func, relax.Function):
            continue
        layers = find_layers(func)
        if not layers:
            continue
        rewriter = _Int8Rewriter(mod, layers, lanes, data_dtype)
        new = rewriter.visit_expr(func)
        mod = rewriter.builder_.get()
        mod[gvar] = relax.analysis.remove_all_unused(new)
        total += rewriter.rewritten
    return mod, total


def int8_wanted(target: Target, int8: bool | None) -> bool:
    """Whether to rewrite: as asked, or by default (None) where the schedule has an integer dot
    product: VNNI, AVX-VNNI, sdot, or `pmaddwd` (any x86). Elsewhere (NEON without dotprod) the
    plain vectorized integer schedule is what is left, and on AVX2 that was slower than the
    float path (ResNet-50: 412 vs 169 ms), so those targets keep float convs unless forced."""
    if int8 is not None:
        return bool(int8)
    isa = isa_of(target)
    return isa.int8_dot is not None or isa.name.startswith(("avx", "sse"))


def int8_pass(target: Target) -> tvm.transform.Pass:
    """The rewrite as a module pass (the first of `lowering.fused_module`)."""

    @tvm.transform.module_pass(opt_level=0, name="edgec.Int8Layers")
    def apply(mod: IRModule, _ctx) -> IRModule:
        return rewrite_int8(mod, target)[0]

    return apply
