"""Selectors resolve to node names in topological order, and selecting nothing by mistake is an error."""

from __future__ import annotations

import pytest

from edgec.compiler.diagnostics import PlanError
from edgec.dsl import parse_plan
from edgec.dsl.ast import AllSel, GlobSel, ListSel, NameSel, RangeSel, Selector
from edgec.dsl.selectors import resolve

ORDER = ["conv1", "conv2", "layer4/0/conv", "layer4/1/conv", "pool", "fc6", "odd[0]"]


def selector(text: str) -> Selector:
    return parse_plan(f"place {text} on cam", "plan.edge").places[0].selector


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("conv2", ["conv2"]),
        ('"layer4/0/conv"', ["layer4/0/conv"]),
        ('"layer4/*"', ["layer4/0/conv", "layer4/1/conv"]),
        ('"*conv"', ["layer4/0/conv", "layer4/1/conv"]),
        ('"conv?"', ["conv1", "conv2"]),
        ('"odd[0]"', ["odd[0]"]),
        ("conv2 .. pool", ["conv2", "layer4/0/conv", "layer4/1/conv", "pool"]),
        ("fc6 .. fc6", ["fc6"]),
        ("[fc6, conv1, conv1]", ["conv1", "fc6"]),
        ('[pool, "layer4/*", conv1 .. conv2]', ["conv1", "conv2", "layer4/0/conv", "layer4/1/conv", "pool"]),
        ("*", ORDER),
    ],
)
def test_resolve(text: str, expected: list[str]) -> None:
    assert resolve(selector(text), ORDER) == expected


def test_all_takes_only_unplaced_in_topological_order() -> None:
    assert resolve(AllSel(), ORDER, unplaced={"fc6", "conv2"}) == ["conv2", "fc6"]
    assert resolve(ListSel([NameSel("pool"), AllSel()]), ORDER, unplaced=["conv1"]) == ["conv1", "pool"]


def test_unknown_name_is_located_with_suggestion() -> None:
    with pytest.raises(PlanError) as info:
        resolve(selector("conv9"), ORDER)
    assert info.value.suggestion in ("conv1", "conv2")
    assert info.value.format() == (
        f"error: plan.edge:1:7: unknown node 'conv9'; did you mean '{info.value.suggestion}'?\n"
        "    place conv9 on cam\n"
        "          ^^^^^"
    )


def test_unknown_name_inside_list_points_at_the_item() -> None:
    with pytest.raises(PlanError) as info:
        resolve(selector("[conv1, fc7]"), ORDER)
    assert info.value.span is not None and (info.value.span.column, info.value.span.end_column) == (15, 18)


def test_glob_matching_nothing() -> None:
    with pytest.raises(PlanError, match="pattern 'res4\\*' matches no node"):
        resolve(GlobSel("res4*"), ORDER)


def test_reversed_range() -> None:
    with pytest.raises(PlanError, match="'conv1' comes before 'pool'") as info:
        resolve(selector("pool .. conv1"), ORDER)
    assert info.value.span is not None and info.value.span.column == 7
    assert info.value.hint == "write 'conv1 .. pool'"


def test_range_with_unknown_end() -> None:
    with pytest.raises(PlanError, match="unknown node 'pol'") as info:
        resolve(RangeSel(NameSel("conv1"), NameSel("pol")), ORDER)
    assert info.value.suggestion == "pool"


def test_glob_is_case_sensitive() -> None:
    with pytest.raises(PlanError):
        resolve(GlobSel("CONV*"), ORDER)
