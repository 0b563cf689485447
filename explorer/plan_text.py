"""Plan files for the plans the explorer found: the platform as given, one `place` per stage.

The platform is written back from the lowered `Platform`, each quantity in the largest unit that
holds it whole (`2GiB`, `100Mbit`, `2ms`), so an emitted file stands on its own and `edgec compile` takes it as
it is. Stages are `place FIRST .. LAST on DEVICE threads N` ranges in the model's topological
order, the last one `place *`; a replicated stage adds `replicate FIRST .. LAST on DEVICE, REPLICA, …`
(its cost note is per frame, already ÷ r); a plan whose tensors cross as fp16 or int8 ends with
`quantize wire fp16` (or `int8 calibrate "DIR"`: edgec never quantizes to int8 without data).
"""

from __future__ import annotations

from ..compiler.platform import Device, Platform
from ..dsl.ast import format_name, quote
from .cost_model import Plan, PlanCost
from .units import Units


def _number(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text if text else "0"


def _with_unit(value: float, units: tuple[tuple[str, float], ...]) -> str:
    """`value` in the largest of `units` (name, size; largest first) that holds it as a whole
    number, so a plan reads `2GiB`, `100Mbit`, `2ms`; the smallest unit otherwise."""
    for name, size in units:
        count = value / size
        if count >= 1 and abs(count - round(count)) < 1e-9 * count:
            return f"{round(count)}{name}"
    name, size = units[-1]
    return f"{_number(value / size)}{name}"


BYTE_UNITS = (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20), ("KiB", 2.0**10), ("B", 1.0))
RATE_UNITS = (("Gbit", 1e9), ("Mbit", 1e6), ("Kbit", 1e3), ("bit", 1.0))
TIME_UNITS = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))


def _device_line(device: Device) -> str:
    props = [f"arch {device.arch}", f"cores {device.cores}"]
    if device.mem_bytes:
        props.append(f"mem {_with_unit(device.mem_bytes, BYTE_UNITS)}")
    for key in ("gpu", "accel", "target", "host"):
        value = getattr(device, key)
        if value:
            props.append(f"{key} {quote(value)}")
    if device.slots:
        props.append(f"slots {device.slots}")
    if device.power_active_w is not None:
        props.append(f"power_active {_number(device.power_active_w)}W")
    if device.power_idle_w is not None:
        props.append(f"power_idle {_number(device.power_idle_w)}W")
    if device.speed is not None:
        props.append(f"speed {_number(device.speed * 100)}%")
    if device.profile:
        props.append(f"profile {quote(device.profile)}")
    return f"device {format_name(device.name)} {{ {' '.join(props)} }}"


def platform_text(platform: Platform) -> list[str]:
    lines = [_device_line(d) for d in platform.devices.values()]
    for link in platform.links:
        props = []
        if link.bandwidth_bps:
            props.append(f"bandwidth {_with_unit(link.bandwidth_bps, RATE_UNITS)}")
        if link.latency_s is not None:
            props.append(f"latency {_with_unit(link.latency_s, TIME_UNITS) if link.latency_s else '0ms'}")
        arrow = "<->" if link.bidirectional else "->"
        body = f" {{ {' '.join(props)} }}" if props else ""
        lines.append(f"link {format_name(link.a)} {arrow} {format_name(link.b)}{body}")
    return lines


def plan_text(plan: Plan, units: Units, names: tuple[str, ...], platform: Platform, *, model: str | None,
              inputs: dict[str, list[int]], header: list[str], cost: PlanCost | None = None,
              calibrate: str | None = None) -> str:
    devices = list(platform.devices.values())
    lines = [f"# {line}" for line in header]
    if model:
        lines.append(f"model {quote(model)}")
    lines += [f"input {format_name(n)} [{', '.join(map(str, dims))}]" for n, dims in inputs.items()]
    lines += ["", *platform_text(platform), ""]
    ends = list(units.starts[list(plan.starts[1:])] - 1) + [units.size - 1]
    first = [int(units.starts[s]) for s in plan.starts]
    for k, (device_index, a, b) in enumerate(zip(plan.devices, first, ends)):
        device = devices[device_index]
        where = f"on {format_name(device.name)} threads {device.cores}"
        note = ""
        if cost is not None:
            note = (f"  # {1e3 * cost.compute[k]:.3f} ms compute + {1e3 * cost.comm[k]:.3f} ms receiving, "
                    f"{cost.memory[k] / 2**20:.1f} MiB")
        if k == len(plan.starts) - 1:
            lines.append(f"place * {where}{note}")
        else:
            lines.append(f"place {format_name(names[a])} .. {format_name(names[int(b)])} {where}{note}")
        if plan.replicas and plan.replicas[k]:
            targets = ", ".join(format_name(devices[d].name) for d in (device_index, *plan.replicas[k]))
            lines.append(f"replicate {format_name(names[a])} .. {format_name(names[int(b)])} on {targets}"
                         f"  # frame f on replica f mod {1 + len(plan.replicas[k])}")
    if plan.wire != "float32" and len(plan.starts) > 1:
        data = f" calibrate {quote(calibrate)}" if plan.wire == "int8" and calibrate else ""
        lines.append(f"quantize wire {plan.wire}{data}")
    return "\n".join(lines) + "\n"
