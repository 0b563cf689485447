"""Plan text -> `Plan`, with every mistake reported as a located `PlanError`.

Parsing is lark LALR(1) with the contextual lexer (fast, and its errors know exactly which
tokens were acceptable). Lark's exceptions are translated into human words here and never
escape. The accepted tree becomes statements in `plan_builder.py`, which also runs the checks
that need no model: property names and units, split and CDC arity, percent ranges, duplicate
and undeclared devices. Checks that need the model
(unknown nodes, overlapping places, split kinds an op cannot take) belong to the lowering.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lark import Lark
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError
from lark.lexer import PatternStr

from edgec.compiler.diagnostics import PlanError, UsageError, closest
from edgec.dsl.ast import Plan
from edgec.dsl.plan_builder import PlanBuilder, SourceMap, check_plan

STATEMENT_KEYWORDS = ("model", "input", "device", "link", "place", "split", "quantize", "prune", "cdc", "replicate")
_TERMINAL_WORDS = {
    "NAME": "a name", "STRING": "a quoted string", "INT": "an integer", "QUANTITY": "a number with a unit",
    "GRID": "a grid like 2x2", "$END": "end of input",
}


@functools.cache
def _lark() -> Lark:
    grammar = (Path(__file__).parent / "grammar.lark").read_text()
    return Lark(grammar, parser="lalr", lexer="contextual", propagate_positions=True, cache=True)


def parse_plan(text: str, filename: str = "<plan>") -> Plan:
    """Parse and check a plan; any mistake in it raises `PlanError` with a span."""
    source = SourceMap(text, filename)
    try:
        tree = _lark().parse(text)
    except UnexpectedInput as e:
        raise _syntax_error(e, source) from None
    try:
        statements = PlanBuilder(source).transform(tree)
    except VisitError as e:
        raise e.orig_exc from None
    check_plan(statements, source)
    return Plan(statements, filename, text)


def parse_plan_file(path: str | Path) -> Plan:
    """`parse_plan` on a file; a missing or unreadable file is a `UsageError` naming it."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read plan file '{path}': {getattr(e, 'strerror', None) or e}") from None
    return parse_plan(text, str(path))


# ---- syntax errors -------------------------------------------------------------------------------


def _describe(terminal: str) -> str:
    if terminal in _TERMINAL_WORDS:
        return _TERMINAL_WORDS[terminal]
    pattern = _lark().get_terminal(terminal).pattern
    if isinstance(pattern, PatternStr):
        return f"'{pattern.value}'"
    keyword = re.match(r"[a-z_]+", pattern.value)
    return f"'{keyword.group()}'" if keyword else terminal.lower()


def _expected(e: UnexpectedInput, fallback: set[str]) -> tuple[str, list[str]]:
    """'expected …' in human words, and the bare keywords among them (for did-you-mean)."""
    try:
        terminals = set(e.interactive_parser.accepts()) if getattr(e, "interactive_parser", None) else fallback
    except Exception:  # the error is already known; a vaguer "expected" list is the worst outcome
        terminals = fallback
    words = sorted({_describe(t) for t in terminals - {"WS", "COMMENT"}}, key=lambda w: (not w.startswith("'"), w))
    keywords = [w.strip("'") for w in words if w.startswith("'") and w[1:-1].isidentifier()]
    statement_words = [f"'{k}'" for k in STATEMENT_KEYWORDS]
    if all(k in words for k in statement_words):
        words = [w for w in words if w not in statement_words] + ["a statement"]
    text = words[0] if len(words) == 1 else "one of: " + ", ".join(words)
    return f"expected {text}", keywords


def _syntax_error(e: UnexpectedInput, source: SourceMap) -> PlanError:
    if isinstance(e, UnexpectedToken) and e.token.type != "$END":
        tok = e.token
        expected, words = _expected(e, set(e.expected))
        shown = tok.value if len(tok.value) <= 30 else tok.value[:27] + "..."
        suggestion = closest(tok.value, words) if tok.type == "NAME" else None
        return PlanError(f"unexpected '{shown}'; {expected}", source.token(tok), suggestion=suggestion)
    if isinstance(e, (UnexpectedToken, UnexpectedEOF)):
        tok = getattr(e, "token", None)
        line, column = (tok.end_line, tok.end_column) if tok is not None and tok.end_line else (1, 1)
        expected, _ = _expected(e, set(e.expected))
        return PlanError(f"unexpected end of input; {expected}", source.span(line, column, line, column + 1))
    if not isinstance(e, UnexpectedCharacters):
        return PlanError("syntax error", source.span(e.line, e.column))
    rest = source.lines[e.line - 1][e.column - 1 :]
    if rest.startswith('"'):
        return PlanError("unterminated string", source.span(e.line, e.column))
    if rest.startswith("'"):
        span = source.span(e.line, e.column, e.line, e.column + 1)
        return PlanError("quote names and strings with double quotes", span)
    word = re.match(r"[^\s\"#,\[\]{}]{1,30}|.", rest, re.DOTALL)
    shown = word.group() if word else ""
    expected, _ = _expected(e, set(e.allowed or ()))
    span = source.span(e.line, e.column, e.line, e.column + max(len(shown), 1))
    what = f"'{shown}'" if shown.isprintable() else f"character {shown!r}"
    return PlanError(f"unexpected {what}; {expected}", span)
