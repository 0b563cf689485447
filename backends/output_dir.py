"""The one rule for every directory edgec writes: replace only what edgec wrote, never a user's files.

Why a rule and not just an atomic rename: `-o ~/thesis` once renamed a directory full of the
user's files out of the way and deleted it. So before anything is written, the target is
classified by what it holds:

- absent: written into a temp sibling and renamed into place (a failure leaves nothing);
- empty, or an earlier edgec directory of the same kind (an output whose `manifest.json` has
  edgec's `format` key and lists every file present; an IR dump of `NN-pass.txt` files): the
  new files are staged inside it and swapped in; edgec's old files are removed, nothing else;
- anything else (user files, or user files added inside an old output): refused with exit 2,
  unless `force`. With `force` the new files are written beside the user's files, which are
  kept and named in the progress output; a user's file where edgec would write one is still
  refused. The filesystem root is always refused.

The path is resolved first, so `-o .`, a symlink to a directory and mount points keep their
directory (nothing is renamed over them); a dangling symlink is refused. `edgec build` writes
its CMake tree in place (`claim_build_directory`) under the same rule.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator, Literal

from ..compiler.diagnostics import UsageError

Kind = Literal["output", "ir-dump", "explore"]
Progress = Callable[[str], None]

OUTPUT: Kind = "output"
IR_DUMP: Kind = "ir-dump"
EXPLORE: Kind = "explore"
EXPLORE_INDEX = "front.json"
MANIFEST = "manifest.json"
STAGING_PREFIX = ".edgec-staging-"
OLD_PREFIX = ".edgec-old-"
BUILD_MARKER = ".edgec-build.json"
GENERATED = ("cpp/main.cpp", "cpp/CMakeLists.txt", "cpp/edgec_*.h")
CMAKE_WRITES = frozenset({"CMakeCache.txt", "CMakeFiles", "Makefile", "cmake_install.cmake", "build.ninja",
                          ".ninja_deps", ".ninja_log", "compile_commands.json", "edgec_pipeline"})
_DUMP_NAME = re.compile(r"\d{2,}-[\w.-]+\.txt")
_LEFTOVER = re.compile(rf"{re.escape(STAGING_PREFIX)}[\w]{{8}}\.tmp|{re.escape(OLD_PREFIX)}[\w]{{8}}")
_WHAT = {OUTPUT: "an earlier edgec output", IR_DUMP: "an earlier --dump-ir directory",
         EXPLORE: "an earlier `edgec explore` output"}


@dataclass
class Contents:
    """What a target directory holds, as relative POSIX paths: files edgec wrote, and everything else.
    Empty directories are neither: they are kept unless edgec's own tree (`owned_trees`) held them."""

    given: Path
    path: Path
    exists: bool
    earlier: bool = False
    ours: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    empty_dirs: list[str] = field(default_factory=list)
    owned_trees: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


def _walk(root: Path, skip: Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """(regular files, other entries: symlinks and special files, empty directories) under root."""
    files, others, empty = [], [], []
    for top, dirs, names in os.walk(root, followlinks=False):
        here = Path(top)
        for d in list(dirs):
            entry = here / d
            if skip is not None and entry == skip:
                dirs.remove(d)
            elif entry.is_symlink():
                dirs.remove(d)
                others.append(entry.relative_to(root).as_posix())
        for name in names:
            entry = here / name
            rel = entry.relative_to(root).as_posix()
            (files if entry.is_file() and not entry.is_symlink() else others).append(rel)
        if here != root and not dirs and not names:
            empty.append(here.relative_to(root).as_posix())
    return sorted(files), sorted(others), sorted(empty)


def _manifest(root: Path) -> dict | None:
    try:
        data = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and isinstance(data.get("format"), int) and isinstance(data.get("stages"), list):
        return data
    return None


def _cmake_home(build: Path) -> Path | None:
    try:
        for line in (build / "CMakeCache.txt").read_text(errors="replace").splitlines():
            if line.startswith("CMAKE_HOME_DIRECTORY:"):
                return Path(line.split("=", 1)[1].strip()).resolve()
    except OSError:
        return None
    return None


def _build_kept(build: Path, source: Path) -> set[str] | None:
    """Files of an edgec CMake tree that edgec did not write (None: not edgec's tree)."""
    try:
        marker = json.loads((build / BUILD_MARKER).read_text())
        if isinstance(marker, dict) and marker.get("edgec") == "build":
            return {str(k) for k in marker.get("kept", [])}
    except (OSError, ValueError):
        pass
    return set() if _cmake_home(build) == source.resolve() else None


def _output_owner(root: Path) -> tuple[Callable[[str], bool], list[str]] | None:
    """Whether a relative path is a file edgec wrote into this output, and the subtrees that are
    edgec's as a whole (its CMake tree); None when `root` is no edgec output."""
    manifest = _manifest(root)
    if manifest is None:
        return None
    listed = set(manifest.get("files") or {}) | {MANIFEST}
    devices = {str(s.get("device")) for s in manifest["stages"] if isinstance(s, dict)}
    listed |= {f"packages/{d}.tar.gz" for d in devices}
    kept = _build_kept(root / "build", root / "cpp")

    def owned(rel: str) -> bool:
        if rel in listed or any(fnmatch(rel, pattern) for pattern in GENERATED):
            return True
        return kept is not None and rel.startswith("build/") and rel.removeprefix("build/") not in kept

    return owned, (["build"] if kept is not None else [])


def _dump_owner(root: Path) -> Callable[[str], bool]:
    def owned(rel: str) -> bool:
        if "/" in rel or not _DUMP_NAME.fullmatch(rel):
            return False
        try:
            with open(root / rel, "rb") as f:
                return f.read(8) == b"program "
        except OSError:
            return False

    return owned


def _explore_owner(root: Path) -> Callable[[str], bool] | None:
    """An `edgec explore` output: its `front.json` (key `edgec: explore`) lists the files it wrote."""
    try:
        index = json.loads((root / EXPLORE_INDEX).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(index, dict) or index.get("edgec") != "explore" or not isinstance(index.get("files"), list):
        return None
    listed = {str(f) for f in index["files"]} | {EXPLORE_INDEX}
    return lambda rel: rel in listed


def inspect_directory(out: str | os.PathLike, kind: Kind = OUTPUT, *, skip: Path | None = None) -> Contents:
    """Classify `out` (see the module docstring); raises UsageError for targets that are never usable."""
    given = Path(out)
    if given.is_symlink() and not given.exists():
        raise UsageError(f"cannot write '{given}': it is a symbolic link to '{os.readlink(given)}', which does not exist")
    path = given.resolve()
    if path == path.parent:
        raise UsageError(f"refusing to write into the filesystem root '{path}'", hint="choose a directory of its own")
    if not path.parent.is_dir():
        raise UsageError(f"cannot write '{given}': the parent directory '{path.parent}' does not exist")
    if path.exists() and not path.is_dir():
        raise UsageError(f"cannot write '{given}': it exists and is not a directory")
    if not path.exists():
        return Contents(given, path, exists=False)
    files, others, empty = _walk(path, skip)
    leftovers = sorted({top for rel in files + others + empty
                        if _LEFTOVER.fullmatch(top := rel.split("/", 1)[0]) and (path / top).is_dir()
                        and not (path / top).is_symlink()})

    def inside(rel: str) -> bool:
        return rel.split("/", 1)[0] in leftovers

    files, others, empty = ([r for r in group if not inside(r)] for group in (files, others, empty))
    if kind == OUTPUT:
        found = _output_owner(path)
        owner, trees = found if found is not None else (None, [])
    elif kind == EXPLORE:
        owner, trees = _explore_owner(path), []
    else:
        owner, trees = _dump_owner(path), []
        if not any(owner(f) for f in files):
            owner = None
    if owner is None:
        return Contents(given, path, True, False, [], sorted(files + others), empty, [], leftovers)
    ours = [f for f in files if owner(f)]
    foreign = sorted([f for f in files if not owner(f)] + others)
    return Contents(given, path, True, True, ours, foreign, empty, trees, leftovers)


def _examples(paths: list[str], limit: int = 3) -> str:
    shown = ", ".join(f"'{p}'" for p in paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _refuse_foreign(contents: Contents, kind: Kind) -> UsageError:
    n, where = len(contents.foreign), contents.given
    if contents.earlier:
        return UsageError(
            f"'{where}' is {_WHAT[kind]}, but it also holds {n} file(s) edgec did not write: {_examples(contents.foreign)}",
            hint="move them away, or pass --force to replace only edgec's own files and keep those")
    return UsageError(
        f"'{where}' is not empty and is not {_WHAT[kind]}; it holds {n} file(s) edgec did not write: "
        f"{_examples(contents.foreign)}",
        hint="choose a new or empty directory, or pass --force to write beside those files "
             "(edgec never deletes or overwrites files it did not write)")


def check_output_path(out: str | os.PathLike, *, force: bool = False, kind: Kind = OUTPUT) -> Contents:
    """Refuse, before any work is done, a target the rule forbids; returns what it holds."""
    contents = inspect_directory(out, kind)
    if contents.foreign and not force:
        raise _refuse_foreign(contents, kind)
    return contents


def overlaps(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two directories are the same or one lies inside the other (after resolving)."""
    ra, rb = Path(a).resolve(), Path(b).resolve()
    return ra == rb or ra.is_relative_to(rb) or rb.is_relative_to(ra)


def _collision(new: list[str], contents: Contents) -> str | None:
    """The first entry edgec did not write that a new file would overwrite or write through."""
    ours = set(contents.ours)
    for rel in new:
        parts = PurePosixPath(rel).parts
        for depth in range(1, len(parts)):
            prefix = "/".join(parts[:depth])
            target = contents.path / prefix
            if os.path.lexists(target) and (target.is_symlink() or not target.is_dir()) and prefix not in ours:
                return prefix
        if os.path.lexists(contents.path / rel) and rel not in ours:
            return rel
    return None


def _prune_empty(contents: Contents, skip: set[Path]) -> None:
    """Remove directories edgec's removals left empty; keep empty directories that were there before,
    except inside a tree that is edgec's as a whole."""
    root = contents.path
    keep = {e for e in contents.empty_dirs if e.split("/", 1)[0] not in contents.owned_trees}
    for top, dirs, names in os.walk(root, topdown=False, followlinks=False):
        here = Path(top)
        if here == root or any(here == s or here.is_relative_to(s) for s in skip):
            continue
        if here.relative_to(root).as_posix() not in keep:
            try:
                here.rmdir()
            except OSError:
                pass


def _swap_in(contents: Contents, staging: Path, new: list[str], last: str | None) -> None:
    """Move edgec's old files aside, the staged ones in (`last` at the end), then drop the old ones.
    Every move is a rename inside the target, so a failure is rolled back completely."""
    root = contents.path
    old_dir = Path(tempfile.mkdtemp(prefix=OLD_PREFIX, dir=root))
    moved_old: list[str] = []
    moved_new: list[str] = []
    ordered = [r for r in new if r != last] + ([last] if last in new else [])
    replaced_last = last if last in contents.ours and last in new else None
    try:
        for rel in contents.ours:
            if rel == replaced_last:
                continue
            (old_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            os.rename(root / rel, old_dir / rel)
            moved_old.append(rel)
        for rel in ordered:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            os.replace(staging / rel, root / rel)
            moved_new.append(rel)
    except OSError as exc:
        for rel in reversed(moved_new):
            os.replace(root / rel, staging / rel)
        for rel in reversed(moved_old):
            os.rename(old_dir / rel, root / rel)
        shutil.rmtree(old_dir, ignore_errors=True)
        _prune_empty(contents, {staging})
        raise UsageError(f"cannot write '{contents.given}': {exc}") from None
    shutil.rmtree(old_dir, ignore_errors=True)
    for leftover in contents.leftovers:
        shutil.rmtree(root / leftover, ignore_errors=True)
    _prune_empty(contents, {staging})


def _publish(out: str | os.PathLike, staging: Path, *, force: bool, kind: Kind, progress: Progress) -> None:
    contents = inspect_directory(out, kind, skip=staging)
    if contents.foreign and not force:
        raise _refuse_foreign(contents, kind)
    new, odd, _ = _walk(staging)
    if odd:
        raise UsageError(f"internal: the staged output holds entries that are not files: {_examples(odd)}")
    if (hit := _collision(new, contents)) is not None:
        raise UsageError(f"cannot write '{contents.given}' even with --force: '{hit}' exists there and edgec did not "
                         "write it, so edgec will not overwrite it", hint="move it away or choose another directory")
    _swap_in(contents, staging, new, MANIFEST if kind == OUTPUT else None)
    if contents.foreign:
        progress(f"'{contents.given}' holds {len(contents.foreign)} file(s) edgec did not write; they were kept and "
                 f"the new files written beside them: {_examples(contents.foreign)}")


@contextmanager
def atomic_directory(out: str | os.PathLike, *, force: bool = False, kind: Kind = OUTPUT,
                     progress: Progress = lambda _msg: None) -> Iterator[Path]:
    """Yield an empty staging directory; on success its files become `out` under the rule above.
    Any exception leaves `out` as it was, and no staging directory behind."""
    contents = check_output_path(out, force=force, kind=kind)
    parent = contents.path.parent if not contents.exists else contents.path
    prefix = f".{contents.path.name}." if not contents.exists else STAGING_PREFIX
    staging = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=parent))
    try:
        yield staging
        if contents.exists:
            _publish(out, staging, force=force, kind=kind, progress=progress)
            return
        staging.chmod(0o777 & ~_umask())
        if os.path.lexists(contents.path):
            raise UsageError(f"cannot write '{contents.given}': it appeared while edgec was writing it; run again")
        os.rename(staging, contents.path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_files(out: str | os.PathLike, files: dict[str, str], *, force: bool = False, kind: Kind = IR_DUMP,
                progress: Progress = lambda _msg: None) -> None:
    """Write a small directory of text files (`--dump-ir`) under the rule."""
    with atomic_directory(out, force=force, kind=kind, progress=progress) as tmp:
        for name, text in files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_text(text)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def claim_build_directory(build: str | os.PathLike, source: str | os.PathLike, *, force: bool = False,
                          progress: Progress = lambda _msg: None) -> Path:
    """Make `build` usable as the CMake tree of `source`, which CMake fills in place (no staging).
    Absent, empty, or an earlier edgec build of `source` is fine. Other contents need `force`; they
    are then kept beside the build and recorded in its marker, so a later compile keeps them too.
    A file where CMake writes one of its own is refused even with `force`."""
    given = Path(build)
    if given.is_symlink() and not given.exists():
        raise UsageError(f"cannot build in '{given}': it is a symbolic link to '{os.readlink(given)}', which does not exist")
    path = given.resolve()
    if path == path.parent:
        raise UsageError(f"refusing to build in the filesystem root '{path}'")
    if path.exists() and not path.is_dir():
        raise UsageError(f"cannot build in '{given}': it exists and is not a directory")
    if not path.parent.is_dir():
        raise UsageError(f"cannot build in '{given}': the parent directory '{path.parent}' does not exist")
    kept = _build_kept(path, Path(source)) if path.exists() else set()
    if kept is None:
        files, others, _ = _walk(path)
        kept = set(files + others)
        if kept and not force:
            raise UsageError(f"'{given}' is not empty and is not an edgec build of '{source}'; it holds {len(kept)} "
                             f"file(s) edgec did not write: {_examples(sorted(kept))}",
                             hint="move them away, or pass --force to build beside those files "
                                  "(edgec never deletes or overwrites files it did not write)")
        hit = sorted(name for name in CMAKE_WRITES if name in {k.split("/", 1)[0] for k in kept})
        if hit:
            raise UsageError(f"cannot build in '{given}' even with --force: '{hit[0]}' exists there and edgec did "
                             "not write it, so CMake would overwrite it", hint="move it away or choose another directory")
        if kept:
            progress(f"'{given}' holds {len(kept)} file(s) edgec did not write; they are kept beside the build: "
                     f"{_examples(sorted(kept))}")
    path.mkdir(exist_ok=True)
    (path / BUILD_MARKER).write_text(json.dumps({"edgec": "build", "source": str(Path(source).resolve()),
                                                 "kept": sorted(kept)}, indent=1) + "\n")
    return path
