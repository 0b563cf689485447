"""The TVM backend: every stage compiled by Apache TVM (Relax) into `devices/<device>/stage<k>.so`.

Why a second backend: the ONNX sub-models need onnxruntime on every device; a TVM module needs
only the small TVM runtime, can be cross-compiled for the device's CPU (aarch64, armv7) or GPU
(CUDA), and runs convolutions with schedules made for the device. `TvmBackend` (backend.py) is
what the artifact writer runs; `runtime/tvm_stage.py` runs the modules. Nothing here imports
TVM until a stage is compiled.
"""

from __future__ import annotations

from .compile import compile_directory, compile_output, compile_stage, tvm_versions
from .section import TvmSection, TvmStage
from .targets import TargetSpec, parse_target, select_target

__all__ = ["TargetSpec", "TvmSection", "TvmStage", "compile_directory", "compile_output", "compile_stage",
           "parse_target", "select_target", "tvm_versions"]
