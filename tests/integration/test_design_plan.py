"""The example plan of DESIGN.md, with the model's own node names, parses as written and its
`device`, `link` and `place` statements compile and verify (light ResNet-50)."""

from __future__ import annotations

import pytest

import edgec
from edgec.dsl import parse_plan
from edgec.runtime.outputs import random_inputs
from edgec.runtime.verify import verify
from zoo import randomized

DESIGN_PLAN = """\
model "resnet50.onnx"                       # optional; the CLI argument wins
input "gpu_0/data_0" [1, 3, 224, 224]       # fixes symbolic dims (or --input-shape)
device cam  {{ arch x86_64  cores 2 mem 2GiB }}
device hub  {{ arch aarch64 cores 6 mem 8GiB gpu cuda }}
device fpga {{ arch armv7   cores 2 mem 512MiB accel vta }}
link cam <-> hub  {{ bandwidth 100Mbit latency 2ms }}

place {first} .. {middle} on cam.cpu threads 2     # vertical (pipeline) split
place * on hub.gpu
{rest}"""

REST = """\
split {fc} by output into 3 on cam.cpu, hub.cpu, fpga.vta   # output|input|channel|spatial|filter
quantize hub int8 per_channel calibrate "calib/"   # a device, a selector, or `wire`
quantize wire int8                                  # tensors crossing devices travel as int8
prune "n1*" channels 30% by l1
cdc {fc} parity 1 on fpga.cpu                        # parity shard for an output-split layer
"""


@pytest.fixture(scope="module")
def resnet(tmp_path_factory):
    path = randomized("resnet50", tmp_path_factory.mktemp("zoo"))
    graph = edgec.load_model(path).graph
    names = [n.name for n in graph]
    fc = next(n.name for n in graph if n.op_type == "Gemm")
    return path, names, fc


def test_whole_design_plan_parses(resnet):
    _, names, fc = resnet
    text = DESIGN_PLAN.format(first=names[0], middle=names[60], rest=REST.format(fc=fc))
    plan = parse_plan(text, "plan.edge")
    assert [d.name for d in plan.devices] == ["cam", "hub", "fpga"]
    assert len(plan.places) == 2 and len(plan.splits) == 1


def test_cdc_of_the_design_plan_codes_the_split_fc(resnet):
    path, names, fc = resnet
    rest = "".join(line + "\n" for line in REST.format(fc=fc).splitlines() if not line.startswith(("quantize", "prune")))
    text = DESIGN_PLAN.format(first=names[0], middle=names[60], rest=rest)
    program = edgec.compile(path, parse_plan(text, "plan.edge")).program
    (layer,) = program.model.meta["edgec.cdc-layers"]
    assert layer.layer == fc and layer.k == 3 and layer.parity_devices == ("fpga",)


def test_device_link_place_compile_and_verify(resnet, tmp_path):
    path, names, _ = resnet
    text = DESIGN_PLAN.format(first=names[0], middle=names[60], rest="")
    result = edgec.compile(path, parse_plan(text, "plan.edge"), tmp_path / "out")
    assert [(s.device, s.resource, s.threads) for s in result.program.stages] == [("cam", "cpu", 2), ("hub", "gpu", None)]
    assert result.program.platform.link_between("hub", "cam").bandwidth_bps == 100e6
    assert verify(tmp_path / "out", random_inputs(result.manifest)).ok
