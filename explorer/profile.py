"""`edgec profile`: per-node compute time with onnxruntime at the thread counts a plan uses, the
cost of an MPI message here, and a rank's memory overhead.

Per-node times come from onnxruntime's own profiler, with the session options the runtime uses
(all graph optimizations): a fused kernel is named after one of the nodes it fused, which gets
its time; layout reorders are charged to the node that follows them. The kernels' sum misses
the per-run overhead of `session.run`, so every node's time is scaled by (median wall time of an
unprofiled run) ÷ (kernels' sum). Why not TVM: its times need a compiled module per stage
(tens of seconds each on this machine), far more than profiling the whole model once, and
onnxruntime is the engine `edgec run` uses by default. Why not int8: no quantize pass yet.
"""

from __future__ import annotations

import json
import os
import platform as host_platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import onnx_ir as ir

from ..compiler.diagnostics import UsageError

FORMAT = "edgec-profile"
VERSION = 1
_SUFFIX = re.compile(r"(_nchwc|_token_\d+|_kernel_time)$")


def _node_of(event_name: str, known: dict[str, str]) -> str | None:
    """The node an onnxruntime kernel event belongs to; `known` maps node names and output value
    names (a fused or layout-converted kernel is named after the value it writes) to nodes."""
    name = event_name
    while True:
        if name in known:
            return known[name]
        stripped = _SUFFIX.sub("", name)
        if stripped == name:
            return None
        name = stripped


def _feeds(session) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    from ..compiler.tensor_types import ort_numpy_name

    feeds = {}
    for spec in session.get_inputs():
        dtype = np.dtype(ort_numpy_name(spec.type) or "float32")
        shape = [d if isinstance(d, int) else 1 for d in spec.shape]
        feeds[spec.name] = (rng.standard_normal(shape) if dtype.kind == "f" else np.zeros(shape)).astype(dtype)
    return feeds


def _session(path: Path, threads: int, profile_prefix: str | None = None, fused: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if not fused:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def node_times(model_path: Path, names: list[str], threads: int, repeats: int, workdir: Path,
               outputs: dict[str, str] | None = None, fused: bool = True) -> dict:
    """Per-node seconds (the median over `repeats` profiled runs, scaled to the unprofiled run time);
    `outputs` maps value names to the node writing them. `fused=False` turns onnxruntime's graph optimizations
    off, so every kernel is one node (no fused group charged to one of its nodes): the times a re-split needs."""
    known = {**(outputs or {}), **{n: n for n in names}}
    plain = _session(model_path, threads, fused=fused)
    feeds = _feeds(plain)
    plain.run(None, feeds)
    walls = []
    for _ in range(repeats):
        start = time.perf_counter()
        plain.run(None, feeds)
        walls.append(time.perf_counter() - start)
    del plain
    profiled = _session(model_path, threads, str(workdir / f"ort-{threads}"), fused=fused)
    profiled.run(None, feeds)
    for _ in range(repeats):
        profiled.run(None, feeds)
    events = json.loads(Path(profiled.end_profiling()).read_text())
    run_starts = sorted(float(e["ts"]) for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    per_run: list[dict[str, float]] = [{} for _ in run_starts]
    pending = 0.0
    kernels_of = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
    for event in sorted(kernels_of, key=lambda e: float(e["ts"])):
        index = int(np.searchsorted(run_starts, float(event["ts"]), side="right")) - 1
        if index < 0:
            continue
        seconds = float(event.get("dur", 0)) * 1e-6
        node = _node_of(event["name"], known)
        if node is None:
            pending += seconds
            continue
        per_run[index][node] = per_run[index].get(node, 0.0) + seconds + pending
        pending = 0.0
    runs = per_run[1:] if len(per_run) > 1 else per_run  # the first profiled run warms up
    matrix = np.asarray([[run.get(n, 0.0) for n in names] for run in runs])
    kernels = np.median(matrix, axis=0) if len(matrix) else np.zeros(len(names))
    wall = float(np.median(walls))
    scale = wall / kernels.sum() if kernels.sum() > 0 else 1.0
    return {"node_seconds": (kernels * scale).tolist(), "run_seconds_median": wall,
            "run_seconds_min": float(np.min(walls)), "kernel_seconds": float(kernels.sum()), "repeats": repeats,
            "profiled_runs": len(runs)}


def mpi_overhead(timeout: float = 120.0) -> dict:
    """The ping-pong of `mpi_pingpong.py` under mpirun (two ranks on this machine)."""
    from ..runtime.launcher import mpi_env

    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise UsageError("'mpirun' not found", hint="install Open MPI: apt-get install openmpi-bin libopenmpi-dev")
    with tempfile.TemporaryDirectory(prefix="edgec-pingpong-") as tmp:
        out = Path(tmp) / "mpi.json"
        cmd = [mpirun, "-np", "2", "--oversubscribe", "--bind-to", "none", sys.executable, "-m",
               "edgec.explorer.mpi_pingpong", str(out)]
        done = subprocess.run(cmd, env=mpi_env(), capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0 or not out.is_file():
            raise UsageError(f"the MPI ping-pong failed (exit {done.returncode}): {done.stderr.strip()[-400:]}")
        return json.loads(out.read_text())


_RSS_PROBE = """
import sys
import numpy as np, onnx
from onnx import helper, TensorProto
import onnxruntime as ort
g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                      [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
s.run(None, {"x": np.ones(1, np.float32)})
from mpi4py import rc; rc.initialize = False
from mpi4py import MPI
status = open("/proc/self/status").read().split("VmHWM:")[1].split()
print(int(status[0]) * 1024)
"""


def runtime_overhead_bytes() -> int:
    """Peak resident memory (VmHWM: ru_maxrss would count the forking parent's pages) of a Python
    process holding the runtime's libraries and a trivial session: what every rank needs before
    its stage's weights and buffers."""
    done = subprocess.run([sys.executable, "-c", _RSS_PROBE], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise UsageError(f"measuring the runtime's memory failed: {done.stderr.strip()[-300:]}")
    return int(done.stdout.strip().splitlines()[-1])


def profile(model: ir.Model, threads: list[int], *, repeats: int = 5, with_mpi: bool = True,
            progress: Callable[[str], None] = lambda _m: None, source: str | None = None,
            fused: bool = True) -> dict:
    """The profile document (`edgec profile -o` writes it as JSON); `fused=False`: see `node_times`."""
    names = [n.name for n in model.graph]
    outputs = {v.name: n.name for n in model.graph for v in n.outputs}
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    result: dict = {"format": FORMAT, "version": VERSION, "model": source, "engine": "onnxruntime",
                    "host": host_platform.node(), "machine": host_platform.machine(), "cpus": available,
                    "load_average": list(os.getloadavg()), "nodes": names, "threads": {}}
    with tempfile.TemporaryDirectory(prefix="edgec-profile-") as tmp:
        path = Path(tmp) / "model.onnx"
        ir.save(model, path, external_data="model.data")  # the weights copied: the loader's point into the source file
        for count in sorted(set(threads)):
            progress(f"profiling {len(names)} nodes with onnxruntime, {count} thread(s), {repeats} runs")
            result["threads"][str(count)] = node_times(path, names, count, repeats, Path(tmp), outputs, fused)
    if not fused:
        result["graph_optimizations"] = "disabled"
    if with_mpi:
        progress("measuring MPI messages (mpirun -np 2 ping-pong)")
        result["mpi"] = mpi_overhead()
    progress("measuring a rank's memory overhead")
    result["runtime_overhead_bytes"] = runtime_overhead_bytes()
    return result


def read_profile(path: str | os.PathLike, names: list[str] | None = None) -> dict:
    """A profile file, checked: its format, and (given `names`) that it times this model's nodes."""
    file = Path(path)
    if not file.is_file():
        raise UsageError(f"profile '{file}' not found")
    try:
        data = json.loads(file.read_text())
    except ValueError as exc:
        raise UsageError(f"profile '{file}' is not JSON: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not data.get("threads"):
        raise UsageError(f"'{file}' is not an edgec profile (write one with `edgec profile`)")
    if names is not None and list(data.get("nodes", [])) != list(names):
        missing = [n for n in names if n not in set(data.get("nodes", []))]
        raise UsageError(f"profile '{file}' was measured on another model" +
                         (f" (it lacks node '{missing[0]}')" if missing else " (its nodes are in another order)"),
                         hint="profile this model: edgec profile MODEL --plan PLAN -o FILE")
    return data


def times_at(profile_data: dict, threads: int) -> np.ndarray:
    """Per-node seconds at `threads`: the profiled count closest below it (or the smallest)."""
    counts = sorted(int(t) for t in profile_data["threads"])
    below = [c for c in counts if c <= threads]
    chosen = below[-1] if below else counts[0]
    return np.asarray(profile_data["threads"][str(chosen)]["node_seconds"], dtype=float)
