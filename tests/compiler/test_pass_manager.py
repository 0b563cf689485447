"""The PassManager: order validation, verification after each pass, hooks, error context."""

from __future__ import annotations

import pytest

from edgec import Pass, PassManager, PassResult
from edgec.compiler.diagnostics import PassError
from edgec.passes import CommInsert, SplitVertical
from graphs import chain, program


class Breaker(Pass):
    name = "breaker"
    order = 50

    def call(self, program):
        program.node("n1").outputs[0].shape = None
        return PassResult(True)


def test_order_is_validated_when_built():
    with pytest.raises(PassError, match="cannot run after"):
        PassManager([CommInsert(), SplitVertical()])
    with pytest.raises(PassError, match="twice"):
        PassManager([SplitVertical(), SplitVertical()])


def test_runs_verifies_and_logs():
    prog = program(chain(4), {"n0": "a", "*": "b"})
    seen = []
    results = PassManager([SplitVertical(), CommInsert()], hooks=[lambda p, _prog, r: seen.append((p.name, r.modified))]).run(prog)
    assert [r.modified for r in results] == [True, True]
    assert seen == [("split", True), ("comm-insert", True)]
    assert [e["pass"] for e in prog.pass_log] == ["split", "comm-insert"]


def test_broken_ir_is_caught_after_the_pass_that_broke_it():
    prog = program(chain(4), {"*": "a"})
    with pytest.raises(PassError) as info:
        PassManager([SplitVertical(), Breaker(), CommInsert()]).run(prog)
    assert info.value.pass_name == "breaker" and info.value.ran == ["split"]
    assert "no static shape" in info.value.message


def test_requires_failure_names_passes_that_ran():
    prog = program(chain(2), {"*": "a"})
    prog.node("n1").meta.clear()
    with pytest.raises(PassError) as info:
        PassManager([SplitVertical()]).run(prog)
    assert "n1" in str(info.value) and info.value.ran == []
