"""A textual form of the IR, for `--print-after`, `--dump-ir` and golden tests.

One line per node: `%outputs = [domain.]Op(inputs) {attrs} : types  @placement [sN]  # name`.
Weights print as `$name` with their shape; values as `%name`. Stable across runs.
"""

from __future__ import annotations

import onnx_ir as ir

from .annotations import placement_of, stage_of
from .program import Program


def _type(value: ir.Value) -> str:
    dtype = value.dtype.name.lower() if value.dtype is not None else "?"
    dims = "x".join(str(d) for d in value.shape) if value.shape is not None else "?"
    return f"{dtype}[{dims}]"


def _operand(value: ir.Value | None) -> str:
    if value is None:
        return "_"
    if value.is_initializer():
        return f"${value.name}"
    return f"%{value.name}"


def _attr(attr: ir.Attr) -> str:
    value = attr.value
    if attr.type == ir.AttributeType.TENSOR:
        return f"{attr.name}=<tensor {value.dtype.name.lower()}{list(value.shape)}>"
    if isinstance(value, float):
        return f"{attr.name}={value:g}"
    if isinstance(value, (list, tuple)):
        return f"{attr.name}=[{', '.join(str(v) for v in value)}]"
    if isinstance(value, str):
        return f'{attr.name}="{value}"'
    return f"{attr.name}={value}"


def format_node(node: ir.Node) -> str:
    outs = ", ".join(f"%{v.name}" for v in node.outputs)
    lhs = f"{outs} = " if outs else ""
    op = f"{node.domain}.{node.op_type}" if node.domain else node.op_type
    args = ", ".join(_operand(v) for v in node.inputs)
    attrs = ", ".join(_attr(a) for a in node.attributes.values())
    attrs = f" {{{attrs}}}" if attrs else ""
    types = ", ".join(_type(v) for v in node.outputs)
    types = f" : {types}" if types else ""
    where = []
    if (placement := placement_of(node)) is not None:
        where.append(f"@{placement}")
    if (stage := stage_of(node)) is not None:
        where.append(f"[s{stage}]")
    suffix = ("  " + " ".join(where)) if where else ""
    return f"{lhs}{op}({args}){attrs}{types}{suffix}  # {node.name}"


def format_program(program: Program) -> str:
    graph = program.graph
    lines = [f"program {graph.name or 'main'}"]
    for dev in program.platform.devices.values():
        props = " ".join(f"{k}={v}" for k, v in vars(dev).items() if v is not None and k != "name")
        lines.append(f"device {dev.name} {props}".rstrip())
    for stage in program.stages:
        threads = f" threads={stage.threads}" if stage.threads else ""
        lines.append(f"stage s{stage.index} on {stage.device}.{stage.resource}{threads}")
    for r in program.replicas:
        lines.append(f"replicas s{r.stage} " + " ".join(f"r{rank}@{p}" for rank, p in zip(r.ranks, r.placements))
                     + f"  # frame f on replica f mod {r.count}")
    for t in program.transfers:
        lines.append(f"transfer %{t.tensor} s{t.src} -> s{t.dst} tag={t.tag} {t.dtype}[{'x'.join(map(str, t.shape))}] {t.nbytes}B")
    for value in graph.inputs:
        owner = program.input_owner.get(value.name)
        lines.append(f"input %{value.name} : {_type(value)}" + (f"  [s{owner}]" if owner is not None else ""))
    for value in graph.initializers.values():
        lines.append(f"weight ${value.name} : {_type(value)}")
    lines.extend(format_node(node) for node in graph)
    lines.append("return " + ", ".join(f"%{v.name}" for v in graph.outputs))
    return "\n".join(lines) + "\n"
