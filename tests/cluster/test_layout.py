"""The emulated cluster's layout, worked out from a plan without touching the kernel (no root needed)."""

from __future__ import annotations

import pytest

import edgec
from edgec import UsageError
from edgec.cluster.layout import Layout, plan_layout
from edgec.dsl.lower import lower_platform

CHAIN = """
device cam { arch x86_64 }
device hub { arch x86_64 }
device box { arch x86_64 }
link cam <-> hub { bandwidth 100Mbit latency 2ms }
link hub -> box { bandwidth 10Mbit }
"""


def layout(text: str = CHAIN) -> Layout:
    return plan_layout(lower_platform(edgec.load_plan(text)), "t0a1")


def test_names_addresses_and_routes_of_a_chain():
    lay = layout()
    assert lay.namespaces == ["edgec-t0a1-ctl", "edgec-t0a1-d-cam", "edgec-t0a1-d-hub", "edgec-t0a1-d-box"]
    names = [d.ctl_if for d in lay.devices] + [d.bridge_port for d in lay.devices] + [lay.bridge]
    names += [n for link in lay.links for n in (link.a_if, link.b_if)]
    assert all(n.startswith("edgect0a1") and len(n) <= 15 for n in names) and len(set(names)) == len(names)
    assert [(link.a_address, link.b_address) for link in lay.links] == [("10.251.0.1", "10.251.0.2"),
                                                                        ("10.251.1.1", "10.251.1.2")]
    routes = {(r.device, r.subnet): r.via for r in lay.routes}
    assert routes == {("cam", "10.251.1.0/24"): "10.251.0.2", ("box", "10.251.0.0/24"): "10.251.1.1"}
    assert Layout.from_json(lay.to_json()) == lay


def test_paths_go_through_the_devices_between_and_respect_one_way_links():
    lay = layout()
    assert [link.index for link in lay.path("cam", "box")] == [0, 1]
    assert lay.path("hub", "hub") == []
    with pytest.raises(UsageError, match="against its direction"):
        lay.path("box", "cam")


def test_devices_no_link_joins_are_refused():
    lay = layout(CHAIN + "device far { arch x86_64 }\n")
    with pytest.raises(UsageError, match="no chain of links joins them") as info:
        lay.path("cam", "far")
    assert "link cam <-> far" in info.value.hint


def test_bad_cluster_id():
    with pytest.raises(UsageError, match="4 lowercase"):
        plan_layout(lower_platform(edgec.load_plan(CHAIN)), "TOO-LONG")


def test_control_traffic_may_cross_a_one_way_link_backwards():
    lay = layout()
    assert [link.index for link in lay.route("box", "cam")] == [1, 0]
    with pytest.raises(UsageError, match="must reach rank 0"):
        layout(CHAIN + "device far { arch x86_64 }\n").route("far", "cam", "must reach rank 0")
