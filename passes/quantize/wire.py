"""`quantize wire int8|uint8|fp16`: the float tensors that cross stages travel quantized.

Each float tensor read in a stage other than its producer's gets a QuantizeLinear (int8/uint8,
per tensor, scale and zero point from calibration) or a Cast to float16 at the end of the
producer's stage, and a DequantizeLinear (or Cast back to float) at the start of each consumer
stage; readers in the producer's own stage keep the float tensor. A tensor that already crosses
as int8/uint8 (the Q output of a quantized layer, dequantized by the next stage) is left as it
is and recorded too. Graph inputs are not stage crossings (the driver hands them to their stage).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ...compiler.annotations import QuantizeRequest, is_edgec_op, stage_of
from ...compiler.builder import Builder
from ...compiler.program import Program, WireQuantization
from .params import params_for
from .qdq import fresh_base, insert_pair

WIRE_DTYPES = {ir.DataType.FLOAT: "float32", ir.DataType.FLOAT16: "fp16", ir.DataType.INT8: "int8",
               ir.DataType.UINT8: "uint8"}


def _crossings(program: Program) -> dict[str, tuple[ir.Value, list[ir.Node]]]:
    """Per value produced in one stage and read in another: the value and its readers elsewhere."""
    found: dict[str, tuple[ir.Value, list[ir.Node]]] = {}
    for node in program.nodes():
        if is_edgec_op(node):
            continue
        for value in node.inputs:
            producer = value.producer() if value is not None else None
            if producer is None or stage_of(producer) == stage_of(node):
                continue
            entry = found.setdefault(value.name, (value, []))
            if node not in entry[1]:
                entry[1].append(node)
    return found


def crossing_tensors(program: Program) -> list[str]:
    """The float tensors that cross stages now (before any quantization): what calibration must observe."""
    return [name for name, (value, _) in _crossings(program).items() if value.dtype == ir.DataType.FLOAT]


def quantize_wire(program: Program, request: QuantizeRequest, found: dict) -> int:
    """Quantize every float tensor still crossing stages; the number of tensors."""
    count = 0
    order = {n: i for i, n in enumerate(program.nodes())}  # the readers below are all nodes of this moment
    for name, (value, readers) in _crossings(program).items():
        if value.dtype != ir.DataType.FLOAT:
            continue
        if request.dtype == "fp16":
            _cast_pair(program, value, readers, order)
        else:
            if name not in found:
                continue
            insert_pair(program, value, params_for(found[name], request.dtype), readers, order)
        count += 1
    return count


def _cast_pair(program: Program, value: ir.Value, readers: list[ir.Node], order: dict[ir.Node, int]) -> None:
    producer = value.producer()
    base = fresh_base(program, value.name)
    b = Builder(program.graph, None, f"{base}/CastToFloat16", like=producer)
    half = ir.Value(name=f"{base}_fp16", shape=ir.Shape(list(value.shape)), type=ir.TensorType(ir.DataType.FLOAT16))
    b.adopt(ir.Node("", "Cast", [value], [ir.AttrInt64("to", int(ir.DataType.FLOAT16))], outputs=[half],
                    name=f"{base}/CastToFloat16"), after=producer)
    by_stage: dict[int | None, list[ir.Node]] = {}
    for reader in sorted(readers, key=order.__getitem__):
        by_stage.setdefault(stage_of(reader), []).append(reader)
    for stage, group in by_stage.items():
        suffix = "" if len(by_stage) == 1 else f"_s{stage}"
        name = f"{base}/CastToFloat{suffix}"
        back = ir.Value(name=f"{base}_float{suffix}", shape=ir.Shape(list(value.shape)),
                        type=ir.TensorType(ir.DataType.FLOAT))
        Builder(program.graph, group[0], name, like=group[0]).adopt(
            ir.Node("", "Cast", [half], [ir.AttrInt64("to", int(ir.DataType.FLOAT))], outputs=[back], name=name))
        for reader in group:
            for i, inp in enumerate(reader.inputs):
                if inp is value:
                    reader.replace_input_with(i, back)


def records(program: Program) -> list[WireQuantization]:
    """One record per tensor that crosses stages quantized (int8/uint8/fp16), whoever quantized it."""
    out = []
    for name, (value, _) in _crossings(program).items():
        wire = WIRE_DTYPES.get(value.dtype)
        if wire in (None, "float32"):
            continue
        producer = value.producer()
        source = producer.inputs[0] if producer is not None and producer.inputs else value
        scale = zero_point = None
        if producer is not None and producer.op_type == "QuantizeLinear":
            scale = float(np.asarray(producer.inputs[1].const_value.numpy()).reshape(-1)[0])
            zero_point = int(np.asarray(producer.inputs[2].const_value.numpy()).reshape(-1)[0])
        out.append(WireQuantization(source.name, name, wire, scale, zero_point))
    return out
