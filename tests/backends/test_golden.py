"""Golden tests: printed IR, rankfile and comm tables of a tiny split graph.

Regenerate after an intended change with `EDGEC_UPDATE_GOLDEN=1 pytest tests/backends/test_golden.py`
and review the diff.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgec import PassManager, format_program
from edgec.backends.comm_tables import comm_tables, rankfile_text
from edgec.compiler.annotations import PLACEMENT, Placement
from edgec.passes import default_pipeline
from graphs import diamond, program

GOLDEN = Path(__file__).parent.parent / "golden"


def _split_diamond():
    prog = program(diamond(), {"a": "a", "b": "b", "c": "c", "d": "a"})
    prog.node("a").meta[PLACEMENT] = Placement("a", "cpu", 2)
    PassManager(default_pipeline()).run(prog)
    return prog


def check(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("EDGEC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with EDGEC_UPDATE_GOLDEN=1"
    assert text == path.read_text()


@pytest.fixture(scope="module")
def split_diamond():
    return _split_diamond()


def test_printed_ir(split_diamond):
    check("diamond.ir.txt", format_program(split_diamond))


def test_rankfile(split_diamond):
    check("diamond.rankfile", rankfile_text(split_diamond))


def test_comm_tables(split_diamond):
    check("diamond.comm.json", json.dumps(comm_tables(split_diamond), indent=1) + "\n")
