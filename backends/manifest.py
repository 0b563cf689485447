"""`manifest.json`: everything the runtime, `edgec verify` and a human need to know about an output.

Devices, ranks (one per stage) with their sub-model, inputs and outputs; boundary tensors with
shape, dtype and wire format; the pass log; tool versions; sha256 of every written file.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform as host_platform
from pathlib import Path

import onnx_ir as ir

from ..compiler.annotations import stage_of
from ..compiler.program import Program

FORMAT_VERSION = 1


def sha256_file(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _tensor(value: ir.Value) -> dict:
    return {"name": value.name, "shape": list(value.shape), "dtype": value.dtype.numpy().name}


def tool_versions() -> dict[str, str]:
    versions = {"python": host_platform.python_version()}
    for dist in ("edgec", "onnx", "onnx-ir", "onnxruntime", "numpy"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def build_manifest(program: Program, stage_files: dict[int, str], *, model_info: dict, plan_info: dict | None) -> dict:
    graph = program.graph
    stages = []
    by_stage = program.nodes_by_stage()
    for stage in program.stages:
        nodes = [n for n in by_stage[stage.index] if n.domain != "edgec"]
        stages.append({
            "rank": stage.rank,
            "device": stage.device,
            "resource": stage.resource,
            "threads": stage.threads,
            "nodes": len(nodes),
            "first_node": nodes[0].name if nodes else None,
            "last_node": nodes[-1].name if nodes else None,
            "model": stage_files[stage.index],
            "inputs": [
                {"tensor": v.name, "from": "input"} for v in graph.inputs if program.input_owner.get(v.name) == stage.index
            ] + [{"tensor": t.tensor, "from": t.src, "tag": t.tag} for t in program.transfers if t.dst == stage.index],
            "outputs": [{"tensor": v.name, "to": "output"} for v in graph.outputs
                        if (p := v.producer()) is not None and stage_of(p) == stage.index],
            "sends": [{"tensor": t.tensor, "to": t.dst, "tag": t.tag} for t in program.transfers if t.src == stage.index],
        })
    return {
        "format": FORMAT_VERSION,
        "model": {
            **model_info,
            "inputs": [{**_tensor(v), "stage": program.input_owner.get(v.name)} for v in graph.inputs],
            "outputs": [{**_tensor(v), "stage": stage_of(v.producer()) if v.producer() else None} for v in graph.outputs],
        },
        "plan": plan_info,
        "platform": program.platform.to_json(),
        "stages": stages,
        "transfers": [
            {"tensor": t.tensor, "src": t.src, "dst": t.dst, "tag": t.tag, "shape": list(t.shape),
             "dtype": t.dtype, "wire": t.dtype, "bytes": t.nbytes}
            for t in program.transfers
        ],
        "splits": [report.to_json() for report in program.splits],
        "passes": program.pass_log,
        "tools": tool_versions(),
    }
