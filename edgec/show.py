"""`edgec show`: human-readable listings of a model or a compiled output, and the graph picture.

The picture is Graphviz DOT (one colour per device, boundary edges labelled with the tensor
and its size) rendered by the `dot` program when a raster/vector format is asked for.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import onnx_ir as ir
from rich.console import Console
from rich.table import Table

from .compiler.cost import macs, params
from .compiler.diagnostics import UsageError
from .compiler.tensor_types import nbytes
from .compiler.model_loader import load_model
from .runtime.outputs import CompiledOutput

PALETTE = ["#8dd3c7", "#fdb462", "#bebada", "#fb8072", "#80b1d3", "#b3de69", "#fccde5", "#d9d9d9", "#bc80bd", "#ccebc5"]


def _shape(value: ir.Value) -> str:
    return "x".join(str(d) for d in value.shape) if value.shape is not None else "?"


def model_json(path: Path, input_shapes: dict) -> dict:
    """What `edgec show MODEL --json` prints: every node with op, output shapes, params and MACs."""
    model = load_model(path, input_shapes=input_shapes)
    nodes = [{"index": i, "name": n.name, "op": n.op_type, "output_shapes": [list(v.shape) for v in n.outputs],
              "params": params(n), "macs": macs(n)} for i, n in enumerate(model.graph)]
    return {"model": str(path), "inputs": [{"name": v.name, "dtype": v.dtype.numpy().name, "shape": list(v.shape)}
                                           for v in model.graph.inputs],
            "nodes": nodes, "params": sum(n["params"] for n in nodes), "macs": sum(n["macs"] for n in nodes)}


def output_json(root: Path) -> dict:
    """What `edgec show OUT --json` prints: the stages, boundary tensors and splits of the manifest."""
    m = CompiledOutput.open(root).manifest
    return {"out": str(root), "backends": list(m.backends),
            "stages": [{"rank": s.rank, "device": s.device, "resource": s.resource, "threads": s.threads,
                        "nodes": s.nodes, "first_node": s.first_node, "last_node": s.last_node, "model": s.model}
                       for s in m.stages],
            "transfers": [{"tag": t.tag, "tensor": t.tensor, "src": t.src, "dst": t.dst, "shape": list(t.shape),
                           "wire": t.wire, "bytes": t.nbytes, **_wire_json(m, t.tensor)} for t in m.transfers],
            "splits": [split.to_json() for split in m.splits],
            "quantization": m.quantization.to_json() if m.quantization is not None else None,
            "pruning": m.pruning.to_json() if m.pruning is not None else None,
            **({"cdc": m.cdc.to_json()} if m.cdc is not None else {}),
            **({"replicas": m.replicas.to_json()} if m.replicas is not None else {}),
            **({"vta": m.section("vta").to_json()} if m.section("vta") is not None else {})}


def _wire_json(m, tensor: str) -> dict:
    """A quantized wire's float tensor, scale and zero point (nothing for a transfer that is not one)."""
    wire = m.quantization.wire_of(tensor) if m.quantization is not None else None
    if wire is None:
        return {}
    return {"float_tensor": wire.tensor, "scale": wire.scale, "zero_point": wire.zero_point}


def show_model(path: Path, input_shapes: dict, console: Console, progress=None) -> None:
    model = load_model(path, input_shapes=input_shapes, progress=progress)
    table = Table(title=f"{path.name}: {len(model.graph)} nodes in topological order")
    for col, justify in (("#", "right"), ("node", "left"), ("op", "left"), ("output shape", "left"),
                         ("params", "right"), ("MACs", "right")):
        table.add_column(col, justify=justify)
    total_params = total_macs = 0
    for index, node in enumerate(model.graph):
        p, m = params(node), macs(node)
        total_params += p
        total_macs += m
        table.add_row(str(index), node.name, node.op_type, ", ".join(_shape(v) for v in node.outputs),
                      f"{p:,}" if p else "", f"{m:,}" if m else "")
    console.print(table)
    inputs = ", ".join(f"{v.name}: {v.dtype.name.lower()}[{_shape(v)}]" for v in model.graph.inputs)
    console.print(f"inputs: {inputs}\nparams: {total_params:,}   MACs: {total_macs:,}", markup=False)


def show_output(root: Path, console: Console) -> None:
    m = CompiledOutput.open(root).manifest
    stages = Table(title=f"{root}: {len(m.stages)} stages (backends: {', '.join(m.backends)})")
    for col in ("rank", "device", "resource", "threads", "nodes", "first → last", "sub-model"):
        stages.add_column(col)
    for s in m.stages:
        stages.add_row(str(s.rank), s.device, s.resource, str(s.threads or ""), str(s.nodes),
                       f"{s.first_node} → {s.last_node}", s.model)
    console.print(stages)
    if m.transfers:
        transfers = Table(title="boundary tensors")
        for col in ("tag", "tensor", "from → to", "shape", "wire", "bytes"):
            transfers.add_column(col)
        for t in m.transfers:
            transfers.add_row(str(t.tag), t.tensor, f"{t.src} → {t.dst}", "x".join(map(str, t.shape)),
                              _wire_text(m, t), f"{t.nbytes:,}")
        console.print(transfers)
    if m.quantization is not None:
        show_quantization(m, console)
    if m.pruning is not None:
        from .show_pruning import show_pruning

        show_pruning(m, console)
    if m.cdc is not None:
        from .show_cdc import show_cdc

        show_cdc(m, console)
    if m.replicas is not None:
        from .show_replicas import show_replicas

        show_replicas(m, console)
    if m.section("vta") is not None:
        from .show_vta import show_vta

        show_vta(m.section("vta"), console)
    if m.splits:
        splits = Table(title="intra-layer splits (bytes per frame)")
        for col in ("layer", "kind", "part", "device", "receives", "sends", "halo", "merge on"):
            splits.add_column(col)
        for split in m.splits:
            for i, part in enumerate(split.parts):
                first = i == 0
                splits.add_row(split.layer if first else "", split.kind if first else "", str(i),
                               f"{part.device}.{part.resource}", f"{part.receives_bytes:,}", f"{part.sends_bytes:,}",
                               f"{part.halo_bytes:,}" if part.halo_bytes else "", split.merge if first else "")
        console.print(splits)


def _wire_text(m, t) -> str:
    """`int8 (of relu1, scale 0.0312, zp 0)` for a quantized wire, else the transfer's dtype."""
    wire = m.quantization.wire_of(t.tensor) if m.quantization is not None else None
    if wire is None:
        return t.wire
    params = "".join([f", scale {wire.scale:.3g}" if wire.scale is not None else "",
                      f", zp {wire.zero_point}" if wire.zero_point is not None else ""])
    return f"{t.wire} (of {wire.tensor}{params})"


def show_quantization(m, console: Console) -> None:
    """Per quantized stage: the activation and weight types, calibration, options, node count and why."""
    quant = m.quantization
    if quant.stages:
        table = Table(title="quantized stages")
        for col in ("rank", "device", "engine", "activations", "weights", "calibration", "options", "nodes", "why"):
            table.add_column(col)
        for q in quant.stages:
            options = ", ".join(o for o, on in (("bias correction", q.bias_correction),
                                                ("equalization", q.equalization)) if on) or "-"
            table.add_row(str(q.stage), q.device, q.engine, q.activation_dtype, f"{q.weight_dtype} {q.granularity}",
                          q.method, options, f"{len(q.nodes)}: {_names(q.nodes)}", q.reason)
        console.print(table)
    if quant.wires:
        wired = {t.tensor: t for t in m.transfers}
        table = Table(title="quantized wires")
        for col in ("tensor", "travels as", "wire", "scale", "zero point", "bytes", "as float32"):
            table.add_column(col)
        for w in quant.wires:
            t = wired.get(w.wire_tensor)
            table.add_row(w.tensor, w.wire_tensor, w.wire, "" if w.scale is None else f"{w.scale:.4g}",
                          "" if w.zero_point is None else str(w.zero_point), f"{t.nbytes:,}" if t else "",
                          f"{nbytes(t.shape, 'float32'):,}" if t else "")
        console.print(table)


def _names(nodes, shown: int = 3) -> str:
    more = f", … (+{len(nodes) - shown})" if len(nodes) > shown else ""
    return ", ".join(nodes[:shown]) + more


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def output_dot(root: Path) -> str:
    """DOT text of the partitioned graph: a cluster per stage, nodes coloured by device, and one
    red edge per boundary tensor labelled with its shape and size."""
    compiled = CompiledOutput.open(root)
    manifest = compiled.manifest
    colour = {d: PALETTE[i % len(PALETTE)] for i, d in enumerate(manifest.platform.devices)}
    lines = ["digraph edgec {", "  node [shape=box, style=filled, fontname=Helvetica, fontsize=10];"]
    edges: list[str] = []
    producer: dict[tuple[int, str], str] = {}
    readers: dict[tuple[int, str], list[str]] = {}
    for stage in compiled.stages:
        rank = stage.rank
        graph = ir.load(compiled.stage_model(rank)).graph
        lines.append(f"  subgraph cluster_s{rank} {{")
        lines.append(f"    label={_quote(f'stage {rank}: {stage.device}.{stage.resource}')};")
        fill = colour.get(stage.device, PALETTE[-1])
        for node in graph:
            ident = _quote(f"s{rank}/{node.name}")
            lines.append(f"    {ident} [label={_quote(node.name + chr(10) + node.op_type)}, fillcolor={_quote(fill)}];")
            for value in node.outputs:
                producer[(rank, value.name)] = ident
            for value in node.inputs:
                if value is None or value.is_initializer():
                    continue
                if (rank, value.name) in producer:
                    edges.append(f"  {producer[(rank, value.name)]} -> {ident};")
                else:
                    readers.setdefault((rank, value.name), []).append(ident)
        lines.append("  }")
    for spec in manifest.model.inputs:
        ident = _quote(f"input/{spec.name}")
        lines.append(f"  {ident} [shape=oval, fillcolor=white, label={_quote(spec.name)}];")
        edges.extend(f"  {ident} -> {r};" for r in readers.get((spec.stage, spec.name), []))
    for t in manifest.transfers:
        src = producer.get((t.src, t.tensor)) or _quote(f"input/{t.tensor}")
        label = _quote(f"{t.tensor}\n{'x'.join(map(str, t.shape))}, {t.nbytes:,} B")
        for reader in readers.get((t.dst, t.tensor), []):
            edges.append(f"  {src} -> {reader} [color=red, penwidth=2, fontcolor=red, label={label}];")
    lines.extend(edges)
    lines.append("}")
    return "\n".join(lines) + "\n"


def draw_output(root: Path, target: Path) -> None:
    fmt = target.suffix.lstrip(".").lower()
    if fmt not in ("png", "svg", "pdf", "dot"):
        raise UsageError(f"--graph '{target}': use a .png, .svg, .pdf or .dot file name")
    dot = output_dot(root)
    if fmt == "dot":
        target.write_text(dot)
        return
    exe = shutil.which("dot")
    if exe is None:
        raise UsageError("drawing needs Graphviz's `dot` program (apt-get install graphviz), or ask for a .dot file")
    result = subprocess.run([exe, f"-T{fmt}", "-o", str(target)], input=dot, text=True, capture_output=True)
    if result.returncode != 0:
        raise UsageError(f"dot failed: {result.stderr.strip()}")
