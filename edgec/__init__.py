"""edgec: compile an ONNX model and a partitioning plan into per-device artifacts for distributed inference.

The public API for other compilers (each name is documented where it is defined):

- `edgec.compile(model, plan, out)` — the whole `edgec compile` pipeline;
- `edgec.load_plan(plan)` / `edgec.load_program(model, plan)` / `edgec.load_model(model)` — the front end;
- `edgec.Program`, `edgec.Pass`, `edgec.PassResult`, `edgec.PassManager`, `edgec.Fact`,
  `edgec.register_pass`, `edgec.parse_pipeline`, `edgec.default_pipeline` — build and run pipelines;
- `edgec.Placement`, `edgec.Platform`, `edgec.Device`, `edgec.Link` — where nodes run;
- `edgec.write_artifacts(program, out, …)` — the writer (backends) for a finished program;
- `edgec.verify(out, feeds)` / `edgec.run(out, feeds, frames=…)` — check and run an output;
- `edgec.EdgecError` and its subclasses — every user-facing error.

Names are imported on first use, so `import edgec` costs little until a name is touched.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import compiler as _compiler  # noqa: F401  (first: defers sympy before onnx-ir is imported; see compiler/lazy_imports.py)

__version__ = "0.1.0"

_EXPORTS = {
    "CompileResult": ".api", "compile": ".api", "load_plan": ".api", "load_program": ".api",
    "ModelLike": ".api", "PlanLike": ".api",
    "EdgecError": ".compiler.diagnostics", "InternalError": ".compiler.diagnostics", "ModelError": ".compiler.diagnostics",
    "PassError": ".compiler.diagnostics", "PlanError": ".compiler.diagnostics", "UsageError": ".compiler.diagnostics",
    "VerifyError": ".compiler.diagnostics",
    "Fact": ".compiler.facts",
    "load_model": ".compiler.model_loader",
    "Pass": ".compiler.pass_manager", "PassManager": ".compiler.pass_manager", "PassResult": ".compiler.pass_manager",
    "canonical_order": ".compiler.pass_manager",
    "Placement": ".compiler.annotations",
    "Platform": ".compiler.platform", "Device": ".compiler.platform", "Link": ".compiler.platform",
    "format_program": ".compiler.printer",
    "Program": ".compiler.program", "Stage": ".compiler.program", "Transfer": ".compiler.program",
    "register_pass": ".passes.registry", "default_pipeline": ".passes", "parse_pipeline": ".passes.pipeline_spec",
    "write_artifacts": ".backends.artifacts",
    "verify": ".runtime.verify",
    "run": ".runtime.launcher",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgec' has no attribute '{name}'")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from .api import CompileResult, ModelLike, PlanLike, compile, load_plan, load_program
    from .backends.artifacts import write_artifacts
    from .compiler.annotations import Placement
    from .compiler.diagnostics import (EdgecError, InternalError, ModelError, PassError, PlanError, UsageError,
                                       VerifyError)
    from .compiler.facts import Fact
    from .compiler.model_loader import load_model
    from .compiler.pass_manager import Pass, PassManager, PassResult, canonical_order
    from .compiler.platform import Device, Link, Platform
    from .compiler.printer import format_program
    from .compiler.program import Program, Stage, Transfer
    from .passes import default_pipeline
    from .passes.pipeline_spec import parse_pipeline
    from .passes.registry import register_pass
    from .runtime.launcher import run
    from .runtime.verify import verify
