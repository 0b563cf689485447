"""The Python API as another compiler's engineer meets it: checked arguments, untouched inputs, exports."""

from __future__ import annotations

import onnx
import onnx_ir as ir
import pytest

import edgec
from edgec.passes import SplitVertical
from edgec.runtime.outputs import random_inputs
from tiny_cnn import build

PLAN = "device a { cores 2 }\ndevice b { cores 2 }\nplace stem .. pool1 on a\nplace * on b\n"


def test_plan_text_and_plan_paths_are_told_apart(tmp_path):
    assert edgec.load_plan("place * on b").places
    assert edgec.load_plan("# a comment\nplace * on b").places
    with pytest.raises(edgec.UsageError, match="cannot read plan file .missing.edge."):
        edgec.load_plan("missing.edge")
    path = tmp_path / "place b"
    path.write_text(PLAN)
    assert len(edgec.load_plan(str(path)).places) == 2
    with pytest.raises(edgec.UsageError, match="not int"):
        edgec.load_plan(3)


@pytest.mark.parametrize("kwargs, message", [
    ({"model": 42}, "a model is a path, an onnx.ModelProto or an onnx_ir.Model, not int"),
    ({"backends": "tvm"}, "tvm"),
    ({"passes": [SplitVertical]}, "pass an instance"),
    ({"hooks": [3]}, "hooks must be callables"),
    ({"out": 5}, "out is a directory path, not int"),
])
def test_wrong_arguments_are_usage_errors(kwargs, message):
    args = {"model": build(), "plan": PLAN, "out": None, **kwargs}
    with pytest.raises(edgec.UsageError, match=message):
        edgec.compile(args.pop("model"), args.pop("plan"), args.pop("out"), **args)


def test_compile_leaves_the_callers_model_alone_and_can_run_twice(tmp_path):
    model = ir.from_proto(build())
    before = [(n.name, n.op_type) for n in model.graph]
    first = edgec.compile(model, PLAN, tmp_path / "one")
    second = edgec.compile(model, PLAN, tmp_path / "two")
    assert [(n.name, n.op_type) for n in model.graph] == before
    assert "edgec" not in model.opset_imports
    assert len(first.program.stages) == len(second.program.stages) == 2


def test_an_in_memory_model_still_lets_verify_find_its_reference(tmp_path):
    out = tmp_path / "out"
    result = edgec.compile(build(), PLAN, out)
    assert (out / "reference.onnx").is_file() and result.manifest.model.path == "reference.onnx"
    onnx.checker.check_model(onnx.load(out / "reference.onnx"))
    assert edgec.verify(out, random_inputs(result.manifest)).ok


def test_a_pipeline_spec_string_is_accepted_from_python(tmp_path):
    result = edgec.compile(build(), PLAN, None, passes="split,comm-insert")
    assert [e["pass"] for e in result.program.pass_log] == ["split", "comm-insert"]


def test_what_a_pass_author_needs_is_exported():
    for name in ("Placement", "Platform", "Device", "Link", "Fact", "Pass", "PassResult", "PassManager",
                 "register_pass", "parse_pipeline", "default_pipeline", "write_artifacts", "verify", "run",
                 "InternalError"):
        assert getattr(edgec, name) is not None, name
    assert set(edgec.__all__) <= set(dir(edgec))
    with pytest.raises(AttributeError):
        edgec.not_a_name


def test_a_model_inside_the_output_directory_is_not_deleted(tmp_path):
    out = tmp_path / "out"
    edgec.compile(build(), PLAN, out)
    with pytest.raises(edgec.UsageError, match="is inside the output directory"):
        edgec.compile(out / "reference.onnx", PLAN, out)
    assert (out / "reference.onnx").is_file()


@pytest.mark.parametrize("shapes", [{"image": "abc"}, {"image": [1, 3, 32, "x"]}, {"image": 5}, ["image"],
                                    "image=1,3,32,32", {"image": [1.5, 3, 32, 32]}, {"image": [0, 3, 32, 32]}])
def test_bad_input_shapes_are_usage_errors(shapes):
    with pytest.raises(edgec.UsageError, match="input_shapes"):
        edgec.compile(build(), PLAN, None, input_shapes=shapes)
