"""The streaming sub-model writer gives the bytes `ir.save` gives, hashes what it writes, and checks the header.

Byte equality with `ir.save` is the strongest form of "valid ONNX": the inline file is the very
message protobuf would serialize, the data-file layout the one onnx-ir writes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.backends import manifest as manifest_module
from edgec.backends.manifest import read_manifest, record_sha256, sha256_file
from edgec.backends.onnx import source_hash, stream
from edgec.backends.onnx.stream import Sources, write_model
from edgec.compiler.onnx_wire import load_without_weights
from tiny_cnn import build

PLAN = "device a { cores 1 }\ndevice b { cores 1 }\nplace stem .. res_out on a\nplace * on b\n"


def _mixed_model() -> onnx.ModelProto:
    """Big and small float weights, an int64 shape, fp16."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(64).astype(np.float32), "b")
    half = numpy_helper.from_array(rng.standard_normal((64, 64)).astype(np.float16), "half")
    shape = numpy_helper.from_array(np.array([1, 4096], dtype=np.int64), "shape")
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"], name="mm"),
        helper.make_node("Add", ["h", "b"], ["hb"], name="add"),
        helper.make_node("Cast", ["half"], ["half32"], to=TensorProto.FLOAT, name="cast"),
        helper.make_node("MatMul", ["hb", "half32"], ["y0"], name="mm2"),
        helper.make_node("Reshape", ["w", "shape"], ["flat"], name="reshape"),
        helper.make_node("ReduceSum", ["flat"], ["s"], keepdims=0, name="sum"),
        helper.make_node("Add", ["y0", "s"], ["y"], name="out"),
    ]
    graph = helper.make_graph(nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], [w, b, half, shape])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def _write(model: ir.Model, path: Path, data_file: str | None = None) -> dict[Path, tuple[str, int]]:
    with Sources() as sources:
        return write_model(model, path, data_file=data_file, sources=sources).files


@pytest.mark.parametrize("source", ["in-memory", "mapped file", "external data"])
def test_inline_file_is_what_ir_save_writes(tmp_path, source):
    proto = _mixed_model()
    if source == "in-memory":
        model = ir.from_proto(proto)
    elif source == "mapped file":
        onnx.save(proto, tmp_path / "m.onnx")
        model = load_without_weights(tmp_path / "m.onnx")
        assert isinstance(model.graph.initializers["w"].const_value, ir.ExternalTensor)
    else:
        onnx.save(proto, tmp_path / "m.onnx", save_as_external_data=True, location="m.bin", size_threshold=0)
        model = ir.load(tmp_path / "m.onnx")
    files = _write(model, tmp_path / "streamed.onnx")
    ir.save(ir.from_proto(_mixed_model()), tmp_path / "saved.onnx")  # onnx.save above changed `proto`
    data = (tmp_path / "streamed.onnx").read_bytes()
    assert data == (tmp_path / "saved.onnx").read_bytes()
    assert files == {tmp_path / "streamed.onnx": (hashlib.sha256(data).hexdigest(), len(data))}
    assert isinstance(model.graph.initializers["w"].const_value, ir.ExternalTensor) == (source != "in-memory")


def test_tensor_doc_string_and_metadata_are_kept_once(tmp_path):
    proto = _mixed_model()
    proto.graph.initializer[0].doc_string = "the big one"
    proto.graph.initializer[0].metadata_props.add(key="origin", value="test")
    model = ir.from_proto(proto)
    model.graph.initializers["w"].const_value = ir.Tensor(numpy_helper.to_array(proto.graph.initializer[0]), name="w",
                                                          doc_string="the big one", metadata_props={"origin": "test"})
    _write(model, tmp_path / "s.onnx")
    written = onnx.load(tmp_path / "s.onnx").graph.initializer[0]
    assert [(p.key, p.value) for p in written.metadata_props] == [("origin", "test")]
    assert written.doc_string == "the big one" and written.raw_data == proto.graph.initializer[0].raw_data


def test_data_file_layout_is_what_ir_save_writes(tmp_path):
    onnx.save(_mixed_model(), tmp_path / "m.onnx")
    model = load_without_weights(tmp_path / "m.onnx")
    (tmp_path / "out").mkdir()
    (tmp_path / "ref").mkdir()
    files = _write(model, tmp_path / "out" / "s.onnx", "s.onnx.data")
    ir.save(ir.from_proto(_mixed_model()), tmp_path / "ref" / "s.onnx", external_data="s.onnx.data")
    for name in ("s.onnx", "s.onnx.data"):
        written = (tmp_path / "out" / name).read_bytes()
        assert written == (tmp_path / "ref" / name).read_bytes()
        assert files[tmp_path / "out" / name][0] == hashlib.sha256(written).hexdigest()
    onnx.checker.check_model(str(tmp_path / "out" / "s.onnx"), full_check=True)


def test_written_model_runs_in_onnxruntime(tmp_path):
    onnx.save(_mixed_model(), tmp_path / "m.onnx")
    _write(load_without_weights(tmp_path / "m.onnx"), tmp_path / "s.onnx")
    x = np.random.default_rng(1).standard_normal((1, 64)).astype(np.float32)
    want = ort.InferenceSession(str(tmp_path / "m.onnx")).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(tmp_path / "s.onnx")).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)


def test_chunks_cover_weights_bigger_than_the_buffer(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "CHUNK", 1000)
    onnx.save(_mixed_model(), tmp_path / "m.onnx")
    with Sources() as sources:
        write_model(load_without_weights(tmp_path / "m.onnx"), tmp_path / "s.onnx", sources=sources)
    ir.save(ir.from_proto(_mixed_model()), tmp_path / "saved.onnx")
    assert (tmp_path / "s.onnx").read_bytes() == (tmp_path / "saved.onnx").read_bytes()


def test_checker_runs_on_the_header_and_nothing_is_written(tmp_path):
    proto = _mixed_model()
    proto.graph.node[0].op_type = "NoSuchOp"
    with pytest.raises(onnx.checker.ValidationError):
        _write(ir.from_proto(proto), tmp_path / "s.onnx")
    assert not (tmp_path / "s.onnx").exists()


def test_a_truncated_source_is_an_error(tmp_path):
    onnx.save(_mixed_model(), tmp_path / "m.onnx", save_as_external_data=True, location="m.bin", size_threshold=0)
    model = ir.load(tmp_path / "m.onnx")
    data = (tmp_path / "m.bin").read_bytes()
    (tmp_path / "m.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="ends at byte"):
        _write(model, tmp_path / "s.onnx")


def test_compile_hashes_while_writing(tmp_path, monkeypatch):
    onnx.save(build(), tmp_path / "m.onnx")
    reads = []
    real = manifest_module.sha256_file

    def counting(path, *args, **kwargs):
        if os.path.abspath(path) not in manifest_module._WRITTEN:
            reads.append(Path(path).name)
        return real(path, *args, **kwargs)

    monkeypatch.setattr("edgec.backends.artifacts.sha256_file", counting)
    result = edgec.compile(tmp_path / "m.onnx", PLAN, tmp_path / "out")
    on_disk = read_manifest(tmp_path / "out")
    for rel, digest in on_disk.files.items():
        assert hashlib.sha256((tmp_path / "out" / rel).read_bytes()).hexdigest() == digest
    assert not [name for name in reads if name.endswith(".onnx")]
    assert result.manifest is not None
    for stage in on_disk.stages:
        ort.InferenceSession(str(tmp_path / "out" / stage.model))


def test_a_recorded_hash_is_not_trusted_after_the_file_changes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    record_sha256(path, "0" * 64)
    assert sha256_file(path) == "0" * 64
    path.write_bytes(b"b" * 100)
    assert sha256_file(path) == hashlib.sha256(b"b" * 100).hexdigest()


def test_source_hash_is_cached_by_file_identity(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x" * 1000)
    first = source_hash.source_sha256(model, min_cached_bytes=0)
    assert first == hashlib.sha256(b"x" * 1000).hexdigest()
    assert len(list((tmp_path / "cache" / "sha256").iterdir())) == 1

    def no_reading(_path, *args, **kwargs):
        raise AssertionError("the cached digest should have been used")

    monkeypatch.setattr(source_hash, "sha256_file", no_reading)
    assert source_hash.source_sha256(model, min_cached_bytes=0) == first
    monkeypatch.setattr(source_hash, "sha256_file", sha256_file)
    model.write_bytes(b"y" * 1000)
    assert source_hash.source_sha256(model, min_cached_bytes=0) == hashlib.sha256(b"y" * 1000).hexdigest()


def test_small_sources_are_not_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path / "cache"))
    (tmp_path / "m.onnx").write_bytes(b"x" * 10)
    source_hash.source_sha256(tmp_path / "m.onnx")
    assert not (tmp_path / "cache").exists()
