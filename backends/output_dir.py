"""Write an output directory all at once: into a temp sibling, renamed into place on success.

A failed compile (any exception) leaves neither a half-written directory nor the temp dir.
An existing output directory is replaced only after the new one is complete.
"""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..compiler.diagnostics import UsageError


def check_output_path(out: Path) -> None:
    parent = out.resolve().parent
    if not parent.is_dir():
        raise UsageError(f"cannot write '{out}': the parent directory '{parent}' does not exist")
    if out.exists() and not out.is_dir():
        raise UsageError(f"cannot write '{out}': it exists and is not a directory")


@contextmanager
def atomic_directory(out: Path) -> Iterator[Path]:
    out = Path(out)
    check_output_path(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.resolve().parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
