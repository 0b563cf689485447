"""Light-zoo models split into 4 stages, every stage compiled by TVM for x86, match onnxruntime.

Why per stage: the zoo's final outputs are softmaxes that saturate with random weights, so an
end-to-end comparison alone could hide a wrong stage. Each stage is run by TVM and by
onnxruntime on the same inputs (the reference chain's boundary tensors), and every output of
every stage must agree within 1e-4 of its scale; the chained TVM result is checked too.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from tvm_helpers import TOLERANCE, rel_err

import edgec
from edgec.backends.manifest import sha256_file
from edgec.backends.tvm import compile_directory
from edgec.compiler.facts import Fact
from edgec.passes import default_pipeline
from edgec.runtime.outputs import CompiledOutput, random_inputs
from edgec.runtime.tvm_stage import TvmSession
from zoo import randomized, range_plan

MODELS = ["squeezenet", "resnet50", "inception_v1", "densenet121"]


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("tvm_zoo")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_zoo_stages_match_onnxruntime(name, zoo_dir, tmp_path) -> None:
    model = randomized(name, zoo_dir)
    order = [n.name for n in edgec.load_model(model).graph]
    out = tmp_path / "out"
    edgec.compile(model, range_plan(order, stages=4), out, passes=default_pipeline([Fact.BATCHNORM_FOLDED]))
    manifest = compile_directory(out)

    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["tvm"] == manifest["tvm"] and len(manifest["tvm"]["stages"]) == len(manifest["stages"])
    for entry in manifest["tvm"]["stages"]:
        assert entry["target"]["kind"] == "llvm" and entry["compile_seconds"] > 0
        assert sha256_file(out / entry["module"]) == entry["sha256"] == on_disk["files"][entry["module"]]
    assert manifest["tvm"]["versions"]["apache-tvm"].startswith("0.27")

    compiled = CompiledOutput.open(out)
    reference = dict(random_inputs(compiled.manifest, seed=1))
    chained = dict(reference)
    for stage in compiled.stages:
        ort_session = compiled.session(stage["rank"])
        tvm_session = TvmSession.for_stage(compiled, stage["rank"], threads=2)
        names = [i.name for i in ort_session.get_inputs()]
        assert names == [i.name for i in tvm_session.get_inputs()]
        expected = ort_session.run(None, {n: reference[n] for n in names})
        got = tvm_session.run(None, {n: reference[n] for n in names})
        for output, want, have in zip(ort_session.get_outputs(), expected, got):
            assert have.shape == want.shape and rel_err(have, want) <= TOLERANCE, (stage["rank"], output.name)
        reference.update(zip((o.name for o in ort_session.get_outputs()), expected))
        chained.update(zip((o.name for o in tvm_session.get_outputs()),
                           tvm_session.run(None, {n: chained[n] for n in names})))
    for spec in compiled.manifest["model"]["outputs"]:
        assert rel_err(chained[spec["name"]], reference[spec["name"]]) <= TOLERANCE
        assert np.isfinite(chained[spec["name"]]).all()
