"""A plan the explorer found with replication is plan text the compiler accepts, and it verifies."""

from __future__ import annotations

import numpy as np
import onnx

from edgec import api
from edgec.compiler.platform import Device, Platform
from edgec.explorer.chain_dp import chain_optimum
from edgec.explorer.cost_model import CostModel
from edgec.explorer.plan_text import plan_text
from edgec.explorer.units import all_units
from edgec.runtime.verify import verify
from explorer_helpers import chain_model, facts_of, platform


def test_an_explored_plan_with_replicas_compiles_and_verifies(tmp_path):
    proto = chain_model([4, 4, 4, 4, 4])
    onnx.save(proto, tmp_path / "chain.onnx")
    facts = facts_of(proto)
    times = np.ones((4, 4))
    times[1] *= 3.0  # d1 is 3x slower
    model = CostModel(facts, all_units(facts), platform(times, bandwidth=1e9))
    optimum = chain_optimum(model, max_replicas=4)
    assert any(optimum.plan.replicas)
    devices = Platform()
    for name in model.platform.devices:
        devices.add(Device(name, cores=2))
    text = plan_text(optimum.plan, model.units, facts.names, devices, model=str(tmp_path / "chain.onnx"),
                     inputs={}, header=["replicated"], cost=model.evaluate(optimum.plan))
    assert "replicate " in text
    (tmp_path / "plan.edge").write_text(text)
    result = api.compile(None, tmp_path / "plan.edge", tmp_path / "out")
    replicated = {r.stage: [p.device for p in r.placements] for r in result.program.replicas}
    expected = {k: [model.platform.devices[d] for d in (optimum.plan.devices[k], *extra)]
                for k, extra in enumerate(optimum.plan.replicas) if extra}
    assert replicated == expected
    report = verify(tmp_path / "out")
    assert report.ok and report.replica_frames == max(len(v) for v in expected.values())


EQUAL = """\
device a { cores 1 }
device b { cores 1 }
device c { cores 1 }
link a <-> b { bandwidth 10Gbit latency 10us }
link b <-> c { bandwidth 10Gbit latency 10us }
link a <-> c { bandwidth 10Gbit latency 10us }
"""


def test_explore_with_replicate_writes_replicated_plans_that_compile_and_verify(tmp_path):
    import json

    from typer.testing import CliRunner

    from edgec.cli import app
    from edgec.explorer.profile import profile
    from edgec.explorer.session import load
    from tiny_cnn import build

    onnx.save(build(), tmp_path / "tiny.onnx")
    (tmp_path / "platform.edge").write_text(EQUAL)
    loaded = load(tmp_path / "tiny.onnx", tmp_path / "platform.edge")
    (tmp_path / "profile.json").write_text(json.dumps(profile(loaded.model, [1], repeats=2, with_mpi=False)))
    runner = CliRunner()
    docs = {}
    for most in (1, 3):
        result = runner.invoke(app, ["explore", str(tmp_path / "tiny.onnx"), "--plan", str(tmp_path / "platform.edge"),
                                     "--profile", str(tmp_path / "profile.json"), "--budget", "1", "--replicate",
                                     str(most), "-o", str(tmp_path / f"front{most}"), "--json"])
        assert result.exit_code == 0, result.output
        docs[most] = json.loads(result.output)
    assert docs[3]["dp_optimum_fps"] > docs[1]["dp_optimum_fps"]  # three equal devices: copies beat a pipeline
    replicated = [r for r in docs[3]["plans"] if r.get("replicas")]
    assert replicated
    row = replicated[0]
    assert "replicate " in (tmp_path / "front3" / row["plan"]).read_text()
    compiled = api.compile(None, tmp_path / "front3" / row["plan"], tmp_path / "out")
    assert [len(r.placements) - 1 for r in compiled.program.replicas] == [len(x) for x in row["replicas"] if x]
    assert verify(tmp_path / "out").ok
    refused = runner.invoke(app, ["explore", str(tmp_path / "tiny.onnx"), "--plan", str(tmp_path / "platform.edge"),
                                  "--profile", str(tmp_path / "profile.json"), "--replicate", "0", "-o",
                                  str(tmp_path / "bad")])
    assert refused.exit_code == 2 and "--replicate must be at least 1" in refused.output
