"""One error hierarchy for the whole compiler.

Every error a user can cause is an `EdgecError`; the CLI prints it with `format()` and exits
with its `exit_code` (2). A bug — any other exception — inside a pass becomes an
`InternalError` (exit 3) naming the pass; the CLI prints one line for it, and the traceback of
the original exception (kept as `__cause__`) with `--debug`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class SourceSpan:
    """A location in a plan file: 1-based line and column, `end_column` exclusive."""

    filename: str
    line: int
    column: int
    end_column: int | None = None
    source_line: str | None = None

    def __str__(self) -> str:
        return f"{self.filename}:{self.line}:{self.column}"


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most similar to `name`, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's text: third-party errors are often pages long."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class EdgecError(Exception):
    """Base of every user-facing error; `format()` is what the CLI prints, `exit_code` what it exits with."""

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def format(self) -> str:
        text = f"error: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class PlanError(EdgecError):
    """An error in a plan, located by a source span (file:line:col, the line and a caret)."""

    def __init__(
        self,
        message: str,
        span: SourceSpan | None = None,
        *,
        suggestion: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.span = span
        self.suggestion = suggestion

    def __str__(self) -> str:
        where = f"{self.span}: " if self.span else ""
        did_you_mean = f"; did you mean '{self.suggestion}'?" if self.suggestion else ""
        return f"{where}{self.message}{did_you_mean}"

    def format(self) -> str:
        lines = [f"{self}"]
        if self.span and self.span.source_line is not None:
            src = self.span.source_line.rstrip("\n")
            width = max(1, (self.span.end_column or self.span.column + 1) - self.span.column)
            lines.append(f"    {src}")
            lines.append("    " + " " * (self.span.column - 1) + "^" * width)
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "error: " + "\n".join(lines)


@dataclass(frozen=True)
class PlanWarning:
    """Something in a plan that compiles but may not mean what its author thinks (a node it places
    was folded away at load time). Located like a `PlanError`; the CLI prints `format()` to stderr."""

    message: str
    span: SourceSpan | None = None

    def __str__(self) -> str:
        return f"{self.span}: {self.message}" if self.span else self.message

    def format(self) -> str:
        lines = [f"warning: {self}"]
        if self.span and self.span.source_line is not None:
            width = max(1, (self.span.end_column or self.span.column + 1) - self.span.column)
            lines.append(f"    {self.span.source_line.rstrip(chr(10))}")
            lines.append("    " + " " * (self.span.column - 1) + "^" * width)
        return "\n".join(lines)


class ModelError(EdgecError):
    """A problem with the model itself (unreadable file, unknown shapes, unsupported op)."""

    def __init__(self, message: str, *, node: str | None = None, hint: str | None = None) -> None:
        super().__init__(f"node '{node}': {message}" if node else message, hint=hint)
        self.node = node


class VerifyError(EdgecError):
    """An IR invariant does not hold; raised by `Program.verify()`."""


class PassError(EdgecError):
    """A pass failed; carries the passes that had already run."""

    def __init__(self, message: str, *, pass_name: str, ran: list[str], hint: str | None = None,
                 when: str = "failed") -> None:
        ran_text = f" (passes that ran: {', '.join(ran) if ran else 'none'})" if when == "failed" else ""
        super().__init__(f"pass '{pass_name}' {when}: {message}{ran_text}", hint=hint)
        self.reason = message
        self.pass_name = pass_name
        self.ran = ran


class UsageError(EdgecError):
    """Bad command-line arguments or files (missing paths, bad --input-shape, …)."""


class InternalError(EdgecError):
    """A bug (an exception that is not an EdgecError) inside a pass, with the pass and the passes that ran."""

    exit_code = 3

    def __init__(self, message: str, *, pass_name: str | None = None, ran: list[str] | None = None) -> None:
        where = f" in pass '{pass_name}' (passes that ran: {', '.join(ran) if ran else 'none'})" if pass_name else ""
        culprit = "edgec or in that pass" if pass_name else "edgec"
        super().__init__(f"internal error{where}: {message}",
                         hint=f"this is a bug in {culprit}; rerun with --debug for the traceback")
        self.pass_name = pass_name
        self.ran = list(ran or [])

    def format(self) -> str:
        return super().format().replace("error: internal error", "internal error", 1)
