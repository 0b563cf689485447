"""Intra-layer splits mixed with pipeline splits on VGG-19-, ResNet- and Inception-shaped light-zoo models."""

from __future__ import annotations

import pytest

import edgec
from edgec.runtime.outputs import random_inputs
from edgec.runtime.verify import verify
from zoo import randomized

DEVICES = "device a { cores 2 }\ndevice b { cores 2 }\ndevice c { cores 2 }\ndevice d { cores 2 }\n"
SPATIAL_OK = {"Relu", "MaxPool", "BatchNormalization", "LRN", "Conv"}


def chain_from(graph, start, length):
    """Names of a linear chain of up to `length` tileable nodes beginning at `start`."""
    names, node = [start.name], start
    while len(names) < length:
        uses = node.outputs[0].uses()
        if len(uses) != 1 or uses[0].node.op_type not in SPATIAL_OK:
            break
        node = uses[0].node
        names.append(node.name)
    return names


def plan_for(graph) -> str:
    nodes = list(graph)
    convs = [n for n in nodes if n.op_type == "Conv"]
    gemms = [n for n in nodes if n.op_type == "Gemm"]
    chain = chain_from(graph, convs[0], 4)
    convs = [n for n in convs if n.name not in chain]
    dense = [n for n in convs if n.attributes.get_int("group", 1) == 1]
    middle = nodes[len(nodes) // 2].name
    lines = [
        DEVICES,
        f'split "{chain[0]}" .. "{chain[-1]}" by spatial into 2x2 on a, b, c, d merge on a',
        f'split "{convs[len(convs) // 3].name}" by filter into 3 ratio 2:1:1 on b, c, d',
        f'split "{dense[len(dense) // 2].name}" by channel into 2 on c, d' if dense else "",
        f'split "{gemms[-1].name}" by output into 3 on a, b, c' if gemms else "",
        f'place "{nodes[0].name}" .. "{middle}" on a',
        "place * on b",
    ]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", [pytest.param("vgg19", marks=pytest.mark.slow), "resnet50", "inception_v1", "densenet121",
                                  "shufflenet"])
def test_mixed_plan_verifies(name, tmp_path_factory):
    model = randomized(name, tmp_path_factory.mktemp("zoo"))
    graph = edgec.load_model(model).graph
    out = tmp_path_factory.mktemp("out") / "o"
    result = edgec.compile(model, plan_for(graph), out)
    kinds = {s["kind"] for s in result.manifest["splits"]}
    assert {"spatial", "filter"} <= kinds and ("channel" in kinds or name == "shufflenet")
    report = verify(out, random_inputs(result.manifest, seed=2))
    assert report.ok, [(o.name, o.max_rel) for o in report.outputs]
