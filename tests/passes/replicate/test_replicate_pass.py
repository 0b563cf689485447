"""The split pass gives every replicated stage one replica per target; manifest, comm tables, rankfile,
verify and the MPI refusal describe them. Tiny graphs, compiled for real."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

import edgec
from edgec.backends.manifest import read_manifest
from edgec.backends.replica_records import MPI_REFUSAL, frame_class, refuse_mpi_with_replicas
from edgec.compiler.diagnostics import PlanError, UsageError
from edgec.dsl import parse_plan
from edgec.runtime.verify import verify
from graphs import Net, chain

DEVICES = "".join(f"device {d} {{ cores 1 }}\n" for d in "abcde")


def convs() -> onnx.ModelProto:
    """x → c1 → r1 → c2 → r2 → c3: convs that `split ... by filter` can take."""
    net = Net({"x": [1, 2, 6, 6]})
    net.op("Relu", "r1", [net.conv("c1", "x", 2, 4)])
    net.op("Relu", "r2", [net.conv("c2", "r1", 4, 4)])
    return net.model([net.conv("c3", "r2", 4, 4)])


def compile_plan(model: onnx.ModelProto, body: str, out=None) -> edgec.CompileResult:
    return edgec.compile(model, parse_plan(DEVICES + body, "plan.edge"), out)


def plan_error(model: onnx.ModelProto, body: str) -> PlanError:
    with pytest.raises(PlanError) as info:
        compile_plan(model, body)
    assert info.value.span is not None and info.value.span.filename == "plan.edge"
    return info.value


MIDDLE = "place n0 on a\nplace n1 .. n2 on b\nreplicate n1 .. n2 on c, d\nplace * on e\n"


def test_a_replicated_stage_moves_to_its_targets_and_gets_one_rank_per_replica(tmp_path) -> None:
    program = compile_plan(chain(4), MIDDLE, tmp_path / "out").program
    assert [(s.index, s.device) for s in program.stages] == [(0, "a"), (1, "c"), (2, "e")]  # `place` b is not implied
    (rep,) = program.replicas
    assert (rep.stage, rep.ranks, [p.device for p in rep.placements]) == (1, (1, 3), ["c", "d"])
    assert "1 replicated (2 replicas)" in program.pass_log[[p["pass"] for p in program.pass_log].index("split")]["summary"]
    manifest = read_manifest(tmp_path / "out")
    entry = manifest.replicas.of_stage(1)
    assert [(r.replica, r.rank, r.device, r.model) for r in entry.replicas] == [
        (0, 1, "c", "devices/c/stage1.onnx"), (1, 3, "d", "devices/d/stage1.onnx")]
    copy = tmp_path / "out" / "devices" / "d" / "stage1.onnx"
    assert copy.read_bytes() == (tmp_path / "out" / "devices" / "c" / "stage1.onnx").read_bytes()
    assert manifest.files["devices/d/stage1.onnx"] == manifest.files["devices/c/stage1.onnx"]
    assert manifest.replicas.count(0) == 1 and manifest.replicas.count(1) == 2
    assert "rank 3=d" in (tmp_path / "out" / "rankfile").read_text()


def test_comm_tables_say_which_frames_each_link_carries(tmp_path) -> None:
    compile_plan(chain(4), MIDDLE, tmp_path / "out")
    tables = json.loads((tmp_path / "out" / "comm.json").read_text())
    rows = {r["rank"]: r for r in tables["ranks"]}
    assert sorted(rows) == [0, 1, 2, 3] and rows[3]["replica"] == 1 and rows[3]["stage"] == 1
    assert [(s["peer"], s["every"], s["offset"]) for s in rows[0]["sends"]] == [(1, 2, 0), (3, 2, 1)]
    assert [(r["peer"], r["offset"]) for r in rows[2]["recvs"]] == [(1, 0), (3, 1)]
    assert "f mod every == offset" in tables["frames"]


def test_frame_classes_of_two_replicated_ends() -> None:
    assert frame_class(0, 2, 1, 3) == (6, 4)
    assert frame_class(0, 2, 1, 2) is None
    assert frame_class(0, 1, 0, 1) == (1, 0)


@pytest.mark.parametrize("r_src", [1, 2, 3, 4])
@pytest.mark.parametrize("r_dst", [1, 2, 3, 4])
def test_every_frame_crosses_exactly_one_link_between_two_replicated_stages(r_src: int, r_dst: int) -> None:
    classes = {(a, b): frame_class(a, r_src, b, r_dst) for a in range(r_src) for b in range(r_dst)}
    for f in range(3 * r_src * r_dst):
        carriers = [pair for pair, c in classes.items() if c is not None and f % c[0] == c[1]]
        assert carriers == [(f % r_src, f % r_dst)]


def test_verify_checks_a_frame_on_every_replica_and_mpi_refuses_only_engines_without_replica_ranks(tmp_path) -> None:
    out = tmp_path / "out"
    compile_plan(convs(), "place c1 .. r1 on a\nplace c2 .. r2 on b\nreplicate c2 .. r2 on b, c, d\n"
                 "place * on e\n", out)
    report = verify(out)
    assert report.ok and report.replica_frames == 3 and report.outputs[0].max_rel <= 1e-4
    mpi = verify(out, mpi=True)
    assert mpi.ok and mpi.mpi and mpi.replica_frames == 3
    with pytest.raises(UsageError) as info:
        refuse_mpi_with_replicas(read_manifest(out), "vta")
    assert info.value.message == MPI_REFUSAL
    for engine in ("onnxruntime", "tvm", "cpp"):
        refuse_mpi_with_replicas(read_manifest(out), engine)


def test_verify_runs_each_frame_on_its_replicas_own_file(tmp_path) -> None:
    out = tmp_path / "out"
    compile_plan(convs(), "place c1 .. r1 on a\nplace * on b\nreplicate c2 .. c3 on b, c\n", out)
    assert verify(out).ok
    copy = out / read_manifest(out).replicas.of_stage(1).replicas[1].model
    broken = onnx.load(copy)
    weight = next(i for i in broken.graph.initializer if len(i.dims) == 4)
    values = onnx.numpy_helper.to_array(weight) * 2
    weight.CopyFrom(onnx.numpy_helper.from_array(values, weight.name))
    onnx.save(broken, copy)
    report = verify(out)
    assert not report.ok and report.replica_frames == 2
    copy.unlink()
    with pytest.raises(UsageError, match="replica sub-model .* is missing"):
        verify(out)


def test_only_the_onnx_tvm_and_cpp_backends_write_replicas() -> None:
    with pytest.raises(PlanError) as info:
        edgec.compile(chain(4), parse_plan(DEVICES + MIDDLE, "plan.edge"), None, backends=("onnx", "vta"))
    assert "onnx, tvm, cpp backends only, not by vta" in info.value.message and info.value.span.line == 8


def test_replication_composes_with_a_split_layer_and_wire_quantization(tmp_path) -> None:
    out = tmp_path / "out"
    compile_plan(convs(), "place c1 .. r1 on a\nreplicate c1 .. r1 on a, b\nplace c2 .. r2 on c\n"
                 "split c3 by filter into 2 on d, e\nplace * on e\nquantize wire fp16\n", out)
    manifest = read_manifest(out)
    assert manifest.replicas.count(0) == 2 and manifest.quantization is not None and manifest.splits
    report = verify(out)
    assert report.ok and report.quantized and report.replica_frames == 2


def test_replication_composes_with_a_coded_layer(tmp_path) -> None:
    out = tmp_path / "out"
    compile_plan(convs(), "place c1 .. r1 on a\nreplicate c1 .. r1 on a, b\nplace c2 .. r2 on c\n"
                 "split c3 by filter into 2 on d, e\ncdc c3 parity 1 on c\nplace * on e\n", out)
    manifest = read_manifest(out)
    assert manifest.cdc is not None and manifest.replicas.count(0) == 2
    report = verify(out)
    assert report.ok and report.replica_frames == 2


def test_a_selection_that_cuts_a_stage_is_refused_at_the_statement() -> None:
    error = plan_error(chain(4), "place n0 on a\nplace n1 .. n2 on b\nreplicate n1 on b, c\nplace * on e\n")
    assert "copies whole stages" in error.message and "'n2'" in error.message
    assert error.span.line == 8


@pytest.mark.parametrize(("body", "message"), [
    ("place c1 .. r2 on a\nsplit c3 by filter into 2 on b, c\nplace * on d\nreplicate c3 on d, e\n",
     "is split by a `split` statement"),
    ("device g { gpu cuda }\nplace * on a\nreplicate c1 .. c3 on a, g.gpu\n", "one kind of resource"),
    ("place * on a\nreplicate c1 .. r1 on a, b\nreplicate r1 .. c3 on c, d\n", "node 'r1' is already replicated"),
    ("place * on a\nreplicate c9 on a, b\n", "unknown node 'c9'"),
])
def test_replicate_mistakes_are_located_plan_errors(body: str, message: str) -> None:
    assert message in plan_error(convs(), body).message


def test_replicas_must_be_quantized_alike(tmp_path) -> None:
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((4, 1, 2, 6, 6)).astype(np.float32))
    quantize = f'quantize a int8 calibrate "{tmp_path}"\n'
    body = "place c1 .. r1 on c\nplace * on a\nreplicate c2 .. c3 on a, b\n" + quantize
    assert "'a' is quantized but 'b' is not" in plan_error(convs(), body).message
    out = tmp_path / "out"
    compile_plan(convs(), body + quantize.replace("quantize a", "quantize b"), out)
    manifest = read_manifest(out)
    assert manifest.replicas.count(1) == 2 and manifest.quantization.stage(1) is not None
    report = verify(out)
    assert report.ok and report.quantized and report.replica_frames == 2


def test_printed_ir_and_the_cli_show_replicas_and_run_refuses_them_for_vta(tmp_path) -> None:
    from typer.testing import CliRunner

    from edgec.cli import app
    from edgec.compiler.printer import format_program

    out = tmp_path / "out"
    program = compile_plan(chain(4), MIDDLE, out).program
    assert "replicas s1 r1@c.cpu r3@d.cpu" in format_program(program)
    runner = CliRunner()
    shown = runner.invoke(app, ["show", str(out), "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["replicas"]["stages"][0]["stage"] == 1
    ran = runner.invoke(app, ["run", str(out), "-n", "2", "--engine", "vta"])
    assert ran.exit_code == 2 and "does not deal frames to replicas yet" in ran.output
