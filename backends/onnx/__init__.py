"""The ONNX backend: one checked, shape-inferred sub-model per stage."""

from __future__ import annotations

from .submodels import StageModel, extract_stage, write_stage_files, write_stage_models

__all__ = ["StageModel", "extract_stage", "write_stage_files", "write_stage_models"]
