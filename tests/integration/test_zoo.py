"""Every light-zoo model, split into 4 stages on 3 devices (A→B→C→A), verifies against onnxruntime."""

from __future__ import annotations

import pytest

import edgec
from edgec.runtime.outputs import random_inputs
from edgec.runtime.verify import verify
from zoo import ZOO, randomized, range_plan


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("zoo")


HEAVY = {"vgg19", "zfnet512", "bvlc_alexnet"}  # large fully connected layers: the slow tier


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in ZOO])
def test_zoo_model_splits_and_verifies(name, zoo_dir, tmp_path):
    model = randomized(name, zoo_dir)
    order = edgec.load_model(model).graph
    plan = range_plan([n.name for n in order], stages=4)
    result = edgec.compile(model, plan, tmp_path / "out")
    assert len(result.program.stages) >= 4
    assert len({s.device for s in result.program.stages}) == 3
    assert result.program.transfers
    report = verify(tmp_path / "out", random_inputs(result.manifest, seed=1))
    assert report.ok, [(o.name, o.max_rel) for o in report.outputs]
    assert all(o.max_rel <= 1e-4 for o in report.outputs)
