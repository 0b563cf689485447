"""Bringing an emulated cluster up and down, and finding the clusters that exist (`edgec cluster …`).

Why the state file comes first: `up` writes `<state dir>/edgec-<id>/state.json` (the whole
layout, the owner's pid, the phase) before it creates anything, so whatever happens next — a
failed `ip` command, Ctrl-C, SIGTERM, a crash of the owner — `down` can read every name it has
to remove. Teardown kills what still runs inside the cluster's namespaces (a namespace with a
process in it outlives `ip netns del`, and so would its veths), then deletes the namespaces,
which removes their veths and qdiscs with them; it never touches anything outside them.

States reported by `status`: `up` (every namespace present), `building` (its owner is still
creating it), `stale` (its owner died while building or running it, or a namespace is missing);
`down` removes any of them.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..compiler.diagnostics import UsageError
from ..compiler.platform import Platform
from .layout import Layout, LinkNet, plan_layout
from .mpi import write_agent
from .netcmd import check_can_build, namespaces, run_ip

DEFAULT_STATE_DIR = Path("/run/edgec/clusters")
STATE_FILE = "state.json"
QUEUE_LATENCY = "200ms"
"""tbf's queue, as the time it takes to drain: long enough that bulk TCP transfers are not dropped."""


def state_root(state_dir: str | Path | None = None) -> Path:
    """Where clusters keep their state: the argument, $EDGEC_CLUSTER_DIR, or /run/edgec/clusters."""
    return Path(state_dir or os.environ.get("EDGEC_CLUSTER_DIR") or DEFAULT_STATE_DIR)


@dataclass
class Cluster:
    """A cluster as its state file describes it."""

    layout: Layout
    directory: Path
    owner: int | None
    phase: str
    source: str
    created: float

    @property
    def name(self) -> str:
        return self.layout.prefix

    def to_json(self) -> dict:
        return {"name": self.name, "phase": self.phase, "owner": self.owner, "source": self.source,
                "created": self.created, "layout": self.layout.to_json()}

    def save(self) -> None:
        tmp = self.directory / (STATE_FILE + ".part")
        tmp.write_text(json.dumps(self.to_json(), indent=1))
        tmp.replace(self.directory / STATE_FILE)

    def status(self, present: set[str] | None = None) -> str:
        present = set(namespaces()) if present is None else present
        owner_alive = self.owner is not None and _alive(self.owner)
        if self.phase == "building":
            return "building" if owner_alive else "stale"
        if self.owner is not None and not owner_alive:
            return "stale"
        return "up" if all(ns in present for ns in self.layout.namespaces) else "stale"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def bitrate(bps: float) -> str:
    return f"{int(round(bps))}bit"


def tbf_burst(bps: float) -> int:
    """Bytes the bucket holds: 4 ms at the link's rate (rate/HZ for HZ=250), at least two full frames."""
    return max(int(bps / 8 / 250), 3028)


def list_clusters(state_dir: str | Path | None = None) -> list[Cluster]:
    root = state_root(state_dir)
    found = []
    for path in sorted(root.glob(f"edgec-*/{STATE_FILE}")) if root.is_dir() else []:
        try:
            data = json.loads(path.read_text())
            found.append(Cluster(Layout.from_json(data["layout"]), path.parent, data.get("owner"), data["phase"],
                                 data.get("source", ""), data.get("created", 0.0)))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def find_cluster(name: str, state_dir: str | Path | None = None) -> Cluster:
    """A cluster by its name (`edgec-1a2b`) or id (`1a2b`)."""
    clusters = list_clusters(state_dir)
    for cluster in clusters:
        if name in (cluster.name, cluster.layout.cluster_id):
            return cluster
    known = ", ".join(c.name for c in clusters) or "none"
    raise UsageError(f"no emulated cluster '{name}' in {state_root(state_dir)} (clusters there: {known})")


def _new_id(root: Path) -> str:
    taken = set(namespaces())
    for _ in range(100):
        cluster_id = secrets.token_hex(2)
        if not (root / f"edgec-{cluster_id}").exists() and not any(n.startswith(f"edgec-{cluster_id}-") for n in taken):
            return cluster_id
    raise UsageError("could not find a free cluster id")


def up(platform: Platform, *, source: str = "", state_dir: str | Path | None = None, persistent: bool = True,
       progress: Callable[[str], None] = lambda _m: None) -> Cluster:
    """Create the cluster of `platform`. `persistent`: it stays after this process exits (`cluster up`);
    otherwise the state names this process as its owner, and the cluster counts as stale once it is gone."""
    check_can_build()
    root = state_root(state_dir)
    root.mkdir(parents=True, exist_ok=True)
    layout = plan_layout(platform, _new_id(root))
    directory = root / layout.prefix
    directory.mkdir()
    cluster = Cluster(layout, directory, os.getpid(), "building", source, time.time())
    cluster.save()
    try:
        with terminate_as_interrupt():
            _create(layout, progress)
            write_agent(layout, directory)
            cluster.phase, cluster.owner = "up", None if persistent else os.getpid()
            cluster.save()
    except BaseException:
        down(cluster)
        raise
    progress(f"cluster {layout.prefix} up: {len(layout.devices)} namespaces, {len(layout.links)} links")
    return cluster


def _create(layout: Layout, progress: Callable[[str], None]) -> None:
    ctl = layout.ctl_namespace
    run_ip("netns", "add", ctl)
    run_ip("link", "set", "lo", "up", namespace=ctl)
    run_ip("link", "add", layout.bridge, "type", "bridge", namespace=ctl)
    run_ip("addr", "add", f"{layout.ctl_address}/24", "dev", layout.bridge, namespace=ctl)
    run_ip("link", "set", layout.bridge, "up", namespace=ctl)
    for device in layout.devices:
        ns = device.namespace
        run_ip("netns", "add", ns)
        run_ip("link", "set", "lo", "up", namespace=ns)
        run_ip("link", "add", device.ctl_if, "netns", ns, "type", "veth", "peer", "name", device.bridge_port,
               "netns", ctl)
        run_ip("addr", "add", f"{device.ctl_address}/24", "dev", device.ctl_if, namespace=ns)
        run_ip("link", "set", device.ctl_if, "up", namespace=ns)
        run_ip("link", "set", device.bridge_port, "master", layout.bridge, "up", namespace=ctl)
        run_ip("netns", "exec", ns, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward")
        progress(f"namespace {ns} ({device.device}, control address {device.ctl_address})")
    for link in layout.links:
        _create_link(layout, link)
        shaped = f"{link.bandwidth_bps / 1e6:g} Mbit/s both ways" if link.bandwidth_bps else "unshaped"
        progress(f"link {link.a} {'<->' if link.bidirectional else '->'} {link.b}: {link.subnet}, {shaped}")
    for route in layout.routes:
        run_ip("route", "add", route.subnet, "via", route.via, namespace=layout.device(route.device).namespace)


def _create_link(layout: Layout, link: LinkNet) -> None:
    a, b = layout.device(link.a).namespace, layout.device(link.b).namespace
    run_ip("link", "add", link.a_if, "netns", a, "type", "veth", "peer", "name", link.b_if, "netns", b)
    for ns, interface, address in ((a, link.a_if, link.a_address), (b, link.b_if, link.b_address)):
        run_ip("addr", "add", f"{address}/24", "dev", interface, namespace=ns)
        run_ip("link", "set", interface, "up", namespace=ns)
        if link.bandwidth_bps:
            run_ip("tc", "qdisc", "replace", "dev", interface, "root", "tbf", "rate", bitrate(link.bandwidth_bps),
                   "burst", str(tbf_burst(link.bandwidth_bps)), "latency", QUEUE_LATENCY, namespace=ns)


def _kill_inside(namespace: str) -> None:
    """Stop whatever still runs in one of the cluster's namespaces (ranks, orteds of a crashed run)."""
    from ..runtime.launcher import terminate

    terminate([int(p) for p in run_ip("netns", "pids", namespace, check=False).split() if p.isdigit()])


def down(cluster: Cluster) -> list[str]:
    """Remove the cluster: its processes, namespaces (with their veths and qdiscs) and state; the
    namespaces removed. Safe to repeat, and safe on a half-built cluster."""
    present = set(namespaces())
    removed = []
    for ns in reversed(cluster.layout.namespaces):
        if ns in present:
            _kill_inside(ns)
            run_ip("netns", "del", ns, check=False)
            removed.append(ns)
    left = set(namespaces()) & set(cluster.layout.namespaces)
    if left:
        raise UsageError(f"could not remove namespaces {', '.join(sorted(left))} of cluster {cluster.name}")
    shutil.rmtree(cluster.directory, ignore_errors=True)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so every `finally` (the teardown) runs."""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM unwinds like Ctrl-C (SIGINT already does), so cleanup code runs."""
    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def temporary_cluster(platform: Platform, *, source: str = "", state_dir: str | Path | None = None,
                      progress: Callable[[str], None] = lambda _m: None) -> Iterator[Cluster]:
    """A cluster for the duration of a `with`: removed on exit, on an error, on Ctrl-C and on SIGTERM."""
    with terminate_as_interrupt():
        cluster = up(platform, source=source, state_dir=state_dir, persistent=False, progress=progress)
        try:
            yield cluster
        finally:
            down(cluster)
            progress(f"cluster {cluster.name} down")
