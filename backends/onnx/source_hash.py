"""The source model's sha256 for the manifest, remembered across compiles by the file's identity.

Why: the manifest records which model an output came from, and hashing a 548 MiB VGG-19 takes
longer than edgec's whole front-end. A compile of the same file again (the usual loop: edit
the plan, compile) finds the digest under `$EDGEC_CACHE/sha256/` (default `~/.cache/edgec/`),
keyed by the file's absolute path, inode, size, mtime and ctime (ns): writing to the file,
replacing it or touching it changes one of them, so a stale digest is never used. Each entry
is one small file written to a temporary name and renamed, so concurrent compiles are safe;
a cache that cannot be written only costs the hashing. Files under `MIN_CACHED_BYTES` are
hashed every time (cheaper than the cache entry). Clear it with `rm -rf ~/.cache/edgec/sha256`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..manifest import sha256_file
from ..cache_dir import cache_root

MIN_CACHED_BYTES = 8 << 20


def cache_dir() -> Path:
    return cache_root() / "sha256"


def _key(path: Path) -> tuple[str, int]:
    st = os.stat(path)
    identity = f"{os.path.abspath(path)}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
    return hashlib.sha256(identity.encode()).hexdigest()[:40], st.st_size


def source_sha256(path: str | os.PathLike, *, min_cached_bytes: int = MIN_CACHED_BYTES) -> str:
    """sha256 of `path`, from the cache when this very file was hashed before."""
    path = Path(path)
    key, size = _key(path)
    if size < min_cached_bytes:
        return sha256_file(path)
    entry = cache_dir() / key
    try:
        known = entry.read_text().strip()
        if len(known) == 64 and all(c in "0123456789abcdef" for c in known):
            return known
    except OSError:
        pass
    digest = sha256_file(path)
    if _key(path)[0] == key:
        _store(entry, digest)
    return digest


def _store(entry: Path, digest: str) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, prefix=".tmp-")
    except OSError:
        return
    try:
        with os.fdopen(fd, "w") as f:
            f.write(digest + "\n")
        os.replace(tmp, entry)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
