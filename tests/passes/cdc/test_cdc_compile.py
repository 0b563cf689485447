"""`cdc` through `edgec.compile`: the default pipeline adds cdc-encode, stages the parity parts, and the output
sends every parity part to the merge stage and verifies against the unsplit model."""

from __future__ import annotations

import pytest

import edgec
from edgec.compiler.annotations import CDC_LAYERS, placement_of
from edgec.compiler.diagnostics import PlanError
from edgec.compiler.facts import Fact
from cdc_helpers import fc_model, plan


def test_default_pipeline_encodes_and_stages_the_parity_part():
    result = edgec.compile(fc_model(n=8, follower="Relu"), plan(4, 1))
    program = result.program
    assert Fact.CDC_ENCODED in program.facts and Fact.COMM in program.facts
    (layer,) = program.model.meta[CDC_LAYERS]
    assert {s.device for s in program.stages} == {"d0", "d1", "d2", "d3", "d7"}
    assert placement_of(program.node(layer.parities[0])).device == "d7"


def test_a_pipeline_without_cdc_encode_is_refused():
    with pytest.raises(PlanError, match="no 'cdc' pass") as info:
        edgec.compile(fc_model(), plan(2, 1), passes="split-layer,split,comm-insert")
    assert info.value.span.line == 11 and "add 'cdc-encode'" in info.value.hint


def test_writing_an_output_with_a_pipeline_without_cdc_encode_is_a_located_error(tmp_path):
    with pytest.raises(PlanError, match="no 'cdc' pass") as info:
        edgec.compile(fc_model(), plan(2, 1), tmp_path / "out", passes="split-layer,split,comm-insert")
    assert info.value.span.line == 11 and not (tmp_path / "out").exists()


def test_compiled_output_sends_parity_to_the_merge_and_verifies(tmp_path):
    import onnx

    from edgec.runtime.outputs import CompiledOutput
    from edgec.runtime.verify import verify

    model = fc_model(n=8, follower="Relu")
    onnx.save(model, tmp_path / "fc.onnx")
    result = edgec.compile(tmp_path / "fc.onnx", plan(4, 2, targets="d5, d6"), tmp_path / "out")
    (layer,) = CompiledOutput.open(tmp_path / "out").manifest.cdc.layers
    assert (len(layer.parts), len(layer.parities), layer.axis) == (4, 2, 1)
    sent = {(t.tensor, t.src, t.dst) for t in result.program.transfers}
    assert all((p, s, layer.merge_stage) in sent for p, s in zip(layer.parities, layer.parity_stages))
    assert verify(tmp_path / "out").ok


def test_manifest_cdc_section_round_trips_and_a_malformed_one_is_refused(tmp_path):
    import json

    from edgec.backends.manifest import Manifest
    from edgec.backends.records import Fields, ManifestError
    from edgec.passes.cdc.code import parity_matrix

    edgec.compile(fc_model(n=8), plan(4, 2), tmp_path / "out")
    data = json.loads((tmp_path / "out" / "manifest.json").read_text())
    manifest = Manifest.read(Fields(data, "", "manifest.json"))
    (layer,) = manifest.cdc.layers
    assert layer.generator == tuple(map(tuple, parity_matrix(4, 2).tolist()))
    assert manifest.to_json()["cdc"] == data["cdc"]
    data["cdc"]["layers"][0]["generator"] = [[1.0, 2.0]]
    with pytest.raises(ManifestError, match="generator: expected 2 lists of 4 numbers"):
        Manifest.read(Fields(data, "", "manifest.json"))


def test_show_lists_the_coded_layer(tmp_path):
    import json

    from typer.testing import CliRunner

    from edgec.cli import app

    edgec.compile(fc_model(n=8), plan(4, 1), tmp_path / "out")
    shown = CliRunner().invoke(app, ["show", str(tmp_path / "out")], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "coded layers (cdc)" in shown.output and "fc/parity0" in shown.output
    as_json = CliRunner().invoke(app, ["show", str(tmp_path / "out"), "--json"])
    assert json.loads(as_json.output)["cdc"]["layers"][0]["parities"] == ["fc/parity0"]


@pytest.mark.slow
def test_coded_output_verifies_under_mpirun(tmp_path):
    import onnx

    from edgec.runtime.verify import verify

    onnx.save(fc_model(n=8, follower="Relu"), tmp_path / "fc.onnx")
    edgec.compile(tmp_path / "fc.onnx", plan(4, 1), tmp_path / "out")
    assert verify(tmp_path / "out", mpi=True).ok
