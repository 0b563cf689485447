"""The target platform: devices, their compute resources, and the links between them.

Lowered from the plan's `device` and `link` statements. Backends read the device's `arch`,
`gpu`/`accel` and optional explicit `target`; the runtime reads `host` and `slots`; the
explorer reads `power_active`/`power_idle`, `speed` and `profile`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

KNOWN_ARCHES = ("x86_64", "aarch64", "armv7", "riscv64")


@dataclass(frozen=True)
class Device:
    name: str
    arch: str = "x86_64"
    cores: int = 1
    mem_bytes: int | None = None
    gpu: str | None = None
    accel: str | None = None
    target: str | None = None
    host: str | None = None
    slots: int | None = None
    power_active_w: float | None = None
    """Watts drawn while computing or communicating (the explorer's energy model)."""
    power_idle_w: float | None = None
    """Watts drawn while waiting for the next frame."""
    speed: float | None = None
    """Compute speed relative to the profiled machine (0.5: twice as slow), for boards that are not here."""
    profile: str | None = None
    """A profile file measured on this device itself (`edgec profile` run on the board)."""

    @property
    def resources(self) -> tuple[str, ...]:
        """The compute resources a stage can be placed on: always `cpu`, plus `gpu`/the accelerator."""
        extra = tuple(r for r in (("gpu" if self.gpu else None), self.accel) if r)
        return ("cpu", *extra)


@dataclass(frozen=True)
class Link:
    a: str
    b: str
    bidirectional: bool = True
    bandwidth_bps: float | None = None
    latency_s: float | None = None


@dataclass
class Platform:
    devices: dict[str, Device] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)

    def add(self, device: Device) -> None:
        self.devices[device.name] = device

    def link_between(self, a: str, b: str) -> Link | None:
        for link in self.links:
            if (link.a, link.b) == (a, b) or (link.bidirectional and (link.b, link.a) == (a, b)):
                return link
        return None

    def to_json(self) -> dict:
        return {
            "devices": {
                name: {k: v for k, v in vars(d).items() if v is not None and k != "name"}
                for name, d in self.devices.items()
            },
            "links": [{k: v for k, v in vars(l).items() if v is not None} for l in self.links],
        }
