"""`edgec tune`: a tiny run writes each stage's database, a later compile reuses it, tuned modules verify.

A search of two trials per kernel (the budget only bounds it on a loaded machine) rarely beats
the hand schedules, so the reuse test accepts every tuned schedule and stage (`WIN_MARGIN` and
`KEEP_BELOW` raised): what it checks is the path from database to module, not speed. The drop
test forces the opposite verdict on whole stages: their records go and compiles ignore them.
"""

from __future__ import annotations

import json

import onnx
import pytest
from typer.testing import CliRunner

from edgec.backends.manifest import read_manifest
from edgec import tune as tune_command
from edgec.backends.tvm import tuning
from edgec.backends.tvm.targets import select_target
from edgec.cli import app
from tiny_cnn import build

runner = CliRunner()
PLAN = "device a { cores 1 }\ndevice b { cores 1 }\nplace stem .. res_out on a\nplace * on b\n"


@pytest.fixture
def out(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGEC_TVM_MODULE_CACHE", str(tmp_path / "modules"))
    onnx.save(build(), tmp_path / "m.onnx")
    (tmp_path / "p.edge").write_text(PLAN)
    result = runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"),
                                 "-o", str(tmp_path / "out"), "--backend", "tvm"])
    assert result.exit_code == 0, result.output
    return tmp_path / "out"


def _databases(out):
    manifest = read_manifest(out)
    return [tuning.database_dir(out / s.model, select_target(manifest.device(s.device), "cpu")) for s in manifest.stages]


@pytest.mark.slow
def test_tune_writes_databases_and_later_compiles_use_them(out, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tuning, "WIN_MARGIN", 1e9)
    monkeypatch.setattr(tune_command, "KEEP_BELOW", 1e9)
    result = runner.invoke(app, ["tune", str(out), "--trials", "2", "--budget", "120"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "tune.json").read_text())
    assert [r["rank"] for r in report] == [0, 1]
    assert all(r["tuned_kernels"] >= 1 and r["kept"] and r["max_rel_err"] <= 1e-4 for r in report), report
    sources = set()
    for folder in _databases(out):
        kernels = json.loads((folder / "kernels.json").read_text())
        sources |= {k["source"] for k in kernels if k["committed"]}
        assert any(k["committed"] for k in kernels) and (folder / "database_tuning_record.json").stat().st_size > 0
    assert "template" in sources, sources
    again = runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"),
                                "-o", str(tmp_path / "again"), "--backend", "tvm"])
    assert again.exit_code == 0 and "tuned kernel(s)" in again.output, again.output
    verified = runner.invoke(app, ["verify", str(tmp_path / "again"), "--engine", "tvm", "--json"])
    assert verified.exit_code == 0 and '"ok": true' in verified.output, verified.output
    monkeypatch.setenv("EDGEC_TVM_TUNING", "off")
    untuned = runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"),
                                  "-o", str(tmp_path / "untuned"), "--backend", "tvm"])
    assert untuned.exit_code == 0 and "tuned kernel(s)" not in untuned.output, untuned.output


@pytest.mark.slow
def test_a_stage_not_faster_when_tuned_keeps_its_hand_schedules(out, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(tuning, "WIN_MARGIN", 1e9)
    monkeypatch.setattr(tune_command, "KEEP_BELOW", 0.0)
    result = runner.invoke(app, ["tune", str(out), "--trials", "1", "--budget", "60"])
    assert result.exit_code == 0 and "its tuned kernels are dropped" in " ".join(result.output.split()), result.output
    report = json.loads((out / "tune.json").read_text())
    assert all(r["tuned_kernels"] >= 1 and not r["kept"] for r in report), report
    for folder in _databases(out):
        assert (folder / "kernels.json").is_file() and not (folder / "database_tuning_record.json").exists()
    again = runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"),
                                "-o", str(tmp_path / "again"), "--backend", "tvm"])
    assert again.exit_code == 0 and "tuned kernel(s)" not in again.output, again.output


@pytest.mark.parametrize("args, message", [(["--trials", "0"], "--trials must be at least 1"),
                                           (["--budget", "0"], "--budget must be a positive")])
def test_bad_options_are_usage_errors(out, args, message) -> None:
    result = runner.invoke(app, ["tune", str(out), *args])
    assert result.exit_code == 2 and message in result.output, result.output


def test_an_output_without_tvm_modules_is_refused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path / "cache"))
    onnx.save(build(), tmp_path / "m.onnx")
    (tmp_path / "p.edge").write_text(PLAN)
    runner.invoke(app, ["compile", str(tmp_path / "m.onnx"), "-p", str(tmp_path / "p.edge"), "-o", str(tmp_path / "o")])
    result = runner.invoke(app, ["tune", str(tmp_path / "o")])
    assert result.exit_code == 2 and "--backend tvm" in result.output, result.output
    result = runner.invoke(app, ["tune", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "not an edgec output directory" in result.output
