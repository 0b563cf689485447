"""Run an `onnx_ir.passes` pass inside edgec's PassManager.

onnx-ir ships maintained graph passes (unused-node removal, common-subexpression elimination,
identity elimination, …) that work on the same `ir.Model` edgec compiles. `OnnxIRPass` wraps
one: the manager verifies the program after it like after any pass, so a pass that leaves a
node without a placement is caught there. An in-place pass keeps every node's annotations; a
functional one returns a new model, which replaces the program's.

From the command line: `--passes "onnx-ir:RemoveUnusedNodesPass,split-layer,split,comm-insert"`.
"""

from __future__ import annotations

from typing import ClassVar

import onnx_ir.passes

from ..compiler.diagnostics import UsageError
from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, PassResult
from ..compiler.program import Program


class OnnxIRPass(Pass):
    """Adapter: an `onnx_ir.passes.PassBase` instance run as an edgec pass.

    It declares no facts except that it breaks the communication tables (`comm`) when it may
    change the graph; give `requires`/`provides` by subclassing when a pass needs them.
    """

    name: ClassVar[str] = "onnx-ir"
    invalidates = frozenset({Fact.COMM})

    def __init__(self, ir_pass: onnx_ir.passes.PassBase, name: str | None = None) -> None:
        if not isinstance(ir_pass, onnx_ir.passes.PassBase):
            raise UsageError(f"OnnxIRPass wraps an onnx_ir.passes.PassBase instance, not {ir_pass!r}")
        self.ir_pass = ir_pass
        self.name = name or f"onnx-ir:{type(ir_pass).__name__}"  # type: ignore[misc]

    @property
    def spec(self) -> str:
        return self.name

    def call(self, program: Program) -> PassResult:
        result = self.ir_pass(program.model)
        if result.model is not program.model:
            program.model = result.model
        return PassResult(bool(result.modified), type(self.ir_pass).__name__)


def onnx_ir_pass_class(class_name: str) -> type[Pass] | None:
    """A Pass class for `onnx_ir.passes.common.<class_name>` (constructed without arguments), or None."""
    target = getattr(onnx_ir.passes.common, class_name, None)
    if not (isinstance(target, type) and issubclass(target, onnx_ir.passes.PassBase)):
        return None

    class Adapted(OnnxIRPass):
        name: ClassVar[str] = f"onnx-ir:{class_name}"
        __doc__ = (target.__doc__ or "").strip().split("\n")[0] or f"onnx-ir's {class_name}"

        def __init__(self) -> None:
            super().__init__(target(), self.name)

    Adapted.__name__ = Adapted.__qualname__ = f"OnnxIR{class_name}"
    return Adapted


def available_onnx_ir_passes() -> list[str]:
    """Names (`onnx-ir:NAME`) of the onnx-ir passes that take no constructor arguments."""
    import inspect

    found = []
    for attr in sorted(dir(onnx_ir.passes.common)):
        cls = getattr(onnx_ir.passes.common, attr)
        if isinstance(cls, type) and issubclass(cls, onnx_ir.passes.PassBase):
            params = list(inspect.signature(cls).parameters.values())
            if all(p.default is not p.empty or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL) for p in params):
                found.append(f"onnx-ir:{attr}")
    return found

