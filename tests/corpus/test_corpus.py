"""Every corpus model (MANIFEST.json) compiles with a 3-stage plan on 2 devices and verifies.

The plan (`corpus.three_stage_plan`) is written against the file as a user sees it: three
consecutive ranges of the file's nodes on devices a, b, a, split near 1/3 and 2/3 of the node
list. For the models whose manifest entry says `split_on: folded`, both inner ranges end on
nodes that fold into constants (Shape/Gather/Concat… feeding a Reshape), so the plan only works
when a range whose end was folded away still means the same slice of the model.

Dynamic dims are fixed with `input_shapes` to the shape the model was exported for. The split
model runs stage by stage in onnxruntime and is compared with the unsplit file in onnxruntime
(max relative error 1e-4); the models marked `mpi` also run one frame per stage under real
mpirun (`edgec run`). A model edgec refuses by design (`refused` in its entry: a map-typed
graph output) is asserted to be refused with exactly that message. Models shipped by a package
that is not installed are skipped, saying which package to install; nothing is downloaded here.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgec
from edgec.compiler.diagnostics import ModelError
from edgec.runtime.launcher import run
from edgec.runtime.verify import compare, run_reference, verify

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import Entry, entries, node_names, quote, split_points, three_stage_plan  # noqa: E402

TOLERANCE = 1e-4
ENTRIES = entries()


def _param(entry: Entry, *marks) -> pytest.param:
    slow = [pytest.mark.slow] if entry.data.get("slow") else []
    return pytest.param(entry, id=entry.name, marks=[*slow, *marks])


def model_path(entry: Entry) -> Path:
    path = entry.path
    if path is None:
        pytest.skip(f"{entry.name}: ships with {entry.data['package']['pip']}, which is not installed")
    return path


def feeds_for(entry: Entry, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs at the run shapes: standard normal floats, integers in [0, 10)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in entry.input_specs:
        shape = entry.run_shapes.get(spec["name"], spec["shape"])
        assert all(isinstance(d, int) and d > 0 for d in shape), f"{entry.name}: no run shape for {spec['name']}"
        dtype = np.dtype(spec["dtype"])
        if dtype.kind == "f":
            feeds[spec["name"]] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[spec["name"]] = rng.integers(0, 10, shape).astype(dtype)
    return feeds


class Compiled:
    """Each model compiled once per session, shared by the verify and the mpirun tests."""

    def __init__(self, root: Path):
        self.root = root
        self.done: dict[str, tuple[Path, object] | BaseException] = {}

    def __call__(self, entry: Entry):
        if entry.name not in self.done:
            path = model_path(entry)
            plan = three_stage_plan(onnx.load(str(path), load_external_data=False), entry.data["split_on"])
            out = self.root / entry.name
            try:
                result = edgec.compile(path, plan, out, input_shapes=entry.run_shapes or None)
                self.done[entry.name] = (out, result)
            except Exception as exc:
                self.done[entry.name] = exc
        done = self.done[entry.name]
        if isinstance(done, BaseException):
            raise done
        return done


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Compiled:
    return Compiled(tmp_path_factory.mktemp("corpus"))


def test_manifest_describes_every_committed_file():
    """MANIFEST.json lists each file under models/ (size and hash as committed) and every exporter the issue asks for."""
    committed = {p.name for p in (Path(__file__).parent / "models").glob("*.onnx")}
    listed = {Path(e.data["file"]).name: e for e in ENTRIES if "file" in e.data}
    assert committed == set(listed)
    for name, entry in listed.items():
        data = entry.path.read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry.data["size"], entry.data["sha256"]), name
    exporters = {e.data["exporter"] for e in ENTRIES}
    for wanted in ("TorchScript", "dynamo=True", "tf2onnx", "skl2onnx", "paddle2onnx"):
        assert any(wanted in e for e in exporters), wanted
    assert len(ENTRIES) >= 15


@pytest.mark.parametrize("entry", [_param(e) for e in ENTRIES])
def test_plan_covers_the_file_in_three_ranges(entry):
    """The generated plan itself: three consecutive ranges, ends on folded nodes where asked."""
    model = onnx.load(str(model_path(entry)), load_external_data=False)
    ranges = split_points(model, entry.data["split_on"])
    assert [r[0] <= r[1] for r in ranges] == [True] * 3
    assert ranges[1][0] > ranges[0][1] and ranges[2][0] > ranges[1][1]
    if entry.data["split_on"] == "folded":
        ops = [model.graph.node[end].op_type for _, end in ranges[:2]]
        assert all(op not in ("Conv", "MatMul", "Gemm", "LSTM", "GRU") for op in ops), ops
    names = node_names(model)
    plan = edgec.load_plan(three_stage_plan(model, entry.data["split_on"]))
    assert len(plan.places) == 4 and len(names) == len(set(names))


@pytest.mark.parametrize("entry", [_param(e) for e in ENTRIES])
def test_corpus_model_splits_and_verifies(entry, compiled):
    if "refused" in entry.data:
        with pytest.raises(ModelError, match=f"^{re.escape(entry.data['refused'])}$"):
            compiled(entry)
        return
    out, result = compiled(entry)
    assert result.program.warnings == []
    program = result.program
    assert {s.device for s in program.stages} == {"a", "b"}
    assert len(program.stages) >= 2 and program.transfers
    report = verify(out, feeds_for(entry, seed=1), tolerance=TOLERANCE)
    model = onnx.load(str(entry.path), load_external_data=False)
    assert sorted(o.name for o in report.outputs) == sorted(o.name for o in model.graph.output)
    assert report.ok, [(o.name, o.max_abs, o.max_rel) for o in report.outputs]


def _leftover_ranks(out: Path) -> list[str]:
    found = subprocess.run(["pgrep", "-af", f"edgec.runtime.mpi_rank {out}"], capture_output=True, text=True)
    return [line for line in found.stdout.splitlines() if "pgrep" not in line]


def test_refused_models_are_never_run_under_mpirun():
    assert not [e.name for e in ENTRIES if "refused" in e.data and e.data.get("mpi")]


@pytest.mark.parametrize("entry", [_param(e) for e in ENTRIES if e.data.get("mpi")])
def test_corpus_model_runs_under_mpirun(entry, compiled):
    """`edgec run`: one rank per stage under mpirun, two frames, outputs equal the unsplit model's."""
    out, result = compiled(entry)
    feeds = feeds_for(entry, seed=2)
    ran = run(out, feeds, frames=2, keep_outputs=True, timeout=120)
    assert ran.report["ranks"] == len(result.program.stages)
    expected = run_reference(entry.path, feeds, list(ran.outputs))
    for frame in range(2):
        report = compare({k: v[frame] for k, v in ran.outputs.items()}, expected, TOLERANCE)
        assert report.ok, (frame, [(o.name, o.max_rel) for o in report.outputs])
    assert _leftover_ranks(out) == []


FOLDED_ALONE = {"yolo_ts": "/detect/Concat", "keras_cnn_nhwc": "functional_1/flatten_1/strided_slice"}


@pytest.mark.parametrize("name", sorted(FOLDED_ALONE))
def test_a_folded_node_placed_alone_is_a_located_warning(name, tmp_path):
    """The issue's own examples: a plan placing a node that folds away compiles, with a warning at the selector."""
    entry = next(e for e in ENTRIES if e.name == name)
    folded = FOLDED_ALONE[name]
    plan = ("device a { cores 1 }\ndevice b { cores 1 }\n"
            f"place [{quote(folded)}, \"no such node\"] on b\nplace * on a\n")
    with pytest.raises(edgec.PlanError, match="unknown node 'no such node'"):
        edgec.load_program(model_path(entry), plan, input_shapes=entry.run_shapes or None)
    program = edgec.load_program(model_path(entry), plan.replace(', "no such node"', ""),
                                 input_shapes=entry.run_shapes or None)
    assert [w.format().splitlines()[0] for w in program.warnings] == [
        f"warning: <plan>:3:8: node '{folded}' was folded into a constant at load time; it needs no placement"]
    assert {n.meta["edgec.placement"].device for n in program.nodes()} == {"a"}
