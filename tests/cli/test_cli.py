"""The `edgec` command line: success paths, and one clear message with exit 2 for every bad input."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from edgec.cli import app
from tiny_cnn import build

runner = CliRunner()

PLAN = """\
device cam {{ arch x86_64 cores 2 }}
device hub {{ arch x86_64 cores 2 }}
place stem .. pool1 on cam.cpu threads 2
place res_conv1 .. res_out on hub
{extra}place * on cam
"""


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(build(), path)
    return path


def plan_file(tmp_path, text=None, extra=""):
    path = tmp_path / "plan.edge"
    path.write_text(text if text is not None else PLAN.format(extra=extra))
    return path


def edgec(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), result.exception
    return result


def test_compile_verify_show(model, tmp_path):
    out = tmp_path / "out"
    result = edgec("compile", model, "--plan", plan_file(tmp_path), "-o", out)
    assert result.exit_code == 0, result.output
    assert "3 stages on 2 devices" in result.output
    assert {p.name for p in out.iterdir()} == {"manifest.json", "rankfile", "comm.json", "devices"}
    verified = edgec("verify", out, "--json")
    assert verified.exit_code == 0 and '"ok": true' in verified.output
    shown = edgec("show", out, "--graph", tmp_path / "g.dot")
    assert shown.exit_code == 0 and "boundary tensors" in shown.output
    assert "cluster_s0" in (tmp_path / "g.dot").read_text()
    if shutil.which("dot"):
        assert edgec("show", out, "--graph", tmp_path / "g.svg").exit_code == 0
        assert "<svg" in (tmp_path / "g.svg").read_text() and "pool1" in (tmp_path / "g.svg").read_text()


def test_verify_with_given_input_and_mismatch(model, tmp_path):
    out = tmp_path / "out"
    assert edgec("compile", model, "-p", plan_file(tmp_path), "-o", out).exit_code == 0
    x = np.random.default_rng(3).standard_normal((1, 3, 32, 32)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    assert edgec("verify", out, "--input", tmp_path / "x.npy").exit_code == 0
    other = tmp_path / "other.onnx"
    onnx.save(build(seed=7), other)
    assert edgec("verify", out, "--model", other).exit_code == 1
    np.save(tmp_path / "bad.npy", x[:, :2])
    bad = edgec("verify", out, "--input", tmp_path / "bad.npy")
    assert bad.exit_code == 2 and "must be float32[1, 3, 32, 32]" in bad.output


def test_show_model_lists_nodes_with_macs(model):
    result = edgec("show", model)
    assert result.exit_code == 0
    assert "res_conv1" in result.output and "MACs" in result.output


def test_print_after_and_dump_ir(model, tmp_path):
    result = edgec("compile", model, "-p", plan_file(tmp_path), "-o", tmp_path / "o", "--print-after", "comm-insert",
                   "--dump-ir", tmp_path / "ir")
    assert result.exit_code == 0
    assert "// IR after comm-insert" in result.output and "edgec.Send" in result.output
    assert sorted(p.name for p in (tmp_path / "ir").iterdir()) == ["01-canonicalize.txt", "02-split-layer.txt",
                                                                "03-split.txt", "04-quantize.txt", "05-prune.txt",
                                                                "06-comm-insert.txt"]


ERRORS = [
    ("unknown node", PLAN.format(extra="place conv9 on hub\n"), "plan.edge:5:7: unknown node 'conv9'"),
    ("unknown device", PLAN.format(extra="place fc on hubb\n"), "unknown device 'hubb'; did you mean 'hub'?"),
    ("overlap", PLAN.format(extra="place pool1 on hub\n"), "node 'pool1' is already placed at "),
    ("missing", "device cam { cores 1 }\nplace stem on cam\n", "are not placed"),
    ("syntax", "device cam { cores 1 }\nplace stem cam\n", "plan.edge:2:12: unexpected 'cam'"),
    ("cdc not split", PLAN.format(extra="cdc stem parity 1 on hub\n"), "Conv 'stem' is not split"),
    ("input rank", "input image [1, 3, 32]\n" + PLAN.format(extra=""), "plan.edge:1:1: input 'image' has rank 4"),
    ("input name", "input images [1, 3, 32, 32]\n" + PLAN.format(extra=""), "no input 'images' (inputs: image); did you mean 'image'?"),
    ("split kind", PLAN.format(extra="split fc by spatial into 2 on cam, hub\n"),
     "cannot split Gemm 'fc' by spatial (it takes: output, input)"),
    ("split op", PLAN.format(extra="split softmax by output into 2 on cam, hub\n"), "cannot split Softmax 'softmax'"),
    ("split parts", PLAN.format(extra="split fc by output into 11 on cam\n"), "11 parts but only 10 output neurons"),
    ("split device", PLAN.format(extra="split fc by output into 2 on cam, hubb\n"), "did you mean 'hub'?"),
    ("no resource", PLAN.format(extra="place fc on hub.gpu\n"), "has no resource 'gpu'"),
]


@pytest.mark.parametrize("what,text,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_plan_errors_exit_2_and_write_nothing(model, tmp_path, what, text, message):
    out = tmp_path / "out"
    result = edgec("compile", model, "-p", plan_file(tmp_path, text), "-o", out)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_caret_points_at_the_name(model, tmp_path):
    result = edgec("compile", model, "-p", plan_file(tmp_path, PLAN.format(extra="place conv9 on hub\n")), "-o", tmp_path / "o")
    lines = result.output.splitlines()
    index = next(i for i, l in enumerate(lines) if "place conv9 on hub" in l)
    assert lines[index + 1].strip() == "^^^^^" and lines[index + 1].index("^") == lines[index].index("conv9")


@pytest.mark.parametrize("args,message", [
    (["compile", "missing.onnx", "-p", "PLAN"], "does not exist"),
    (["compile", "MODEL", "-p", "nope.edge"], "nope.edge"),
    (["compile", "MODEL", "-p", "PLAN", "-o", "no/such/dir/out"], "parent directory"),
    (["compile", "MODEL", "-p", "PLAN", "--input-shape", "image"], "NAME=1,3,224,224"),
    (["compile", "MODEL", "-p", "PLAN", "--input-shape", "nope=1,3,32,32"], "no input 'nope'"),
    (["compile", "MODEL", "-p", "PLAN", "--backend", "ncnn"], "unknown or unavailable backend"),
    (["compile", "BAD", "-p", "PLAN"], "cannot read"),
    (["verify", "."], "not an edgec output directory"),
])
def test_usage_errors_exit_2(model, tmp_path, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    subst = {"PLAN": plan_file(tmp_path), "MODEL": model, "BAD": tmp_path / "bad.onnx"}
    result = edgec(*[subst.get(a, a) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.output


def test_real_process_exit_code_and_no_traceback(model, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgec", "compile", str(model), "-p", str(tmp_path / "nope.edge")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "nope.edge" in proc.stderr


def test_import_autodice_then_compile_and_verify(model, tmp_path):
    import json

    names = [n.name for n in onnx.load(model).graph.node]
    mapping = {"pi_cpu01": names[:8], "laptop_cpu0123": names[8:]}
    (tmp_path / "mapping.json").write_text(json.dumps(mapping))
    (tmp_path / "platform.txt").write_text("pi, arm, slots=0-3\nlaptop\n")
    result = edgec("import", "autodice", tmp_path / "mapping.json", tmp_path / "platform.txt", "-o", tmp_path / "p.edge")
    assert result.exit_code == 0, result.output
    assert edgec("compile", model, "-p", tmp_path / "p.edge", "-o", tmp_path / "out").exit_code == 0
    assert edgec("verify", tmp_path / "out").exit_code == 0
    bad = edgec("import", "autodice", tmp_path / "platform.txt", tmp_path / "platform.txt", "-o", tmp_path / "q.edge")
    assert bad.exit_code == 2 and "platform.txt" in bad.output and not (tmp_path / "q.edge").exists()


def test_verify_reports_a_corrupted_stage(model, tmp_path):
    out = tmp_path / "out"
    assert edgec("compile", model, "-p", plan_file(tmp_path), "-o", out).exit_code == 0
    stage = next((out / "devices" / "hub").glob("*.onnx"))
    stage.write_bytes(b"garbage")
    result = edgec("verify", out)
    assert result.exit_code == 2 and "onnxruntime cannot load" in result.output and stage.name in result.output
