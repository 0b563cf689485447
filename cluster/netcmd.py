"""Running `ip` and `tc`: the only way the cluster touches the kernel's networking.

Why one place: every command goes through `run_ip`, so a failure is always one UsageError
naming the command and the kernel's message, and the preconditions (root, the tools present)
are checked once, before anything is created.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from ..compiler.diagnostics import UsageError

TOOLS = ("ip", "tc")


def check_can_build() -> None:
    """Refuse clearly when the cluster cannot be built here: not root, or `ip`/`tc` missing."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        raise UsageError(f"the emulated cluster needs {' and '.join(repr(t) for t in missing)}, which "
                         f"{'is' if len(missing) == 1 else 'are'} not installed",
                         hint="apt-get install iproute2")
    if os.geteuid() != 0:
        raise UsageError("the emulated cluster needs root (it creates network namespaces, veth pairs and qdiscs)",
                         hint="run it as root, e.g. with sudo")


def run_ip(*args: str, namespace: str | None = None, check: bool = True) -> str:
    """Run `ip ARGS` (or `tc ARGS` when args[0] is 'tc'), inside `namespace` when given; its stdout."""
    tool, rest = (args[0], args[1:]) if args[0] == "tc" else ("ip", args)
    cmd = [tool, *rest] if namespace is None else ["ip", "netns", "exec", namespace, tool, *rest]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise UsageError(f"'{' '.join(cmd)}' failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def namespaces() -> list[str]:
    """The network namespaces that exist now (names only)."""
    if shutil.which("ip") is None:
        return []
    out = run_ip("netns", "list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def interface_counters(namespace: str, interface: str) -> dict[str, int]:
    """The kernel's byte and packet counters of one interface in a namespace."""
    data = json.loads(run_ip("-s", "-j", "link", "show", "dev", interface, namespace=namespace))
    stats = data[0]["stats64"]
    return {"tx_bytes": int(stats["tx"]["bytes"]), "rx_bytes": int(stats["rx"]["bytes"]),
            "tx_packets": int(stats["tx"]["packets"]), "rx_packets": int(stats["rx"]["packets"]),
            "tx_dropped": int(stats["tx"]["dropped"])}


def qdisc_kinds(namespace: str, interface: str) -> list[str]:
    """The qdiscs on an interface (`tbf`, `noqueue`, …), to check the shaping is in place."""
    data = json.loads(run_ip("tc", "-j", "qdisc", "show", "dev", interface, namespace=namespace) or "[]")
    return [q["kind"] for q in data]
