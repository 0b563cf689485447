"""Typed JSON records: dataclasses that write their own JSON and read it back, checked key by key.

Why: `manifest.json` is read by the runtime, `edgec show`, the C++ backend and other tools. A
truncated or hand-edited file must be one clear error naming the file and the key
(`out/manifest.json: stages[2].rank: expected an integer, got "x"`), never a KeyError deep in
the runtime. `Fields` is that checked reader; `Record` is the base of every manifest record.

Every record also reads like its JSON: `record["key"]` is `record.to_json()["key"]` (a read-only
Mapping), so code written against the plain dict keeps working while it moves to attributes.
edgec's own code reads attributes; scripts (benchmarks/) and some tests still read keys.
Sequence fields are tuples, so records compare equal after a round trip.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Iterator, TypeVar

from .diagnostics import UsageError

R = TypeVar("R", bound="Record")
_MISSING = object()
_KINDS: dict[str, tuple[type, ...]] = {
    "an integer": (int,), "a number": (int, float), "a string": (str,), "true or false": (bool,),
    "a list": (list,), "an object": (dict,),
}


class ManifestError(UsageError):
    """An output's manifest (or one of its sections) is malformed, or was written by a newer edgec."""


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, str):
        return json.dumps(value if len(value) <= 40 else value[:37] + "...")
    return {list: "a list", dict: "an object"}.get(type(value), type(value).__name__)


class Fields:
    """One JSON object of a file being read: typed getters that name the file and key path on error."""

    def __init__(self, data: Any, where: str, source: str) -> None:
        self.where, self.source = where, source
        if not isinstance(data, dict):
            raise self.error(f"expected an object, got {_json_type(data)}")
        self.data: dict[str, Any] = data

    def error(self, message: str, key: str | None = None) -> ManifestError:
        path = f"{self.where}.{key}" if key and self.where else (key or self.where or "top level")
        return ManifestError(f"{self.source}: {path}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, kind: str, *, default: Any = _MISSING, null: bool = False) -> Any:
        """The value at `key`, which must be of `kind` (a key of `_KINDS`); `null` allows None."""
        if key not in self.data:
            if default is _MISSING:
                raise self.error("missing", key)
            return default
        value = self.data[key]
        if value is None and null:
            return None
        types = _KINDS[kind]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise self.error(f"expected {kind}{' or null' if null else ''}, got {_json_type(value)}", key)
        return value

    def integer(self, key: str, **kw: Any) -> int:
        return self.get(key, "an integer", **kw)

    def number(self, key: str, **kw: Any) -> float | None:
        value = self.get(key, "a number", **kw)
        return float(value) if value is not None else None

    def string(self, key: str, **kw: Any) -> str:
        return self.get(key, "a string", **kw)

    def boolean(self, key: str, **kw: Any) -> bool:
        return self.get(key, "true or false", **kw)

    def raw(self, key: str, **kw: Any) -> Any:
        """Any JSON value (for fields whose content is another tool's, e.g. a TVM target)."""
        if key not in self.data and kw.get("default", _MISSING) is _MISSING:
            raise self.error("missing", key)
        return self.data.get(key, kw.get("default"))

    def ints(self, key: str) -> tuple[int, ...]:
        values = self.get(key, "a list")
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise self.error(f"expected a list of integers, got {values!r}"[:120], key)
        return tuple(values)

    def strs(self, key: str, **kw: Any) -> tuple[str, ...]:
        values = self.get(key, "a list", **kw)
        if not all(isinstance(v, str) for v in values):
            raise self.error("expected a list of strings", key)
        return tuple(values)

    def str_map(self, key: str, **kw: Any) -> dict[str, str]:
        values = self.get(key, "an object", **kw)
        if not all(isinstance(v, str) for v in values.values()):
            raise self.error("expected an object of strings", key)
        return dict(values)

    def child(self, key: str, *, null: bool = False) -> Fields | None:
        value = self.get(key, "an object", null=null)
        return None if value is None else Fields(value, self._path(key), self.source)

    def children(self, key: str, **kw: Any) -> list[Fields]:
        values = self.get(key, "a list", **kw)
        return [Fields(v, f"{self._path(key)}[{i}]", self.source) for i, v in enumerate(values)]

    def records(self, key: str, kind: type[R], **kw: Any) -> tuple[R, ...]:
        """The list at `key`, each item read as a `kind` record."""
        return tuple(kind.read(c) for c in self.children(key, **kw))

    def only(self, *keys: str) -> None:
        """Refuse keys this reader does not know: a typo must not pass for an absent optional key."""
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            raise self.error(f"unknown key '{unknown[0]}' (known: {', '.join(keys)})")

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key


def plain(value: Any) -> Any:
    """A field value as JSON: records by their `to_json`, tuples as lists, mappings key by key."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def frozen(value: Any) -> Any:
    """A JSON value with its lists as tuples (the form sequence fields take in records)."""
    if isinstance(value, list):
        return tuple(frozen(v) for v in value)
    if isinstance(value, dict):
        return {k: frozen(v) for k, v in value.items()}
    return value


class Record(Mapping):
    """Base of the manifest's records: `to_json()`, `read(fields)`, and a read-only Mapping view of the JSON.

    Subclasses are frozen dataclasses. The default `to_json`/`read` map fields one to one (JSON
    lists become tuples); records with nested records or renamed keys override both.
    """

    def to_json(self) -> dict[str, Any]:
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def read(cls: type[R], f: Fields) -> R:
        names = [field.name for field in dataclasses.fields(cls)]
        f.only(*names)
        values = {}
        for field in dataclasses.fields(cls):
            has_default = field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            if f.has(field.name):
                values[field.name] = frozen(f.data[field.name])
            elif not has_default:
                raise f.error("missing", field.name)
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise f.error(f"cannot be read as {cls.__name__}: {exc}") from None

    @classmethod
    def from_json(cls: type[R], data: Any, *, where: str = "", source: str = "manifest.json") -> R:
        return cls.read(Fields(data, where, source))

    def __getitem__(self, key: str) -> Any:
        return self.to_json()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


class Section(Record):
    """A backend's part of manifest.json, stored under the backend's name.

    A flat frozen dataclass of JSON values needs nothing more than subclassing this; sections
    with nested records override `to_json` and `read`.
    """


@dataclasses.dataclass(frozen=True, eq=False)
class JsonSection(Section):
    """The section of a backend that returns plain JSON, or whose backend is not installed here."""

    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return json.loads(json.dumps(self.data))

    @classmethod
    def read(cls, f: Fields) -> JsonSection:
        return cls(dict(f.data))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JsonSection):
            return self.to_json() == other.to_json()
        return NotImplemented
