"""Property: any placement of any graph, however it revisits devices, compiles and verifies exactly."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edgec
from edgec.runtime.outputs import random_inputs
from edgec.runtime.verify import verify
from tiny_cnn import build
from zoo import randomized

DEVICES = ("a", "b", "c")


def placement_plan(order: list[str], seed: int, switch: float) -> str:
    """Walk the topological order, moving to a random device with probability `switch` per node."""
    rng = np.random.default_rng(seed)
    device = rng.choice(DEVICES)
    groups: dict[str, list[str]] = {d: [] for d in DEVICES}
    for name in order:
        if rng.random() < switch:
            device = rng.choice(DEVICES)
        groups[device].append(name)
    lines = [f"device {d} {{ cores 2 }}" for d in DEVICES]
    for d, names in groups.items():
        if names:
            lines.append(f"place [{', '.join(chr(34) + n + chr(34) for n in names)}] on {d}")
    return "\n".join(lines) + "\n"


def check(model, seed: int, switch: float, out) -> None:
    order = [n.name for n in edgec.load_model(model).graph]
    result = edgec.compile(model, placement_plan(order, seed, switch), out)
    report = verify(out, random_inputs(result.manifest, seed))
    assert report.ok, [(o.name, o.max_rel) for o in report.outputs]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "tiny.onnx"
    onnx.save(build(), path)
    return path


@settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), switch=st.sampled_from([0.2, 0.5, 1.0]))
def test_random_placements_of_tiny_cnn(tiny, tmp_path_factory, seed, switch):
    check(tiny, seed, switch, tmp_path_factory.mktemp("out") / "o")


@pytest.mark.slow
@pytest.mark.parametrize("name,seed", [("inception_v1", 1), ("resnet50", 2), ("densenet121", 3), ("squeezenet", 4)])
def test_random_placements_of_branchy_zoo_models(name, seed, tmp_path_factory):
    model = randomized(name, tmp_path_factory.mktemp("zoo"))
    check(model, seed, 0.08, tmp_path_factory.mktemp("out") / "o")
