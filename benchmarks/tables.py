"""Markdown tables and the machine description shared by the compile-time benchmarks.

Why markdown: the printed tables go into the README as they are, so the figures there are
exactly what a run printed, with the date and the machine they were measured on.
"""

from __future__ import annotations

import datetime
import os
import platform
from pathlib import Path
from typing import Sequence


def markdown(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def min_med(summary: dict, key: str) -> str:
    lo, med = summary["min"][key], summary["median"][key]
    return seconds(lo) if summary["runs"] == 1 else f"{seconds(lo)} / {seconds(med)}"


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def machine() -> str:
    """Date, CPU model, cores and RAM: the context every figure needs."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        ram = int(meminfo.read_text().split("MemTotal:")[1].split()[0]) * 1024
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    busy = f" — warning: load average {load:.1f} at start, other work skews the timings" if load > 0.5 else ""
    return (f"{datetime.datetime.now().strftime('%Y-%m-%d %H:%M')} on {cpu}, {cores} cores, "
            f"{ram / 2**30:.0f} GiB RAM, Python {platform.python_version()}{busy}")
