"""onnxscript's pattern rewriter run on a Program, with edgec's annotations kept.

onnxscript (`onnxscript.rewriter`) matches subgraph patterns on the same onnx-ir graph edgec
compiles and ships maintained rewrite rules (BatchNorm into Conv/ConvTranspose/Gemm, no-op
arithmetic, …). It knows nothing about `node.meta`, so the nodes its rules create would come
out unplaced. `apply_rules` wraps each rule so that every rewrite

- is refused when the nodes it replaces do not all run in the same place (placement and stage):
  fusing across devices would move computation the plan put elsewhere (the refused replacement's
  nodes are detached from their inputs, which the rewriter had already linked them to);
- gives each node it creates the name and the `CARRIED` annotations of the matched node it
  stands for: the one with the same op type, otherwise the one whose output it replaces.

The wrapper relies on `RewriteRule.try_rewrite` and the replacement it returns (`match.nodes`,
`match.outputs`, `new_nodes`), which is why pyproject.toml pins onnxscript below 0.8.
"""

from __future__ import annotations

from typing import Any, Sequence

import onnx_ir as ir
from onnxscript.rewriter import RewriteRule, RewriteRuleSet

from ..compiler.builder import annotate_like, same_place
from ..compiler.program import Program


class _PlacedRule:
    """An onnxscript `RewriteRule` seen through edgec's placement rules; everything else delegates."""

    def __init__(self, rule: RewriteRule) -> None:
        self._rule = rule

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rule, name)

    def __repr__(self) -> str:
        return f"placed({self._rule!r})"

    def try_rewrite(self, model: ir.Model, graph: ir.Graph | ir.Function, node: ir.Node, **kwargs: Any):
        delta = self._rule.try_rewrite(model, graph, node, **kwargs)
        if delta is None or kwargs.get("tracer") is not None:
            return delta
        matched = [n for n in delta.match.nodes if not (n.op_type == "Constant" and n.domain in ("", "ai.onnx"))]
        if not matched or any(not same_place(matched[0], n) for n in matched[1:]):
            for new in delta.new_nodes:
                new.resize_inputs(0)
            return None
        root = next((n for n in matched if any(v in delta.match.outputs for v in n.outputs)), matched[0])
        taken = {n.name for n in graph} - {n.name for n in matched}
        for new in delta.new_nodes:
            template = next((n for n in matched if n.op_type == new.op_type and n.name not in taken), root)
            annotate_like(new, template)
            new.name = _unique(template.name if template.name not in taken else f"{root.name}/{new.op_type}", taken)
            taken.add(new.name)
        return delta


def _unique(name: str, taken: set[str]) -> str:
    candidate, suffix = name, 1
    while candidate in taken:
        candidate = f"{name}_{suffix}"
        suffix += 1
    return candidate


def apply_rules(program: Program, rules: Sequence[RewriteRule]) -> int:
    """Apply onnxscript `rules` to the program's main graph (placement-preserving); the number of rewrites."""
    return RewriteRuleSet([_PlacedRule(rule) for rule in rules]).apply_to_model(program.model)  # type: ignore[list-item]
