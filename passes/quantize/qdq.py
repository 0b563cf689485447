"""QuantizeLinear/DequantizeLinear insertion, placed by the contract with comm-insert and the runtime:
a QuantizeLinear runs where the tensor is produced (the producer's placement and stage; a graph
input's in the stage that owns it), each DequantizeLinear where it is consumed (one per consumer
stage, before that stage's first reader). So when a boundary lies between two quantized layers it
is the int8/uint8 tensor that crosses, with no DQ/Q pair around the link.

Each node gets its own scale and zero-point initializers, so a stage's sub-model never shares a
constant with another stage.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import onnx_ir as ir

from ...compiler.annotations import stage_of
from ...compiler.builder import Builder
from ...compiler.program import Program
from .params import NUMPY, TensorParams

IR_TYPE = {"uint8": ir.DataType.UINT8, "int8": ir.DataType.INT8, "int32": ir.DataType.INT32}


def _node(op: str, name: str, inputs: Sequence[ir.Value], out: ir.Value, attributes: Sequence[ir.Attr] = ()) -> ir.Node:
    return ir.Node("", op, list(inputs), list(attributes), outputs=[out], name=name)


def _value(name: str, shape, dtype: ir.DataType) -> ir.Value:
    return ir.Value(name=name, shape=ir.Shape(list(shape)), type=ir.TensorType(dtype))


def scalar_const(builder: Builder, suffix: str, array: np.ndarray) -> ir.Value:
    """Like `Builder.const`, but a 0-d array stays a scalar (per-tensor Q/DQ parameters are scalars;
    `np.ascontiguousarray` would make them [1])."""
    if np.ndim(array):
        return builder.const(suffix, array)
    name = builder.name(suffix)
    value = ir.Value(name=name, shape=ir.Shape([]), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.Tensor(np.asarray(array), name=name))
    builder.graph.register_initializer(value)
    return value


def fresh_base(program: Program, base: str) -> str:
    """`base`, or `base_2`, `base_3`, …: the first under which no Q/DQ or Cast pair exists yet. A tensor
    can be quantized twice (a device's layers read it, then `quantize wire` quantizes the readers
    that still get it as float), and node and initializer names must stay unique."""
    nodes = {n.name for n in program.nodes()}
    values = {v.name for n in program.nodes() for v in n.outputs}
    candidate, k = base, 1
    while {f"{candidate}/QuantizeLinear", f"{candidate}/CastToFloat16"} & nodes or \
            {f"{candidate}_quantized", f"{candidate}_fp16"} & values:
        k += 1
        candidate = f"{base}_{k}"
    return candidate


def _producer_builder(program: Program, value: ir.Value, prefix: str, first_reader: ir.Node) -> tuple[Builder, ir.Node | None]:
    """A builder for the node that must run where `value` is produced, and the node to insert after."""
    producer = value.producer()
    if producer is not None:
        return Builder(program.graph, None, prefix, like=producer), producer
    owner = program.input_owner.get(value.name)
    if owner is not None and program.stages:
        return Builder.in_stage(program, owner, first_reader, prefix), None
    return Builder(program.graph, first_reader, prefix, like=first_reader), None


def insert_pair(program: Program, value: ir.Value, params: TensorParams, readers: list[ir.Node],
                order: dict[ir.Node, int], *, output: bool = False) -> tuple[ir.Value, dict[int | None, ir.Value]]:
    """Q after `value`'s producer and one DQ per stage of `readers`, which are rewired to read it;
    with `output` (a quantized layer's graph output) a DQ produces the graph output too.

    Returns the quantized value and the dequantized value per reader stage."""
    readers = sorted(readers, key=order.__getitem__)
    base = fresh_base(program, value.name)
    q_builder, after = _producer_builder(program, value, f"{base}/QuantizeLinear", readers[0] if readers else None)
    scale, zp = np.array(params.scale, dtype=np.float32), np.array(params.zero_point, dtype=NUMPY[params.dtype])
    q_value = _value(f"{base}_quantized", value.shape, IR_TYPE[params.dtype])
    q_node = _node("QuantizeLinear", f"{base}/QuantizeLinear", [value, scalar_const(q_builder, "scale", scale),
                                                                 scalar_const(q_builder, "zero_point", zp)], q_value)
    q_builder.adopt(q_node, after=after)
    by_stage: dict[int | None, list[ir.Node]] = {}
    for reader in readers:
        by_stage.setdefault(stage_of(reader), []).append(reader)
    dequantized: dict[int | None, ir.Value] = {}
    for stage, group in by_stage.items():
        suffix = "" if len(by_stage) == 1 else f"_s{stage}"
        name = f"{base}/DequantizeLinear{suffix}"
        b = Builder(program.graph, group[0], name, like=group[0])
        dq = _value(f"{base}_dequantized{suffix}", value.shape, value.dtype)
        inputs = [q_value, scalar_const(b, "scale", scale.copy()), scalar_const(b, "zero_point", zp.copy())]
        b.adopt(_node("DequantizeLinear", name, inputs, dq))
        for reader in group:
            for i, inp in enumerate(reader.inputs):
                if inp is value:
                    reader.replace_input_with(i, dq)
        dequantized[stage] = dq
    if output:
        _dequantized_output(program, value, q_value, scale, zp)
    return q_value, dequantized


def _dequantized_output(program: Program, value: ir.Value, q_value: ir.Value, scale: np.ndarray, zp: np.ndarray) -> None:
    """A quantized layer's graph output: Q then DQ in the producer's stage, the DQ output taking the
    output's name (so onnxruntime fuses the layer into an integer kernel, as for any other tensor)."""
    name = value.name
    b = Builder(program.graph, None, f"{name}/DequantizeLinear_output", like=value.producer())
    dq = _value(f"{name}/dequantized_output", value.shape, value.dtype)
    node = _node("DequantizeLinear", f"{name}/DequantizeLinear_output",
                 [q_value, scalar_const(b, "scale", scale.copy()), scalar_const(b, "zero_point", zp.copy())], dq)
    b.adopt(node, after=q_value.producer())
    outputs = program.graph.outputs
    for i, out in enumerate(outputs):
        if out is value:
            outputs[i] = dq
    value.name = f"{name}/float"
    dq.name = name


def dequantized_constant(program: Program, node: ir.Node, index: int, q: np.ndarray, scales: np.ndarray,
                         axis: int | None, what: str) -> None:
    """Replace `node`'s constant input `index` by DequantizeLinear(q, scales, 0) (per channel along `axis`)."""
    old = node.inputs[index]
    b = Builder(program.graph, node, f"{node.name}/{what}", like=node)
    scale = scales.astype(np.float32) if axis is not None else np.array(scales.reshape(-1)[0], dtype=np.float32)
    zp = np.zeros(scale.shape, dtype=q.dtype)
    attrs = [ir.AttrInt64("axis", axis)] if axis is not None else []
    dq = _value(f"{node.name}/{what}_dequantized", q.shape, ir.DataType.FLOAT)
    b.adopt(_node("DequantizeLinear", f"{node.name}/{what}/DequantizeLinear",
                  [b.const("quantized", q), scalar_const(b, "scale", scale), scalar_const(b, "zero_point", zp)], dq, attrs))
    node.replace_input_with(index, dq)
    if old.is_initializer() and not old.uses() and not old.is_graph_output():
        del program.graph.initializers[old.name]

