"""Parse trees -> `Plan` records: normalized values, spans on everything, and the checks that need no model.

Split from the parser so each file stays small: `parser.py` owns lark and the translation of
its syntax errors; this module turns an accepted parse tree into statements and runs the
checks that need no model (property names and units, split and CDC arity, percent ranges,
duplicate and undeclared devices).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from lark import Token, Transformer, v_args

from edgec.compiler.diagnostics import PlanError, SourceSpan, closest
from edgec.dsl.ast import (
    GLOB_CHARS, AllSel, CdcStmt, DeviceStmt, GlobSel, InputStmt, LinkStmt, ListSel, ModelStmt, NameSel,
    PlaceStmt, Property, PruneStmt, QuantizeStmt, RangeSel, ReplicateStmt, Selector, SplitStmt, Statement, Target,
)
from edgec.dsl.units import bounded_int, expect_quantity
from ..compiler.split_rules import SPLIT_WORDS

SPLIT_KINDS = SPLIT_WORDS
DTYPES = ("int8", "uint8", "fp16", "bf16")
QUANT_METHODS = ("minmax", "percentile", "entropy", "mse")
PRUNE_WHAT = ("channels", "filters")
PRUNE_METRICS = ("l1", "l2", "bn_gamma", "activation", "contribution")
# Property name -> value kind: "word" (name or string), "count" (integer >= 1) or a unit kind.
DEVICE_PROPS = {
    "arch": "word", "cores": "count", "mem": "bytes", "gpu": "word", "accel": "word",
    "target": "word", "host": "word", "slots": "count",
    "power_active": "power", "power_idle": "power", "speed": "fraction", "profile": "word",
}
LINK_PROPS = {"bandwidth": "rate", "latency": "time"}
# Sane ranges for every number a plan gives: far beyond any real platform or split, and small
# enough that nothing downstream (int64 fields, MPI ranks, per-part buffers) can overflow.
MAX_CORES = 4096
MAX_PARTS = 1024
MAX_RATIO = 1_000_000
MAX_DIM = 2**31 - 1
MAX_MEM_BYTES = 2**50
MAX_RATE_BPS = 1e15
COUNT_LIMITS = {"cores": MAX_CORES, "slots": MAX_CORES}


class SourceMap:
    """Turns lark positions into `SourceSpan`s carrying the full source line."""

    def __init__(self, text: str, filename: str) -> None:
        self.lines = text.split("\n")
        self.filename = filename

    def span(self, line: int, column: int, end_line: int | None = None, end_column: int | None = None) -> SourceSpan:
        line, column = min(max(line, 1), len(self.lines)), max(column, 1)
        text = self.lines[line - 1].removesuffix("\r")
        if end_line != line or end_column is None:
            end_column = len(text) + 1
        return SourceSpan(self.filename, line, column, max(end_column, column + 1), text)

    def token(self, tok: Token) -> SourceSpan:
        return self.span(tok.line, tok.column, tok.end_line, tok.end_column)

    def meta(self, meta: Any) -> SourceSpan:
        return self.span(meta.line, meta.column, meta.end_line, meta.end_column)


# ---- tree -> AST ---------------------------------------------------------------------------------


def _unquote(tok: Token) -> str:
    if tok.type != "STRING":
        return str(tok)
    return re.sub(r'\\(["\\])', r"\1", tok[1:-1])


def _after(children: list, keyword: str, skip: int = 1) -> Any:
    for i, child in enumerate(children):
        if isinstance(child, Token) and child.type == keyword:
            return children[i + skip]
    return None


def _check_choice(tok: Token, choices: tuple[str, ...], what: str, span: SourceSpan) -> str:
    if tok not in choices:
        raise PlanError(
            f"unknown {what} '{tok}' (expected one of: {', '.join(choices)})", span, suggestion=closest(tok, choices)
        )
    return str(tok)


@v_args(meta=True)
class PlanBuilder(Transformer):
    """Builds AST records and runs the checks local to one statement."""

    def __init__(self, source: SourceMap) -> None:
        super().__init__()
        self.src = source

    def _int(self, tok: Token, what: str, maximum: int, minimum: int = 1) -> int:
        return bounded_int(tok, what, minimum, maximum, self.src.token(tok))

    def _sel(self, item: Token | Selector) -> Selector:
        if not isinstance(item, Token):
            return item
        name, span = _unquote(item), self.src.token(item)
        if item.type == "STRING" and GLOB_CHARS & set(name):
            return GlobSel(name, span=span)
        return NameSel(name, span=span)

    def start(self, meta: Any, children: list) -> list[Statement]:
        return children

    def name(self, meta: Any, children: list) -> Token:
        return children[0]

    def all_sel(self, meta: Any, children: list) -> AllSel:
        return AllSel(span=self.src.meta(meta))

    def list_sel(self, meta: Any, children: list) -> ListSel:
        items = [self._sel(c) for c in children if not (isinstance(c, Token) and c.type in ("LSQB", "RSQB"))]
        return ListSel(items, span=self.src.meta(meta))

    def range_sel(self, meta: Any, children: list) -> RangeSel:
        start, end = (NameSel(_unquote(t), span=self.src.token(t)) for t in children)
        return RangeSel(start, end, span=self.src.meta(meta))

    def target(self, meta: Any, children: list) -> Target:
        return Target(str(children[0]), str(children[1]) if len(children) > 1 else None, span=self.src.meta(meta))

    def targets(self, meta: Any, children: list) -> list[Target]:
        return children

    def ratio(self, meta: Any, children: list) -> tuple[list[int], SourceSpan]:
        return [self._int(t, "a ratio entry", MAX_RATIO) for t in children], self.src.meta(meta)

    def dims(self, meta: Any, children: list) -> list[int]:
        return [self._int(t, "a dimension", MAX_DIM) for t in children]

    def prop(self, meta: Any, children: list) -> tuple[Token, Token]:
        return children[0], children[1]

    def model_stmt(self, meta: Any, children: list) -> ModelStmt:
        return ModelStmt(_unquote(children[1]), span=self.src.meta(meta))

    def input_stmt(self, meta: Any, children: list) -> InputStmt:
        return InputStmt(_unquote(children[1]), children[3], span=self.src.meta(meta))

    def _props(self, pairs: list[tuple[Token, Token]], known: dict[str, str], owner: str) -> dict[str, Property]:
        props: dict[str, Property] = {}
        for key, value in pairs:
            span = self.src.token(key)
            if key in props:
                raise PlanError(f"duplicate property '{key}' in {owner}", span)
            if key not in known:
                raise PlanError(
                    f"unknown {owner.split()[0]} property '{key}' (known: {', '.join(known)})",
                    span, suggestion=closest(key, known),
                )
            props[str(key)] = self._prop_value(key, value, known[key])
        return props

    def _prop_value(self, key: Token, value: Token, kind: str) -> Property:
        span = self.src.token(value)
        if kind == "word":
            if value.type not in ("NAME", "STRING"):
                raise PlanError(f"'{key}' expects a name or a quoted string, got '{value}'", span)
            return Property(str(key), _unquote(value), None, span=span)
        if kind == "count":
            if value.type != "INT":
                raise PlanError(f"'{key}' expects a positive integer, got '{value}'", span)
            return Property(str(key), self._int(value, f"'{key}'", COUNT_LIMITS[str(key)]), None, span=span)
        if value.type not in ("QUANTITY", "INT"):
            raise PlanError(f"'{key}' expects a number with a unit, got '{value}'", span)
        normalized = expect_quantity(value, kind, f"'{key}'", span)  # type: ignore[arg-type]
        if kind == "bytes" and normalized > MAX_MEM_BYTES:
            raise PlanError(f"'{key}' must be at most 1PiB, got '{value}'", span)
        if key == "speed" and not 0 < normalized <= 1000:
            raise PlanError(f"'speed' must be more than 0% and at most 100000%, got '{value}'", span)
        if kind == "rate" and not 0 < normalized <= MAX_RATE_BPS:
            raise PlanError(f"'{key}' must be more than 0 and at most 1000Tbit, got '{value}'", span)
        return Property(str(key), normalized, kind, span=span)  # type: ignore[arg-type]

    def device_stmt(self, meta: Any, children: list) -> DeviceStmt:
        name = children[1]
        props = self._props(children[2:], DEVICE_PROPS, f"device '{name}'")
        return DeviceStmt(str(name), props, span=self.src.token(name))

    def link_stmt(self, meta: Any, children: list) -> LinkStmt:
        a, arrow, b = children[1:4]
        props = self._props(children[4:], LINK_PROPS, f"link '{a} {arrow} {b}'")
        return LinkStmt(str(a), str(b), arrow.type == "BIDIR", props, span=self.src.meta(meta))

    def place_stmt(self, meta: Any, children: list) -> PlaceStmt:
        threads = _after(children, "THREADS")
        return PlaceStmt(
            self._sel(children[1]), children[3], self._int(threads, "threads", MAX_CORES) if threads is not None else None,
            span=self.src.meta(meta),
        )

    def split_stmt(self, meta: Any, children: list) -> SplitStmt:
        kind_tok, count, targets = _after(children, "BY"), _after(children, "INTO"), _after(children, "ON")
        kind = _check_choice(kind_tok, SPLIT_KINDS, "split kind", self.src.token(kind_tok))
        count_span = self.src.token(count)
        grid: tuple[int, int] | None = None
        if count.type == "GRID":
            if kind != "spatial":
                raise PlanError(f"a grid '{count}' needs 'by spatial', not 'by {kind}'", count_span)
            rows, cols = (bounded_int(part, "a grid dimension", 0, MAX_PARTS, count_span) for part in count.split("x"))
            if rows < 1 or cols < 1:
                raise PlanError(f"grid dimensions must be at least 1, got '{count}'", count_span)
            grid, parts = (rows, cols), rows * cols
            if parts > MAX_PARTS:
                raise PlanError(f"a {count} grid makes {parts} parts; a split has at most {MAX_PARTS}", count_span)
        else:
            parts = bounded_int(count, "the number of parts", 0, MAX_PARTS, count_span)
        if parts < 2:
            raise PlanError(f"a split needs at least 2 parts, got {parts}", count_span)
        ratio: list[int] | None = None
        if (found := _after(children, "RATIO")) is not None:
            ratio, ratio_span = found
            if grid is not None:
                raise PlanError("a ratio cannot be combined with a grid split", ratio_span)
            if len(ratio) != parts:
                raise PlanError(f"ratio has {len(ratio)} entries but the split has {parts} parts", ratio_span)
        if len(targets) not in (1, parts):
            raise PlanError(
                f"split into {parts} parts needs {parts} targets (or one target for all parts), got {len(targets)}",
                self._targets_span(targets),
            )
        merge = _after(children, "MERGE", skip=2)
        return SplitStmt(self._sel(children[1]), kind, parts, grid, ratio, targets, merge, span=self.src.meta(meta))

    def _targets_span(self, targets: list[Target]) -> SourceSpan:
        first, last = targets[0].span, targets[-1].span
        assert first is not None and last is not None
        end = last.end_column if last.line == first.line else None
        return self.src.span(first.line, first.column, first.line, end)

    def quantize_stmt(self, meta: Any, children: list) -> QuantizeStmt:
        subject, dtype = children[1], children[2]
        dtype_name = _check_choice(dtype, DTYPES, "quantization type", self.src.token(dtype))
        granularity = next((str(c) for c in children if isinstance(c, Token) and c.type.startswith("PER_")), None)
        calibrate = _after(children, "CALIBRATE")
        method = _after(children, "METHOD")
        method_name = _check_choice(method, QUANT_METHODS, "calibration method", self.src.token(method)) if method else None
        flags = {str(c.type) for c in children if isinstance(c, Token)}
        kind: str
        if isinstance(subject, Token) and subject.type == "NAME":
            kind, value = ("wire", "wire") if subject == "wire" else ("device_or_node", str(subject))
        else:
            kind, value = "selector", self._sel(subject)
        return QuantizeStmt(
            value, kind, dtype_name, granularity,  # type: ignore[arg-type]
            _unquote(calibrate) if calibrate is not None else None, method_name, "CORRECT_BIAS" in flags,
            "EQUALIZE" in flags, span=self.src.meta(meta),
        )

    def prune_stmt(self, meta: Any, children: list) -> PruneStmt:
        what, amount = children[2], children[3]
        what_name = _check_choice(what, PRUNE_WHAT, "prune target", self.src.token(what))
        span = self.src.token(amount)
        fraction = float(expect_quantity(amount, "fraction", "a prune amount", span))
        if not 0.0 <= fraction < 1.0:
            raise PlanError(f"a prune amount must be between 0% and 100% (100% excluded), got {amount}", span)
        metric = _after(children, "BY")
        metric_name = _check_choice(metric, PRUNE_METRICS, "prune metric", self.src.token(metric)) if metric else None
        per_layer = any(isinstance(c, Token) and c.type == "PER_LAYER" for c in children)
        calibrate = _after(children, "CALIBRATE")
        reconstruct = any(isinstance(c, Token) and c.type == "RECONSTRUCT" for c in children)
        return PruneStmt(self._sel(children[1]), what_name, fraction, metric_name, per_layer,
                         _unquote(calibrate) if calibrate is not None else None, reconstruct, span=self.src.meta(meta))

    def cdc_stmt(self, meta: Any, children: list) -> CdcStmt:
        parity = self._int(children[3], "parity", MAX_PARTS)
        targets = children[5]
        if len(targets) not in (1, parity):
            raise PlanError(
                f"parity {parity} needs {parity} targets (or one target for all shards), got {len(targets)}",
                self._targets_span(targets),
            )
        return CdcStmt(self._sel(children[1]), parity, targets, span=self.src.meta(meta))

    def replicate_stmt(self, meta: Any, children: list) -> ReplicateStmt:
        targets = children[3]
        if len(targets) < 2:
            raise PlanError(f"replicate needs at least 2 targets (one replica on each), got {len(targets)}",
                            self._targets_span(targets), hint="list every device a replica runs on: `on a, b`")
        seen: dict[str, Target] = {}
        for target in targets:
            if target.device in seen:
                raise PlanError(f"target '{target.device}' is listed twice; a device runs at most one replica",
                                target.span, hint=f"first listed at {seen[target.device].span}")
            seen[target.device] = target
        return ReplicateStmt(self._sel(children[1]), targets, span=self.src.meta(meta))


# ---- whole-plan checks ---------------------------------------------------------------------------


def check_plan(statements: list[Statement], source: SourceMap) -> None:
    """Checks across statements: single model, unique inputs/devices/links, declared devices."""
    seen: dict[str, Statement] = {}

    def once(key: str, stmt: Statement, message: str) -> None:
        if key in seen:
            first = seen[key].span
            raise PlanError(message, stmt.span, hint=f"first declared at {first}" if first else None)
        seen[key] = stmt

    for stmt in statements:
        if isinstance(stmt, ModelStmt):
            once("model", stmt, "the plan names a model twice")
        elif isinstance(stmt, InputStmt):
            once(f"input:{stmt.name}", stmt, f"input '{stmt.name}' is given twice")
        elif isinstance(stmt, DeviceStmt):
            once(f"device:{stmt.name}", stmt, f"device '{stmt.name}' is declared twice")
    devices = [s.name for s in statements if isinstance(s, DeviceStmt)]
    covered: dict[tuple[str, str], LinkStmt] = {}
    for stmt in statements:
        if isinstance(stmt, LinkStmt):
            _check_link(stmt, devices, covered)
    if not devices:
        return
    for stmt in statements:
        for target in _targets_of(stmt):
            if target.device not in devices:
                raise PlanError(
                    f"unknown device '{target.device}'", target.span, suggestion=closest(target.device, devices)
                )


def _check_link(link: LinkStmt, devices: list[str], covered: dict[tuple[str, str], LinkStmt]) -> None:
    assert link.span is not None
    for end in (link.a, link.b):
        if end not in devices:
            raise PlanError(f"link to undeclared device '{end}'", link.span, suggestion=closest(end, devices))
    if link.a == link.b:
        raise PlanError(f"a link needs two different devices, got '{link.a}' twice", link.span)
    pairs = [(link.a, link.b), (link.b, link.a)] if link.bidirectional else [(link.a, link.b)]
    for pair in pairs:
        if pair in covered:
            first = covered[pair].span
            raise PlanError(f"link {pair[0]} -> {pair[1]} is declared twice", link.span, hint=f"first declared at {first}")
        covered[pair] = link


def _targets_of(stmt: Statement) -> list[Target]:
    getters: dict[type, Callable[[Any], list[Target]]] = {
        PlaceStmt: lambda s: [s.target],
        SplitStmt: lambda s: s.targets + ([s.merge] if s.merge else []),
        CdcStmt: lambda s: s.targets,
        ReplicateStmt: lambda s: s.targets,
    }
    getter = getters.get(type(stmt))
    return getter(stmt) if getter else []
