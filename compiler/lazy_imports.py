"""Defer modules that a dependency imports eagerly but a compile never uses.

onnx-ir (1.0 and 1.1) imports sympy at module level, for arithmetic on symbolic dimensions;
edgec fixes every dimension before its passes run, so a compile never does such arithmetic,
yet sympy costs 0.3–0.5 s to import, as long as compiling DenseNet-121 into 24 stages.
`defer` hands the named modules to `importlib.util.LazyLoader`: `import sympy` gives a module
object at once and runs sympy's code on its first attribute access, so code that really uses
sympy (onnx-ir's `SymbolicDim` arithmetic, onnxruntime's symbolic shape inference) behaves
exactly as before, only later. `onnx_ir._symbolic_shapes` is deferred too because it reads
sympy attributes when it is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from typing import Iterable, Sequence

DEFERRED = ("sympy", "onnx_ir._symbolic_shapes")


class _Deferring(importlib.abc.MetaPathFinder):
    """Finds the named modules with the finders after it and wraps their loader in a LazyLoader."""

    def __init__(self, names: Iterable[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Sequence[str] | None, target=None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, _Deferring) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


def defer(names: Iterable[str] = DEFERRED) -> None:
    """Make later first imports of `names` lazy (idempotent; modules already imported stay as they are)."""
    wanted = set(names)
    for finder in sys.meta_path:
        if isinstance(finder, _Deferring):
            wanted -= finder.names
    if wanted:
        sys.meta_path.insert(0, _Deferring(wanted))
