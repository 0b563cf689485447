"""Where edgec keeps what it caches between runs: `$EDGEC_CACHE`, default `~/.cache/edgec`.

One function so the source-hash cache, the TVM module cache and the fetched runtimes (the
aarch64 TVM runtime, the ULFM Open MPI) always agree on the root, and one way to fetch with pip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ..compiler.diagnostics import UsageError


def cache_root() -> Path:
    return Path(os.environ.get("EDGEC_CACHE", "~/.cache/edgec")).expanduser()


def run_pip(args: list[str], progress: Callable[[str], None], *, what: str, hint: str) -> None:
    """`python -m pip ARGS`, echoed through `progress`; a failure is one UsageError "could not
    WHAT with pip: <pip's last line>" with `hint`."""
    command = [sys.executable, "-m", "pip", *args]
    progress(" ".join(command))
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise UsageError(f"could not {what} with pip: {reason}", hint=hint)
