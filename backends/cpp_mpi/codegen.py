"""Generate `cpp/main.cpp`: one SPMD C++ program in which every MPI rank runs only its own stage.

Why generated source, as AutoDiCE does: a device then needs neither Python nor edgec, only Open MPI,
the TVM runtime library and this program. The per-model facts — which rank runs which stage,
every boundary tensor with its type, shape and tag, the graph inputs and outputs — come from
the typed manifest alone (each stage's signature gives its `main`'s parameters and results in
order; the sub-models are never opened) and become short, readable tables and one function per
stage; the frame loop, .npy I/O, errors and the report live in the hand-written
`edgec_support.h` shipped beside it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ...compiler.diagnostics import UsageError
from ..manifest import Manifest, StageEntry, TensorSpec, read_manifest
from ..tvm.section import TvmSection

DTYPES = {"float32": "edgec::f32", "float16": "edgec::f16", "int8": "edgec::i8", "uint8": "edgec::u8",
          "int32": "edgec::i32", "int64": "edgec::i64", "bool": "edgec::b8"}
"""The element types `edgec_support.h` implements (numpy name → its C++ tag); a C++ concern, so its own table."""
_KEYWORDS = {"auto", "int", "float", "double", "long", "char", "bool", "new", "delete", "class", "struct", "ctx",
             "stage", "return", "switch", "case", "default", "const", "void", "this", "template", "union", "edgec"}


def stage_module(manifest: Manifest, rank: int) -> str:
    """The stage's TVM module path relative to OUT (the TVM backend's, or next to the sub-model)."""
    section = manifest.section("tvm")
    entry = section.stage(rank) if isinstance(section, TvmSection) else None
    if entry is not None:
        return entry.module
    return Path(manifest.stage(rank).model).with_suffix(".so").as_posix()


def _signature(stage: StageEntry) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Parameters and results of the stage's `main`, in order (the manifest's stage signature)."""
    if stage.signature is None:
        raise UsageError(f"stage {stage.rank}: the manifest records no signature (written by an older edgec)",
                         hint="compile the output again with this edgec")
    return stage.signature.inputs, stage.signature.outputs


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


def _stage_function(stage: StageEntry, manifest: Manifest, dealt: bool = False) -> list[str]:
    """`dealt` (replicated stages, `codegen_replicas.py`): every rank of the stage runs this function, with its own
    table row (`kStages[ctx.rank]`) and links (`stage.connect()` takes them from kLinks)."""
    rank = stage.rank
    row = "ctx.rank" if dealt else rank
    params, results = _signature(stage)
    inputs = {spec.name: i for i, spec in manifest.stage_inputs(rank)}
    outputs = {spec.name: i for i, spec in manifest.stage_outputs(rank)}
    recvs = {i.tensor: i for i in stage.inputs if i.src is not None}
    span = f"{stage.first_node or '?'} .. {stage.last_node or '?'}"
    lines = [f"// Stage {rank} on {stage.device}: {span} ({stage.nodes} nodes)",
             f"int stage{rank}(edgec::Context& ctx) {{",
             f"  edgec::Stage stage(ctx, kStages[{row}], static_cast<int>(kTransfers.size()));"]
    taken: set[str] = set()
    idents: dict[str, str] = {}
    for kind, tensors in (("param", params), ("result", results)):
        for t in tensors:
            if t.dtype not in DTYPES:
                raise UsageError(f"stage {rank}: tensor '{t.name}' is {t.dtype}; the C++ backend supports "
                                 f"{', '.join(DTYPES)} only")
            idents[t.name] = ident = _identifier(t.name, taken)
            dims = ", ".join(map(str, t.shape))
            lines.append(f"  auto& {ident} = stage.{kind}({_cpp_str(t.name)}, {DTYPES[t.dtype]}, {{{dims}}});")
            if t.name in recvs:
                r = recvs[t.name]
                if not dealt:
                    lines.append(f"  stage.recv({ident}, /*from=*/{r.src}, /*tag=*/{r.tag});")
            elif kind == "param" and t.name in inputs:
                lines.append(f"  stage.feed({ident}, /*input=*/{inputs[t.name]});")
            elif kind == "param":
                raise UsageError(f"stage {rank}: input '{t.name}' is neither received nor a graph input")
            if kind == "result" and t.name in outputs:
                lines.append(f"  stage.keep({ident}, /*output=*/{outputs[t.name]});")
    for s in stage.sends:
        if s.tensor not in idents:
            raise UsageError(f"stage {rank}: sends '{s.tensor}', which it neither computes nor receives")
        if not dealt:
            lines.append(f"  stage.send({idents[s.tensor]}, /*to=*/{s.dst}, /*tag=*/{s.tag});")
    if dealt:
        lines.append("  stage.connect();  // this rank's rows of kLinks")
    lines += ["  return edgec::run_stage(ctx, stage, kStages, kTransfers, kOutputs);", "}"]
    return lines


def model_name(manifest: Manifest) -> str:
    """The source model's file name, which names the program in comments and packages."""
    return Path(manifest.model.path or "model.onnx").name


def generate_main(out: str | Path, manifest: Manifest | None = None) -> str:
    """The text of `cpp/main.cpp` for the compiled output at `out` (its manifest.json unless given).
    Everything comes from the manifest; the sub-models are not opened."""
    manifest = manifest or read_manifest(out)
    if manifest.replicas is not None:
        from .codegen_replicas import generate_dealt_main

        return generate_dealt_main(manifest)
    stages = manifest.stages
    devices = list(dict.fromkeys(s.device for s in stages))
    lines = [
        f"// main.cpp: the edgec pipeline program for {model_name(manifest)}, {len(stages)} stages on "
        f"{len(devices)} devices ({', '.join(devices)}).",
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
    lines += _rows([(f"{{{_cpp_str(s.device)}, {_cpp_str(stage_module(manifest, s.rank))}, {s.threads or 1}}}",
                     f"rank {s.rank}") for s in stages])
    lines += ["};", "", "// boundary tensors: tensor, from rank, to rank, tag, bytes per frame",
              "const std::vector<edgec::TransferInfo> kTransfers = {"]
    lines += _rows([(f"{{{_cpp_str(t.tensor)}, {t.src}, {t.dst}, {t.tag}, {t.nbytes}}}", t.spec.typed)
                    for t in manifest.transfers])
    lines += ["};", ""] + io_tables_and_main(manifest, "rank", "kStages", "ctx.rank")
    return "\n".join(lines)


def io_tables_and_main(manifest: Manifest, who: str, tables: str, switch: str, dealt: bool = False) -> list[str]:
    """The end of main.cpp, shared by both generators: the graph inputs and outputs (`who` reads or produces
    them: a rank, or a stage when ranks are replicas), one function per stage, and `main`, which parses the
    arguments against `tables` and runs the stage `switch` names."""
    lines = [f"// graph inputs (RUNDIR/input<i>.npy): name, reading {who}"]
    for i, spec in enumerate(manifest.model.inputs):
        lines.append(f"//   input{i}: {spec.name} {spec.typed} -> {who} {spec.stage}")
    lines += [f"// graph outputs (RUNDIR/output<i>.npy): name, producing {who}",
              "const std::vector<edgec::OutputInfo> kOutputs = {"]
    lines += _rows([(f"{{{_cpp_str(spec.name)}, {spec.stage}}}", spec.typed) for spec in manifest.model.outputs])
    lines += ["};", ""]
    for s in manifest.stages:
        lines += _stage_function(s, manifest, dealt=dealt) + [""]
    lines += ["}  // namespace", "", "int main(int argc, char** argv) {",
              f"  edgec::Context ctx = edgec::parse_args(argc, argv, {tables});", f"  switch ({switch}) {{"]
    lines += [f"    case {s.rank}: return stage{s.rank}(ctx);" for s in manifest.stages]
    lines += ["  }", "  return 2;", "}", ""]
    return lines
