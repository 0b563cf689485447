"""Where edgec keeps what it caches between runs: `$EDGEC_CACHE`, default `~/.cache/edgec`.

One function so the source-hash cache, the TVM module cache and the fetched TVM runtimes
always agree on the root.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    return Path(os.environ.get("EDGEC_CACHE", "~/.cache/edgec")).expanduser()
