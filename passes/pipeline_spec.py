"""Text pipeline specs: `split-layer,split,my-pass{threshold=3,mode="fast"},comm-insert`.

The same pass is configured from Python (`MyPass(threshold=3)`) and from a spec, because the
options are the pass's dataclass fields: a value is converted to the field's type (int,
float, bool, str, an Enum, a Literal, a tuple, or `None` for an optional field). Errors point
at the spec with a caret, like plan errors.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import typing
from typing import Any, Literal, get_args, get_origin, get_type_hints

from ..compiler.diagnostics import PlanError, SourceSpan, UsageError, closest
from ..compiler.pass_manager import Pass, options_of
from .registry import pass_class

_NAME = re.compile(r"[A-Za-z_][\w.:-]*")
_VALUE = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|[^,{}]+')


def parse_pipeline(spec: str, origin: str = "--passes") -> list[Pass]:
    """The pass instances a spec names, in its order (the PassManager checks the order)."""
    if not isinstance(spec, str):
        raise UsageError(f"a pipeline spec is a string, not {type(spec).__name__}")
    parser = _Parser(spec, origin)
    return parser.pipeline()


class _Parser:
    def __init__(self, text: str, origin: str) -> None:
        self.text, self.origin, self.pos = text, origin, 0

    def error(self, message: str, start: int, end: int | None = None, **kwargs) -> PlanError:
        span = SourceSpan(self.origin, 1, start + 1, (end if end is not None else start) + 2, self.text)
        return PlanError(message, span, **kwargs)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def pipeline(self) -> list[Pass]:
        passes: list[Pass] = []
        self.skip()
        if self.pos == len(self.text):
            raise self.error("the pipeline is empty", 0)
        while True:
            passes.append(self.item())
            self.skip()
            if self.pos == len(self.text):
                return passes
            if self.text[self.pos] != ",":
                raise self.error(f"expected ',' or the end, found '{self.text[self.pos]}'", self.pos)
            self.pos += 1
            self.skip()

    def item(self) -> Pass:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            raise self.error("expected a pass name", self.pos)
        start, name = self.pos, match.group()
        self.pos = match.end()
        try:
            cls = pass_class(name)
        except UsageError as exc:
            raise self.error(exc.message, start, match.end() - 1, hint=exc.hint) from None
        values: dict[str, Any] = {}
        self.skip()
        if self.pos < len(self.text) and self.text[self.pos] == "{":
            self.pos += 1
            values = self.options(cls, name)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise self.error(f"cannot configure '{name}': {exc}", start, self.pos - 1) from None

    def options(self, cls: type[Pass], pass_name: str) -> dict[str, Any]:
        fields = {f.name: f for f in options_of(cls)}
        hints = option_types(cls)
        values: dict[str, Any] = {}
        while True:
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == "}":
                self.pos += 1
                return values
            key = _NAME.match(self.text, self.pos)
            if key is None:
                raise self.error("expected an option name", self.pos)
            k_start = self.pos
            self.pos = key.end()
            if key.group() in values:
                raise self.error(f"option '{key.group()}' of '{pass_name}' is given twice", k_start, key.end() - 1)
            if key.group() not in fields:
                known = ", ".join(fields) or "none"
                raise self.error(f"pass '{pass_name}' has no option '{key.group()}' (options: {known})", k_start,
                                 key.end() - 1, suggestion=closest(key.group(), fields))
            self.skip()
            if self.pos >= len(self.text) or self.text[self.pos] != "=":
                raise self.error(f"expected '=' after '{key.group()}'", self.pos)
            self.pos += 1
            self.skip()
            value = _VALUE.match(self.text, self.pos)
            if value is None:
                raise self.error(f"expected a value for '{key.group()}'", self.pos)
            v_start, raw = self.pos, value.group().strip()
            self.pos = value.end()
            try:
                values[key.group()] = convert(raw, hints.get(key.group(), str))
            except ValueError as exc:
                raise self.error(f"option '{key.group()}' of '{pass_name}': {exc}", v_start, value.end() - 1) from None
            self.skip()
            if self.pos < len(self.text) and self.text[self.pos] == ",":
                self.pos += 1
            elif self.pos >= len(self.text) or self.text[self.pos] != "}":
                raise self.error("expected ',' or '}' after an option", min(self.pos, len(self.text)))


def option_types(cls: type) -> dict[str, Any]:
    """The declared type of each option field of a pass class (its annotation when it cannot be resolved)."""
    try:
        return get_type_hints(cls)
    except Exception:
        return {f.name: f.type for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}


_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


def spec_value(value: Any) -> str:
    """`value` written the way `convert` reads it back (strings double-quoted, bools true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, (tuple, list)):
        return ";".join(spec_value(v) for v in value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)


def convert(raw: str, kind: Any) -> Any:
    """`raw` (spec text) as a value of type `kind`; ValueError says what was expected."""
    if raw[:1] in ('"', "'") and raw.endswith(raw[0]) and len(raw) >= 2:
        text: str | None = bytes(raw[1:-1], "utf-8").decode("unicode_escape")
    else:
        text = raw
    origin, args = get_origin(kind), get_args(kind)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if text in ("none", "None") and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(raw, arg)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(" or ".join(errors))
    if origin is Literal:
        for choice in args:
            if str(choice) == text:
                return choice
        raise ValueError(f"expected one of {', '.join(map(str, args))}, got '{text}'")
    if origin in (tuple, list):
        item = args[0] if args else str
        parts = [p for p in re.split(r"[\s;]+", text) if p] if text else []
        values = [convert(p, item) for p in parts]
        return tuple(values) if origin is tuple else values
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        for member in kind:
            if text in (member.name, str(member.value)):
                return member
        raise ValueError(f"expected one of {', '.join(str(m.value) for m in kind)}, got '{text}'")
    if kind is bool:
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ValueError(f"expected true or false, got '{text}'")
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got '{text}'") from None
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got '{text}'") from None
    return text
