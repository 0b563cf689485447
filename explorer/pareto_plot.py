"""The PNG of a front: throughput against latency, coloured by peak device memory, the DP optimum
as a line and measured runs as crosses. matplotlib is imported here only (the `explore` extra)."""

from __future__ import annotations

from pathlib import Path


def draw_front(path: Path, rows: list[dict], dp_fps: float | None, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    fps = [r["throughput_fps"] for r in rows]
    lat = [r["latency_ms"] for r in rows]
    mem = [r["peak_memory_bytes"] / 2**20 for r in rows]
    points = ax.scatter(lat, fps, c=mem, cmap="viridis", s=36, label="analytic front")
    bar = fig.colorbar(points, ax=ax, label="peak device memory (MiB)")
    bar.formatter.set_useOffset(False)
    bar.update_ticks()
    measured = [r for r in rows if r.get("measured_fps")]
    if measured:
        ax.scatter([r["measured_latency_ms"] for r in measured], [r["measured_fps"] for r in measured],
                   marker="x", c="red", s=48, label="measured (edgec run)")
    if dp_fps:
        ax.axhline(dp_fps, color="grey", linestyle="--", linewidth=1, label=f"chain DP optimum {dp_fps:.3g} fps")
    for r in rows:
        ax.annotate(str(r["plan"]).removeprefix("plan-").removesuffix(".edge"), (r["latency_ms"], r["throughput_fps"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("latency per frame (ms)")
    ax.set_ylabel("throughput (frames/s)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
