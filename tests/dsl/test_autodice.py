"""AutoDiCE mapping.json + platform.txt become plan text that parses back to the same placement."""

from __future__ import annotations

import json

import pytest

from edgec.compiler.diagnostics import PlanError, UsageError
from edgec.dsl import parse_plan
from edgec.dsl.ast import ListSel, NameSel
from edgec.dsl.autodice import autodice_to_plan, load_autodice, parse_platform

ALEXNET = {"nx01_arm012345": ["conv1_1", "conv1_2"], "nx01_gpu": ["fc6_1"], "nx02_gpu": ["fc7_1", "prob_1"]}
PLATFORM = "nx01, arm, slots=0-5, gpu=NVIDIAVolta (CUDA)\nnx02, arm, slots=0-5, gpu=NVIDIAVolta (CUDA)\n"


def placed(text: str) -> dict[str, tuple[str, int | None, list[str]]]:
    plan = parse_plan(text)
    result = {}
    for place in plan.places:
        assert isinstance(place.selector, ListSel)
        result[str(place.target)] = (place.target.device, place.threads, [s.name for s in place.selector.items])
    return result


def test_platform_with_arch_slots_and_gpu_round_trips() -> None:
    text = autodice_to_plan(ALEXNET, PLATFORM, model="bvlcalexnet-9.onnx")
    plan = parse_plan(text)
    assert plan.model is not None and plan.model.path == "bvlcalexnet-9.onnx"
    nx01 = plan.device_map["nx01"].props
    assert (nx01["arch"].value, nx01["cores"].value, nx01["gpu"].value, nx01["host"].value) == (
        "aarch64", 6, "cuda", "nx01")
    assert placed(text) == {
        "nx01.cpu": ("nx01", 6, ["conv1_1", "conv1_2"]),
        "nx01.gpu": ("nx01", None, ["fc6_1"]),
        "nx02.gpu": ("nx02", None, ["fc7_1", "prob_1"]),
    }


def test_two_cpu_keys_on_one_host_stay_separate_ranks() -> None:
    text = autodice_to_plan({"lenovo_cpu0": ["a"], "lenovo_cpu1": ["b", "c"]}, "lenovo\n")
    plan = parse_plan(text)
    assert [d.name for d in plan.devices] == ["lenovo_cpu0", "lenovo_cpu1"]
    assert all(d.props["host"].value == "lenovo" for d in plan.devices)
    assert placed(text)["lenovo_cpu1.cpu"] == ("lenovo_cpu1", 1, ["b", "c"])


def test_hostname_address_lines_and_odd_names_are_quoted() -> None:
    mapping = {"tx01_cpu01": ["/features/0/Conv", 'we"ird', "wire"], "edge.local_gpu": ["x"]}
    text = autodice_to_plan(mapping, "tx01:192.168.178.66\nedge.local\n")
    plan = parse_plan(text)
    assert plan.device_map["tx01"].props["host"].value == "192.168.178.66"
    assert plan.device_map["tx01"].props["cores"].value == 2
    assert plan.device_map["edge_local"].props["host"].value == "edge.local"
    assert plan.places[0].selector == ListSel([NameSel("/features/0/Conv"), NameSel('we"ird'), NameSel("wire")])


def test_long_node_lists_wrap_and_still_parse() -> None:
    nodes = [f"layer{i}/conv" for i in range(60)]
    text = autodice_to_plan({"h_cpu": nodes}, "h\n")
    assert max(len(line) for line in text.splitlines()) <= 100
    assert placed(text)["h.cpu"] == ("h", None, nodes)


def test_parse_platform_forms() -> None:
    hosts = parse_platform("# cluster\nnx01 slots=4\nbox, x86_64, cores=8\n\ntx01:10.0.0.2 # comment\n")
    assert (hosts["nx01"].cores, hosts["box"].arch, hosts["box"].cores) == (4, "x86_64", 8)
    assert hosts["tx01"].address == "10.0.0.2" and hosts["tx01"].cores is None


@pytest.mark.parametrize(
    ("mapping", "platform", "message"),
    [
        ({"nx01_tpu0": ["a"]}, "nx01", "mapping key 'nx01_tpu0' is not '<host>_<resource>'"),
        ({"nx01": ["a"]}, "nx01", "mapping key 'nx01' is not"),
        ({"nx03_cpu0": ["a"]}, "nx01\nnx02", "host 'nx03' of mapping key 'nx03_cpu0' is not in the platform file"),
        ({"nx01_cpu0": ["a"], "nx01_gpu": ["a"]}, "nx01", "node 'a' is mapped to both"),
        ({"nx01_cpu0": "a"}, "nx01", "must list node names as strings"),
        (["nx01_cpu0"], "nx01", "must hold a JSON object"),
        ({"nx01_cpu0": ["a"]}, "nx01, sparc", "unrecognized field 'sparc'"),
        ({"nx01_cpu0": ["a"]}, "nx01\nnx01", "host 'nx01' is listed twice"),
    ],
)
def test_conversion_errors(mapping: object, platform: str, message: str) -> None:
    with pytest.raises(PlanError, match=message.replace("(", r"\(").replace(")", r"\)")):
        autodice_to_plan(mapping, platform)  # type: ignore[arg-type]


def test_load_autodice_files(tmp_path) -> None:
    (tmp_path / "mapping.json").write_text(json.dumps(ALEXNET))
    (tmp_path / "platform.txt").write_text(PLATFORM)
    text = load_autodice(tmp_path / "mapping.json", tmp_path / "platform.txt", model="m.onnx")
    assert text.startswith("# imported from AutoDiCE")
    assert set(placed(text)) == {"nx01.cpu", "nx01.gpu", "nx02.gpu"}


def test_malformed_json_names_file_and_position(tmp_path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text('{"nx01_cpu0": ["a",\n  "b" "c"]}\n')
    (tmp_path / "platform.txt").write_text("nx01\n")
    with pytest.raises(PlanError) as info:
        load_autodice(path, tmp_path / "platform.txt")
    assert "malformed JSON" in info.value.message and str(path) in info.value.message
    assert info.value.span is not None and info.value.span.filename == str(path)
    assert (info.value.span.line, info.value.span.column) == (2, 7)


def test_mapping_key_errors_point_into_the_file(tmp_path) -> None:
    path = tmp_path / "mapping.json"
    path.write_text('{\n  "nx01_cpu0": ["a"],\n  "nx09_gpu": ["b"]\n}\n')
    (tmp_path / "platform.txt").write_text("nx01\nnx02\n")
    with pytest.raises(PlanError) as info:
        load_autodice(path, tmp_path / "platform.txt")
    assert info.value.suggestion in ("nx01", "nx02")
    assert info.value.span is not None and (info.value.span.line, info.value.span.column) == (3, 3)


def test_platform_errors_point_into_the_file(tmp_path) -> None:
    (tmp_path / "mapping.json").write_text('{"a_cpu": ["x"]}')
    (tmp_path / "platform.txt").write_text("a\nb, slots=lots\n")
    with pytest.raises(PlanError) as info:
        load_autodice(tmp_path / "mapping.json", tmp_path / "platform.txt")
    span = info.value.span
    assert span is not None and span.filename.endswith("platform.txt") and (span.line, span.column) == (2, 4)


def test_missing_file_is_usage_error(tmp_path) -> None:
    (tmp_path / "platform.txt").write_text("a\n")
    with pytest.raises(UsageError, match="missing.json"):
        load_autodice(tmp_path / "missing.json", tmp_path / "platform.txt")
