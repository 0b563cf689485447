"""`replicate SELECTOR on T, T[, …]`: parsed into a ReplicateStmt; its mistakes are located PlanErrors."""

from __future__ import annotations

import pytest

from edgec.compiler.diagnostics import PlanError
from edgec.dsl import parse_plan
from edgec.dsl.ast import RangeSel, ReplicateStmt, Target

DEVICES = "device a {}\ndevice b {}\ndevice c {}\n"


def test_replicate_statement_parses_with_its_targets() -> None:
    plan = parse_plan(DEVICES + "place * on a\nreplicate n1 .. n2 on b, c.cpu\n")
    (stmt,) = plan.replicates
    assert isinstance(stmt, ReplicateStmt) and isinstance(stmt.selector, RangeSel)
    assert stmt.targets == [Target("b"), Target("c", "cpu")]
    assert str(stmt.selector) == "n1 .. n2" and stmt.span.line == 5


def test_replicate_is_a_keyword_only_where_a_statement_starts() -> None:
    plan = parse_plan(DEVICES + "place replicate on a\n")
    assert plan.places[0].selector.name == "replicate"


@pytest.mark.parametrize(("line", "message", "column"), [
    ("replicate x on a", "replicate needs at least 2 targets", 16),
    ("replicate x on a, b, a", "target 'a' is listed twice", 22),
    ("replicate x on a, d", "unknown device 'd'", 19),
])
def test_replicate_mistakes_are_located(line: str, message: str, column: int) -> None:
    with pytest.raises(PlanError) as info:
        parse_plan(DEVICES + "place * on a\n" + line + "\n", "plan.edge")
    assert message in info.value.message
    assert (info.value.span.line, info.value.span.column) == (5, column)
