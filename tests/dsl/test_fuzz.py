"""Property tests: no input makes the parser fail with anything but a located PlanError, and
generated plans parse back to what was generated."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgec.compiler.diagnostics import PlanError
from edgec.dsl import Plan, parse_plan
from edgec.dsl.ast import NameSel, RangeSel, format_name

VALID = """\
model "m.onnx"
input images [1, 3, 224, 224]
device cam { arch x86_64 cores 2 mem 2GiB }
device hub { arch aarch64 cores 6 gpu cuda }
link cam <-> hub { bandwidth 100Mbit latency 2ms }
place conv1 .. "layer/3" on cam.cpu threads 2
place * on hub.gpu
split fc6 by output into 2 ratio 3:1 on cam, hub merge on hub
split c3 by spatial into 2x2 on hub.gpu
quantize "layer4/*" int8 per_tensor calibrate "calib/"
prune "res4*" channels 30% by l1
cdc fc6 parity 1 on cam
"""

TOKENS = [
    "model", "input", "device", "link", "place", "split", "quantize", "prune", "cdc", "on", "threads", "by",
    "into", "ratio", "merge", "per_channel", "calibrate", "parity", "wire", "cam", "hub", "conv1", "cpu",
    '"x/y"', '"a*"', '"', "..", ".", ",", "[", "]", "{", "}", "*", ":", "<->", "->", "2", "3x2", "2GiB",
    "30%", "2ms", "100Mbit", "1.5", "#c", "\n", " ", "\t", "\r\n", "@", "'", "\\", "\u00e9", "\x00",
]

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        result = parse_plan(text, "fuzz.edge")
    except PlanError as error:
        assert error.span is not None, error
        assert 1 <= error.span.line <= text.count("\n") + 1, (error.span, text)
        assert error.span.column >= 1 and error.span.source_line is not None
        assert error.span.source_line.removesuffix("\r") == text.split("\n")[error.span.line - 1].removesuffix("\r")
        for internal in ("__ANON", "$END"):
            assert internal not in error.message or internal in text
        error.format()
    else:
        assert isinstance(result, Plan)


@SETTINGS
@given(st.text())
def test_arbitrary_text(text: str) -> None:
    check(text)


@SETTINGS
@given(st.lists(st.sampled_from(TOKENS), max_size=40).map(" ".join))
def test_token_soup(text: str) -> None:
    check(text)


@SETTINGS
@given(st.data())
def test_mutations_of_a_valid_plan(data: st.DataObject) -> None:
    text = VALID
    for _ in range(data.draw(st.integers(1, 4))):
        start = data.draw(st.integers(0, len(text)))
        end = data.draw(st.integers(start, min(len(text), start + 12)))
        insert = data.draw(st.one_of(st.just(""), st.sampled_from(TOKENS), st.text(max_size=4)))
        text = text[:start] + insert + text[end:]
    check(text)


def test_valid_plan_parses() -> None:
    assert len(parse_plan(VALID).statements) == 12


node_names = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,8}", fullmatch=True),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters='\n*?['), min_size=1, max_size=12),
)


@SETTINGS
@given(st.lists(st.tuples(node_names, st.one_of(st.none(), node_names), st.sampled_from(["a", "b"]),
                          st.one_of(st.none(), st.sampled_from(["cpu", "gpu", "vta"])),
                          st.one_of(st.none(), st.integers(1, 64))), max_size=6))
def test_generated_places_round_trip(places: list) -> None:
    lines = ["device a {}", "device b {}"]
    for start, end, device, resource, threads in places:
        selector = format_name(start) + (f" .. {format_name(end)}" if end is not None else "")
        target = device + (f".{resource}" if resource else "")
        lines.append(f"place {selector} on {target}" + (f" threads {threads}" if threads else ""))
    plan = parse_plan("\n".join(lines))
    assert len(plan.places) == len(places)
    for stmt, (start, end, device, resource, threads) in zip(plan.places, places):
        expected = NameSel(start) if end is None else RangeSel(NameSel(start), NameSel(end))
        assert stmt.selector == expected
        assert (stmt.target.device, stmt.target.resource, stmt.threads) == (device, resource, threads)


@SETTINGS
@given(st.integers(2, 8), st.booleans(), st.sampled_from(["output", "input", "channel", "filter"]))
def test_generated_splits_round_trip(parts: int, with_ratio: bool, kind: str) -> None:
    ratio = list(range(1, parts + 1)) if with_ratio else None
    text = f"split n by {kind} into {parts}" + (" ratio " + ":".join(map(str, ratio)) if ratio else "")
    text += " on " + ", ".join(f"d{i}.cpu" for i in range(parts))
    (split,) = parse_plan(text).splits
    assert (split.kind, split.parts, split.ratio, len(split.targets)) == (kind, parts, ratio, parts)
