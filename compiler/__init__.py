"""The compiler core: the IR wrapper (`Program`), platform model, diagnostics and PassManager."""

from .lazy_imports import defer as _defer

_defer()  # before anything imports onnx-ir: its eager sympy import costs 0.3–0.5 s a compile never needs
