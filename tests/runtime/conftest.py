"""Fixtures for the distributed runtime tests: compiled outputs of the tiny example and light-zoo models.

Why session-scoped: compiling is the slow part of these tests, and every test only reads the
outputs.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

import edgec
from tiny_cnn import build
from zoo import randomized, range_plan

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="session")
def tiny_out(tmp_path_factory) -> Path:
    """The built-in example on its own plan: 4 stages on 3 devices, 5 boundary tensors."""
    directory = tmp_path_factory.mktemp("tiny")
    model = directory / "tiny_cnn.onnx"
    onnx.save(build(), model)
    out = directory / "out"
    edgec.compile(model, (EXAMPLES / "tiny_cnn.edge").read_text(), out)
    return out


@pytest.fixture(scope="session")
def zoo_out(tmp_path_factory):
    """A light-zoo model with informative weights, split into `stages` node ranges."""
    directory = tmp_path_factory.mktemp("zoo-runtime")

    def make(name: str, stages: int) -> Path:
        out = directory / f"{name}-{stages}"
        if not out.exists():
            model = randomized(name, directory)
            order = [node.name for node in edgec.load_model(model).graph]
            devices = ("a", "b", "c", "d")[: min(stages, 3)]
            edgec.compile(model, range_plan(order, stages=stages, devices=devices), out)
        return out

    return make
