"""BatchNorm folding: no inference BatchNormalization is left for a backend to import.

Requires: placed nodes with constant BatchNorm parameters in inference mode. Guarantees
(`batchnorm-folded`): a BatchNorm right after a Conv (or ConvTranspose, Gemm) whose output it is
the only user of, with constant weights and in the same place (placement and stage) as the
BatchNorm, is folded into that layer's weights and bias; every other BatchNorm becomes one `Mul`
and one `Add` with constant per-channel scale and shift, placed and staged like the BatchNorm and
producing its output name. Parameters nothing uses any more are dropped.

Why a pass of its own, not part of canonicalize: pruning wants the BatchNorm scales (they rank
channels), while TVM and quantization want them folded; a backend that needs the fact pulls the
pass into the default pipeline, after the splits (a split layer's parts fold their own slice).

Who does what: onnxscript's maintained rules (`onnxscript.rewriter.rules.common`:
`fuse_batchnorm_into_conv_rule`, `…_conv_transpose_rule`, `…_gemm_rule`) match and fold into the
layer, run through `apply_rules`, which refuses a fold across devices or stages and places the new
layer like the old one; the Mul + Add form is edgec's own (onnxscript has no such rule), computed
in float64 and built with the Builder.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter.rules.common import (
    fuse_batchnorm_into_conv_rule,
    fuse_batchnorm_into_conv_transpose_rule,
    fuse_batchnorm_into_gemm_rule,
)

from ..compiler.builder import Builder
from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, PassResult
from ..compiler.program import Program
from .onnxscript_rewrite import apply_rules

FOLD_RULES = (fuse_batchnorm_into_conv_rule, fuse_batchnorm_into_conv_transpose_rule, fuse_batchnorm_into_gemm_rule)


def _batchnorms(program: Program) -> list[ir.Node]:
    return [n for n in program.nodes() if n.op_type == "BatchNormalization" and n.domain in ("", "ai.onnx")]


class FoldBatchNorm(Pass):
    """Inference BatchNorms folded into the Conv before them, or into one Mul and one Add.

    requires placed; provides batchnorm-folded; invalidates comm; runs after canonicalize,
    split-layer and split when they are in the pipeline. Refuses a training-mode BatchNorm and
    one whose scale, bias, mean or variance is not a constant.
    """

    name = "fold-batchnorm"
    requires = frozenset({Fact.PLACED})
    provides = frozenset({Fact.BATCHNORM_FOLDED})
    invalidates = frozenset({Fact.COMM})
    after = frozenset({Fact.CANONICAL, Fact.LAYERS_SPLIT, Fact.STAGED})

    def precondition(self, program: Program) -> None:
        graph = program.graph
        opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 1))
        for bn in _batchnorms(program):
            extra = bn.outputs[1:]
            by_arity = opset < 14 and len(extra) > 0
            if by_arity or bn.attributes.get_int("training_mode", 0) or any(v.uses() or v.is_graph_output() for v in extra):
                raise self.fail(f"BatchNormalization '{bn.name}' is in training mode; only inference BatchNorms fold")
            for i, value in enumerate(bn.inputs[1:5], start=1):
                if value is None or value.const_value is None:
                    what = f"'{value.name}'" if value is not None else f"input {i}"
                    raise self.fail(f"BatchNormalization '{bn.name}': parameter {what} is not a constant, so it "
                                    "cannot be folded")
            if len(bn.inputs[0].shape) < 2:
                raise self.fail(f"BatchNormalization '{bn.name}' has an input of rank {len(bn.inputs[0].shape)}; "
                                "it needs (N, C, …)")

    def call(self, program: Program) -> PassResult:
        batchnorms = _batchnorms(program)
        if not batchnorms:
            return PassResult(False, "no BatchNormalization")
        params = [v for bn in batchnorms for v in bn.inputs[1:5]]
        for bn in batchnorms:
            bn.resize_outputs(1)
        counts: Counter[str] = Counter()
        before = Counter(n.op_type for n in program.nodes())
        if apply_rules(program, FOLD_RULES):
            after = Counter(n.op_type for n in program.nodes())
            counts["folded into the layer"] = before["BatchNormalization"] - after["BatchNormalization"]
        for bn in _batchnorms(program):
            _to_scale_and_shift(program.graph, bn)
            counts["as Mul + Add"] += 1
        for value in params:
            if value.is_initializer() and not value.uses() and not value.is_graph_output():
                del program.graph.initializers[value.name]
        summary = ", ".join(f"{n} {label}" for label, n in counts.items())
        return PassResult(True, f"{len(batchnorms)} BatchNorms: {summary}", dict(counts))

    def postcondition(self, program: Program) -> None:
        left = _batchnorms(program)
        if left:
            raise self.fail(f"BatchNormalization '{left[0].name}' is left")


def _to_scale_and_shift(graph: ir.Graph, bn: ir.Node) -> None:
    """y = x * k + (bias - mean * k), k = scale / sqrt(var + eps), per channel (axis 1)."""
    x, y = bn.inputs[0], bn.outputs[0]
    scale, bias, mean, var = (v.const_value.numpy().astype(np.float64) for v in bn.inputs[1:5])
    k = scale / np.sqrt(var + bn.attributes.get_float("epsilon", 1e-5))
    shift = bias - mean * k
    dtype, per_channel = x.dtype.numpy(), (-1, *[1] * (len(x.shape) - 2))
    b = Builder(graph, bn, bn.name)
    scaled = b.op("Mul", "mul", [x, b.const("scale", k.astype(dtype).reshape(per_channel))], list(x.shape), x.dtype)
    out = b.op("Add", "add", [scaled, b.const("shift", shift.astype(dtype).reshape(per_channel))], list(y.shape), y.dtype)
    name = y.name
    y.replace_all_uses_with(out, replace_graph_outputs=True)
    graph.remove(bn, safe=True)
    y.name = None
    out.name = name
    out.producer().name = bn.name
