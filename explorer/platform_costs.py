"""A plan's platform as the cost model's arrays: per-node times on every device, links, memory, power.

A device's compute times are, in this order of preference: its own `profile` file (measured on
the board, at its `cores` threads), or the profile of this machine at min(cores, profiled
threads) divided by its `speed` (100% when absent: a device like this machine). A pair of
devices without a `link` statement talks at the MPI bandwidth measured here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..compiler.platform import Platform
from .cost_model import PlatformCosts
from .profile import read_profile, times_at


def platform_costs(platform: Platform, profile: dict, names: list[str], plan_dir: Path | None = None,
                   wire: str | None = None) -> PlatformCosts:
    from .cost_model import WIRE_FACTORS

    devices = list(platform.devices.values())
    times = []
    for device in devices:
        if device.profile:
            path = Path(device.profile)
            if not path.is_absolute() and plan_dir is not None:
                path = plan_dir / path
            own = read_profile(path, names)
            times.append(times_at(own, device.cores) / (device.speed or 1.0))
        else:
            times.append(times_at(profile, device.cores) / (device.speed or 1.0))
    d = len(devices)
    mpi = profile.get("mpi") or {}
    local_bw = float(mpi.get("bandwidth_Bps", 1e10))
    overhead = float(mpi.get("message_overhead_s", 0.0))
    bandwidth = np.full((d, d), local_bw)
    latency = np.full((d, d), overhead)
    for i, a in enumerate(devices):
        for j, b in enumerate(devices):
            link = platform.link_between(a.name, b.name) if i != j else None
            if link is not None:
                if link.bandwidth_bps:
                    bandwidth[i, j] = link.bandwidth_bps / 8
                latency[i, j] = (link.latency_s or 0.0) + overhead
    np.fill_diagonal(bandwidth, np.inf)
    np.fill_diagonal(latency, 0.0)
    nan = float("nan")
    return PlatformCosts(
        devices=tuple(dev.name for dev in devices), node_time=np.asarray(times),
        mem_bytes=np.asarray([dev.mem_bytes if dev.mem_bytes else np.inf for dev in devices], dtype=float),
        bandwidth=bandwidth, latency=latency,
        power_active=np.asarray([dev.power_active_w if dev.power_active_w is not None else nan for dev in devices]),
        power_idle=np.asarray([dev.power_idle_w if dev.power_idle_w is not None else nan for dev in devices]),
        runtime_overhead_bytes=int(profile.get("runtime_overhead_bytes", 0)),
        wire_factor=None if wire in (None, "float32") else np.full((d, d), WIRE_FACTORS[wire]),
    )
