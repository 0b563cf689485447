"""Write a compiled program's output directory: the requested backends' files, rankfile, comm.json, manifest.json.

The backends come from the registry (`registry.resolve_backends`: `onnx` first, each after the
ones it needs) and run in that order, each adding its section to the manifest; the program
must have every fact each of them requires. Every written file's sha256 ends up in the manifest.
Writing happens in a temp dir renamed into place at the end (`output_dir.atomic_directory`).
`add_section` records a backend run later on an existing output (`compile_directory`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..compiler.diagnostics import UsageError
from ..compiler.pass_manager import missing_facts_text
from ..compiler.program import Program
from .backend import Backend, Progress
from .comm_tables import comm_tables, rankfile_text
from .manifest import Manifest, read_manifest, sha256_file, write_manifest
from .output_dir import atomic_directory
from .program_manifest import build_manifest
from .records import JsonSection, Section
from .registry import resolve_backends

UNLISTED = ("manifest.json", "build/")
"""Paths of an output that the manifest does not hash: itself, and what `edgec build` makes."""


def check_facts(program: Program, backends: Sequence[Backend]) -> None:
    """Refuse a program that lacks a fact a backend requires, before anything is written."""
    for backend in backends:
        missing = backend.requires - program.facts
        if missing:
            raise UsageError(f"backend '{backend.name}' {missing_facts_text(missing)}",
                             hint="run the passes that provide them first (edgec.passes.default_pipeline())")


def _section(backend: Backend, value: Section | Mapping[str, Any] | None) -> Section | None:
    if value is None or isinstance(value, Section):
        return value
    if not isinstance(value, Mapping):
        raise UsageError(f"backend '{backend.name}' returned {type(value).__name__}, not a manifest section")
    try:
        data = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"backend '{backend.name}' returned a section that is not JSON: {exc}") from None
    kind = backend.section_type or JsonSection
    return kind.from_json(data, where=backend.name, source=f"the section of backend '{backend.name}'")


def _hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def write_artifacts(
    program: Program,
    out: Path,
    *,
    model_info: Mapping[str, Any],
    plan_info: Mapping[str, Any] | None,
    progress: Progress = lambda _msg: None,
    backends: Sequence[str] = ("onnx",),
    force: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
) -> Manifest:
    """Write OUT with the requested backends (ONNX sub-models always); returns the manifest written.
    `force` writes beside files edgec did not write instead of refusing (see `output_dir`);
    `extra_files` (relative path → bytes) are written too and hashed like the rest."""
    chosen = resolve_backends(backends)
    check_facts(program, chosen)
    with atomic_directory(out, force=force, progress=progress) as tmp:
        for name, data in (extra_files or {}).items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        (tmp / "rankfile").write_text(rankfile_text(program))
        (tmp / "comm.json").write_text(json.dumps(comm_tables(program), indent=2) + "\n")
        manifest = build_manifest(program, model_info=model_info, plan_info=plan_info,
                                  backends=[b.name for b in chosen])
        for backend in chosen:
            section = _section(backend, backend.write(program, tmp, manifest=manifest, progress=progress))
            if section is not None:
                manifest = manifest.with_section(backend.name, section)
        manifest = manifest.replace_files(_hashes(tmp))
        write_manifest(manifest, tmp)
    return manifest


def add_section(out: str | Path, name: str, section: Section) -> Manifest:
    """Record backend `name`'s section in an existing output's manifest (written by `name` just now),
    hashing the files that are new or changed since the manifest was written; returns the new manifest."""
    out = Path(out)
    manifest = read_manifest(out).with_section(name, section)
    written = (out / "manifest.json").stat().st_mtime
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if not path.is_file() or rel.startswith(UNLISTED):
            continue
        known = manifest.files.get(rel)
        files[rel] = known if known is not None and path.stat().st_mtime < written else sha256_file(path)
    manifest = manifest.replace_files(files)
    write_manifest(manifest, out)
    return manifest
