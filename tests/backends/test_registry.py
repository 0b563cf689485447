"""The backend registry: a toy backend registers in a few lines and lands in the manifest; requests resolve in order.

Why: a new backend (VTA next) must be one folder plus a registration, so the interface is
tested the way a third party would use it — a `Backend` subclass with a typed section, one that
returns plain JSON, and one found through the `edgec.backends` entry-point group.
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

import edgec
from edgec.backends import registry
from edgec.backends.artifacts import write_artifacts
from edgec.backends.backend import Backend
from edgec.backends.manifest import read_manifest
from edgec.backends.records import JsonSection, Section
from edgec.backends.registry import (
    available_backends, get_backend, register_backend, resolve_backends, unregister_backend,
)
from edgec.cli import app, parse_backends
from edgec.compiler.diagnostics import UsageError
from edgec.compiler.facts import Fact
from tiny_cnn import build

PLAN = "device a { cores 1 }\ndevice b { cores 1 }\nplace stem .. res_out on a\nplace * on b\n"


@dataclass(frozen=True)
class StampSection(Section):
    stages: int
    devices: tuple[str, ...]


class StampBackend(Backend):
    """Writes one text file per output and says how many stages it saw."""

    name = "stamp"
    section_type = StampSection

    def write(self, program, out, *, manifest, progress):
        (out / "stamp.txt").write_text(f"{len(manifest.stages)} stages\n")
        return StampSection(len(manifest.stages), tuple(sorted({s.device for s in manifest.stages})))


class PlainBackend(Backend):
    name = "plain"
    needs = ("stamp",)

    def write(self, program, out, *, manifest, progress):
        return {"saw_stamp": "stamp" in manifest.sections, "ranks": [s.rank for s in manifest.stages]}


@pytest.fixture
def toys():
    register_backend(StampBackend)
    register_backend(PlainBackend())
    yield
    unregister_backend("stamp")
    unregister_backend("plain")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("registry") / "m.onnx"
    onnx.save(build(), path)
    return path


def test_a_toy_backend_writes_its_section(toys, model, tmp_path) -> None:
    result = edgec.compile(model, PLAN, tmp_path / "out", backends=["stamp"])
    assert result.manifest.backends == ("onnx", "stamp")
    assert result.manifest.sections["stamp"] == StampSection(2, ("a", "b"))
    assert (tmp_path / "out" / "stamp.txt").read_text() == "2 stages\n"
    assert "stamp.txt" in result.manifest.files
    on_disk = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert on_disk["stamp"] == {"stages": 2, "devices": ["a", "b"]}
    assert read_manifest(tmp_path / "out").sections["stamp"] == StampSection(2, ("a", "b"))


def test_a_backend_returning_json_runs_after_what_it_needs(toys, model, tmp_path) -> None:
    result = edgec.compile(model, PLAN, tmp_path / "out", backends=("plain",))
    assert result.manifest.backends == ("onnx", "stamp", "plain")
    back = read_manifest(tmp_path / "out").sections["plain"]
    assert isinstance(back, JsonSection) and back.to_json() == {"saw_stamp": True, "ranks": [0, 1]}
    assert back == result.manifest.sections["plain"]


def test_a_section_survives_without_its_backend(toys, model, tmp_path) -> None:
    edgec.compile(model, PLAN, tmp_path / "out", backends=["stamp"])
    unregister_backend("stamp")
    registry._entry_points.cache_clear()
    section = read_manifest(tmp_path / "out").sections["stamp"]
    assert isinstance(section, JsonSection) and section.to_json() == {"stages": 2, "devices": ["a", "b"]}


def test_requests_resolve_onnx_first_and_needs_before() -> None:
    assert [b.name for b in resolve_backends(["cpp"])] == ["onnx", "tvm", "cpp"]
    assert [b.name for b in resolve_backends(["cpp", "tvm", "onnx", "cpp"])] == ["onnx", "tvm", "cpp"]
    assert [b.name for b in resolve_backends([])] == ["onnx"]
    assert get_backend("cpp").requires == frozenset({Fact.STAGED, Fact.COMM})
    assert available_backends()[:3] == ["onnx", "tvm", "cpp"]


def test_unknown_backend_lists_the_available_ones(model, tmp_path) -> None:
    with pytest.raises(UsageError, match=r"unknown or unavailable backend 'tvn' \(available: onnx, tvm, cpp.*did you mean 'tvm'"):
        edgec.compile(model, PLAN, tmp_path / "out", backends=["tvn"])
    assert not (tmp_path / "out").exists()


def test_a_bare_string_is_refused(model, tmp_path) -> None:
    with pytest.raises(UsageError, match=r"backends must be a list of names, e\.g\. backends=\['tvm'\], not the string"):
        edgec.compile(model, PLAN, tmp_path / "out", backends="tvm")
    with pytest.raises(UsageError, match="must be names"):
        resolve_backends(["onnx", 3])


def test_bad_registrations_are_refused() -> None:
    class Files(StampBackend):
        name = "files"

    class Shouting(StampBackend):
        name = "Stamp!"

    with pytest.raises(UsageError, match="taken by a manifest.json key"):
        register_backend(Files)
    with pytest.raises(UsageError, match="lower-case"):
        register_backend(Shouting)
    with pytest.raises(UsageError, match="not an edgec Backend"):
        register_backend(object())
    register_backend(StampBackend)
    try:
        with pytest.raises(UsageError, match="already registered"):
            register_backend(type("Other", (StampBackend,), {}))
    finally:
        unregister_backend("stamp")


def test_a_program_lacking_a_required_fact_is_refused(model, tmp_path) -> None:
    program = edgec.compile(model, PLAN).program
    program.facts.discard(Fact.COMM)
    with pytest.raises(UsageError, match=r"backend 'onnx' needs the fact 'comm' \(provided by 'comm-insert'\)"):
        write_artifacts(program, tmp_path / "out", model_info={"path": None, "sha256": None}, plan_info=None)
    assert not (tmp_path / "out").exists()


def test_entry_point_plugins_load_when_asked_for(model, tmp_path, monkeypatch) -> None:
    (tmp_path / "edgec_stamp_plugin.py").write_text(
        "from edgec.backends.backend import Backend\n\n"
        "class Plugin(Backend):\n"
        "    name = 'plugged'\n\n"
        "    def write(self, program, out, *, manifest, progress):\n"
        "        return {'ranks': len(manifest.stages)}\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    point = importlib.metadata.EntryPoint("plugged", "edgec_stamp_plugin:Plugin", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "_entry_points", lambda: {"plugged": point})
    try:
        assert "plugged" in available_backends() and "edgec_stamp_plugin" not in sys.modules
        result = edgec.compile(model, PLAN, tmp_path / "out", backends=["plugged"])
        assert result.manifest.sections["plugged"].to_json() == {"ranks": 2}
    finally:
        unregister_backend("plugged")


def test_cli_backend_lists(toys, model, tmp_path) -> None:
    assert parse_backends(["tvm,cpp", "onnx", " tvm "]) == ["tvm", "cpp", "onnx"]
    with pytest.raises(UsageError, match="empty backend name"):
        parse_backends(["tvm,"])
    plan = tmp_path / "p.edge"
    plan.write_text(PLAN)
    result = CliRunner().invoke(app, ["compile", str(model), "-p", str(plan), "-o", str(tmp_path / "out"), "-q",
                                      "--backend", "stamp,plain", "--backend", "onnx"])
    assert result.exit_code == 0, result.output
    assert read_manifest(tmp_path / "out").backends == ("onnx", "stamp", "plain")
    result = CliRunner().invoke(app, ["compile", str(model), "-p", str(plan), "-o", str(tmp_path / "o2"),
                                      "--backend", "stamp,ncnn"])
    assert result.exit_code == 2 and "unknown or unavailable backend 'ncnn'" in result.output
