"""Compiled TVM stage modules, kept across compiles so a recompile rebuilds only the stages that changed.

Why: TVM takes seconds per stage (DenseNet-121 in 24 stages: minutes on 2 cores), while the
usual loop is "move one `place` line, compile again". A stage's module is a function of its
ONNX sub-model, its target and the compiler that built it, so it is stored under a key made of

- the sha256 of the sub-model file (and of its external data file, if it has one),
- the target: TVM's target dict (with the host CPU LLVM detected), CPU arch, cross compiler,
- the installed apache-tvm and apache-tvm-ffi versions, and a digest of edgec's own TVM code
  (frontend, lowering, schedules, compile), so a changed schedule never reuses an old module,
- the digest of the stage's tuning records (`tuning.py`), so a compile after `edgec tune` rebuilds.

A stage whose sub-model is byte for byte the same as before is copied from the cache (and its
copy's sha256 checked against the entry) instead of compiled; all others are compiled and
stored. Where: `$EDGEC_TVM_MODULE_CACHE`, else `$EDGEC_CACHE/tvm-modules`, else
`~/.cache/edgec/tvm-modules`; `EDGEC_TVM_MODULE_CACHE=off` disables it. Each entry is a folder
(`module.so`, `entry.json`) written under a temporary name and renamed into place, so
concurrent compiles never see half an entry (the first one to finish wins, the other's copy is
dropped). The least recently used entries are removed when the cache exceeds
`$EDGEC_TVM_MODULE_CACHE_MAX_MB` (default 4096). Clear it with `rm -rf ~/.cache/edgec/tvm-modules`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from ..manifest import sha256_file
from .targets import TargetSpec
from .tuning import database_digest
from ..cache_dir import cache_root as edgec_cache_root

FORMAT = 1
DEFAULT_MAX_MB = 4096
STALE_TMP_SECONDS = 3600
CODE = ("frontend.py", "lowering.py", "schedules.py", "isa.py", "tuning.py", "compile.py", "int8_lowering.py",
        "int8_patterns.py", "int8_schedules.py", "int8_intrinsics.py")
"""The files of edgec's TVM backend whose change changes what a module would be."""


def cache_root() -> Path | None:
    """The cache folder, or None when disabled (`EDGEC_TVM_MODULE_CACHE=off`)."""
    explicit = os.environ.get("EDGEC_TVM_MODULE_CACHE")
    if explicit is not None:
        return None if explicit.strip().lower() in ("", "0", "off", "no", "false") else Path(explicit).expanduser()
    return edgec_cache_root() / "tvm-modules"


def _versions() -> dict[str, str]:
    found = {}
    for dist in ("apache-tvm", "apache-tvm-ffi"):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = "?"
    return found


@contextlib.contextmanager
def written_beside(out_path: Path):
    """A temporary path beside `out_path` (same suffix, which the linker reads) to write a module
    to; renamed over `out_path` when the block succeeds, removed otherwise. Why not in place: a
    process that has the old module loaded maps its pages; rewriting that file under it crashed
    such a process (a segfault in dlsym, after `edgec tune` recompiled a stage the benchmark had
    open)."""
    tmp = out_path.with_name(f".{out_path.stem}.{os.getpid()}.tmp{out_path.suffix}")
    try:
        yield tmp
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)


def replace_file(source: Path, out_path: Path) -> None:
    """Copy `source` to `out_path` as a new file (`written_beside`)."""
    with written_beside(out_path) as tmp:
        shutil.copyfile(source, tmp)


def _code_digest() -> str:
    digest = hashlib.sha256()
    here = Path(__file__).parent
    for name in CODE:
        digest.update(name.encode() + b"\0" + (here / name).read_bytes() + b"\0")
    return digest.hexdigest()


class ModuleCache:
    """One cache folder; `key` names a stage's module, `fetch` copies a stored one out, `store` adds one."""

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
        self.root = root
        self.max_bytes = max_bytes if max_bytes is not None else int(
            os.environ.get("EDGEC_TVM_MODULE_CACHE_MAX_MB", DEFAULT_MAX_MB)) << 20
        self._compiler = {"format": FORMAT, "tvm": _versions(), "edgec_tvm_code": _code_digest()}

    @classmethod
    def default(cls) -> ModuleCache | None:
        root = cache_root()
        return cls(root) if root is not None else None

    def key(self, model: Path, spec: TargetSpec) -> str:
        """The key of `model` (a written sub-model) compiled for `spec` by this edgec and TVM."""
        data = model.with_name(model.name + ".data")
        described = {
            "model": sha256_file(model), "data": sha256_file(data) if data.is_file() else None,
            "target": spec.target, "arch": spec.arch, "cross_compiler": spec.cross_compiler, **self._compiler,
            "tuning": database_digest(model, spec),
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:40]

    def fetch(self, key: str, out_path: Path) -> dict[str, Any] | None:
        """Copy the module stored under `key` to `out_path` and return its build record; None when absent."""
        entry = self.root / key
        try:
            info = json.loads((entry / "entry.json").read_text())
            replace_file(entry / "module.so", out_path)
        except (OSError, ValueError):
            return None
        if sha256_file(out_path) != info.get("sha256"):
            out_path.unlink(missing_ok=True)
            shutil.rmtree(entry, ignore_errors=True)
            return None
        try:
            os.utime(entry / "entry.json")
        except OSError:
            pass
        return info

    def store(self, key: str, module: Path, info: dict[str, Any]) -> None:
        """Add `module` (just compiled, with its build record `info`) under `key`; never fails the compile."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=".tmp-"))
        except OSError:
            return
        try:
            shutil.copyfile(module, tmp / "module.so")
            (tmp / "entry.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
            os.rename(tmp, self.root / key)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        self.prune()

    def prune(self) -> None:
        """Remove the least recently used entries until the cache fits in `max_bytes`."""
        entries, now = [], time.time()
        for entry in self.root.iterdir():
            if entry.name.startswith("."):
                if entry.name.startswith(".tmp-") and _age(entry, now) > STALE_TMP_SECONDS:
                    shutil.rmtree(entry, ignore_errors=True)  # left by a compile that was killed
                continue
            try:
                size = sum(f.stat().st_size for f in entry.iterdir())
                entries.append(((entry / "entry.json").stat().st_mtime, size, entry))
            except OSError:
                continue
        total = sum(size for _, size, _ in entries)
        for _, size, entry in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size


def _age(path: Path, now: float) -> float:
    try:
        return now - path.stat().st_mtime
    except OSError:
        return 0.0
