"""Open MPI inside the emulated cluster: the rsh agent, the hostfile, the rankfile and the MCA parameters.

Why each piece (measured with Open MPI 4.1.4 on this machine):
- `mpirun` runs in the control namespace, and every device is a "host" named by its control
  address; the rsh agent (a small shell script) maps that address to the device's namespace and
  starts `orted` there with `ip netns exec`. So every rank's sockets live in its device's
  namespace, and nothing uses an address outside the namespaces the cluster made.
- `--mca btl tcp,vader,self` and `--mca pml ob1`: every device is an Open MPI node of its own, so
  ranks on different devices can only reach each other over TCP (re-checked: with the default
  transports, 4 MiB from the first to the third device still crossed both shaped links), while
  two stages on one device share memory, as they would on a real device; ob1, because UCX would
  choose its own transports.
- `btl_tcp_if_include` is set per namespace by the agent to ONE interface, the device's first link
  (its control interface when it has none): every rank then has a single TCP address, which the
  routes carry over the right shaped links whatever the destination. With all of a device's link
  interfaces, Open MPI 4.1.4 gave a two-link device one TCP module per interface and sometimes
  connected to a neighbour from the address that neighbour had not paired with it; the neighbour
  dropped the connection ("inbound MPI TCP connection ... from an IP address that is unexpected"),
  no retry came, and the run hung in its first collective (measured: 2 hangs in 34 runs of a 3-device
  chain with both cores busy; 0 in 60 with one address per device). A global value would name
  interfaces missing on some devices.
- `PMIX_MCA_gds=hash`: PMIx's shared-memory data store is keyed by host name, and every namespace
  has the same one (a 3-device run worked without it here too; kept because the failure it avoids
  was seen before, and it costs nothing).
- a per-namespace `orte_tmpdir_base`: the orteds share the host name, so their session
  directories would otherwise collide.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING

from .layout import CTL_SUBNET, Layout

if TYPE_CHECKING:
    from ..runtime.outputs import CompiledOutput

AGENT_NAME = "rsh-agent.sh"
EMULATION_FILE = "emulation.json"
"""Written into the run directory: per (src, dst) rank pair, the latency the ranks add to each send."""


def mpi_interface(layout: Layout, device: str) -> str:
    """The one interface whose address the device's ranks give Open MPI (see the module docstring)."""
    links = layout.links_of(device)
    return links[0].end(device)[0] if links else layout.device(device).ctl_if


def agent_script(layout: Layout, state_dir: Path) -> str:
    """The `plm_rsh_agent`: `agent HOST COMMAND…` runs COMMAND in HOST's namespace, or fails for any other host."""
    lines = ["#!/bin/sh", "# edgec emulated cluster: start an Open MPI daemon in the namespace of the device at $1",
             'host="$1"; shift', 'case "$host" in']
    for device in layout.devices:
        interface = mpi_interface(layout, device.device)
        tmp = state_dir / "tmp" / device.device
        lines.append(f"  {device.ctl_address}) ns={shlex.quote(device.namespace)}; tmp={shlex.quote(str(tmp))}; "
                     f"ifs={interface} ;;")
    lines += ['  *) echo "edgec cluster agent: $host is not a device of cluster ' + layout.prefix + '" >&2; exit 1 ;;',
              "esac", 'mkdir -p "$tmp"',
              'exec ip netns exec "$ns" env OMPI_MCA_orte_tmpdir_base="$tmp" OMPI_MCA_btl_tcp_if_include="$ifs" '
              'sh -c "$*"', ""]
    return "\n".join(lines)


def write_agent(layout: Layout, state_dir: Path) -> Path:
    path = state_dir / AGENT_NAME
    path.write_text(agent_script(layout, state_dir))
    path.chmod(0o755)
    return path


class ClusterTarget:
    """How `runtime.launcher` runs an output in the cluster (see `launcher.mpirun_prefix`): the command
    prefix, the environment, and the per-run files (hostfile, rankfile, the ranks' latency table)."""

    def __init__(self, layout: Layout, state_dir: Path, workdir: Path) -> None:
        self.layout, self.state_dir, self.workdir = layout, state_dir, workdir

    def stage_devices(self, compiled: CompiledOutput) -> list[str]:
        """Each rank's device, checked against the cluster."""
        devices = [stage.device for stage in compiled.stages]
        for name in dict.fromkeys(devices):
            self.layout.device(name)
        return devices

    def hostfile_text(self, compiled: CompiledOutput) -> str:
        devices = self.stage_devices(compiled)
        lines = [f"# edgec emulated cluster {self.layout.prefix}: one host per device (its control address)"]
        for device in dict.fromkeys(devices):
            lines.append(f"{self.layout.device(device).ctl_address} slots={devices.count(device)}")
        return "\n".join(lines) + "\n"

    def rankfile_text(self, compiled: CompiledOutput) -> str:
        """One rank per stage on its device's namespace; every namespace shares this machine's cores,
        so each rank may use all of them (`slot=0-N`)."""
        cores = max(os.cpu_count() or 1, 1)
        lines = [f"# edgec emulated cluster {self.layout.prefix}: rank → the namespace of its stage's device"]
        for rank, device in enumerate(self.stage_devices(compiled)):
            lines.append(f"rank {rank}={self.layout.device(device).ctl_address} slot=0-{cores - 1}")
        return "\n".join(lines) + "\n"

    def mpirun(self, mpirun: str, compiled: CompiledOutput) -> list[str]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        hostfile, rankfile = self.workdir / "hostfile", self.workdir / "rankfile"
        hostfile.write_text(self.hostfile_text(compiled))
        rankfile.write_text(self.rankfile_text(compiled))
        return ["ip", "netns", "exec", self.layout.ctl_namespace, mpirun, "-np", str(len(compiled.stages)),
                "--hostfile", str(hostfile), "--rankfile", str(rankfile),
                "--mca", "plm_rsh_agent", str(self.state_dir / AGENT_NAME),
                "--mca", "btl", "tcp,vader,self", "--mca", "pml", "ob1",
                "--mca", "oob_tcp_if_include", f"{CTL_SUBNET}.0/24", "-x", "PMIX_MCA_gds"]

    def env(self, base: dict[str, str]) -> dict[str, str]:
        env = dict(base)
        env["PMIX_MCA_gds"] = "hash"
        for key in ("OMPI_MCA_btl_tcp_if_include", "OMPI_MCA_btl_tcp_if_exclude", "OMPI_MCA_orte_tmpdir_base"):
            env.pop(key, None)
        return env

    def send_latencies(self, compiled: CompiledOutput) -> dict[str, float]:
        """`"src,dst"` → the summed latency of the links between the two ranks' devices (0 on one device)."""
        devices = self.stage_devices(compiled)
        delays: dict[str, float] = {}
        for t in compiled.manifest.transfers:
            path = self.layout.route(devices[t.src], devices[t.dst])
            delay = sum(link.latency_s or 0.0 for link in path)
            if delay > 0:
                delays[f"{t.src},{t.dst}"] = delay
        return delays

    def prepare(self, compiled: CompiledOutput, rundir: Path) -> None:
        """Leave the ranks their latencies (the routes were checked by `emulated_run.check_routes`)."""
        (rundir / EMULATION_FILE).write_text(json.dumps({"send_latency_s": self.send_latencies(compiled)}))
