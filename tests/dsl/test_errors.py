"""Every mistake in a plan is a PlanError at the right line and column, in human words."""

from __future__ import annotations

import pytest

from edgec.compiler.diagnostics import PlanError
from edgec.dsl import parse_plan

DEVICES = "device cam { cores 2 }\ndevice hub { gpu cuda }\n"


def error_of(text: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        parse_plan(text, "plan.edge")
    assert info.value.span is not None
    return info.value


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("place conv1 .. on cam", "unexpected 'cam'; expected 'on'", 1, 19),  # `on` is the range end here
        ("place conv1 .. ", "unexpected end of input; expected one of: a name, a quoted string", 1, 15),
        ("place conv1 on", "unexpected end of input; expected a name", 1, 15),
        ("place conv1 cam", "unexpected 'cam'; expected 'on'", 1, 13),
        ("place x on a.cpu.gpu", "unexpected '.'; expected one of: 'threads', end of input, a statement", 1, 17),
        ("place x on a threads 1.5", "unexpected '1.5'; expected an integer", 1, 22),
        ("place @ on a", "unexpected '@'; expected one of: '*', '[', a name, a quoted string", 1, 7),
        ("link a <- b", "unexpected '<-'; expected one of: '->', '<->'", 1, 8),
        ('model "resnet', "unterminated string", 1, 7),
        ("place 'x' on a", "double quotes", 1, 7),
        ("device a { cores 2", "unexpected end of input; expected one of: '}', a name", 1, 19),
        ("split x by output into 3x on a", "unexpected '3x'", 1, 24),
        ("\n\nplace x on a threads 2 threads 3", "unexpected 'threads'", 3, 24),
    ],
)
def test_syntax_errors(text: str, message: str, line: int, column: int) -> None:
    error = error_of(text)
    assert message in error.message
    assert (error.span.line, error.span.column) == (line, column)
    assert "__ANON" not in error.message and "$END" not in error.message


@pytest.mark.parametrize(
    ("text", "message", "suggestion"),
    [
        ("plase conv1 on cam", "expected one of: end of input, a statement", "place"),
        ("quantize x int8 per_chanel", "unexpected 'per_chanel'", "per_channel"),
        ("split fc6 by outptu into 3 on a", "unknown split kind 'outptu'", "output"),
        ("device a { memory 2GiB }", "unknown device property 'memory'", "mem"),
        ("device a {}\nlink a <-> b { bandwith 1Mbit }", "unknown link property 'bandwith'", "bandwidth"),
        ("device a { mem 2Gib }", "unknown unit 'Gib'", "GiB"),
        ("quantize wire int9", "unknown quantization type 'int9'", "int8"),
        ("prune x chanels 30%", "unknown prune target 'chanels'", "channels"),
        ("prune x channels 30% by l_1", "unknown prune metric 'l_1'", "l1"),
        (DEVICES + "place x on cma.gpu", "unknown device 'cma'", "cam"),
        (DEVICES + "link cam <-> hbu", "link to undeclared device 'hbu'", "hub"),
    ],
)
def test_errors_with_suggestions(text: str, message: str, suggestion: str) -> None:
    error = error_of(text)
    assert message in error.message
    assert error.suggestion == suggestion


@pytest.mark.parametrize(
    ("text", "message", "line", "column"),
    [
        ("device a { mem 2ms }", "'mem' expects a size (e.g. 512MiB), got a time '2ms'", 1, 16),
        ("device a { mem 2048 }", "'mem' needs a unit", 1, 16),
        ("device a {}\nlink a -> a { latency 1Mbit }", "'latency' expects a time", 2, 23),
        ("device a { cores two }", "'cores' expects a positive integer", 1, 18),
        ("device a { cores 0 }", "'cores' must be at least 1", 1, 18),
        ("device a { arch 64 }", "'arch' expects a name or a quoted string", 1, 17),
        ("device a { cores 2 cores 3 }", "duplicate property 'cores'", 1, 20),
        ("device a {}\ndevice a {}", "device 'a' is declared twice", 2, 8),
        ("device a {}\ndevice b {}\nlink a <-> b\nlink b -> a", "link b -> a is declared twice", 4, 1),
        ("device a {}\nlink a <-> a", "two different devices", 2, 1),
        ('model "a"\nmodel "b"', "names a model twice", 2, 1),
        ("input x [1]\ninput x [2]", "input 'x' is given twice", 2, 1),
        ("input x [1, 0]", "a dimension must be at least 1", 1, 13),
        ("split x by output into 3 on a, b", "needs 3 targets (or one target for all parts), got 2", 1, 29),
        ("split x by output into 1 on a", "at least 2 parts", 1, 24),
        ("split x by output into 2x2 on a", "needs 'by spatial'", 1, 24),
        ("split x by spatial into 1x1 on a", "at least 2 parts", 1, 25),
        ("split x by input into 3 ratio 2:1 on a", "ratio has 2 entries but the split has 3 parts", 1, 31),
        ("split x by spatial into 2x2 ratio 1:1:1:1 on a", "cannot be combined with a grid", 1, 35),
        ("split x by input into 2 ratio 0:1 on a", "a ratio entry must be at least 1", 1, 31),
        ("prune x channels 100%", "between 0% and 100%", 1, 18),
        ("prune x channels 30", "needs a unit", 1, 18),
        ("prune x filters 3ms", "expects a percentage", 1, 17),
        ("cdc x parity 0 on a", "parity must be at least 1", 1, 14),
        ("cdc x parity 2 on a, b, c", "parity 2 needs 2 targets", 1, 19),
        ("place x on a threads 0", "threads must be at least 1", 1, 22),
        ("place " + "9" * 50 + " on a", "unexpected '9999", 1, 7),
        ("input x [" + "9" * 50 + "]", "a dimension must be at most 2147483647, got 999999999999… (50 digits)", 1, 10),
    ],
)
def test_semantic_errors(text: str, message: str, line: int, column: int) -> None:
    error = error_of(text)
    assert message in error.message
    assert (error.span.line, error.span.column) == (line, column)


def test_error_format_shows_line_and_caret() -> None:
    error = error_of("device cam { cores 2 }\n\nplace x on cam.gpu\nplace y on cma")
    assert error.format() == (
        "error: plan.edge:4:12: unknown device 'cma'; did you mean 'cam'?\n"
        "    place y on cma\n"
        "               ^^^"
    )


def test_duplicate_device_hint_names_the_first() -> None:
    error = error_of("device a {}\n\ndevice a {}")
    assert error.hint == "first declared at plan.edge:1:8"


def test_targets_unchecked_when_no_device_is_declared() -> None:
    assert parse_plan("place x on anywhere.gpu").places[0].target.device == "anywhere"


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("device a { cores 99999999999999999999999 }", "'cores' must be at most 4096, got 99999999999999999999999", 18),
        ("device a { cores 4097 }", "'cores' must be at most 4096, got 4097", 18),
        ("device a { slots 100000 }", "'slots' must be at most 4096, got 100000", 18),
        ("device a { mem 2000000TiB }", "'mem' must be at most 1PiB, got '2000000TiB'", 16),
        ("device a {}\ndevice b {}\nlink a -> b { bandwidth 0Mbit }", "'bandwidth' must be more than 0", 25),
        ("place x on a threads 5000", "threads must be at most 4096, got 5000", 22),
        ("split x by output into 1025 on a", "the number of parts must be at most 1024, got 1025", 24),
        ("split x by spatial into 33x32 on a", "a 33x32 grid makes 1056 parts; a split has at most 1024", 25),
        ("split x by spatial into 2x99999 on a", "a grid dimension must be at most 1024, got 99999", 25),
        ("split x by input into 2 ratio 1:1000001 on a", "a ratio entry must be at most 1000000, got 1000001", 33),
        ("input x [1, 2147483648]", "a dimension must be at most 2147483647, got 2147483648", 13),
        ("cdc x parity 2000 on a", "parity must be at most 1024, got 2000", 14),
        ("device a { cores 0004 }", None, 0),
    ],
)
def test_integers_are_bounded_with_a_located_error(text: str, message: str | None, column: int) -> None:
    if message is None:
        assert parse_plan(text, "plan.edge").devices[0].props["cores"].value == 4
        return
    error = error_of(text)
    assert message in error.message, error.message
    assert error.span.column == column
