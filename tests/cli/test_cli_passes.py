"""`--passes`, `edgec passes`, third-party passes through entry points, exit codes 2/3, `--json` errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest

from test_cli import edgec, plan_file
from tiny_cnn import build

PLUGIN = Path(__file__).parent.parent / "plugins" / "edgec_toy_passes"


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "tiny.onnx"
    onnx.save(build(), path)
    return path


def cli(*args, env=None, cwd=None):
    """The real `edgec` process (entry points and stdout pipes behave as for a user)."""
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """An environment where the toy package is installed (pip --target): its entry point is real."""
    target = tmp_path_factory.mktemp("site")
    source = tmp_path_factory.mktemp("src") / PLUGIN.name
    shutil.copytree(PLUGIN, source)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "--target", str(target), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def test_a_third_party_pass_runs_from_the_spec_with_an_option(tmp_path, model, plugin_env):
    listed = cli("passes", "--json", env=plugin_env)
    entry = next(p for p in json.loads(listed.stdout)["passes"] if p["name"] == "tag-nodes")
    assert entry["origin"] == "edgec-toy-passes" and [o["name"] for o in entry["options"]] == ["op", "at_least", "crash"]
    out = tmp_path / "out"
    done = cli("compile", model, "--plan", plan_file(tmp_path), "-o", out, "--json",
               "--passes", "split-layer,split,tag-nodes{op=Relu,at_least=2},comm-insert", env=plugin_env)
    assert done.returncode == 0, done.stderr
    log = json.loads(done.stdout)["passes"]
    assert [e["pass"] for e in log] == ["split-layer", "split", 'tag-nodes{op="Relu",at_least=2}', "comm-insert"]
    assert log[2]["summary"].endswith("Relu nodes")
    manifest = json.loads((out / "manifest.json").read_text())
    assert 'tag-nodes{op="Relu",at_least=2}' in [e["pass"] for e in manifest["passes"]]
    failed = cli("compile", model, "--plan", plan_file(tmp_path), "-o", tmp_path / "o2",
                 "--passes", "split,tag-nodes{at_least=99},comm-insert", env=plugin_env)
    assert failed.returncode == 2 and "pass 'tag-nodes' failed: found" in failed.stderr
    assert not (tmp_path / "o2").exists()


def test_a_pipeline_in_the_wrong_order_is_refused_before_anything_runs(tmp_path, model):
    out = tmp_path / "out"
    result = edgec("compile", model, "--plan", plan_file(tmp_path), "-o", out, "--passes", "comm-insert,split")
    assert result.exit_code == 2 and "needs the fact 'staged', which 'split' provides" in result.output
    assert not out.exists()


def test_a_pipeline_without_comm_insert_cannot_write_an_output(tmp_path, model):
    result = edgec("compile", model, "--plan", plan_file(tmp_path), "-o", tmp_path / "out", "--passes", "split")
    assert result.exit_code == 2 and "needs the fact 'comm'" in result.output and "'comm-insert'" in result.output


@pytest.mark.parametrize("spec, message", [
    ("split,comm-insrt", "unknown pass 'comm-insrt'; did you mean 'comm-insert'?"),
    ("split{x=1},comm-insert", "pass 'split' has no option 'x' (options: none)"),
    ("split,,comm-insert", "expected a pass name"),
    ("", "the pipeline is empty"),
])
def test_spec_errors_point_at_the_spec(tmp_path, model, spec, message):
    result = edgec("compile", model, "--plan", plan_file(tmp_path), "-o", tmp_path / "out", "--passes", spec)
    assert result.exit_code == 2 and message in result.output and "--passes:1:" in result.output
    assert "^" in result.output


def test_an_onnx_ir_pass_runs_inside_the_pipeline(tmp_path, model):
    out = tmp_path / "out"
    result = cli("compile", model, "--plan", plan_file(tmp_path), "-o", out, "--json",
                 "--passes", "onnx-ir:RemoveUnusedNodesPass,split-layer,split,comm-insert")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passes"][0]["pass"] == "onnx-ir:RemoveUnusedNodesPass"
    assert edgec("verify", out).exit_code == 0


def test_the_passes_command_lists_contracts():
    result = edgec("passes")
    assert result.exit_code == 0
    assert "comm-insert" in result.output and "requires staged" in result.output
    assert "onnx-ir:RemoveUnusedNodesPass" in result.output


def test_errors_are_json_with_json(tmp_path):
    result = cli("verify", tmp_path / "nothing", "--json")
    document = json.loads(result.stdout)
    assert result.returncode == 2 and document["ok"] is False and document["format_version"] == 1
    assert document["error"]["exit_code"] == 2 and "nothing" in document["error"]["message"]


def test_json_stays_plain_when_colour_is_forced(tmp_path, model):
    env = {**os.environ, "FORCE_COLOR": "1", "TTY_COMPATIBLE": "1"}
    result = cli("passes", "--json", env=env)
    assert "\x1b[" not in result.stdout and json.loads(result.stdout)["command"] == "passes"


def test_a_bug_in_a_pass_exits_3_and_debug_shows_the_traceback(tmp_path, model, plugin_env):
    args = ["compile", model, "--plan", plan_file(tmp_path), "-o", tmp_path / "out",
            "--passes", "split,tag-nodes{crash=true},comm-insert"]
    quiet = cli(*args, env=plugin_env)
    assert quiet.returncode == 3 and "Traceback" not in quiet.stderr
    assert "internal error in pass 'tag-nodes' (passes that ran: split): KeyError" in quiet.stderr
    assert "--debug" in quiet.stderr and not (tmp_path / "out").exists()
    loud = cli("--debug", *args, env=plugin_env)
    assert loud.returncode == 3 and "Traceback" in loud.stderr and "a bug in this pass" in loud.stderr


def test_a_damaged_manifest_is_a_clear_error(tmp_path, model):
    out = tmp_path / "out"
    assert edgec("compile", model, "--plan", plan_file(tmp_path), "-o", out).exit_code == 0
    (out / "manifest.json").write_text("[]")
    result = cli("verify", out)
    assert result.returncode == 2 and "manifest.json" in result.stderr and "Traceback" not in result.stderr


def test_a_negative_tolerance_is_refused(tmp_path, model):
    out = tmp_path / "out"
    edgec("compile", model, "--plan", plan_file(tmp_path), "-o", out)
    result = edgec("verify", out, "--tolerance", "-1")
    assert result.exit_code == 2 and "--tolerance" in result.output


def test_print_after_into_a_closed_pipe_still_writes_the_output(tmp_path, model):
    out = tmp_path / "out"
    command = (f"{sys.executable} -m edgec compile {model} --plan {plan_file(tmp_path)} -o {out} "
               f"--print-after all | head -n 1")
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    assert done.stdout.startswith("// IR after")
    assert (out / "manifest.json").is_file(), done.stderr
    assert "Traceback" not in done.stderr


def test_show_prints_json_for_a_model_and_an_output(tmp_path, model):
    out = tmp_path / "out"
    assert edgec("compile", model, "--plan", plan_file(tmp_path), "-o", out).exit_code == 0
    shown = json.loads(cli("show", out, "--json").stdout)
    assert shown["command"] == "show" and len(shown["stages"]) == 3 and shown["transfers"][0]["bytes"] > 0
    nodes = json.loads(cli("show", model, "--json").stdout)["nodes"]
    assert nodes[0]["name"] == "stem" and nodes[0]["macs"] > 0


def test_json_stdout_stays_json_with_print_after_and_argument_errors(tmp_path, model):
    done = cli("compile", model, "--plan", plan_file(tmp_path), "-o", tmp_path / "out", "--json", "--print-after", "split")
    assert done.returncode == 0 and json.loads(done.stdout)["command"] == "compile"
    assert "// IR after split" in done.stderr
    missing = cli("compile", model, "-o", tmp_path / "o2", "--json")
    document = json.loads(missing.stdout)
    assert missing.returncode == 2 and document["ok"] is False and "--plan" in document["error"]["message"]
    bad = cli("run", tmp_path / "out", "--stall-timeout", "abc", "--json")
    assert bad.returncode == 2 and json.loads(bad.stdout)["command"] == "run"


def test_spec_options_round_trip_and_are_not_given_twice(plugin_env):
    script = ("import edgec\n"
              "from edgec.passes.registry import pass_class\n"
              "p = pass_class('tag-nodes')(op='Re,\"lu', crash=True)\n"
              "print(p.spec)\n"
              "assert edgec.parse_pipeline(p.spec)[0] == p\n"
              "assert edgec.parse_pipeline(\"tag-nodes{op='A,B'}\")[0].op == 'A,B'\n"
              "try:\n    edgec.parse_pipeline('tag-nodes{op=A,op=B}')\n"
              "except edgec.PlanError as e:\n    print(e.format())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=plugin_env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith('tag-nodes{op="Re,\\"lu",crash=true}')
    assert "option 'op' of 'tag-nodes' is given twice" in done.stdout


def test_the_caret_covers_the_whole_unknown_pass_name(tmp_path, model):
    result = edgec("compile", model, "--plan", plan_file(tmp_path), "-o", tmp_path / "out", "--passes", "split,foo")
    assert "\n          ^^^\n" in result.output or result.output.rstrip().split("\n")[-2].strip() == "^^^"
