"""What `edgec run` reports: throughput, latency, where each stage spends its time, bytes per link.

Why these figures: a pipeline is as fast as its slowest stage, so the report puts the measured
frame rate next to the rate the slowest stage's compute time allows (the pipeline efficiency)
and splits each stage's time into compute, waiting for inputs, and sending (including waiting
for a consumer to take the previous frames). Latency is per frame, from the first stage
starting it to the last graph output being computed, measured under full load.

With replicated stages (`replicate`) a rank computes only its replica's frames (f ≡ replica mod r);
its per-frame figures are put back at their global frame numbers, so latency and throughput are
per global frame, a stage's row is per rank (with its replica and frame count), and `replicas`
gives each replicated stage's effective time per frame: the slowest replica's mean compute ÷ r.

Times from ranks on one host share the monotonic clock; across hosts each rank's clock is
taken relative to the barrier before the first frame (skew: about one network latency).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..backends.manifest import Manifest, TransferEntry

if TYPE_CHECKING:
    from rich.console import Console


def _aligned(records: list[dict], key: str) -> dict[int, np.ndarray]:
    one_host = len({r["host"] for r in records}) == 1
    return {r["rank"]: np.asarray(r["stats"][key]) - (0.0 if one_host else r["origin"]) for r in records}


def _by_stage(records: list[dict], aligned: dict[int, np.ndarray], total: int) -> dict[int, np.ndarray]:
    """Per stage, a per-global-frame array filled from its replicas' local frames (one rank per stage: as is)."""
    merged: dict[int, np.ndarray] = {}
    for r in records:
        stage = r.get("stage", r["rank"])
        frames = r.get("frames", range(len(aligned[r["rank"]])))
        merged.setdefault(stage, np.full(total, np.nan))[list(frames)] = aligned[r["rank"]]
    return merged


def _measured(record: dict, warmup: int, frames: int) -> np.ndarray | slice:
    """Which of a rank's local frames are measured (global frame >= warmup)."""
    if "frames" not in record:
        return slice(warmup, warmup + frames)
    return np.asarray(record["frames"], dtype=np.int64) >= warmup


def summarize(manifest: Manifest, records: list[dict], *, frames: int, warmup: int) -> dict:
    """The report of a run from every rank's per-frame stats (warm-up frames are dropped)."""
    total = warmup + frames
    starts = _by_stage(records, _aligned(records, "start"), total)
    ends = _by_stage(records, _aligned(records, "end"), total)
    computing = {spec.stage for spec in manifest.model.outputs}
    producers = {r for r in ends if r in computing} or set(ends)
    first_start = np.min([starts[r] for r in starts], axis=0)
    last_end = np.max([ends[r] for r in producers], axis=0)
    measured = slice(warmup, warmup + frames)
    latency = (last_end - first_start)[measured]
    origin = last_end[warmup - 1] if warmup >= 1 else first_start[0]
    span = max(float(last_end[warmup + frames - 1] - origin), 1e-12)
    throughput = frames / span
    stages = []
    for r in sorted(records, key=lambda r: r["rank"]):
        stage = manifest.stages[r.get("stage", r["rank"])]
        stats = {k: np.asarray(v)[_measured(r, warmup, frames)] for k, v in r["stats"].items()}
        row = {
            "rank": r["rank"], "device": r.get("device", stage.device), "host": r["host"],
            "threads": stage.threads or 1,
            "compute_ms": 1e3 * float(stats["compute"].mean()), "wait_ms": 1e3 * float(stats["wait"].mean()),
            "send_ms": 1e3 * float(stats["send"].mean()), "busy": float(stats["compute"].sum() / span),
        }
        if r.get("replicas", 1) > 1:
            row |= {"stage": r["stage"], "replica": r["replica"], "frames": int(len(stats["compute"])),
                    "compute_p50_ms": 1e3 * float(np.median(stats["compute"]))}
        stages.append(row)
    replicas = replica_figures(records, stages)
    effective = {s["rank"]: s["compute_ms"] for s in stages if "replica" not in s}
    effective.update({rep["stage"]: rep["effective_ms"] for rep in replicas})
    slowest_rank = max(effective, key=effective.get)
    slowest = {"rank": slowest_rank, "compute_ms": effective[slowest_rank]}
    links = link_bytes(manifest, frames, span) if not replicas else dealt_link_bytes(records, span)
    return {
        "frames": frames, "warmup": warmup, "ranks": len(records), "seconds": span,
        "throughput_fps": throughput,
        "latency_ms": {q: 1e3 * float(np.percentile(latency, int(q[1:]))) for q in ("p50", "p95", "p99")}
        | {"mean": 1e3 * float(latency.mean())},
        "slowest_stage": slowest["rank"],
        "efficiency": throughput * slowest["compute_ms"] / 1e3,
        "stages": stages,
        "links": links,
    } | ({"replicas": replicas} if replicas else {}) | coded_figures(records) | vta_figures(manifest, stages)


def replica_figures(records: list[dict], stages: list[dict]) -> list[dict]:
    """Per replicated stage: its replicas' ranks, devices and frames, and its effective time per frame (the slowest
    replica's mean compute ÷ r, what round-robin dealing allows) next to one replica's (the mean over replicas)."""
    rows: dict[int, list[dict]] = {}
    for s in stages:
        if "replica" in s:
            rows.setdefault(s["stage"], []).append(s)
    figures = []
    for stage, reps in sorted(rows.items()):
        reps.sort(key=lambda s: s["replica"])
        r = len(reps)
        slowest = max(s["compute_ms"] for s in reps)
        one = float(np.mean([s["compute_ms"] for s in reps]))
        figures.append({"stage": stage, "count": r, "ranks": [s["rank"] for s in reps],
                        "devices": [s["device"] for s in reps], "frames": [s["frames"] for s in reps],
                        "compute_ms": [s["compute_ms"] for s in reps], "effective_ms": slowest / r,
                        "gain": one / (slowest / r) if slowest > 0 else float(r),
                        "send_blocked_ms": min(s["send_ms"] for s in reps)})
    return figures


def dealt_link_bytes(records: list[dict], seconds: float) -> list[dict]:
    """Bytes each (src → dst) rank pair moved with replicas: each row counts only the measured frames it carried."""
    device = {r["rank"]: r.get("device", "") for r in records}
    by_pair: dict[tuple[int, int], dict] = {}
    for r in records:
        for sent in r.get("sent", ()):
            if sent["frames"] == 0:
                continue
            link = by_pair.setdefault((r["rank"], sent["peer"]), {"tensors": [], "per_frame": 0, "total": 0})
            link["tensors"].append(sent["tensor"])
            link["per_frame"] += sent["bytes"]
            link["total"] += sent["bytes"] * sent["frames"]
    return [{"src": src, "dst": dst, "src_device": device[src], "dst_device": device[dst], "tensors": v["tensors"],
             "bytes_per_frame": v["per_frame"], "bytes_total": v["total"], "mb_per_s": v["total"] / seconds / 1e6}
            for (src, dst), v in sorted(by_pair.items())]


def vta_figures(manifest: Manifest, stages: list[dict]) -> dict:
    """Per VTA stage: the cycle model's cycles per frame (per sample times the batch) and their time at
    the VTA clock, next to the host's measured compute time (the simulator under `--engine vta`)."""
    from ..backends.vta.section import VtaSection

    section = manifest.section("vta")
    if not isinstance(section, VtaSection):
        return {}
    host = {s["rank"]: s["compute_ms"] for s in stages}
    rows = []
    for stage in section.stages:
        sig = manifest.stages[stage.rank].signature
        batch = int(sig.inputs[0].shape[0]) if sig is not None and sig.inputs and sig.inputs[0].shape else 1
        cycles = stage.cycles * batch
        rows.append({"rank": stage.rank, "device": stage.device, "layers": len(stage.layers),
                     "fallbacks": len(stage.fallbacks), "cycles_per_frame": cycles,
                     "vta_ms": 1e3 * cycles / stage.clock_hz, "host_compute_ms": host.get(stage.rank)})
    return {"vta": rows}


def coded_figures(records: list[dict]) -> dict:
    """The `cdc` figures of the merge ranks (measured frames only) and which ranks were made to straggle: empty
    when nothing was coded or delayed. `recovery_error`: per rebuilt part whose late row came after all, the largest
    |rebuilt - arrived| over the largest |arrived| (warm-up frames included), the worst over all parts."""
    straggled = {str(r["rank"]): r["straggled"] for r in records if r.get("straggled")}
    merges = [r for r in records if "cdc" in r]
    if not merges and not straggled:
        return {}
    frames_recovered, by_rank, errors, late = 0, {}, {}, 0
    for r in merges:
        owner = r["cdc"]["part_ranks"]
        frames_recovered += sum(1 for rebuilt in r["cdc"]["rebuilt"] if rebuilt)
        for rebuilt in r["cdc"]["rebuilt"]:
            for name in rebuilt:
                by_rank[str(owner[name])] = by_rank.get(str(owner[name]), 0) + 1
        errors.update(r["cdc"]["errors"])
        late += r["cdc"]["late"]
    return {"cdc": {"decoding_ranks": [r["rank"] for r in merges], "frames_recovered": frames_recovered,
                    "parts_recovered_by_rank": dict(sorted(by_rank.items(), key=lambda kv: int(kv[0]))),
                    "late_parts_compared": late, "recovery_error": max(errors.values(), default=None),
                    "straggled_frames_by_rank": straggled}}


def link_bytes(manifest: Manifest, frames: int, seconds: float) -> list[dict]:
    """Bytes each (src → dst) rank pair moved: per frame, in total, and the achieved rate."""
    by_pair: dict[tuple[int, int], list[TransferEntry]] = {}
    for t in manifest.transfers:
        by_pair.setdefault((t.src, t.dst), []).append(t)
    stages = manifest.stages
    result = []
    for (src, dst), transfers in sorted(by_pair.items()):
        per_frame = sum(t.nbytes for t in transfers)
        result.append({
            "src": src, "dst": dst, "src_device": stages[src].device, "dst_device": stages[dst].device,
            "tensors": [t.tensor for t in transfers], "bytes_per_frame": per_frame,
            "bytes_total": per_frame * frames, "mb_per_s": per_frame * frames / seconds / 1e6,
        })
    return result


def human_bytes(n: float) -> str:
    """`16.0 KiB`-style sizes for tables and summaries."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def render(report: dict, console: Console, title: str) -> None:
    from rich.table import Table

    lat = report["latency_ms"]
    console.print(
        f"[bold]{title}[/]: {report['frames']} frames (+{report['warmup']} warm-up) on {report['ranks']} ranks in "
        f"{report['seconds']:.3f} s — [bold]{report['throughput_fps']:.1f} frames/s[/], latency p50 "
        f"{lat['p50']:.2f} / p95 {lat['p95']:.2f} / p99 {lat['p99']:.2f} ms, pipeline efficiency "
        f"[bold]{report['efficiency']:.2f}[/] (slowest stage: rank {report['slowest_stage']})"
    )
    stages = Table(title="stages (mean per frame)")
    for col in ("rank", "device", "host", "threads", "compute ms", "wait ms", "send ms", "busy"):
        stages.add_column(col, justify="right" if col not in ("device", "host") else "left")
    for s in report["stages"]:
        rank = str(s["rank"]) if "replica" not in s else f"{s['rank']} (stage {s['stage']} replica {s['replica']})"
        stages.add_row(rank, s["device"], s["host"], str(s["threads"]), f"{s['compute_ms']:.3f}",
                       f"{s['wait_ms']:.3f}", f"{s['send_ms']:.3f}", f"{100 * s['busy']:.0f}%")
    console.print(stages)
    if report["links"]:
        links = Table(title="links")
        for col in ("link", "tensors", "per frame", "total", "MB/s"):
            links.add_column(col, justify="left" if col in ("link", "tensors") else "right")
        for link in report["links"]:
            tensors = ", ".join(link["tensors"])
            links.add_row(f"{link['src']} ({link['src_device']}) → {link['dst']} ({link['dst_device']})",
                          tensors if len(tensors) <= 40 else tensors[:37] + "…", human_bytes(link["bytes_per_frame"]),
                          human_bytes(link["bytes_total"]), f"{link['mb_per_s']:.1f}")
        console.print(links)
    if report.get("replicas"):
        table = Table(title="replicated stages (frame f on replica f mod r)")
        for col in ("stage", "r", "ranks", "devices", "frames", "compute ms", "effective ms/frame", "vs one replica"):
            table.add_column(col, justify="left" if col in ("devices", "ranks", "frames", "compute ms") else "right")
        for rep in report["replicas"]:
            table.add_row(str(rep["stage"]), str(rep["count"]), "+".join(map(str, rep["ranks"])),
                          "+".join(rep["devices"]), "+".join(map(str, rep["frames"])),
                          " / ".join(f"{c:.3f}" for c in rep["compute_ms"]), f"{rep['effective_ms']:.3f}",
                          f"{rep['gain']:.2f}x (ideal {rep['count']}x)")
        console.print(table)
    if report.get("vta"):
        vta = Table(title="VTA stages (simulated; cycle model at the VTA clock)")
        for col in ("rank", "device", "layers on VTA", "CPU fallbacks", "cycles/frame", "VTA ms", "host compute ms"):
            vta.add_column(col, justify="left" if col == "device" else "right")
        for v in report["vta"]:
            host = "" if v["host_compute_ms"] is None else f"{v['host_compute_ms']:.3f}"
            vta.add_row(str(v["rank"]), v["device"], str(v["layers"]), str(v["fallbacks"]),
                        f"{v['cycles_per_frame']:,}", f"{v['vta_ms']:.3f}", host)
        console.print(vta)
    if "cdc" in report:
        cdc = report["cdc"]
        by_rank = ", ".join(f"rank {r}: {n}" for r, n in cdc["parts_recovered_by_rank"].items()) or "none"
        delayed = ", ".join(f"rank {r}: {n}" for r, n in cdc["straggled_frames_by_rank"].items()) or "none"
        error = "n/a (no rebuilt part arrived late)" if cdc["recovery_error"] is None else f"{cdc['recovery_error']:.2e}"
        table = Table(title="coded layers (cdc)")
        for col in ("decoding ranks", "frames recovered", "parts recovered", "recovery error", "straggled frames"):
            table.add_column(col)
        table.add_row(", ".join(map(str, cdc["decoding_ranks"])) or "none",
                      f"{cdc['frames_recovered']} of {report['frames']}", by_rank, error, delayed)
        console.print(table)
    if report.get("lost_ranks"):
        from .fault_model import render_losses

        console.print(render_losses(report))
