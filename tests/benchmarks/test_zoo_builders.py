"""The benchmark zoo builds torchvision's architectures exactly, as valid ONNX that edgec compiles correctly.

Why: the compile-time comparison with AutoDiCE is only meaningful if the models are the real
VGG-19 / ResNet-101 / DenseNet-121. Full-size counts and checker runs use the weight-free
form (weights as typed inputs), so nothing large is drawn; compiling and verifying uses the
small width-multiplied variants.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import onnx
import pytest

import edgec
from edgec.runtime.outputs import random_inputs
from edgec.runtime.verify import verify

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))  # appended: tests/zoo.py must keep winning `import zoo`


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


bench_zoo = _load("zoo")
bench_measure = _load("measure")
HEADLINE = ("vgg19", "resnet101", "densenet121")


@pytest.mark.parametrize("name", sorted(bench_zoo.TORCHVISION_PARAMS))
def test_parameter_count_is_torchvisions(name):
    assert bench_zoo.builder(name).parameters == bench_zoo.TORCHVISION_PARAMS[name]


def test_autodice_counts_include_bn_running_stats():
    densenet, resnet = bench_zoo.builder("densenet121"), bench_zoo.builder("resnet101")
    assert densenet.parameters + densenet.buffers == 8_062_504  # AutoDiCE's "8.06M"
    assert round((resnet.parameters + resnet.buffers) / 1e6, 1) == 44.7
    assert bench_zoo.builder("vgg19").buffers == 0


@pytest.mark.parametrize("name, nodes, bns", [("vgg19", 44, 0), ("resnet101", 345, 104), ("densenet121", 431, 121)])
def test_layers_and_real_batchnorm_nodes(name, nodes, bns):
    graph = bench_zoo.builder(name)
    ops = [n.op_type for n in graph.nodes]
    assert len(graph.nodes) == nodes
    assert ops.count("BatchNormalization") == bns
    assert len({n.name for n in graph.nodes}) == nodes


@pytest.mark.parametrize("name, expected", [
    ("vgg19", ["features.0", "features.36", "avgpool", "classifier.6"]),
    ("resnet101", ["conv1", "layer1.0.conv1", "layer1.0.downsample.0", "layer3.22.relu_2", "fc"]),
    ("densenet121", ["features.conv0", "features.denseblock4.denselayer16.conv2", "features.transition3.pool",
                     "features.norm5", "classifier"]),
])
def test_torchvision_like_names(name, expected):
    names = {n.name for n in bench_zoo.builder(name).nodes}
    assert set(expected) <= names


@pytest.mark.parametrize("name", HEADLINE)
def test_full_size_graph_passes_checker_and_infers_output(name):
    model = bench_zoo.builder(name).model(1000, 224, weights=False)
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 224, 224]
    assert model.opset_import[0].version == 17
    onnx.checker.check_model(model, full_check=True)
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    assert [d.dim_value for d in inferred.graph.output[0].type.tensor_type.shape.dim] == [1, 1000]


def test_drawn_weights_match_specs_and_cache_is_reused(tmp_path):
    first = bench_zoo.cached("resnet18", tmp_path, width=0.125)
    model = onnx.load(first.path)
    sizes = {t.name: len(t.raw_data) for t in model.graph.initializer}
    assert sum(sizes.values()) == first.weight_bytes == 4 * (first.parameters + first.buffers)
    onnx.checker.check_model(model, full_check=True)
    stamp = first.path.stat().st_mtime_ns
    assert bench_zoo.cached("resnet18", tmp_path, width=0.125).path.stat().st_mtime_ns == stamp


def test_stage_plan_spreads_ranges_and_cycles_devices():
    plan = bench_measure.stage_plan([f"n{i}" for i in range(100)], 24, 8)
    places = [line for line in plan.splitlines() if line.startswith("place")]
    assert len(places) == 24
    assert places[0] == 'place "n0" .. "n3" on dev0.cpu' and places[8].endswith("on dev0.cpu")
    assert places[-1].startswith('place "n95" .. "n99"')


@pytest.mark.parametrize("name, external", [("vgg19", False), ("resnet50", False), ("densenet121", True)])
def test_small_variant_compiles_and_verifies(name, external, tmp_path):
    model = bench_zoo.cached(name, tmp_path / "cache", width=0.125, external=external)
    plan = bench_measure.stage_plan(model.nodes, 12, 4)
    result = edgec.compile(model.path, plan, tmp_path / "out")
    assert len(result.program.stages) == 12
    assert len({s.device for s in result.program.stages}) == 4
    report = verify(tmp_path / "out", random_inputs(result.manifest, seed=1))
    assert report.ok, [(o.name, o.max_rel) for o in report.outputs]
