"""What `edgec passes` lists: every pass with its contract (facts) and options.

One function shared by the table and `--json`, so both always say the same.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, option_default, options_of
from .onnx_ir_adapter import available_onnx_ir_passes
from .pipeline_spec import option_types
from .registry import get_pass, origin_of, registered_passes


def describe(cls: type[Pass]) -> dict[str, Any]:
    hints = option_types(cls)
    doc = (cls.__doc__ or "").strip().split("\n")[0]
    return {
        "name": cls.name,
        "requires": _facts(cls.requires),
        "provides": _facts(cls.provides),
        "invalidates": _facts(cls.invalidates),
        "after": _facts(cls.after),
        "repeatable": cls.repeatable,
        "options": [{"name": f.name, "type": _type_name(hints.get(f.name, f.type)), "default": _default(f)}
                    for f in options_of(cls)],
        "origin": origin_of(cls.name),
        "summary": doc,
    }


def pass_catalog(include_onnx_ir: bool = True) -> list[dict[str, Any]]:
    entries = [describe(cls) for cls in registered_passes().values()]
    if include_onnx_ir:
        entries += [describe(get_pass(name)) for name in available_onnx_ir_passes()]
    return entries


def _facts(facts: frozenset[Fact]) -> list[str]:
    return [f.value for f in Fact if f in facts]


def _type_name(kind: Any) -> str:
    return kind.__name__ if isinstance(kind, type) else str(kind).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    value = option_default(f)
    if value is dataclasses.MISSING:
        return None
    return value.value if hasattr(value, "value") else value
