"""The communication insertion pass: Send/Recv pairs, tags, one copy per consuming stage."""

from __future__ import annotations

import pytest

from edgec.compiler.annotations import is_edgec_op, stage_of
from edgec.compiler.diagnostics import PassError
from edgec.passes import CommInsert, SplitVertical
from graphs import chain, diamond, program, two_io


def compiled(model, placement):
    prog = program(model, placement)
    SplitVertical()(prog)
    result = CommInsert()(prog)
    prog.verify()
    return prog, result


def test_single_stage_inserts_nothing():
    prog, result = compiled(chain(), {"*": "a"})
    assert not result.modified and prog.transfers == []


def test_chain_boundary_gets_one_pair():
    prog, result = compiled(chain(4), {"n0": "a", "n1": "a", "*": "b"})
    assert result.modified
    assert [(t.tensor, t.src, t.dst, t.tag) for t in prog.transfers] == [("n1", 0, 1, 0)]
    sends = [n for n in prog.nodes() if is_edgec_op(n, "Send")]
    recvs = [n for n in prog.nodes() if is_edgec_op(n, "Recv")]
    assert len(sends) == len(recvs) == 1
    assert stage_of(sends[0]) == 0 and stage_of(recvs[0]) == 1
    assert prog.node("n2").inputs[0] is recvs[0].outputs[0]


def test_tensor_used_twice_in_a_stage_is_sent_once():
    prog, _ = compiled(diamond(), {"a": "a", "*": "b"})
    assert [(t.tensor, t.dst) for t in prog.transfers] == [("a", 1)]
    assert prog.node("b").inputs[0] is prog.node("c").inputs[0]


def test_tensor_used_in_two_stages_is_sent_to_each():
    prog, _ = compiled(diamond(), {"a": "a", "b": "b", "c": "c", "d": "a"})
    sent = sorted((t.tensor, t.dst) for t in prog.transfers if t.tensor == "a")
    assert len(sent) == 2 and {d for _, d in sent} == {stage_of(prog.node("b")), stage_of(prog.node("c"))}
    assert len({t.tag for t in prog.transfers}) == len(prog.transfers)


def test_graph_input_is_forwarded_from_its_owner():
    prog, _ = compiled(two_io(), {"r": "a", "y1": "a", "y2": "b"})
    forwarded = [t for t in prog.transfers if t.tensor == "x2"]
    assert len(forwarded) == 1 and forwarded[0].src == prog.input_owner["x2"]


def test_transfer_records_shape_and_bytes():
    prog, _ = compiled(diamond(), {"a": "a", "*": "b"})
    (t,) = prog.transfers
    assert t.shape == (1, 4, 8, 8) and t.dtype == "float32" and t.nbytes == 4 * 4 * 8 * 8


def test_requires_stages():
    prog = program(chain(), {"*": "a"})
    with pytest.raises(PassError, match="split"):
        CommInsert()(prog)
