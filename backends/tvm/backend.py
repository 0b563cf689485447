"""The TVM backend as a registered `Backend`: every stage's sub-model compiled into `stage<k>.so`.

It reads only the manifest (stages, their sub-model paths and devices), so the same code adds
modules to an output written earlier (`compile_directory`).
"""

from __future__ import annotations

from pathlib import Path

from ...compiler.facts import Fact
from ...compiler.program import Program
from ..backend import Backend, Progress
from ..manifest import Manifest
from .compile import compile_output
from .section import TvmSection


class TvmBackend(Backend):
    """The `tvm` backend: a TVM module per stage for its device's target, from the manifest's stages and
    sub-models; it requires `batchnorm-folded` (see `frontend.py` for why)."""

    name = "tvm"
    summary = "a TVM module per stage (x86, aarch64, CUDA)"
    needs = ("onnx",)
    section_type = TvmSection
    requires = frozenset({Fact.STAGED, Fact.COMM, Fact.BATCHNORM_FOLDED})

    def write(self, program: Program, out: Path, *, manifest: Manifest, progress: Progress) -> TvmSection:
        return compile_output(manifest, out, progress)
