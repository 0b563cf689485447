"""Units on plan numbers, normalized once so nothing downstream ever sees a unit string.

Sizes become int bytes, rates float bits per second, times float seconds, powers float watts
and percentages a float fraction (30% -> 0.3). Decimal (KB, MB, Mbit) and binary (KiB, MiB) prefixes are both
accepted; arithmetic is exact until the final conversion.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from edgec.compiler.diagnostics import PlanError, SourceSpan, closest

UnitKind = Literal["bytes", "rate", "time", "fraction", "power"]

KIND_WORDS: dict[str, str] = {
    "bytes": "a size (e.g. 512MiB)",
    "rate": "a rate (e.g. 100Mbit)",
    "time": "a time (e.g. 2ms)",
    "fraction": "a percentage (e.g. 30%)",
    "power": "a power (e.g. 5W)",
}

_K, _M, _G, _T = 10**3, 10**6, 10**9, 10**12
_Ki, _Mi, _Gi, _Ti = 2**10, 2**20, 2**30, 2**40

UNITS: dict[str, tuple[UnitKind, Fraction]] = {
    **{u: ("bytes", Fraction(f)) for u, f in {
        "B": 1, "KB": _K, "MB": _M, "GB": _G, "TB": _T, "KiB": _Ki, "MiB": _Mi, "GiB": _Gi, "TiB": _Ti,
    }.items()},
    **{u: ("rate", Fraction(f)) for u, f in {
        "bit": 1, "Kbit": _K, "kbit": _K, "Mbit": _M, "Gbit": _G,
        "bps": 1, "Kbps": _K, "kbps": _K, "Mbps": _M, "Gbps": _G,
    }.items()},
    **{f"{u}/s": ("rate", Fraction(8 * f)) for u, f in {
        "B": 1, "KB": _K, "MB": _M, "GB": _G, "KiB": _Ki, "MiB": _Mi, "GiB": _Gi,
    }.items()},
    "ns": ("time", Fraction(1, 10**9)),
    "us": ("time", Fraction(1, 10**6)),
    "ms": ("time", Fraction(1, 10**3)),
    "s": ("time", Fraction(1)),
    "%": ("fraction", Fraction(1, 100)),
    "mW": ("power", Fraction(1, 1000)),
    "W": ("power", Fraction(1)),
    "kW": ("power", Fraction(1000)),
}

_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(.*)", re.DOTALL)
_MAX_DIGITS = 30


@dataclass(frozen=True)
class Quantity:
    """A normalized number: `value` in the base unit of `kind`."""

    value: int | float
    kind: UnitKind


def parse_int(text: str, span: SourceSpan | None = None) -> int:
    """An unsigned integer literal, refusing absurdly long ones instead of hanging or overflowing."""
    if len(text) > _MAX_DIGITS:
        raise PlanError(f"number '{text[:12]}…' is too large", span)
    return int(text)


def _shown(text: str) -> str:
    return text if len(text) <= _MAX_DIGITS else f"{text[:12]}… ({len(text)} digits)"


def bounded_int(text: str, what: str, low: int, high: int, span: SourceSpan | None = None) -> int:
    """An unsigned integer literal within [low, high]; `what` names it in the error (`'cores'`)."""
    if len(text.lstrip("0")) > len(str(high)) or int(text) > high:
        raise PlanError(f"{what} must be at most {high}, got {_shown(text)}", span)
    value = int(text)
    if value < low:
        raise PlanError(f"{what} must be at least {low}, got {value}", span)
    return value


def parse_quantity(text: str, span: SourceSpan | None = None) -> Quantity:
    """`2GiB`, `100Mbit`, `2ms`, `30%` -> normalized `Quantity`; unknown unit -> PlanError."""
    match = _QUANTITY.fullmatch(text)
    if not match or not match.group(2):
        raise PlanError(f"expected a number with a unit, got '{text}'", span)
    number, unit = match.groups()
    if len(number) > _MAX_DIGITS:
        raise PlanError(f"number '{number[:12]}…' is too large", span)
    if unit not in UNITS:
        raise PlanError(f"unknown unit '{unit}' in '{text}'", span, suggestion=closest(unit, UNITS))
    kind, factor = UNITS[unit]
    exact = Fraction(number) * factor
    return Quantity(round(exact) if kind == "bytes" else float(exact), kind)


def expect_quantity(text: str, kind: UnitKind, what: str, span: SourceSpan | None = None) -> int | float:
    """The normalized value of `text`, which must be a quantity of `kind` (`what` names it in errors)."""
    if text.isdigit():
        raise PlanError(f"{what} needs a unit: expected {KIND_WORDS[kind]}, got '{text}'", span)
    quantity = parse_quantity(text, span)
    if quantity.kind != kind:
        raise PlanError(
            f"{what} expects {KIND_WORDS[kind]}, got {KIND_WORDS[quantity.kind].split(' (')[0]} '{text}'", span
        )
    return quantity.value
