"""Shared fixtures; `graphs` and `zoo` (helpers beside this file) are importable from every test."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "examples"))


def pytest_configure(config) -> None:
    """Each test session gets its own TVM module cache, so TVM compiles run every time the suite
    does (a cache shared across runs would turn the compile tests into cache hits)."""
    import os
    import tempfile

    os.environ.setdefault("EDGEC_TVM_MODULE_CACHE", tempfile.mkdtemp(prefix="edgec-test-tvm-cache-"))


@pytest.fixture
def leftover_ranks():
    """How tests check that no run leaves processes behind: the rank processes of runs on an output directory
    that are still alive."""

    def find(out: Path) -> list[str]:
        found = subprocess.run(["pgrep", "-af", f"edgec.runtime.mpi_rank {out}"], capture_output=True, text=True)
        return [line for line in found.stdout.splitlines() if "pgrep" not in line]

    return find
