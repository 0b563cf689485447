"""manifest.json as typed records: written and read by the same code, versioned, and refused clearly when bad.

Why: the runtime, `edgec show` and the C++ backend read only the manifest, so a round trip must
be exact, and a file from a newer edgec or a damaged one must be one message naming the file and
the key — never a KeyError in whatever reads it first.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest
from typer.testing import CliRunner

import edgec
from edgec.backends.cpp_mpi import CppPackage, CppSection, generate_main
from edgec.backends.manifest import (
    FORMAT_VERSION, Manifest, ManifestError, TransferEntry, as_manifest, read_manifest, write_manifest,
)
from edgec.backends.tvm.section import TvmSection, TvmStage
from edgec.cli import app
from edgec.runtime.outputs import CompiledOutput, random_inputs
from tiny_cnn import build

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("manifest")
    onnx.save(build(), directory / "m.onnx")
    edgec.compile(directory / "m.onnx", (EXAMPLES / "tiny_cnn_split.edge").read_text(), directory / "out")
    return directory / "out"


def _damaged(out: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    data = json.loads((copy / "manifest.json").read_text())
    change(data)
    (copy / "manifest.json").write_text(json.dumps(data))
    return copy


def test_round_trip_is_exact(out, tmp_path) -> None:
    on_disk = json.loads((out / "manifest.json").read_text())
    manifest = read_manifest(out)
    assert manifest.format == FORMAT_VERSION == on_disk["format"] == 2
    assert manifest.to_json() == on_disk
    write_manifest(manifest, tmp_path / "manifest.json")
    assert read_manifest(tmp_path / "manifest.json") == manifest
    assert Manifest.from_json(json.loads(json.dumps(manifest.to_json()))) == manifest
    assert as_manifest(on_disk) == manifest


def test_records_are_typed_and_read_like_their_json(out) -> None:
    manifest = read_manifest(out)
    assert manifest.backends == ("onnx",) and set(manifest.sections) == {"onnx"}
    for stage in manifest.stages:
        sub = onnx.load(str(out / stage.model))
        dims = [tuple(d.dim_value for d in v.type.tensor_type.shape.dim) for v in sub.graph.input]
        assert [v.name for v in sub.graph.input] == [t.name for t in stage.signature.inputs]
        assert dims == [t.shape for t in stage.signature.inputs]
        assert [v.name for v in sub.graph.output] == [t.name for t in stage.signature.outputs]
    assert all(t.nbytes == t.spec.nbytes for t in manifest.transfers)
    first = manifest.stages[1].signature.inputs[0]
    assert manifest["stages"][1]["signature"]["inputs"][0] == {"name": first.name, "shape": list(first.shape),
                                                               "dtype": first.dtype}
    assert "onnx" in manifest and "tvm" not in manifest
    assert manifest.stages[0].get("threads") == manifest.stages[0].threads == json.loads(
        (out / "manifest.json").read_text())["stages"][0]["threads"]
    part = manifest.splits[0].parts[0]
    assert part.receives_bytes > 0 and manifest["splits"][0]["parts"][0]["receives_bytes"] == part.receives_bytes


def test_a_newer_format_is_refused_by_name(out, tmp_path) -> None:
    copy = _damaged(out, tmp_path, lambda d: d.update(format=FORMAT_VERSION + 1))
    with pytest.raises(ManifestError, match=r"copy/manifest.json was written by a newer edgec \(manifest format 3; "
                                            r"this edgec reads formats 1 to 2\)") as caught:
        CompiledOutput.open(copy)
    assert "upgrade edgec" in caught.value.hint
    result = CliRunner().invoke(app, ["show", str(copy)])
    assert result.exit_code == 2 and "newer edgec" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["stages"][1].update(rank="x"), r"manifest.json: stages\[1\]\.rank: expected an integer, got \"x\""),
    (lambda d: d["stages"][0].pop("device"), r"stages\[0\]\.device: missing"),
    (lambda d: d["transfers"][2].update(bytes=None), r"transfers\[2\]\.bytes: expected an integer, got null"),
    (lambda d: d["model"]["inputs"][0].update(dtype="floaty"), r"model\.inputs\[0\]\.dtype: 'floaty' is not a numpy dtype"),
    (lambda d: d["stages"][0].update(rnak=0), r"stages\[0\]: unknown key 'rnak'"),
    (lambda d: d["onnx"].update(ir_version="8"), r"onnx\.ir_version: expected an integer"),
    (lambda d: d.pop("format"), r"no valid \"format\" number \(missing\); this is not an edgec manifest"),
    (lambda d: d["platform"]["devices"]["cam"].update(cpus=2), r"platform\.devices\.cam: not a device description"),
])
def test_a_malformed_manifest_is_refused_by_key(out, tmp_path, change, message) -> None:
    with pytest.raises(ManifestError, match=message):
        read_manifest(_damaged(out, tmp_path, change))


def test_unreadable_files_are_refused(tmp_path) -> None:
    (tmp_path / "manifest.json").write_text("{\"format\": 2,")
    with pytest.raises(ManifestError, match=r"manifest.json: invalid JSON at line 1"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("[1, 2]")
    with pytest.raises(ManifestError, match="top level: expected an object, got a list"):
        read_manifest(tmp_path)
    with pytest.raises(edgec.UsageError, match="is not an edgec output directory"):
        read_manifest(tmp_path / "nowhere")


def _format1(data: dict) -> None:
    """What edgec wrote before format 2: no backends, signatures or onnx section; unitless split keys."""
    data["format"] = 1
    del data["backends"], data["onnx"]
    for stage in data["stages"]:
        del stage["signature"]
    for split in data["splits"]:
        for part in split["parts"]:
            for key in ("receives", "sends", "halo"):
                part[key] = part.pop(f"{key}_bytes")


def test_format_1_is_still_read(out, tmp_path) -> None:
    copy = _damaged(out, tmp_path, _format1)
    old, new = read_manifest(copy), read_manifest(out)
    assert old.format == 1 and old.backends == ("onnx",) and old.stages[0].signature is None
    assert old.splits == new.splits and old.transfers == new.transfers and old.model == new.model
    assert random_inputs(old, 3).keys() == random_inputs(new, 3).keys()
    with pytest.raises(edgec.UsageError, match="records no signature"):
        generate_main(copy)


def test_transfer_bytes_key_is_kept() -> None:
    entry = TransferEntry.from_json({"tensor": "a", "src": 0, "dst": 1, "tag": 0, "shape": [1, 4], "dtype": "float32",
                                     "wire": "float32", "bytes": 16})
    assert entry.nbytes == 16 and entry.to_json()["bytes"] == 16 and "nbytes" not in entry.to_json()


def test_backend_sections_round_trip() -> None:
    tvm = TvmSection({"apache-tvm": "0.27"}, 1.5, 2, (
        TvmStage(0, "a", "cpu", "devices/a/stage0.so", {"kind": "llvm", "mattr": ["+neon"]}, "aarch64",
                 "aarch64-linux-gnu-g++", "ab" * 32, 1000, 0.7),
        TvmStage(1, "b", "gpu", "devices/b/stage1.so", {"kind": "cuda", "host": {"kind": "llvm"}}, "x86_64", None,
                 "cd" * 32, 2000, 1.1, device_kernels=4, device_code=("cuda-source",))))
    assert TvmSection.from_json(json.loads(json.dumps(tvm.to_json()))) == tvm
    assert "device_kernels" not in tvm.to_json()["stages"][0] and tvm.stages[1].kind == "cuda"
    cpp = CppSection(("cpp/main.cpp",), "build/edgec_pipeline", (CppPackage("a", "packages/a.tar.gz", "x86_64", True),))
    assert CppSection.from_json(json.loads(json.dumps(cpp.to_json()))) == cpp
    with pytest.raises(ManifestError, match=r"tvm\.stages\[0\]\.bytes: missing"):
        bad = tvm.to_json()
        del bad["stages"][0]["bytes"]
        TvmSection.from_json(bad, where="tvm")
