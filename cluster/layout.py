"""The emulated cluster's network, worked out from a plan's `device` and `link` statements (no side effects).

Why a separate, pure layout: every name, address and route the cluster will use is decided here,
written to the state file before anything is created, and read back by `cluster down` after a
crash; so tearing down never depends on re-reading the plan, and the layout can be tested
without root.

The network:
- one namespace per device (`<prefix>-d-<device>`), one control namespace (`<prefix>-ctl`) holding
  a bridge; every device namespace has a veth port on that bridge (control subnet 10.250.0.0/24).
  Only Open MPI's launch and out-of-band traffic uses it (`oob_tcp_if_include`), `mpirun` runs in
  the control namespace, and it is never shaped.
- one veth pair per `link` statement, directly between the two device namespaces, subnet
  10.251.k.0/24 for link k, with a `tbf` qdisc at the link's bandwidth on the egress of both ends
  (so both directions are shaped). The MPI data traffic (`btl_tcp_if_include`) uses only these.
- devices without a direct link reach each other through the devices between them: IP forwarding
  is on in every device namespace and each has a route to every link subnet it is not on, via the
  next hop of a breadth-first shortest path. A transfer between devices no chain of links joins, or
  against the direction of a `->` link on its route, is refused before anything runs (`path`); so is
  a device with no chain of links to rank 0's, where the runtime gathers reports and outputs (`route`:
  that small traffic, like TCP's acknowledgements, may cross a `->` link backwards).

Interface names must fit 15 characters, so they are `edgec<id>` + a short suffix; they are made
inside the namespaces directly and never exist in the host's namespace.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import asdict, dataclass, field

from ..compiler.diagnostics import UsageError
from ..compiler.platform import Platform

CTL_SUBNET = "10.250.0"
LINK_SUBNET = "10.251"
MAX_DEVICES = 250
MAX_LINKS = 250
ID_PATTERN = re.compile(r"^[a-z0-9]{4}$")


@dataclass(frozen=True)
class DeviceNet:
    """A device's namespace and its port on the control bridge."""

    device: str
    namespace: str
    ctl_if: str
    bridge_port: str
    ctl_address: str


@dataclass(frozen=True)
class LinkNet:
    """One plan link as a veth pair: the devices, their interface names and addresses, and the shaping."""

    index: int
    a: str
    b: str
    bidirectional: bool
    a_if: str
    b_if: str
    a_address: str
    b_address: str
    bandwidth_bps: float | None
    latency_s: float | None

    @property
    def subnet(self) -> str:
        return f"{LINK_SUBNET}.{self.index}.0/24"

    def end(self, device: str) -> tuple[str, str]:
        """(interface, address) of this link in `device`'s namespace."""
        return (self.a_if, self.a_address) if device == self.a else (self.b_if, self.b_address)

    def other(self, device: str) -> str:
        return self.b if device == self.a else self.a

    def carries(self, src: str, dst: str) -> bool:
        """Whether data may go src → dst over this link (a `->` link only one way)."""
        return (src, dst) == (self.a, self.b) or (self.bidirectional and (src, dst) == (self.b, self.a))


@dataclass(frozen=True)
class Route:
    device: str
    subnet: str
    via: str


@dataclass(frozen=True)
class Layout:
    """Everything `cluster up` creates, by name; `to_json`/`from_json` are the state file's core."""

    cluster_id: str
    devices: tuple[DeviceNet, ...]
    links: tuple[LinkNet, ...]
    routes: tuple[Route, ...] = field(default=())

    @property
    def prefix(self) -> str:
        return f"edgec-{self.cluster_id}"

    @property
    def ctl_namespace(self) -> str:
        return f"{self.prefix}-ctl"

    @property
    def bridge(self) -> str:
        return f"edgec{self.cluster_id}br"

    @property
    def ctl_address(self) -> str:
        return f"{CTL_SUBNET}.1"

    @property
    def namespaces(self) -> list[str]:
        return [self.ctl_namespace] + [d.namespace for d in self.devices]

    def device(self, name: str) -> DeviceNet:
        for d in self.devices:
            if d.device == name:
                return d
        raise UsageError(f"device '{name}' is not in cluster {self.prefix} "
                         f"(its devices: {', '.join(d.device for d in self.devices)})")

    def links_of(self, device: str) -> list[LinkNet]:
        return [link for link in self.links if device in (link.a, link.b)]

    def route(self, src: str, dst: str, why: str = "exchange data") -> list[LinkNet]:
        """The links a packet from `src` to `dst` crosses, in order, whatever their direction (the routes
        installed follow the same breadth-first paths); a UsageError when no chain of links joins them."""
        if src == dst:
            return []
        hops = _shortest_path(self.links, src, dst)
        if hops is None:
            raise UsageError(f"devices '{src}' and '{dst}' {why} but no chain of links joins them",
                             hint=f"add `link {src} <-> {dst} {{ bandwidth … }}` to the plan (or a link to a device "
                                  "between them)")
        return hops

    def path(self, src: str, dst: str) -> list[LinkNet]:
        """`route` for a tensor: refused also when it would cross a `->` link against its direction."""
        hops = self.route(src, dst)
        here = src
        for link in hops:
            there = link.other(here)
            if not link.carries(here, there):
                raise UsageError(f"data from '{src}' to '{dst}' would cross the one-way link {link.a} -> {link.b} "
                                 "against its direction", hint=f"declare `link {link.a} <-> {link.b}` instead")
            here = there
        return hops

    def to_json(self) -> dict:
        return {"cluster_id": self.cluster_id, "devices": [asdict(d) for d in self.devices],
                "links": [asdict(link) for link in self.links], "routes": [asdict(r) for r in self.routes]}

    @classmethod
    def from_json(cls, data: dict) -> Layout:
        return cls(data["cluster_id"], tuple(DeviceNet(**d) for d in data["devices"]),
                   tuple(LinkNet(**link) for link in data["links"]), tuple(Route(**r) for r in data["routes"]))


def _neighbours(links: tuple[LinkNet, ...] | list[LinkNet], device: str) -> list[tuple[LinkNet, str]]:
    return [(link, link.other(device)) for link in links if device in (link.a, link.b)]


def _shortest_path(links, src: str, dst: str) -> list[LinkNet] | None:
    """Breadth-first, neighbours in link order, so the path is the same every time it is asked for."""
    came: dict[str, tuple[str, LinkNet] | None] = {src: None}
    queue = deque([src])
    while queue:
        here = queue.popleft()
        if here == dst:
            break
        for link, there in _neighbours(links, here):
            if there not in came:
                came[there] = (here, link)
                queue.append(there)
    if dst not in came:
        return None
    hops: list[LinkNet] = []
    node = dst
    while (step := came[node]) is not None:
        node, link = step
        hops.append(link)
    return hops[::-1]


def plan_layout(platform: Platform, cluster_id: str) -> Layout:
    """The layout of `platform` under `cluster_id` (4 lowercase letters or digits)."""
    if not ID_PATTERN.match(cluster_id):
        raise UsageError(f"cluster id '{cluster_id}' must be 4 lowercase letters or digits")
    names = list(platform.devices)
    if not names:
        raise UsageError("the plan declares no devices, so there is no cluster to build")
    if len(names) > MAX_DEVICES or len(platform.links) > MAX_LINKS:
        raise UsageError(f"an emulated cluster holds at most {MAX_DEVICES} devices and {MAX_LINKS} links")
    tag = f"edgec{cluster_id}"
    devices = tuple(DeviceNet(name, f"edgec-{cluster_id}-d-{name}", f"{tag}c{i}", f"{tag}s{i}",
                              f"{CTL_SUBNET}.{i + 2}") for i, name in enumerate(names))
    links = tuple(LinkNet(k, link.a, link.b, link.bidirectional, f"{tag}l{k}a", f"{tag}l{k}b",
                          f"{LINK_SUBNET}.{k}.1", f"{LINK_SUBNET}.{k}.2", link.bandwidth_bps, link.latency_s)
                  for k, link in enumerate(platform.links))
    routes = []
    for device in names:
        own = {link.index for link in links if device in (link.a, link.b)}
        for link in links:
            if link.index in own:
                continue
            paths = [p for p in (_shortest_path(links, device, link.a), _shortest_path(links, device, link.b)) if p]
            if not paths:
                continue
            first = min(paths, key=len)[0]
            routes.append(Route(device, link.subnet, first.end(first.other(device))[1]))
    return Layout(cluster_id, devices, links, tuple(routes))
