"""Machine-readable output of every `--json` command: one JSON object on stdout, never coloured.

Every object carries `format_version` (bumped when a key changes meaning or goes away) and
`command`; a failure is an object too (`ok: false`, `error: {type, message, exit_code, …}`),
so a script reading stdout never has to parse a human message. Keys carry their unit
(`_ms`, `_bytes`, `_fps`) where a value has one.
"""

from __future__ import annotations

import json
import sys
from typing import Any

FORMAT_VERSION = 1


def emit(command: str, payload: dict[str, Any]) -> None:
    """Write `payload` as the JSON answer of `command` (plain text: rich's colour never applies)."""
    document = {"format_version": FORMAT_VERSION, "command": command,
                **{k: v for k, v in payload.items() if k not in ("format_version", "command")}}
    sys.stdout.write(json.dumps(document, indent=2, default=_plain) + "\n")
    sys.stdout.flush()


def error_document(exc: BaseException, exit_code: int) -> dict[str, Any]:
    """The `error` object for an EdgecError (or an internal error)."""
    error: dict[str, Any] = {"type": type(exc).__name__, "message": getattr(exc, "message", str(exc)),
                             "exit_code": exit_code}
    span = getattr(exc, "span", None)
    if span is not None:
        error["location"] = {"file": span.filename, "line": span.line, "column": span.column}
    for key in ("hint", "suggestion", "node", "pass_name"):
        value = getattr(exc, key, None)
        if value:
            error[key] = value
    return {"ok": False, "error": error}


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "value"):
        return value.value
    return str(value)
