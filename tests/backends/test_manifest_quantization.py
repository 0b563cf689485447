"""The manifest's `quantization` section and how `edgec show` lists it, from Program records filled by hand.

Why: `edgec show` and `edgec verify` learn that an output is quantized only from this section,
so it must round-trip exactly, be absent for float plans (and read as None from manifests
written before it existed), and a damaged one must be one clear error naming the key.
"""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from edgec.backends.manifest import ManifestError, read_manifest, write_manifest
from edgec.backends.quantization_records import QuantizationInfo
from edgec.cli import app
from quantized_graphs import compile_quantized, records

runner = CliRunner()


@pytest.fixture(scope="module")
def outs(tmp_path_factory):
    root = tmp_path_factory.mktemp("quant-manifest")
    return {"int8": compile_quantized(root / "int8", "int8"), "float16": compile_quantized(root / "fp16", "float16"),
            "float": compile_quantized(root / "float", "int8", quantized=False)}


def test_the_section_holds_the_records(outs):
    data = json.loads((outs["int8"] / "manifest.json").read_text())["quantization"]
    assert data["wires"] == [{"tensor": "r1", "wire_tensor": "q", "wire": "int8", "scale": 0.05, "zero_point": 0}]
    first, second = data["stages"]
    assert first == {"stage": 0, "device": "a", "engine": "onnxruntime", "activation_dtype": "uint8",
                     "weight_dtype": "int8", "granularity": "per_channel", "method": "minmax", "nodes": ["c1"],
                     "reason": "onnxruntime runs QDQ convolutions as integer kernels only with uint8 activations",
                     "bias_correction": True, "equalization": False}
    assert (second["method"], second["equalization"]) == ("entropy", True)
    fp16 = json.loads((outs["float16"] / "manifest.json").read_text())["quantization"]["wires"]
    assert fp16 == [{"tensor": "r1", "wire_tensor": "q", "wire": "float16", "scale": None, "zero_point": None}]


def test_round_trip_and_absent_for_float_plans(outs, tmp_path):
    manifest = read_manifest(outs["int8"])
    stages, wires = records("int8")
    assert manifest.quantization == QuantizationInfo.of(stages, wires)
    assert manifest.quantization.stage(1).granularity == "per_tensor" and manifest.quantization.stage(2) is None
    assert manifest.quantization.wire_of("q") == manifest.quantization.wire_of("r1")
    write_manifest(manifest, tmp_path / "manifest.json")
    assert read_manifest(tmp_path / "manifest.json") == manifest
    assert "quantization" not in manifest.sections and "quantization" not in manifest.backends
    float_data = json.loads((outs["float"] / "manifest.json").read_text())
    assert "quantization" not in float_data and read_manifest(outs["float"]).quantization is None
    assert QuantizationInfo.of([], []) is None


@pytest.mark.parametrize("change, message", [
    (lambda q: q["stages"][0].pop("method"), r"quantization\.stages\[0\]\.method: missing"),
    (lambda q: q["wires"][0].update(scale="big"), r"quantization\.wires\[0\]\.scale: expected a number or null"),
    (lambda q: q["stages"][1].update(nodes="c2"), r"quantization\.stages\[1\]\.nodes: expected a list"),
    (lambda q: q.update(wire=[]), r"quantization: unknown key 'wire'"),
])
def test_a_damaged_section_is_one_clear_error(outs, tmp_path, change, message):
    copy = tmp_path / "copy"
    shutil.copytree(outs["int8"], copy)
    data = json.loads((copy / "manifest.json").read_text())
    change(data["quantization"])
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(ManifestError, match=message):
        read_manifest(copy)


def test_show_lists_quantized_stages_and_wires(outs):
    result = runner.invoke(app, ["show", str(outs["int8"])], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    text = result.output
    assert "quantized stages" in text and "quantized wires" in text
    assert "uint8" in text and "int8 per_channel" in text and "minmax" in text and "entropy" in text
    assert "bias correction" in text and "equalization" in text
    assert "int8 (of r1, scale 0.05, zp 0)" in text and "256" in text and "1,024" in text
    plain = runner.invoke(app, ["show", str(outs["float"])], env={"COLUMNS": "250"})
    assert plain.exit_code == 0 and "quantized" not in plain.output


def test_show_json_has_the_section_and_wire_parameters(outs):
    result = runner.invoke(app, ["show", str(outs["int8"]), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    (transfer,) = data["transfers"]
    assert transfer == {"tag": 0, "tensor": "q", "src": 0, "dst": 1, "shape": [1, 4, 8, 8], "wire": "int8",
                        "bytes": 256, "float_tensor": "r1", "scale": 0.05, "zero_point": 0}
    assert [s["activation_dtype"] for s in data["quantization"]["stages"]] == ["uint8", "uint8"]
    assert [s["method"] for s in data["quantization"]["stages"]] == ["minmax", "entropy"]
    plain = json.loads(runner.invoke(app, ["show", str(outs["float"]), "--json"]).output)
    assert plain["quantization"] is None and "scale" not in plain["transfers"][0]
