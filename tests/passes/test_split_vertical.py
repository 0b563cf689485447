"""The vertical split pass on tiny graphs: stage formation, revisits, numbering, contracts."""

from __future__ import annotations

import pytest

from edgec.compiler.annotations import stage_of
from edgec.compiler.diagnostics import PassError
from edgec.passes import SplitVertical
from graphs import chain, diamond, program, two_io


def stages_by_node(prog) -> dict[str, int]:
    return {n.name: stage_of(n) for n in prog.nodes()}


def test_single_device_is_one_stage():
    prog = program(chain(), {"*": "a"})
    result = SplitVertical()(prog)
    assert result.modified
    assert len(prog.stages) == 1 and set(stages_by_node(prog).values()) == {0}


def test_chain_split_in_two():
    prog = program(chain(4), {"n0": "a", "n1": "a", "*": "b"})
    SplitVertical()(prog)
    assert stages_by_node(prog) == {"n0": 0, "n1": 0, "n2": 1, "n3": 1}
    assert [(s.device, s.resource) for s in prog.stages] == [("a", "cpu"), ("b", "cpu")]


def test_revisit_gives_the_device_a_second_stage():
    prog = program(chain(4), {"n0": "a", "n1": "b", "n2": "a", "n3": "a"})
    SplitVertical()(prog)
    assert stages_by_node(prog) == {"n0": 0, "n1": 1, "n2": 2, "n3": 2}
    assert [s.device for s in prog.stages] == ["a", "b", "a"]


def test_independent_branch_joins_existing_stage():
    # c runs on a like a and d; b on another device: a's stage cannot take d (a→b→d) but c fits in it.
    prog = program(diamond(), {"a": "a", "b": "b", "c": "a", "d": "a"})
    SplitVertical()(prog)
    s = stages_by_node(prog)
    assert s["a"] == s["c"] == 0 and s["b"] == 1 and s["d"] == 2


def test_stages_are_numbered_topologically():
    prog = program(two_io(), {"r": "b", "y1": "b", "y2": "a"})
    SplitVertical()(prog)
    prog.verify()
    for node in prog.nodes():
        for pred in node.predecessors():
            assert stage_of(pred) <= stage_of(node)


def test_unplaced_node_is_refused():
    prog = program(chain(2), {"n0": "a"})
    prog.node("n1").meta.clear()
    with pytest.raises(PassError, match="n1"):
        SplitVertical()(prog)


def test_graph_input_owned_by_first_consumer():
    prog = program(two_io(), {"r": "b", "y1": "b", "y2": "a"})
    SplitVertical()(prog)
    owner = prog.input_owner
    assert owner["x1"] == stage_of(prog.node("r"))
    assert owner["x2"] == min(stage_of(prog.node("y1")), stage_of(prog.node("y2")))
