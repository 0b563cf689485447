"""The cdc-encode pass: R parity parts beside each coded layer's k split parts.

Requires: the layers split (the coded layer's parts are linear: split-layer fuses no follower
into them). For each merge Concat carrying a `CdcRequest`, the pass reads the k parts' weights
and biases, zero-pads them to the largest part along the split axis, and adds parity part j,
a copy of the part op whose weights are sum_i P[j, i] W_i (bias likewise), placed on the
request's j-th target, and an Identity of it on the merge's device: the one use that makes
comm-insert send the parity to the merge stage (the merge stage's sub-model takes it as an
input it does not need; the decoder, not ONNX, reads it). The merge and the rest of the graph
are unchanged, so with every part present the program computes exactly what it did; the
`CdcLayer` records on `model.meta[CDC_LAYERS]` say how a decoder rebuilds missing parts from
the parities.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ...compiler.annotations import CDC, CDC_LAYERS, placement_of
from ...compiler.builder import Builder
from ...compiler.diagnostics import PlanError
from ...compiler.facts import Fact
from ...compiler.pass_manager import Pass, PassResult
from ...compiler.program import Program
from .code import parity_matrix
from .record import CdcLayer
from .request import CdcRequest


class CdcEncode(Pass):
    """`cdc` statements: parity parts for output-split linear layers, recorded for the decoder."""

    name = "cdc-encode"
    requires = frozenset({Fact.LAYERS_SPLIT})
    provides = frozenset({Fact.CDC_ENCODED})
    invalidates = frozenset({Fact.STAGED, Fact.COMM})

    def call(self, program: Program) -> PassResult:
        merges = [n for n in program.nodes() if n.op_type == "Concat" and CDC in n.meta]
        records = [_encode(program, merge, merge.meta[CDC]) for merge in merges]
        for node in program.nodes():
            node.meta.pop(CDC, None)
        if records:
            program.model.meta[CDC_LAYERS] = list(program.model.meta.get(CDC_LAYERS) or []) + records
        return PassResult(bool(records), f"{len(records)} layers coded")


def _weight_axis(node: ir.Node) -> int:
    if node.op_type == "Gemm":
        return 0 if node.attributes.get_int("transB", 0) else 1
    return 1 if node.op_type == "MatMul" else 0


def _const(node: ir.Node, index: int, request: CdcRequest) -> np.ndarray | None:
    if index >= len(node.inputs) or node.inputs[index] is None:
        return None
    value = node.inputs[index]
    if value.const_value is None:
        raise PlanError(f"cdc needs constant weights; input {index} of '{node.name}' is computed", request.span)
    return value.const_value.numpy()


def _padded(array: np.ndarray, axis: int, size: int) -> np.ndarray:
    widths = [(0, 0)] * array.ndim
    widths[axis] = (0, size - array.shape[axis])
    return np.pad(array, widths)


def _encode(program: Program, merge: ir.Node, request: CdcRequest) -> CdcLayer:
    layer = merge.name.rsplit("/", 1)[0]
    parts = [v.producer() for v in merge.inputs]
    first = parts[0]
    if any(p is None or p.op_type != first.op_type or p.op_type not in ("Gemm", "MatMul", "Conv") for p in parts):
        raise PlanError(f"cdc: the parts of '{layer}' are not all one linear layer (Gemm, MatMul, Conv)", request.span,
                        hint="a non-linearity inside the coded parts cannot be decoded")
    if first.op_type == "Conv" and first.attributes.get_int("group", 1) != 1:
        raise PlanError(f"cdc cannot code the grouped convolution '{layer}': its parts read different input channels",
                        request.span)
    if any(p.inputs[0] is not first.inputs[0] for p in parts):
        raise PlanError(f"cdc: the parts of '{layer}' do not share one input", request.span)
    axis = merge.attributes.get_int("axis", 0) % len(merge.outputs[0].shape)
    sizes = [v.shape[axis] for v in merge.inputs]
    padded, w_axis = max(sizes), _weight_axis(first)
    weights = [_padded(_const(p, 1, request), w_axis, padded) for p in parts]
    biases = [_const(p, 2, request) for p in parts]
    if any(b is not None and b.ndim >= 1 and b.shape[-1 if first.op_type == "Gemm" else 0] == s and s > 1
           for b, s in zip(biases, sizes)):
        b_axis = biases[0].ndim - 1 if first.op_type == "Gemm" else 0
        biases = [_padded(b, b_axis, padded) for b in biases]
    matrix = parity_matrix(len(parts), request.parity)
    builder = Builder(program.graph, merge, layer, like=first)
    shape = list(merge.inputs[0].shape)
    shape[axis] = padded
    names = []
    for j, (row, place) in enumerate(zip(matrix, request.targets)):
        w = builder.const(f"parity{j}.W", _combine(row, weights))
        inputs = [first.inputs[0], w]
        if biases[0] is not None:
            inputs.append(builder.const(f"parity{j}.B", _combine(row, biases)))
        parity_value = builder.clone(first, f"parity{j}", inputs, shape, place)
        builder.op("Identity", f"parity{j}.at_merge", [parity_value], shape, parity_value.dtype, placement_of(merge),
                   like=merge)
        names.append(parity_value.name)
    ranges, lo = [], 0
    for s in sizes:
        ranges.append((lo, lo + s))
        lo += s
    return CdcLayer(layer, first.op_type, merge.name, axis, tuple(v.name for v in merge.inputs),
                    tuple(placement_of(p).device for p in parts), tuple(names),
                    tuple(t.device for t in request.targets),
                    tuple(ranges), padded, tuple(map(tuple, matrix.tolist())))


def _combine(row: np.ndarray, arrays: list[np.ndarray]) -> np.ndarray:
    total = sum(float(c) * a.astype(np.float64) for c, a in zip(row, arrays))
    return np.asarray(total, dtype=arrays[0].dtype)
