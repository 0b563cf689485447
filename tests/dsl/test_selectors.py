"""Selectors resolve to node names in topological order, and selecting nothing by mistake is an error;
nodes the loader folded away resolve against the file's order (ranges) or warn (selected alone)."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.compiler.diagnostics import PlanError, PlanWarning
from edgec.dsl import parse_plan
from edgec.dsl.ast import AllSel, GlobSel, ListSel, NameSel, RangeSel, Selector
from edgec.dsl.selectors import Names, resolve

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


# ---------------------------------------------------------------------------------------------
# nodes the loader folded away: resolved against the model as read from the file
# ---------------------------------------------------------------------------------------------

FOLDED = "was folded into a constant at load time"
FILE = ["conv1", "shape", "gather", "concat", "reshape", "relu", "fc"]
NAMES = Names(["conv1", "reshape", "relu", "fc"], FILE, {"shape": FOLDED, "gather": FOLDED, "concat": FOLDED})


def picked(text: str, purpose: str = "placement") -> tuple[list[str], list[str]]:
    warnings: list[PlanWarning] = []
    names = resolve(selector(text), NAMES, unplaced=None, warn=warnings.append, purpose=purpose)
    return names, [str(w) for w in warnings]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("conv1 .. concat", ["conv1"]),
        ("gather .. fc", ["reshape", "relu", "fc"]),
        ("shape .. reshape", ["reshape"]),
        ("conv1 .. fc", ["conv1", "reshape", "relu", "fc"]),
        ('"*e*"', ["reshape", "relu"]),
        ("[conv1 .. gather, concat .. relu]", ["conv1", "reshape", "relu"]),
    ],
)
def test_a_range_around_folded_nodes_keeps_the_survivors(text: str, expected: list[str]) -> None:
    assert picked(text) == (expected, [])


def test_a_folded_node_alone_is_a_located_warning_not_an_error() -> None:
    assert picked("[gather, relu]") == (["relu"], [
        "plan.edge:1:8: node 'gather' was folded into a constant at load time; it needs no placement"])
    assert picked("shape") == ([], ["plan.edge:1:7: node 'shape' was folded into a constant at load time; it needs "
                                    "no placement"])
    assert picked('"[sgc]*a*"', purpose="split") == ([], [
        "plan.edge:1:7: pattern '[sgc]*a*' matches only node(s) removed at load time (3: 'shape', 'gather', 'concat'); "
        "they need no split"])
    assert picked("shape .. concat") == ([], [
        "plan.edge:1:7: range 'shape .. concat' holds only nodes removed at load time; they need no placement"])


def test_the_warning_is_formatted_like_a_plan_error() -> None:
    warnings: list[PlanWarning] = []
    resolve(selector('"/detect/Concat"'), Names(["a"], ["/detect/Concat", "a"], {"/detect/Concat": FOLDED}),
            warn=warnings.append)
    assert warnings[0].format() == (
        "warning: plan.edge:1:7: node '/detect/Concat' was folded into a constant at load time; it needs no placement\n"
        '    place "/detect/Concat" on cam\n'
        "          ^^^^^^^^^^^^^^^^")


def test_names_the_file_never_had_stay_errors() -> None:
    with pytest.raises(PlanError) as info:
        resolve(selector("gathr"), NAMES)
    assert info.value.message == "unknown node 'gathr'" and info.value.suggestion == "gather"
    with pytest.raises(PlanError, match="unknown node 'nope'"):
        resolve(selector("conv1 .. nope"), NAMES)
    with pytest.raises(PlanError, match="pattern 'x\\*' matches no node"):
        resolve(selector('"x*"'), NAMES)


def test_a_range_is_ordered_by_the_file_order_folded_ends_included() -> None:
    with pytest.raises(PlanError, match="range end 'shape' comes before 'concat'"):
        resolve(selector("concat .. shape"), NAMES)
    with pytest.raises(PlanError, match="range end 'gather' comes before 'reshape'"):
        resolve(selector("reshape .. gather"), NAMES)


def test_without_a_file_order_names_resolve_as_before() -> None:
    assert resolve(selector("conv2 .. pool"), Names(ORDER)) == resolve(selector("conv2 .. pool"), ORDER)


def test_a_node_the_loader_made_sits_after_its_predecessor() -> None:
    """(The loader gives a node it makes the name of the node it replaces when that is free; `made` is the
    other case, a name of its own, and sits right after the node before it.)"""
    names = Names(["conv1", "made", "relu"], ["conv1", "gone", "relu"], {"gone": FOLDED})
    assert resolve(selector("conv1 .. conv1"), names) == ["conv1"]
    assert resolve(selector("conv1 .. gone"), names) == ["conv1", "made"]
    assert resolve(selector("gone .. relu"), names) == ["relu"]
    assert resolve(selector("made .. relu"), names) == ["made", "relu"]


def test_the_cli_prints_the_warning_located_and_compiles(tmp_path) -> None:
    """End to end: the issue's example, a plan placing a node that folds away."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from typer.testing import CliRunner

    from edgec.cli import app

    nodes = [helper.make_node("Relu", ["x"], ["r"], name="relu"),
             helper.make_node("Shape", ["r"], ["s"], name="/detect/Shape"),
             helper.make_node("Concat", ["s", "tail"], ["target"], name="/detect/Concat", axis=0),
             helper.make_node("Reshape", ["r", "target"], ["y"], name="/detect/Reshape")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(np.array([1], np.int64), "tail")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "m.onnx")
    plan = tmp_path / "plan.edge"
    plan.write_text('device a { cores 1 }\ndevice b { cores 1 }\nplace relu on a\nplace ["/detect/Concat"] on b\n'
                    "place * on b\n")
    result = CliRunner().invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(plan), "-o", str(tmp_path / "out"),
                                      "--input-shape", "x=2,4"])
    assert result.exit_code == 0, result.output
    assert (f"warning: {plan}:4:8: node '/detect/Concat' was folded into a constant at load time; it needs no "
            "placement") in result.stderr
    assert "compiled 2 stages" in result.stdout
