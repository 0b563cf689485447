"""The explorer's heavy dependencies load only in its own commands, never in `compile` or `--help`."""

from __future__ import annotations

from test_import_graph import loaded, present

HEAVY = ("pymoo", "matplotlib", "edgec.explorer")


def test_explore_and_profile_help_load_no_search_stack(tmp_path):
    for command in ("explore", "profile"):
        assert present(loaded(tmp_path, command, "--help"), HEAVY + ("onnxruntime", "onnx_ir")) == []
