"""The VTA backend as a registered `Backend`: every stage on a `vta` resource compiled to VTA programs
(instructions, micro-ops, packed weights, biases and shifts) plus the list of nodes its CPU runs."""

from __future__ import annotations

from pathlib import Path

from ...compiler.program import Program
from ..backend import Backend, Progress
from ..manifest import Manifest
from .compile import compile_output
from .section import VtaSection


class VtaBackend(Backend):
    """The `vta` backend: reads the manifest's stages and the onnx backend's sub-models (`needs`
    onnx), so it never touches the IR; stages on other resources are left to other backends."""

    name = "vta"
    summary = "VTA programs for stages on a vta resource (simulated), CPU fallbacks named"
    needs = ("onnx",)
    section_type = VtaSection

    def write(self, program: Program, out: Path, *, manifest: Manifest, progress: Progress) -> VtaSection:
        return compile_output(manifest, out, progress)
