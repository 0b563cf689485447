"""Generate `cpp/main.cpp`: one SPMD C++ program in which every MPI rank runs only its own stage.

Why generated source, as AutoDiCE does: a device then needs neither Python nor edgec, only Open MPI,
the TVM runtime library and this program. The per-model facts — which rank runs which stage,
every boundary tensor with its type, shape and tag, the graph inputs and outputs — become short,
readable tables and one function per stage; the frame loop, .npy I/O, errors and the report live
in the hand-written `edgec_support.h` shipped beside it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import onnx

from ...compiler.diagnostics import UsageError

DTYPES = {"float32": "edgec::f32", "int64": "edgec::i64"}
_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.INT64: "int64"}
_KEYWORDS = {"auto", "int", "float", "double", "long", "char", "bool", "new", "delete", "class", "struct", "ctx",
             "stage", "return", "switch", "case", "default", "const", "void", "this", "template", "union", "edgec"}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def typed(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"


def stage_module(manifest: dict, rank: int) -> str:
    """The stage's TVM module path relative to OUT (the TVM backend's, or next to the sub-model)."""
    for entry in manifest.get("tvm", {}).get("stages", []):
        if entry["rank"] == rank:
            return entry["module"]
    return str(Path(manifest["stages"][rank]["model"]).with_suffix(".so").as_posix())


def _io(model_path: Path, fallback: dict[str, Tensor]) -> tuple[list[Tensor], list[Tensor]]:
    """Parameters and results of the stage's `main`, in order (= the sub-model's graph inputs/outputs)."""
    graph = onnx.load(str(model_path), load_external_data=False).graph
    initializers = {i.name for i in graph.initializer}

    def tensor(value: onnx.ValueInfoProto) -> Tensor:
        kind = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in kind.shape.dim]
        if None in dims or kind.elem_type not in _ONNX_DTYPES:
            if value.name in fallback:
                return fallback[value.name]
        if kind.elem_type not in _ONNX_DTYPES:
            raise UsageError(f"tensor '{value.name}' of {model_path.name} has an ONNX type the C++ backend does not "
                             "support (float32 and int64 only)")
        if None in dims:
            raise UsageError(f"tensor '{value.name}' of {model_path.name} has a symbolic shape")
        return Tensor(value.name, _ONNX_DTYPES[kind.elem_type], tuple(dims))

    return ([tensor(v) for v in graph.input if v.name not in initializers], [tensor(v) for v in graph.output])


def _identifier(name: str, taken: set[str]) -> str:
    base = re.sub(r"\W+", "_", name).strip("_") or "t"
    base = f"t_{base}" if base[0].isdigit() else base
    base = f"{base}_" if base in _KEYWORDS else base
    ident, n = base, 2
    while ident in taken:
        ident, n = f"{base}_{n}", n + 1
    taken.add(ident)
    return ident


def _cpp_str(text: str) -> str:
    return json.dumps(text)


def _rows(entries: list[tuple[str, str]]) -> list[str]:
    """Table rows `    {…},  // comment` with the comments aligned."""
    width = max((len(code) for code, _ in entries), default=0)
    return [f"    {code + ',':<{width + 1}}  // {comment}" for code, comment in entries]


def _stage_function(rank: int, stage: dict, params: list[Tensor], results: list[Tensor], table: dict,
                    manifest: dict) -> list[str]:
    inputs = {spec["name"]: i for i, spec in enumerate(manifest["model"]["inputs"]) if spec["stage"] == rank}
    outputs = {spec["name"]: i for i, spec in enumerate(manifest["model"]["outputs"]) if spec["stage"] == rank}
    recvs = {r["tensor"]: r for r in table["recvs"]}
    span = f"{stage.get('first_node', '?')} .. {stage.get('last_node', '?')}"
    lines = [f"// Stage {rank} on {stage['device']}: {span} ({stage.get('nodes', 0)} nodes)",
             f"int stage{rank}(edgec::Context& ctx) {{",
             f"  edgec::Stage stage(ctx, kStages[{rank}], static_cast<int>(kTransfers.size()));"]
    taken: set[str] = set()
    idents: dict[str, str] = {}
    for kind, tensors in (("param", params), ("result", results)):
        for t in tensors:
            if t.dtype not in DTYPES:
                raise UsageError(f"stage {rank}: tensor '{t.name}' is {t.dtype}; the C++ backend supports "
                                 "float32 and int64 only")
            idents[t.name] = ident = _identifier(t.name, taken)
            dims = ", ".join(map(str, t.shape))
            lines.append(f"  auto& {ident} = stage.{kind}({_cpp_str(t.name)}, {DTYPES[t.dtype]}, {{{dims}}});")
            if t.name in recvs:
                r = recvs[t.name]
                lines.append(f"  stage.recv({ident}, /*from=*/{r['peer']}, /*tag=*/{r['tag']});")
            elif kind == "param" and t.name in inputs:
                lines.append(f"  stage.feed({ident}, /*input=*/{inputs[t.name]});")
            elif kind == "param":
                raise UsageError(f"stage {rank}: input '{t.name}' is neither received nor a graph input")
            if kind == "result" and t.name in outputs:
                lines.append(f"  stage.keep({ident}, /*output=*/{outputs[t.name]});")
    for s in table["sends"]:
        if s["tensor"] not in idents:
            raise UsageError(f"stage {rank}: sends '{s['tensor']}', which it neither computes nor receives")
        lines.append(f"  stage.send({idents[s['tensor']]}, /*to=*/{s['peer']}, /*tag=*/{s['tag']});")
    lines += ["  return edgec::run_stage(ctx, stage, kStages, kTransfers, kOutputs);", "}"]
    return lines


def generate_main(out: str | Path, manifest: dict | None = None) -> str:
    """The text of `cpp/main.cpp` for the compiled output at `out` (its manifest.json unless given)."""
    out = Path(out)
    manifest = manifest or json.loads((out / "manifest.json").read_text())
    comm = json.loads((out / "comm.json").read_text())["ranks"]
    stages = manifest["stages"]
    model = Path(manifest["model"].get("path", "model.onnx")).name
    devices = list(dict.fromkeys(s["device"] for s in stages))
    lines = [
        f"// main.cpp: the edgec pipeline program for {model}, {len(stages)} stages on {len(devices)} devices "
        f"({', '.join(devices)}).",
        "//",
        "// Generated by edgec's C++/MPI backend; regenerate rather than edit. Every MPI rank runs the one",
        "// stage its rank names (rank = stage), exchanging boundary tensors with the tags below.",
        f"//   mpirun -np {len(stages)} ./edgec_pipeline ROOT RUNDIR --frames 100 [--warmup 2] [--keep-outputs]",
        "// ROOT holds devices/<device>/stage<k>.so; RUNDIR holds input<i>.npy and receives report.json",
        "// (and output<i>.npy with --keep-outputs).",
        '#include "edgec_support.h"',
        "",
        "namespace {",
        "",
        "// rank -> stage: device, TVM module (relative to ROOT), threads",
        "const std::vector<edgec::StageInfo> kStages = {",
    ]
    lines += _rows([(f"{{{_cpp_str(s['device'])}, {_cpp_str(stage_module(manifest, s['rank']))}, "
                     f"{s.get('threads') or 1}}}", f"rank {s['rank']}") for s in stages])
    lines += ["};", "", "// boundary tensors: tensor, from rank, to rank, tag, bytes per frame",
              "const std::vector<edgec::TransferInfo> kTransfers = {"]
    lines += _rows([(f"{{{_cpp_str(t['tensor'])}, {t['src']}, {t['dst']}, {t['tag']}, {t['bytes']}}}",
                     Tensor(t["tensor"], t["dtype"], tuple(t["shape"])).typed) for t in manifest["transfers"]])
    lines += ["};", "", "// graph inputs (RUNDIR/input<i>.npy): name, reading rank"]
    for i, spec in enumerate(manifest["model"]["inputs"]):
        lines.append(f"//   input{i}: {spec['name']} {Tensor(spec['name'], spec['dtype'], tuple(spec['shape'])).typed}"
                     f" -> rank {spec['stage']}")
    lines += ["// graph outputs (RUNDIR/output<i>.npy): name, producing rank",
              "const std::vector<edgec::OutputInfo> kOutputs = {"]
    lines += _rows([(f"{{{_cpp_str(spec['name'])}, {spec['stage']}}}",
                     Tensor(spec["name"], spec["dtype"], tuple(spec["shape"])).typed)
                    for spec in manifest["model"]["outputs"]])
    lines += ["};", ""]
    specs = {t["tensor"]: Tensor(t["tensor"], t["dtype"], tuple(t["shape"])) for t in manifest["transfers"]}
    specs.update({s["name"]: Tensor(s["name"], s["dtype"], tuple(s["shape"]))
                  for s in manifest["model"]["inputs"] + manifest["model"]["outputs"]})
    for s in stages:
        params, results = _io(out / s["model"], specs)
        lines += _stage_function(s["rank"], s, params, results, comm[s["rank"]], manifest) + [""]
    lines += ["}  // namespace", "", "int main(int argc, char** argv) {",
              "  edgec::Context ctx = edgec::parse_args(argc, argv, kStages);", "  switch (ctx.rank) {"]
    lines += [f"    case {s['rank']}: return stage{s['rank']}(ctx);" for s in stages]
    lines += ["  }", "  return 2;", "}", ""]
    return "\n".join(lines)
