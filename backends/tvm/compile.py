"""Compile each stage's ONNX sub-model with Apache TVM into a self-contained shared library.

`compile_stage` is one stage: import (frontend.py), the CPU pipeline with edgec's schedules
(lowering.py) or TVM's default GPU pipeline, then `export_library`, cross-linked when the device
is another architecture. `compile_output` does every stage of a compiled output, as its manifest
lists them (and every further replica of a replicated stage: `replica_modules.py`), and returns
the `tvm` section (`section.py`): per stage the target, module path, sha256 and compile seconds.

Why processes: TVM's compile is mostly single-threaded Python and LLVM, so independent stages
compile in parallel in worker processes (spawned: a forked TVM is not safe) when there is
enough work to pay for starting them (`default_jobs`, measured on this 2-core machine with
`benchmarks/tvm_stage_times.py`).

Modules are written beside their path and renamed over it, never rewritten in place: a
process that has a stage's module loaded (a benchmark, `edgec tune`'s measurement) keeps its
mapping of the old file.

Why a cache: a recompile after one changed `place` line would otherwise rebuild every stage;
`module_cache.py` keeps each built module under (sub-model sha256, target, TVM version, edgec's
TVM code, the stage's tuning records from `edgec tune`), so only stages whose sub-model changed
are compiled again. The progress output says which stages were compiled and which taken from
the cache, and how many kernels of a stage use tuned schedules (`tuning.py`).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

from ...compiler.diagnostics import EdgecError, ModelError, UsageError
from ...compiler.platform import Device
from ..backend import Progress
from ..manifest import Manifest, read_manifest, record_sha256, sha256_file
from .module_cache import ModuleCache, written_beside
from .replica_modules import compile_replicas
from .section import TvmSection, TvmStage
from .targets import TargetSpec, select_target

PARALLEL_MIN_NODES = 150


def tvm_versions() -> dict[str, str]:
    import tvm
    import tvm_ffi

    return {"apache-tvm": tvm.__version__, "apache-tvm-ffi": getattr(tvm_ffi, "__version__", "?")}


def _one_line(exc: BaseException) -> str:
    """TVM puts its C++ backtrace first and the message last (unlike `diagnostics.first_line`)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__


def compile_stage(
    onnx_path: str | Path,
    input_shapes: Mapping[str, Sequence[int]] | None,
    target_spec: TargetSpec,
    out_path: str | Path,
) -> dict:
    """Compile one sub-model for `target_spec` and export it to `out_path` (a `.so`)."""
    import tvm

    from .frontend import import_onnx
    from .lowering import cpu_build_pipeline
    from .tuning import TunedSchedules

    start = time.perf_counter()
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    described = target_spec.describe()
    mod = import_onnx(onnx_path, input_shapes, described)
    target = target_spec.tvm_target()
    tuned = TunedSchedules.for_stage(onnx_path, target_spec) if target_spec.kind == "llvm" else None
    pipeline = cpu_build_pipeline(target, tuned) if target_spec.kind == "llvm" else "default"
    try:
        executable = tvm.compile(mod, target, relax_pipeline=pipeline)
    except EdgecError:
        raise
    except Exception as exc:  # noqa: BLE001 - TVM raises many types; the user needs one message
        raise ModelError(f"TVM cannot compile {onnx_path.name} for target {described}: {_one_line(exc)}") from None
    device_code = _device_code(executable) if target_spec.kind != "llvm" else {}
    fcompile = None
    if target_spec.cross_compiler:
        fcompile = tvm.support.cc.cross_compiler(target_spec.cross_compiler)
    try:
        with written_beside(out_path) as written:
            executable.export_library(str(written), fcompile=fcompile)
    except Exception as exc:  # noqa: BLE001
        raise UsageError(f"linking {out_path.name} for {target_spec.arch} failed: {_one_line(exc)}") from None
    return {
        "target": target_spec.target,
        "arch": target_spec.arch,
        "cross_compiler": target_spec.cross_compiler,
        "sha256": sha256_file(out_path),
        "bytes": out_path.stat().st_size,
        "compile_seconds": round(time.perf_counter() - start, 3),
        "tuned_kernels": tuned.applied if tuned is not None else 0,
        **device_code,
        "tvm": tvm_versions(),
    }


def _device_code(executable) -> dict:
    """What a GPU module carries: its kernel count and whether it is source (no nvcc/NVRTC here)."""
    stack, kernels, formats = [executable.mod], 0, set()
    while stack:
        module = stack.pop()
        stack.extend(module.imports)
        if module.kind == "cuda":
            kernels += module.inspect_source("cuda").count("__global__")
            formats.add("cuda-source" if "__global__" in module.inspect_source("") else "binary")
    return {"device_kernels": kernels, "device_code": sorted(formats)}


def _job(onnx_path: str, target_spec: TargetSpec, out_path: str) -> tuple[str, object]:
    """Worker entry: errors travel back as data, so the parent re-raises the same EdgecError."""
    try:
        return "ok", compile_stage(onnx_path, None, target_spec, out_path)
    except EdgecError as exc:
        return "error", (type(exc).__name__, exc.message, getattr(exc, "node", None), exc.hint)


def _raise(error: tuple) -> None:
    kind, message, node, hint = error
    if kind == "ModelError":
        raise ModelError(message, hint=hint)  # message already names the node
    raise UsageError(message, hint=hint)


def _stages(manifest: Manifest, out_dir: Path) -> list[tuple[int, Device, str, Path, int]]:
    """(rank, device, resource, sub-model path, node count) of every stage."""
    return [(s.rank, manifest.device(s.device), s.resource or "cpu", out_dir / s.model, s.nodes)
            for s in manifest.stages]


def default_jobs(stages: int, nodes: int) -> int:
    """One worker per core when there is enough to compile: a worker costs about 1.3 s to start
    (spawn + import TVM), which small models do not win back (tiny_cnn, 4 stages: 1.3 s in
    process, 2.6 s with 2 workers; ResNet-50: 6.7 s → 5.7 s, DenseNet-121: 18.4 s → 11.4 s)."""
    if os.environ.get("EDGEC_TVM_JOBS"):
        return max(1, min(stages, int(os.environ["EDGEC_TVM_JOBS"])))
    if stages < 2 or nodes < PARALLEL_MIN_NODES:
        return 1
    return max(1, min(stages, os.cpu_count() or 1))


def _entry(rank: int, device: Device, resource: str, module: str, info: dict) -> TvmStage:
    return TvmStage(rank, device.name, resource, module, info["target"], info["arch"], info["cross_compiler"],
                    info["sha256"], info["bytes"], info["compile_seconds"], info.get("device_kernels"),
                    tuple(info["device_code"]) if "device_code" in info else None)


def compile_output(
    manifest: Manifest,
    out_dir: str | Path,
    progress: Progress = lambda _msg: None,
    *,
    jobs: int | None = None,
    cache: ModuleCache | None | bool = True,
) -> TvmSection:
    """Compile every stage whose sub-model is already written under `out_dir` (as `manifest` lists them).

    Returns the manifest's `tvm` section: versions, wall time, workers, and per stage (by rank)
    the module path (relative to `out_dir`), target, arch, sha256 and compile seconds (about 0
    for a module taken from `cache`: the default cache, a given one, or none with False).
    """
    out_dir = Path(out_dir)
    stages = _stages(manifest, out_dir)
    specs = {rank: select_target(device, resource) for rank, device, resource, _, _ in stages}
    for rank, _, _, model, _ in stages:
        if not model.is_file():
            raise UsageError(f"stage {rank}: sub-model '{model}' is missing; write the ONNX sub-models first")
    modules = ModuleCache.default() if cache is True else (cache or None)
    start = time.perf_counter()
    results: dict[int, dict] = {}
    keys: dict[int, str] = {}
    cached = []
    for rank, _, _, model, _ in stages:
        if modules is None:
            break
        fetch_start = time.perf_counter()
        keys[rank] = modules.key(model, specs[rank])
        info = modules.fetch(keys[rank], model.with_suffix(".so"))
        if info is not None:
            results[rank] = {**info, "compile_seconds": round(time.perf_counter() - fetch_start, 3)}
            record_sha256(model.with_suffix(".so"), info["sha256"])
            cached.append(rank)
    work = [(rank, str(model), specs[rank], str(model.with_suffix(".so"))) for rank, _, _, model, _ in stages
            if rank not in results]
    nodes = {rank: n for rank, *_, n in stages}
    jobs = jobs or default_jobs(len(work), sum(nodes[rank] for rank, *_ in work))
    for rank in cached:
        tuned = f", {results[rank]['tuned_kernels']} tuned kernel(s)" if results[rank].get("tuned_kernels") else ""
        progress(f"  stage {rank}: {specs[rank].describe()} from the module cache{tuned}")
    if work:
        progress(f"compiling {len(work)} of {len(stages)} stage(s) with TVM ({jobs} worker{'s' if jobs > 1 else ''})")
    elif modules is not None:
        progress(f"all {len(stages)} TVM stage modules taken from the module cache ({modules.root})")

    def done(rank: int, spec: TargetSpec, value: dict, out: str) -> None:
        results[rank] = value
        record_sha256(out, value["sha256"])
        tuned = f", {value['tuned_kernels']} tuned kernel(s)" if value.get("tuned_kernels") else ""
        progress(f"  stage {rank}: {spec.describe()} in {value['compile_seconds']:.1f} s{tuned}")
        if modules is not None:
            modules.store(keys[rank], Path(out), value)

    if jobs == 1:
        for rank, model, spec, out in work:
            done(rank, spec, compile_stage(model, None, spec, out), out)
    elif work:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = {pool.submit(_job, model, spec, out): (rank, spec, out) for rank, model, spec, out in work}
            for future in cf.as_completed(futures):
                rank, spec, out = futures[future]
                status, value = future.result()
                if status == "error":
                    for other in futures:
                        other.cancel()
                    _raise(value)
                done(rank, spec, value, out)
    entries = tuple(_entry(rank, device, resource, model.with_suffix(".so").relative_to(out_dir).as_posix(),
                           results[rank]) for rank, device, resource, model, _ in stages)
    replicas = compile_replicas(manifest, out_dir, entries, progress, modules)
    return TvmSection(tvm_versions(), round(time.perf_counter() - start, 3), jobs, entries, replicas)


def compile_directory(out: str | Path, progress: Progress = lambda _msg: None, *, jobs: int | None = None) -> Manifest:
    """Add TVM modules to an output the ONNX backend already wrote: compile, then rewrite
    `manifest.json` with the `tvm` section, `tvm` among its backends, and the new files' sha256."""
    from ..artifacts import add_section

    out = Path(out)
    return add_section(out, "tvm", compile_output(read_manifest(out), out, progress, jobs=jobs))
