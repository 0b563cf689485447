"""A recompile with `--backend tvm` rebuilds only the stages whose sub-model changed.

Told by the progress output (which stages were compiled, which came from the cache) and the
manifest (each module's sha256), never by timing.
"""

from __future__ import annotations

import json
import os
import re

import onnx
import pytest
from typer.testing import CliRunner

from edgec.backends.manifest import read_manifest
from edgec.backends.tvm.module_cache import ModuleCache
from edgec.cli import app
from edgec.runtime.outputs import random_inputs
from edgec.runtime.verify import verify
from tiny_cnn import build

runner = CliRunner()
DEVICES = "device a { cores 1 }\ndevice b { cores 1 }\ndevice c { cores 1 }\n"
PLAN = DEVICES + "place stem .. pool1 on a\nplace res_conv1 .. res_out on b\nplace * on c\n"
MOVED = DEVICES + "place stem .. pool1 on a\nplace res_conv1 .. res_add on b\nplace * on c\n"


def _compile(tmp_path, plan: str) -> tuple[set[int], set[int], dict]:
    (tmp_path / "p.edge").write_text(plan)
    result = runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"),
                                 "-o", str(tmp_path / "out"), "--backend", "tvm"])
    assert result.exit_code == 0, result.output
    compiled = {int(r) for r in re.findall(r"stage (\d+): \{[^}]*\}\s+in\s+[\d.]+ s", result.output)}
    cached = {int(r) for r in re.findall(r"stage (\d+): \{[^}]*\}\s+from\s+the\s+module\s+cache", result.output)}
    return compiled, cached, json.loads((tmp_path / "out" / "manifest.json").read_text())


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_TVM_MODULE_CACHE", str(tmp_path / "modules"))
    onnx.save(build(), tmp_path / "m.onnx")
    return tmp_path / "modules"


def test_recompile_rebuilds_only_changed_stages(tmp_path, cache):
    compiled, cached, first = _compile(tmp_path, PLAN)
    assert (compiled, cached) == ({0, 1, 2}, set())
    assert len([e for e in cache.iterdir() if not e.name.startswith(".")]) == 3

    compiled, cached, again = _compile(tmp_path, PLAN)
    assert (compiled, cached) == (set(), {0, 1, 2})
    assert [s["sha256"] for s in again["tvm"]["stages"]] == [s["sha256"] for s in first["tvm"]["stages"]]
    for stage in again["tvm"]["stages"]:
        assert again["files"][stage["module"]] == stage["sha256"]

    compiled, cached, moved = _compile(tmp_path, MOVED)
    assert (compiled, cached) == ({1, 2}, {0})
    assert moved["tvm"]["stages"][0]["sha256"] == first["tvm"]["stages"][0]["sha256"]


def test_a_corrupt_entry_is_rebuilt(tmp_path, cache):
    _compile(tmp_path, PLAN)
    for entry in cache.iterdir():
        (entry / "module.so").write_bytes(b"not a module")
    compiled, cached, manifest = _compile(tmp_path, PLAN)
    assert (compiled, cached) == ({0, 1, 2}, set())
    assert verify(tmp_path / "out", random_inputs(read_manifest(tmp_path / "out")), engine="tvm").ok
    assert manifest["files"]


def test_the_cache_can_be_switched_off(tmp_path, cache, monkeypatch):
    monkeypatch.setenv("EDGEC_TVM_MODULE_CACHE", "off")
    assert ModuleCache.default() is None
    compiled, cached, _ = _compile(tmp_path, PLAN)
    assert (compiled, cached) == ({0, 1, 2}, set()) and not cache.exists()


def test_least_recently_used_entries_go_first(tmp_path):
    modules = ModuleCache(tmp_path / "c", max_bytes=250)
    module = tmp_path / "m.so"
    module.write_bytes(b"x" * 100)
    for when, key in enumerate(("old", "mid", "new"), start=1):
        modules.store(key, module, {"sha256": "?"})
        os.utime(tmp_path / "c" / key / "entry.json", (when * 1000, when * 1000))
    assert sorted(e.name for e in (tmp_path / "c").iterdir()) == ["mid", "new"]
