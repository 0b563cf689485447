"""Fixtures for the C++/MPI backend tests: built programs of the example CNN and of squeezenet.

Why session-scoped: TVM compiles and the CMake build are the slow parts (seconds each); every
test only reads the output directory and runs the program.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cpp_helpers import built, tiny_output

import edgec
from zoo import randomized, range_plan


@pytest.fixture(scope="session")
def tiny_built(tmp_path_factory) -> Path:
    return built(tiny_output(tmp_path_factory.mktemp("cpp-tiny")))


@pytest.fixture(scope="session")
def squeezenet_built(tmp_path_factory) -> Path:
    """squeezenet (informative weights) in 3 node ranges on 2 devices (a → b → a)."""
    directory = tmp_path_factory.mktemp("cpp-squeezenet")
    model = randomized("squeezenet", directory)
    order = [node.name for node in edgec.load_model(model).graph]
    out = directory / "out"
    edgec.compile(model, range_plan(order, stages=3, devices=("a", "b")), out)
    return built(out)
