"""What `edgec cluster up|down|status` and `edgec run --emulate` print (the CLI only declares the options).

Why here and not in the CLI: the tables and JSON documents are the cluster's own vocabulary
(namespaces, links, counters), and the CLI module stays a list of commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..compiler.diagnostics import UsageError
from .lifecycle import Cluster, down, find_cluster, list_clusters, state_root, up
from .netcmd import check_can_build, namespaces

if TYPE_CHECKING:
    from rich.console import Console


def cluster_json(cluster: Cluster, present: set[str]) -> dict:
    layout = cluster.layout
    return {"name": cluster.name, "status": cluster.status(present), "source": cluster.source,
            "state_dir": str(cluster.directory), "control_namespace": layout.ctl_namespace,
            "devices": [{"device": d.device, "namespace": d.namespace, "address": d.ctl_address,
                         "present": d.namespace in present} for d in layout.devices],
            "links": [{"a": link.a, "b": link.b, "bidirectional": link.bidirectional, "subnet": link.subnet,
                       "bandwidth_bps": link.bandwidth_bps, "latency_s": link.latency_s}
                      for link in layout.links]}


def cluster_up(plan: Path, state_dir: Path | None, progress: Callable[[str], None]) -> Cluster:
    from ..api import load_plan
    from ..dsl.lower import lower_platform

    if not plan.is_file():
        raise UsageError(f"plan '{plan}' does not exist")
    return up(lower_platform(load_plan(plan)), source=str(plan), state_dir=state_dir, progress=progress)


def cluster_down(name: str | None, state_dir: Path | None) -> list[dict]:
    """Remove the named cluster, or every cluster in the state directory; what was removed."""
    if name is None:
        clusters = list_clusters(state_dir)
    else:
        clusters = [find_cluster(name, state_dir)]
    if clusters:
        check_can_build()
    removed = []
    for cluster in clusters:
        status = cluster.status()
        removed.append({"name": cluster.name, "was": status, "namespaces_removed": down(cluster)})
    return removed


def cluster_status(state_dir: Path | None) -> dict:
    present = set(namespaces())
    return {"state_dir": str(state_root(state_dir)),
            "clusters": [cluster_json(c, present) for c in list_clusters(state_dir)]}


def render_status(status: dict, console: Console) -> None:
    from rich.table import Table

    if not status["clusters"]:
        console.print(f"no emulated clusters (state in {status['state_dir']})")
        return
    for c in status["clusters"]:
        console.print(f"[bold]{c['name']}[/] {c['status']} — from {c['source'] or '?'}; mpirun runs in "
                      f"{c['control_namespace']}", highlight=False)
        table = Table(show_header=True)
        for col in ("link", "subnet", "bandwidth", "latency"):
            table.add_column(col)
        for link in c["links"]:
            arrow = "<->" if link["bidirectional"] else "->"
            table.add_row(f"{link['a']} {arrow} {link['b']}", link["subnet"],
                          f"{link['bandwidth_bps'] / 1e6:g} Mbit/s" if link["bandwidth_bps"] else "unshaped",
                          f"{1e3 * link['latency_s']:g} ms" if link["latency_s"] else "0")
        console.print("  devices: " + ", ".join(f"{d['device']} ({d['namespace']}, {d['address']}"
                                                + ("" if d["present"] else ", MISSING") + ")" for d in c["devices"]),
                      highlight=False)
        console.print(table)


def render_emulation(emulation: dict, console: Console) -> None:
    from rich.table import Table

    from ..runtime.report import human_bytes

    table = Table(title=f"emulated links, cluster {emulation['cluster']} (rates in bit/s; wire: interface counters; "
                  "pred: tensors ÷ rate + latency)")
    for col in ("link", "rate", "tensors/frame", "wire", "+hdr", "achieved", "util", "pred ms", "bw fps"):
        table.add_column(col, justify="left" if col == "link" else "right")
    for row in emulation["links"]:
        if not row["wire_bytes"] and not row["boundary_bytes_per_frame"]:
            continue
        bw = row["bandwidth_bps"]
        table.add_row(f"{row['src_device']} → {row['dst_device']}", f"{bw / 1e6:g}M" if bw else "-",
                      human_bytes(row["boundary_bytes_per_frame"]), human_bytes(row["wire_bytes"]),
                      f"{100 * row['wire_overhead']:.1f}%" if row["boundary_bytes_per_frame"] else "-",
                      f"{row['achieved_bps'] / 1e6:.2f}M",
                      f"{100 * row['utilization']:.0f}%" if row["utilization"] is not None else "-",
                      f"{row['predicted_transfer_ms']:.2f}" if row["predicted_transfer_ms"] else "-",
                      f"{row['predicted_max_fps']:.1f}" if row["predicted_max_fps"] else "-")
    console.print(table)
    console.print(f"latency: {emulation['latency_emulation']}", highlight=False)
