"""The TVM backend: every stage compiled by Apache TVM (Relax) into `devices/<device>/stage<k>.so`.

Why a second backend: the ONNX sub-models need onnxruntime on every device; a TVM module needs
only the small TVM runtime, can be cross-compiled for the device's CPU (aarch64, armv7) or GPU
(CUDA), and runs convolutions with schedules made for the device. `compile_output` is the hook
the artifact writer calls; `runtime/tvm_stage.py` runs the modules.
"""

from __future__ import annotations

from .compile import compile_directory, compile_output, compile_stage, tvm_versions
from .targets import TargetSpec, parse_target, select_target

__all__ = ["TargetSpec", "compile_directory", "compile_output", "compile_stage", "parse_target", "select_target",
           "tvm_versions"]
