"""Backends by name: the built-in ones, those registered at run time, and third-party plugins.

Built-ins are named here with the module that defines them and imported on first use, so
asking for `onnx` never imports TVM. Third-party backends are found through the Python
entry-point group `edgec.backends` (an entry point names a `Backend` subclass or instance) and
are loaded only when asked for by name. `resolve_backends` turns a request into the list to run:
`onnx` first (every other backend starts from its sub-models), each backend after the ones it
`needs`, duplicates dropped.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
from typing import Iterable, Sequence

from ..compiler.diagnostics import UsageError, closest
from ..compiler.facts import Fact
from .backend import MANIFEST_KEYS, Backend
from .records import Section

ENTRY_POINT_GROUP = "edgec.backends"
BASE_BACKEND = "onnx"
_BUILTIN = {
    "onnx": "edgec.backends.onnx.backend:OnnxBackend",
    "tvm": "edgec.backends.tvm.backend:TvmBackend",
    "cpp": "edgec.backends.cpp_mpi.backend:CppBackend",
    "vta": "edgec.backends.vta.backend:VtaBackend",
}
_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")
_registered: dict[str, Backend] = {}


def register_backend(backend: Backend | type[Backend], *, replace: bool = False) -> Backend:
    """Make `backend` (a Backend subclass or instance) available by its `name`; returns the instance."""
    instance = backend() if isinstance(backend, type) else backend
    if not isinstance(instance, Backend):
        raise UsageError(f"{backend!r} is not an edgec Backend (subclass edgec.backends.backend.Backend)")
    name = getattr(instance, "name", None)
    if not isinstance(name, str) or not _NAME.match(name):
        raise UsageError(f"backend {type(instance).__name__}: name {name!r} must be lower-case letters, digits, "
                         "'-' or '_', starting with a letter")
    if name in MANIFEST_KEYS:
        raise UsageError(f"backend name '{name}' is taken by a manifest.json key ({', '.join(sorted(MANIFEST_KEYS))})")
    if not isinstance(instance.requires, frozenset) or not all(isinstance(f, Fact) for f in instance.requires):
        raise UsageError(f"backend '{name}': requires must be a frozenset of edgec.compiler.facts.Fact")
    if isinstance(instance.needs, str) or not all(isinstance(n, str) for n in instance.needs):
        raise UsageError(f"backend '{name}': needs must be a tuple of backend names")
    section_type = instance.section_type
    if section_type is not None and not (isinstance(section_type, type) and issubclass(section_type, Section)):
        raise UsageError(f"backend '{name}': section_type must be a Section subclass")
    if name in _registered and not replace and type(_registered[name]) is not type(instance):
        raise UsageError(f"a backend named '{name}' is already registered ({type(_registered[name]).__name__})")
    _registered[name] = instance
    return instance


def unregister_backend(name: str) -> None:
    """Forget a registered backend (a built-in one is loaded again on its next use)."""
    _registered.pop(name, None)


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def available_backends() -> list[str]:
    """Every backend name that `get_backend` accepts (plugins are listed without being loaded)."""
    names = list(_BUILTIN) + [n for n in _registered if n not in _BUILTIN]
    return names + sorted(n for n in _entry_points() if n not in names)


def _load(name: str, target: str, origin: str) -> Backend:
    module_name, _, attr = target.partition(":")
    try:
        loaded = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # noqa: BLE001 - a broken plugin must be one message, not a traceback
        raise UsageError(f"backend '{name}' ({origin} {target}) cannot be loaded: {type(exc).__name__}: {exc}") from None
    instance = register_backend(loaded)
    if instance.name != name:
        unregister_backend(instance.name)
        raise UsageError(f"{origin} '{name}' ({target}) names a backend called '{instance.name}'")
    return instance


def get_backend(name: str) -> Backend:
    """The backend called `name`; a UsageError listing the available ones when there is none."""
    if not isinstance(name, str):
        raise UsageError(f"a backend is named by a string, not {type(name).__name__} {name!r}")
    if name in _registered:
        return _registered[name]
    if name in _BUILTIN:
        return _load(name, _BUILTIN[name], "built-in")
    point = _entry_points().get(name)
    if point is not None:
        return _load(name, point.value, f"entry point of group {ENTRY_POINT_GROUP}")
    available = available_backends()
    suggestion = closest(name, available)
    raise UsageError(f"unknown or unavailable backend '{name}' (available: {', '.join(available)})"
                     + (f"; did you mean '{suggestion}'?" if suggestion else ""))


def section_type(name: str) -> type[Section] | None:
    """The section type of backend `name` for reading a manifest; None for unknown or broken backends
    (their sections are then kept as plain JSON)."""
    try:
        return get_backend(name).section_type
    except UsageError:
        return None


def _check_request(names: object) -> list[str]:
    if isinstance(names, (str, bytes)):
        raise UsageError(f"backends must be a list of names, e.g. backends=[{str(names)!r}], not the string {names!r}")
    if not isinstance(names, Iterable):
        raise UsageError(f"backends must be a list of names, not {type(names).__name__}")
    names = list(names)
    for name in names:
        if not isinstance(name, str):
            raise UsageError(f"backends must be names (strings), got {type(name).__name__} {name!r}")
    return names


def resolve_backends(names: Sequence[str]) -> list[Backend]:
    """The backends to run for a request, in order: `onnx` first, every backend after those it needs."""
    ordered: list[Backend] = []
    visiting: list[str] = []

    def visit(name: str) -> None:
        if any(b.name == name for b in ordered):
            return
        if name in visiting:
            raise UsageError(f"backends need each other in a cycle: {' -> '.join([*visiting, name])}")
        visiting.append(name)
        backend = get_backend(name)
        for needed in (BASE_BACKEND, *backend.needs) if name != BASE_BACKEND else ():
            visit(needed)
        visiting.pop()
        ordered.append(backend)

    for name in [BASE_BACKEND, *_check_request(names)]:
        visit(name)
    return ordered
