"""`edgec run OUT --emulate`: run a compiled output in an emulated cluster and report what its links carried.

Why interface counters: the report's per-link bytes must be what actually crossed the shaped
veths (TCP/IP and MPI headers, start-up, warm-up and gathered outputs included), not what the
manifest says should have; the manifest's boundary bytes are shown beside them, with the
analytic prediction of the link time, boundary bytes ÷ bandwidth (+ latency), and the frame
rate that bandwidth allows.

Where the cluster comes from: an existing one (`cluster up`, named by id or name), a plan file
(its `device`/`link` statements), or by default the platform recorded in OUT's manifest; the
last two are brought up for this run alone and removed afterwards, also on failure or Ctrl-C.
"""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from ..compiler.diagnostics import UsageError
from ..compiler.platform import Platform
from ..runtime.outputs import CompiledOutput
from .layout import Layout, plan_layout
from .lifecycle import Cluster, find_cluster, temporary_cluster
from .mpi import ClusterTarget
from .netcmd import check_can_build, interface_counters


def platform_of(source: str | Path | None, compiled: CompiledOutput) -> tuple[Platform, str]:
    """The platform to emulate: a plan file's, or the manifest's own."""
    if source is None:
        return compiled.manifest.platform, f"{compiled.root}/manifest.json"
    from ..api import load_plan
    from ..dsl.lower import lower_platform

    return lower_platform(load_plan(Path(source))), str(source)


def check_routes(layout: Layout, compiled: CompiledOutput) -> None:
    """Every stage's device is in the cluster, every transfer has a route the right way, and every device
    reaches rank 0's (refused before anything runs)."""
    devices = [stage.device for stage in compiled.stages]
    for device in dict.fromkeys(devices):
        layout.device(device)
    for t in compiled.manifest.transfers:
        layout.path(devices[t.src], devices[t.dst])
    for device in dict.fromkeys(devices[1:]):
        layout.route(device, devices[0], "must reach rank 0, where the runtime gathers reports and outputs,")


@contextmanager
def cluster_for(spec: str | None, compiled: CompiledOutput, *, state_dir: str | Path | None,
                progress: Callable[[str], None]) -> Iterator[Cluster]:
    """The cluster `spec` names (an existing cluster, or a plan file), or the manifest's platform."""
    check_can_build()
    if spec is not None and not Path(spec).is_file():
        try:
            cluster = find_cluster(spec, state_dir)
        except UsageError as exc:
            raise UsageError(f"--emulate '{spec}' is neither a plan file nor a cluster: {exc.message}") from None
        if cluster.status() != "up":
            raise UsageError(f"cluster {cluster.name} is {cluster.status()}", hint="edgec cluster down, then up again")
        check_routes(cluster.layout, compiled)
        yield cluster
        return
    platform, source = platform_of(spec, compiled)
    check_routes(plan_layout(platform, "0000"), compiled)
    with temporary_cluster(platform, source=source, state_dir=state_dir, progress=progress) as cluster:
        yield cluster


def link_counters(layout: Layout) -> dict[tuple[int, str], int]:
    """tx bytes of both ends of every link: (link index, device) → bytes sent from that device's end."""
    counters = {}
    for link in layout.links:
        for device in (link.a, link.b):
            interface = link.end(device)[0]
            counters[(link.index, device)] = interface_counters(layout.device(device).namespace, interface)["tx_bytes"]
    return counters


def expected_link_bytes(layout: Layout, compiled: CompiledOutput, frames: int, kept_outputs: bool
                        ) -> dict[tuple[int, str], dict[str, Any]]:
    """Per (link, sending end): the boundary bytes per frame that cross it, and the other bytes of the run
    that do (gathered outputs), from the manifest and the routes."""
    devices = [stage.device for stage in compiled.stages]
    expected: dict[tuple[int, str], dict[str, Any]] = {}

    def add(src: int, dst: int, nbytes: int, key: str, tensor: str | None) -> None:
        here = devices[src]
        for link in (layout.path if tensor is not None else layout.route)(here, devices[dst]):
            entry = expected.setdefault((link.index, here), {"per_frame": 0, "other": 0, "tensors": []})
            entry[key] += nbytes
            if tensor is not None:
                entry["tensors"].append(tensor)
            here = link.other(here)

    for t in compiled.manifest.transfers:
        add(t.src, t.dst, t.nbytes, "per_frame", t.tensor)
    if kept_outputs:
        for spec in compiled.manifest.model.outputs:
            if spec.stage not in (None, 0):
                add(spec.stage, 0, spec.nbytes * frames, "other", None)
    return expected


def emulation_report(layout: Layout, compiled: CompiledOutput, before: dict, after: dict, report: dict, *,
                     frames: int, warmup: int, kept_outputs: bool) -> dict:
    """Per link direction: wire bytes (counters), boundary bytes (manifest), the achieved and the predicted rate."""
    expected = expected_link_bytes(layout, compiled, frames, kept_outputs)
    fps = report["throughput_fps"]
    rows = []
    for link in layout.links:
        for src in (link.a, link.b):
            dst = link.other(src)
            wire = after[(link.index, src)] - before[(link.index, src)]
            entry = expected.get((link.index, src), {"per_frame": 0, "other": 0, "tensors": []})
            per_frame = entry["per_frame"]
            payload = per_frame * (frames + warmup) + entry["other"]
            bw = link.bandwidth_bps
            row = {"link": link.index, "src_device": src, "dst_device": dst, "bandwidth_bps": bw,
                   "latency_s": link.latency_s or 0.0, "tensors": entry["tensors"],
                   "boundary_bytes_per_frame": per_frame, "payload_bytes": payload, "wire_bytes": wire,
                   "wire_overhead": (wire / payload - 1.0) if payload else None,
                   "achieved_bps": 8.0 * per_frame * fps,
                   "utilization": (8.0 * per_frame * fps / bw) if bw else None,
                   "predicted_transfer_ms": (1e3 * (8.0 * per_frame / bw + (link.latency_s or 0.0))
                                             if bw and per_frame else None),
                   "predicted_max_fps": (bw / (8.0 * per_frame)) if bw and per_frame else None}
            rows.append(row)
    return {"links": rows, "latency_emulation": "sender-side delay in the ranks (see cluster/latency.py)"}


def run_emulated(out: str | Path, feeds: dict, *, emulate: str | None, state_dir: str | Path | None = None,
                 progress: Callable[[str], None] = lambda _m: None, engine: str = "onnxruntime",
                 **options: Any):
    """Run OUT in the emulated cluster `emulate` names (see the module docstring); the launcher's
    RunResult with `report["emulation"]` added."""
    from ..runtime.engines import checked_engine
    from ..runtime.launcher import run

    compiled = CompiledOutput.open(out)
    if not checked_engine(compiled, engine).per_stage:
        raise UsageError(f"--emulate runs the Python ranks (--engine onnxruntime or tvm), not --engine {engine}")
    if options.get("hosts"):
        raise UsageError("--emulate and --hosts do not go together: the cluster's namespaces are the hosts")
    options.pop("hosts", None)
    frames, warmup = options.get("frames", 1), options.get("warmup", 0)
    with cluster_for(emulate, compiled, state_dir=state_dir, progress=progress) as cluster:
        with tempfile.TemporaryDirectory(prefix="run-", dir=cluster.directory) as work:
            target = ClusterTarget(cluster.layout, cluster.directory, Path(work))
            before = link_counters(cluster.layout)
            progress(f"running {len(compiled.stages)} ranks in cluster {cluster.name}")
            result = run(out, feeds, engine=engine, target=target, **options)
            after = link_counters(cluster.layout)
        result.report["emulation"] = {"cluster": cluster.name, **emulation_report(
            cluster.layout, compiled, before, after, result.report, frames=frames, warmup=warmup,
            kept_outputs=bool(options.get("keep_outputs")))}
    return result

