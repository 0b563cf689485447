"""The plan language parses into the documented AST, with normalized units and exact spans."""

from __future__ import annotations

import pytest

from edgec.compiler.diagnostics import UsageError
from edgec.dsl import Plan, parse_plan
from edgec.dsl.ast import (
    AllSel, CdcStmt, GlobSel, ListSel, NameSel, PlaceStmt, PruneStmt, QuantizeStmt, RangeSel, SplitStmt, Target,
    format_name,
)
from edgec.dsl.parser import parse_plan_file
from edgec.dsl.units import parse_quantity

FULL = """\
model "resnet50.onnx"                       # optional
input "images" [1, 3, 224, 224]
device cam  { arch x86_64  cores 2 mem 2GiB }
device hub  { arch aarch64 cores 6 mem 8GiB gpu cuda }
device fpga { arch armv7   cores 2 mem 512MiB accel vta }
device box  { arch x86_64 target "llvm -mcpu=skylake" host "10.0.0.5" slots 4 }
link cam <-> hub  { bandwidth 100Mbit latency 2ms }
link hub -> fpga
place conv1 .. res3b_relu on cam.cpu threads 2
place * on hub.gpu
place [a, "b/c"] on hub
split fc6 by output into 3 on cam.cpu, hub.cpu, fpga.vta
split conv3_1 .. pool3 by spatial into 2x2 on cam, hub, fpga, box merge on hub.cpu
split fc6 by input into 3 ratio 2:1:1 on cam, hub, box
quantize hub int8 per_channel calibrate "calib/"
quantize wire int8
quantize "layer4/*" int8 per_tensor
prune "res4*" channels 30% by l1
cdc fc6 parity 1 on fpga.cpu
"""


@pytest.fixture(scope="module")
def full() -> Plan:
    return parse_plan(FULL, "plan.edge")


def test_statement_views(full: Plan) -> None:
    assert full.model is not None and full.model.path == "resnet50.onnx"
    assert [(i.name, i.dims) for i in full.inputs] == [("images", [1, 3, 224, 224])]
    assert [d.name for d in full.devices] == ["cam", "hub", "fpga", "box"]
    assert (len(full.links), len(full.places), len(full.splits)) == (2, 3, 3)
    assert (len(full.quantizes), len(full.prunes), len(full.cdcs)) == (3, 1, 1)
    assert full.filename == "plan.edge" and full.source == FULL


def test_device_properties_are_normalized(full: Plan) -> None:
    hub, fpga, box = full.device_map["hub"], full.device_map["fpga"], full.device_map["box"]
    assert hub.props["mem"].value == 8 * 2**30 and hub.props["mem"].unit_kind == "bytes"
    assert hub.props["gpu"].value == "cuda" and hub.props["cores"].value == 6
    assert fpga.props["accel"].value == "vta"
    assert box.props["target"].value == "llvm -mcpu=skylake" and box.props["slots"].value == 4


def test_links(full: Plan) -> None:
    both, one = full.links
    assert (both.a, both.b, both.bidirectional) == ("cam", "hub", True)
    assert both.props["bandwidth"].value == pytest.approx(100e6) and both.props["latency"].value == pytest.approx(0.002)
    assert (one.a, one.b, one.bidirectional, one.props) == ("hub", "fpga", False, {})


def test_places(full: Plan) -> None:
    rng, star, lst = full.places
    assert rng == PlaceStmt(RangeSel(NameSel("conv1"), NameSel("res3b_relu")), Target("cam", "cpu"), 2)
    assert star.selector == AllSel() and star.target == Target("hub", "gpu")
    assert lst.selector == ListSel([NameSel("a"), NameSel("b/c")])
    assert lst.target.resource is None and lst.target.effective_resource == "cpu"


def test_splits(full: Plan) -> None:
    out, grid, ratio = full.splits
    assert (out.kind, out.parts, out.grid, out.ratio) == ("output", 3, None, None)
    assert [str(t) for t in out.targets] == ["cam.cpu", "hub.cpu", "fpga.vta"]
    assert (grid.kind, grid.parts, grid.grid, grid.merge) == ("spatial", 4, (2, 2), Target("hub", "cpu"))
    assert ratio.ratio == [2, 1, 1] and ratio.merge is None


def test_quantize_subjects(full: Plan) -> None:
    device, wire, glob = full.quantizes
    assert (device.subject, device.subject_kind, device.granularity, device.calibrate) == (
        "hub", "device_or_node", "per_channel", "calib/")
    assert (wire.subject, wire.subject_kind, wire.granularity) == ("wire", "wire", None)
    assert glob.subject == GlobSel("layer4/*") and glob.subject_kind == "selector"


def test_prune_and_cdc(full: Plan) -> None:
    assert full.prunes == [PruneStmt(GlobSel("res4*"), "channels", pytest.approx(0.3), "l1")]
    assert full.cdcs == [CdcStmt(NameSel("fc6"), 1, [Target("fpga", "cpu")])]


def test_spans_point_at_the_construct(full: Plan) -> None:
    sel = full.places[0].selector
    assert sel.span is not None
    assert (sel.span.line, sel.span.column, sel.span.end_column) == (9, 7, 26)
    assert sel.span.source_line == "place conv1 .. res3b_relu on cam.cpu threads 2"
    assert sel.start.span is not None and (sel.start.span.column, sel.start.span.end_column) == (7, 12)
    target = full.places[0].target
    assert target.span is not None and (target.span.column, target.span.end_column) == (30, 37)


def test_spans_do_not_affect_equality() -> None:
    a = parse_plan("place x on a")
    b = parse_plan("\n\n   place   x\n on\n a   # moved around\n")
    assert a.statements == b.statements
    assert a.places[0].span != b.places[0].span


@pytest.mark.parametrize("name", ["input", "model", "on", "by", "parity", "device", "split"])
def test_keywords_are_names_where_a_name_is_expected(name: str) -> None:
    plan = parse_plan(f"place {name} on cam\nplace [{name}, x] on cam\n")
    assert plan.places[0].selector == NameSel(name)
    assert plan.places[1].selector == ListSel([NameSel(name), NameSel("x")])


def test_keyword_prefix_does_not_split_a_name() -> None:
    plan = parse_plan("place placement on online")
    assert plan.places[0].selector == NameSel("placement") and plan.places[0].target == Target("online")


def test_quoted_names_escapes_and_globs() -> None:
    plan = parse_plan(r'place ["/layer1/conv:0", "a\"b", "x\\y", "l4/*", "r?", "c[12]"] on d')
    items = plan.places[0].selector.items
    assert items[:3] == [NameSel("/layer1/conv:0"), NameSel('a"b'), NameSel("x\\y")]
    assert items[3:] == [GlobSel("l4/*"), GlobSel("r?"), GlobSel("c[12]")]


def test_quoted_range_ends_and_dashed_names() -> None:
    plan = parse_plan('device jetson-nx {}\nplace "/a/b" ..conv-2 on jetson-nx.gpu')
    assert plan.places[0].selector == RangeSel(NameSel("/a/b"), NameSel("conv-2"))
    assert plan.places[0].target == Target("jetson-nx", "gpu")


def test_single_target_split_and_cdc_take_all_parts() -> None:
    plan = parse_plan("split fc by channel into 4 on hub.gpu\ncdc fc parity 2 on hub")
    assert plan.splits[0].parts == 4 and plan.splits[0].targets == [Target("hub", "gpu")]
    assert plan.cdcs[0].parity == 2 and plan.cdcs[0].targets == [Target("hub")]


def test_empty_and_comment_only_plans() -> None:
    assert parse_plan("").statements == []
    assert parse_plan("# nothing\n\n   # here\n").statements == []


def test_crlf_line_endings() -> None:
    plan = parse_plan("device a { cores 2 }\r\nplace x on a\r\n")
    assert plan.places[0].span is not None and plan.places[0].span.source_line == "place x on a"


def test_trailing_commas_in_lists() -> None:
    plan = parse_plan("input x [1, 2,]\nplace [a, b,] on d")
    assert plan.inputs[0].dims == [1, 2] and len(plan.places[0].selector.items) == 2


@pytest.mark.parametrize(
    ("text", "value", "kind"),
    [
        ("2GiB", 2 * 2**30, "bytes"), ("1.5KB", 1500, "bytes"), ("512MiB", 512 * 2**20, "bytes"), ("3B", 3, "bytes"),
        ("100Mbit", 100e6, "rate"), ("1Gbps", 1e9, "rate"), ("10MB/s", 80e6, "rate"), ("64kbit", 64e3, "rate"),
        ("2ms", 0.002, "time"), ("250us", 0.00025, "time"), ("1s", 1.0, "time"),
        ("30%", 0.3, "fraction"), ("12.5%", 0.125, "fraction"),
    ],
)
def test_units_normalize(text: str, value: float, kind: str) -> None:
    quantity = parse_quantity(text)
    assert quantity.kind == kind and quantity.value == pytest.approx(value)
    assert isinstance(quantity.value, int) == (kind == "bytes")


def test_format_name_round_trips_through_the_parser() -> None:
    names = ["conv1", "wire", "input", "a/b:0", 'q"uote', "back\\slash", "9lives", "x-"]
    text = "place [" + ", ".join(format_name(n) for n in names) + "] on d"
    assert [s.name for s in parse_plan(text).places[0].selector.items] == names
    assert format_name("conv1") == "conv1" and format_name("wire") == '"wire"'


def test_parse_plan_file(tmp_path) -> None:
    path = tmp_path / "plan.edge"
    path.write_text("place x on a\n")
    plan = parse_plan_file(path)
    assert plan.filename == str(path) and len(plan.places) == 1
    assert plan.places[0].span is not None and plan.places[0].span.filename == str(path)


def test_parse_plan_file_missing(tmp_path) -> None:
    missing = tmp_path / "nope.edge"
    with pytest.raises(UsageError, match="nope.edge"):
        parse_plan_file(missing)


def test_quantize_statement_shapes() -> None:
    plan = parse_plan('quantize [a, b] fp16\nquantize a .. b int8 calibrate "c"\nquantize "w" uint8')
    first, second, third = plan.quantizes
    assert first == QuantizeStmt(ListSel([NameSel("a"), NameSel("b")]), "selector", "fp16")
    assert second.subject == RangeSel(NameSel("a"), NameSel("b")) and second.calibrate == "c"
    assert third.subject == NameSel("w") and third.subject_kind == "selector"


def test_split_statement_fields_default() -> None:
    (split,) = parse_plan("split x by filter into 2 on a, b").splits
    assert split == SplitStmt(NameSel("x"), "filter", 2, None, None, [Target("a"), Target("b")], None)
