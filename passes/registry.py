"""One registry of passes by name: edgec's own, third-party ones, and onnx-ir's.

Built-in passes register here at import. A package ships its own passes through the Python
entry-point group `edgec.passes` (`my-pass = my_package.passes:MyPass`); they are loaded the
first time a name is looked up or the passes are listed, so `edgec --help` pays nothing.
`onnx-ir:NAME` names a pass of `onnx_ir.passes.common`, run through `OnnxIRPass`.
"""

from __future__ import annotations

import importlib.metadata
from typing import Iterable

from ..compiler.diagnostics import UsageError, closest
from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass

ENTRY_POINT_GROUP = "edgec.passes"
ONNX_IR_PREFIX = "onnx-ir:"

_PASSES: dict[str, type[Pass]] = {}
_ORIGIN: dict[str, str] = {}
_loaded_entry_points = False


def register_pass(cls: type[Pass], *, origin: str = "edgec") -> type[Pass]:
    """Register a pass class under its `name` (usable as a decorator); a second class with the same name is refused."""
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise UsageError(f"register_pass takes a Pass subclass, not {cls!r}")
    if not cls.name:
        raise UsageError(f"pass class {cls.__name__} has no `name`")
    existing = _PASSES.get(cls.name)
    if existing is not None and existing is not cls:
        raise UsageError(f"two passes are named '{cls.name}': {existing.__module__}.{existing.__qualname__} "
                         f"and {cls.__module__}.{cls.__qualname__}")
    _PASSES[cls.name] = cls
    _ORIGIN[cls.name] = origin
    return cls


def _load_entry_points() -> None:
    global _loaded_entry_points
    if _loaded_entry_points:
        return
    _loaded_entry_points = True
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            cls = entry.load()
        except Exception as exc:
            raise UsageError(f"cannot load pass '{entry.name}' from entry point '{entry.value}' "
                             f"(group {ENTRY_POINT_GROUP}): {type(exc).__name__}: {exc}") from None
        if not (isinstance(cls, type) and issubclass(cls, Pass)) or cls.name != entry.name:
            raise UsageError(f"entry point '{entry.name} = {entry.value}' (group {ENTRY_POINT_GROUP}) must name a "
                             f"Pass subclass whose `name` is '{entry.name}'")
        register_pass(cls, origin=entry.dist.name if entry.dist else entry.value)


def registered_passes() -> dict[str, type[Pass]]:
    """Every registered pass class by name: built-in first, then entry points."""
    _load_entry_points()
    return dict(_PASSES)


def origin_of(name: str) -> str:
    return _ORIGIN.get(name, "onnx-ir" if name.startswith(ONNX_IR_PREFIX) else "?")


def get_pass(name: str) -> type[Pass] | None:
    """The pass class named `name`, or None; `onnx-ir:NAME` gives an adapter class."""
    if name.startswith(ONNX_IR_PREFIX):
        from .onnx_ir_adapter import onnx_ir_pass_class

        return onnx_ir_pass_class(name[len(ONNX_IR_PREFIX):])
    return registered_passes().get(name)


def pass_class(name: str) -> type[Pass]:
    """Like `get_pass`, but an unknown name is a UsageError with the closest name."""
    cls = get_pass(name)
    if cls is None:
        names = list(registered_passes())
        suggestion = closest(name, names)
        did_you_mean = f"; did you mean '{suggestion}'?" if suggestion else ""
        raise UsageError(f"unknown pass '{name}'{did_you_mean} (passes: {', '.join(names)}; "
                         f"onnx-ir's as {ONNX_IR_PREFIX}NAME)", hint="`edgec passes` lists them")
    return cls


def providers_of(fact: Fact) -> list[str]:
    """Names of the registered passes that provide `fact`, for error messages."""
    return [name for name, cls in registered_passes().items() if fact in cls.provides]


def provider_for(fact: Fact) -> type[Pass] | None:
    """The one built-in pass that provides `fact` (used to complete the default pipeline)."""
    for name, cls in _PASSES.items():
        if fact in cls.provides and _ORIGIN[name] == "edgec":
            return cls
    return None


def names(passes: Iterable[Pass]) -> list[str]:
    return [p.name for p in passes]
