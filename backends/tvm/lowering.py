"""The Relax pipeline edgec compiles a stage with: layouts, weight packing, schedules.

Why not TVM's default CPU pipeline: it runs every convolution as one unscheduled scalar loop
nest. For CPU targets edgec converts convolutions to NHWC activations (so the channel loop is
the contiguous, vectorizable one), packs each constant weight into `[O/ot, KH, KW, I, ot]`
(the `ot` output channels one register tile needs are contiguous, so the kernel streams its
weights), and schedules every kernel (`schedules.py`) before the default lowering passes.

Why fold constant layout changes in numpy: `relax.transform.FoldConstant` compiles and runs
one TVM kernel per distinct constant expression; for a ResNet-50 stage's weight transposes
that took 7 s, numpy takes milliseconds. The same holds for a QDQ stage's constant int8 weights:
their `dequantize` is folded here, so the conv that reads them gets the packed-weight kernel
(it ran TOPI's unscheduled conv before); that is the path of the QDQ layers the integer rewrite
(`int8_lowering.py`, run first) does not match, and of every layer on a target without an int8
dot product. GPU targets keep TVM's default GPU pipeline (dlight schedules every kernel there).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, te, topi
from tvm.ir import IRModule
from tvm.relax.backend.cpu_generic import pipeline as cpu_pipeline

from .int8_lowering import int8_pass, int8_wanted
from .schedules import CONV_BLOCK, apply_cpu_schedules, register_tiles

_NUMPY_FOLDS = {
    "relax.permute_dims": lambda a, attrs: np.transpose(a, None if attrs.axes is None else [int(x) for x in attrs.axes]),
    "relax.expand_dims": lambda a, attrs: np.expand_dims(a, tuple(int(x) for x in attrs.axis)),
}


def _constant(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.GenericConst) else None


def _dequantized(call) -> np.ndarray | None:
    """`(q - zero_point) * scale` of a constant int8/uint8 tensor (a QDQ stage's weights), as TVM
    computes it, so the conv sees a constant float weight and gets its packed schedule."""
    values = [_constant(a) for a in call.args[:3]]
    if any(v is None for v in values):
        return None
    data, scale, zero = values
    shape = [1] * data.ndim
    if scale.ndim and data.ndim:
        shape[int(call.attrs.axis) % data.ndim] = -1
    zero = zero.reshape(shape) if zero.ndim else zero
    scale = scale.reshape(shape) if scale.ndim else scale
    return ((data.astype(np.int32) - zero.astype(np.int32)).astype(np.float32) * scale.astype(np.float32)).astype(
        str(call.attrs.out_dtype))


@relax.expr_functor.mutator
class _NumpyFolder(relax.PyExprMutator):
    """Folds permute_dims/expand_dims/reshape/dequantize of constants in numpy; counts what it folded."""

    def __init__(self, mod: IRModule) -> None:
        super().__init__(mod)
        self.folded = 0

    def visit_call_(self, call):
        call = super().visit_call_(call)
        name = getattr(call.op, "name", "")
        if name == "relax.dequantize" and (value := _dequantized(call)) is not None:
            self.folded += 1
            return relax.const(value)
        reshape = name == "relax.reshape" and len(call.args) == 2 and isinstance(call.args[1], relax.ShapeExpr)
        if not (name in _NUMPY_FOLDS or reshape) or (value := _constant(call.args[0])) is None:
            return call
        self.folded += 1
        if reshape:
            return relax.const(value.reshape([int(d) for d in call.args[1].values]))
        return relax.const(np.ascontiguousarray(_NUMPY_FOLDS[name](value, call.attrs)))


@tvm.transform.module_pass(opt_level=0, name="edgec.FoldConstantLayouts")
def fold_constant_layouts(mod: IRModule, _ctx) -> IRModule:
    """Fold, then forward the new constants into their uses, until nothing is left to fold."""
    for _ in range(8):
        folder = _NumpyFolder(mod)
        functions = [(g, f) for g, f in mod.functions_items() if isinstance(f, relax.Function)]
        for gvar, func in functions:
            mod[gvar] = folder.visit_expr(func)
        mod = relax.transform.CanonicalizeBindings()(mod)
        if not folder.folded:
            break
    return mod


def _packed_conv(data: te.Tensor, weight: te.Tensor, strides, padding, dilation, channels: int) -> te.Tensor:
    _, height, width, _ = (int(d) for d in data.shape)
    blocks, kh, kw, cin, ot = (int(d) for d in weight.shape)
    top, left, bottom, right = (int(p) for p in padding)
    sh, sw = (int(s) for s in strides)
    dh, dw = (int(d) for d in dilation)
    if any((top, left, bottom, right)):
        data = topi.nn.pad(data, [0, top, left, 0], [0, bottom, right, 0], name="pad_temp")
    out_h = (height + top + bottom - dh * (kh - 1) - 1) // sh + 1
    out_w = (width + left + right - dw * (kw - 1) - 1) // sw + 1
    ry, rx, rc = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx"), te.reduce_axis((0, cin), "rc")
    return te.compute(
        (int(data.shape[0]), out_h, out_w, channels),
        lambda n, y, x, f: te.sum(
            data[n, y * sh + ry * dh, x * sw + rx * dw, rc] * weight[f // ot, ry, rx, rc, f % ot], axis=[ry, rx, rc]),
        name=CONV_BLOCK,
    )


def _legalize_conv2d(target: tvm.target.Target):
    """NHWC conv2d with a constant HWIO weight → packed-weight TE conv; anything else → TOPI's."""
    default = tvm.ir.Op.get("relax.nn.conv2d").get_attr("FLegalize")

    def legalize(bb: relax.BlockBuilder, call: relax.Call) -> relax.Expr:
        attrs = call.attrs
        weight = _constant(call.args[1])
        data_ty = call.args[0].ty
        if (weight is None or attrs.data_layout != "NHWC" or attrs.kernel_layout != "HWIO" or int(attrs.groups) != 1
                or attrs.out_layout not in ("NHWC", "") or data_ty.dtype != "float32" or weight.dtype != np.float32
                or any(not isinstance(d, tvm.tirx.IntImm) for d in data_ty.shape.values)):
            return default(bb, call)
        kh, kw, cin, cout = weight.shape
        ot, _ = register_tiles(target, cout, 0)
        packed = np.ascontiguousarray(weight.reshape(kh, kw, cin, cout // ot, ot).transpose(3, 0, 1, 2, 4))
        return bb.call_te(_packed_conv, call.args[0], relax.const(packed), attrs.strides, attrs.padding, attrs.dilation,
                          int(cout), primfunc_name_hint="conv2d")

    return legalize


def _optional(transform: tvm.transform.Pass) -> tvm.transform.Pass:
    """Run `transform`, or skip it where TVM cannot apply it: layout conversion is only an
    optimization (relax's layout inference rejects some graphs, e.g. 5-D tensors)."""

    @tvm.transform.module_pass(opt_level=0, name=f"edgec.Optional{transform.info.name}")
    def apply(mod: IRModule, _ctx) -> IRModule:
        try:
            return transform(mod)
        except Exception:  # noqa: BLE001 - TVM's internal errors; the NCHW path is still correct
            return mod

    return apply


def fused_module(mod: IRModule, target: tvm.target.Target, *, int8: bool | None = None) -> IRModule:
    """`mod` up to its fused, unscheduled PrimFuncs: what the schedules and `edgec tune` work on.
    A QDQ stage's quantized layers become integer kernels first (int8_lowering.py) with `int8`,
    by default (None) where the target has an int8 dot-product instruction."""
    with target:
        return tvm.transform.Sequential([
            *([int8_pass(target)] if int8_wanted(target, int8) else []),
            *cpu_pipeline.library_dispatch_passes(target),
            relax.transform.DecomposeOpsForInference(),
            _optional(relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "HWIO"]})),
            fold_constant_layouts,
            relax.transform.LegalizeOps({"relax.nn.conv2d": _legalize_conv2d(target)}),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
        ])(mod)


def cpu_build_pipeline(target: tvm.target.Target, tuned=None, *, int8: bool | None = None) -> tvm.transform.Pass:
    """The Relax pipeline for an LLVM CPU target (see the module docstring); `tuned` (a
    `tuning.TunedSchedules`) replaces the hand schedule of every PrimFunc it has a record for."""

    @tvm.transform.module_pass(opt_level=0, name="edgec.CPUPipeline")
    def pipeline(mod: IRModule, _ctx) -> IRModule:
        with target:
            mod = fused_module(mod, target, int8=int8)
            if tuned is not None:
                mod = tuned.apply(mod)
            mod = apply_cpu_schedules(mod, target)
            after = tvm.transform.Sequential(
                cpu_pipeline.dataflow_lower_passes(target) + cpu_pipeline.finalize_passes(target))
            return after(mod)

    return pipeline
