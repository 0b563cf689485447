"""The PassManager: fact-based order checks, verification before and after passes, hooks, errors."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgec import Pass, PassManager, PassResult
from edgec.compiler.annotations import PLACEMENT, Placement
from edgec.compiler.diagnostics import InternalError, PassError, UsageError, VerifyError
from edgec.compiler.facts import Fact
from edgec.compiler.pass_manager import canonical_order
from edgec.passes import CommInsert, SplitLayer, SplitVertical, default_pipeline
from graphs import chain, program


class Breaker(Pass):
    name = "breaker"

    def call(self, program):
        program.node("n1").outputs[0].shape = None
        return PassResult(True)


class Buggy(Pass):
    name = "buggy"

    def call(self, program):
        return {}["missing"]


class Unstage(Pass):
    name = "unstage"
    invalidates = frozenset({Fact.STAGED})

    def call(self, program):
        return PassResult(False)


class Nothing(Pass):
    """A custom pass with no declarations: it may run anywhere."""

    name = "nothing"

    def call(self, program):
        return PassResult(False)


def test_a_pipeline_in_the_wrong_order_is_refused_naming_the_fact():
    with pytest.raises(PassError, match="needs the fact 'staged', which 'split' provides, but 'split' runs after it"):
        PassManager([CommInsert(), SplitVertical()])
    with pytest.raises(PassError, match="'unstage' invalidates before it") as info:
        PassManager([SplitVertical(), Unstage(), CommInsert()])
    assert info.value.pass_name == "comm-insert" and "cannot run at this point" in info.value.message


def test_a_pass_that_runs_once_is_refused_twice_before_anything_runs():
    with pytest.raises(PassError, match="staged already holds by 'split', and 'split' runs only once"):
        PassManager([SplitVertical(), SplitVertical(), CommInsert()])


def test_a_missing_fact_names_the_pass_that_provides_it():
    with pytest.raises(PassError) as info:
        PassManager([CommInsert()])
    assert "no earlier pass provides" in info.value.message and "'split'" in info.value.hint


def test_after_orders_optional_passes():
    with pytest.raises(PassError, match="must run after 'split-layer'"):
        PassManager([SplitVertical(), SplitLayer()], initial={Fact.PLACED})


def test_a_target_fact_the_pipeline_lacks_is_refused():
    with pytest.raises(UsageError, match="backend 'toy' needs the fact 'comm'"):
        PassManager([SplitVertical()], target={"backend 'toy'": {Fact.COMM}})


def test_a_custom_pass_without_declarations_runs_anywhere():
    prog = program(chain(4), {"n0": "a", "*": "b"})
    PassManager([Nothing(), SplitVertical(), Nothing(), CommInsert(), Nothing()]).run(prog)
    assert Fact.COMM in prog.facts


def test_canonical_order_follows_from_the_facts():
    shuffled = [CommInsert(), SplitVertical(), Nothing(), SplitLayer()]
    assert [p.name for p in canonical_order(shuffled)] == ["nothing", "split-layer", "split", "comm-insert"]
    assert [p.name for p in default_pipeline()][-1] == "comm-insert"


def test_runs_verifies_logs_and_sets_facts():
    prog = program(chain(4), {"n0": "a", "*": "b"})
    seen = []
    results = PassManager([SplitVertical(), CommInsert()], hooks=[lambda p, _prog, r: seen.append((p.name, r.modified))]).run(prog)
    assert [r.modified for r in results] == [True, True]
    assert seen == [("split", True), ("comm-insert", True)]
    assert [e["pass"] for e in prog.pass_log] == ["split", "comm-insert"]
    assert {Fact.PLACED, Fact.STAGED, Fact.COMM} <= prog.facts


def test_broken_ir_is_caught_after_the_pass_that_broke_it():
    prog = program(chain(4), {"*": "a"})
    with pytest.raises(PassError) as info:
        PassManager([SplitVertical(), Breaker(), CommInsert()]).run(prog)
    assert info.value.pass_name == "breaker" and info.value.ran == ["split"]
    assert "no static shape" in info.value.message


def test_a_bug_inside_a_pass_is_an_internal_error_with_its_cause():
    prog = program(chain(2), {"*": "a"})
    with pytest.raises(InternalError) as info:
        PassManager([SplitVertical(), Buggy()]).run(prog)
    assert info.value.exit_code == 3 and info.value.pass_name == "buggy" and info.value.ran == ["split"]
    assert isinstance(info.value.__cause__, KeyError) and "KeyError" in info.value.message


def test_the_input_program_is_verified_before_the_first_pass():
    prog = program(chain(2), {"*": "a"})
    prog.node("n1").meta[PLACEMENT] = Placement("nowhere")
    with pytest.raises(VerifyError, match="before any pass ran: node 'n1' is placed on device 'nowhere'"):
        PassManager([Nothing()]).run(prog)


def test_a_node_placed_past_its_devices_cores_is_refused():
    prog = program(chain(2), {"*": "a"})
    prog.node("n0").meta[PLACEMENT] = Placement("a", threads=3)
    with pytest.raises(VerifyError, match="asks for 3 threads on 'a', which has 2 cores"):
        prog.verify()


def test_requires_failure_names_passes_that_ran():
    prog = program(chain(2), {"*": "a"})
    prog.node("n1").meta.clear()
    with pytest.raises(VerifyError, match="node 'n1' is not placed"):
        PassManager([SplitVertical()]).run(prog)


@pytest.mark.parametrize("bad, message", [
    (SplitVertical, "pass an instance: SplitVertical()"),
    ("split", "not an edgec Pass"),
])
def test_the_pipeline_must_hold_pass_instances(bad, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PassManager([bad])
    with pytest.raises(UsageError, match="list of Pass instances"):
        PassManager("split")


def test_a_call_that_returns_no_result_is_a_pass_error():
    class NoResult(Pass):
        name = "no-result"

        def call(self, program):
            return None

    with pytest.raises(PassError, match="returned NoneType, not a PassResult"):
        PassManager([NoResult()]).run(program(chain(2), {"*": "a"}))


def test_options_are_dataclass_fields_and_show_in_the_spec():
    @dataclass(frozen=True)
    class Tuned(Pass):
        name = "tuned"
        threshold: int = 1

        def call(self, program):
            return PassResult(False, f"threshold {self.threshold}")

    assert Tuned().spec == "tuned" and Tuned(threshold=3).spec == "tuned{threshold=3}"
    prog = program(chain(2), {"*": "a"})
    PassManager([Tuned(threshold=3)]).run(prog)
    assert prog.pass_log[0]["pass"] == "tuned{threshold=3}" and prog.pass_log[0]["summary"] == "threshold 3"
