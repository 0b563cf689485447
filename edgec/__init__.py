"""edgec: compile an ONNX model and a partitioning plan into per-device artifacts for distributed inference.

The public API for other compilers:

- `edgec.compile(model, plan, out)` — the whole `edgec compile` pipeline;
- `edgec.load_plan(plan)` / `edgec.load_program(model, plan)` — the front end alone;
- `edgec.Program`, `edgec.PassManager`, `edgec.Pass`, `edgec.passes.*` — build your own pipeline;
- `edgec.EdgecError` and its subclasses — every user-facing error.
"""

from __future__ import annotations

from .api import CompileResult, compile, load_plan, load_program
from .compiler.diagnostics import EdgecError, ModelError, PassError, PlanError, UsageError, VerifyError
from .compiler.model_loader import load_model
from .compiler.pass_manager import Pass, PassManager, PassResult
from .compiler.printer import format_program
from .compiler.program import Program, Stage, Transfer

__version__ = "0.1.0"

__all__ = [
    "CompileResult", "EdgecError", "ModelError", "Pass", "PassError", "PassManager", "PassResult", "PlanError",
    "Program", "Stage", "Transfer", "UsageError", "VerifyError", "compile", "format_program", "load_model",
    "load_plan", "load_program",
]
