"""Canonicalization: the graph in the one form every later pass and backend can rely on.

Requires: placed nodes. Guarantees (`canonical`): no inference Dropout and no Identity is left
except an Identity that must stay (a graph input or initializer passed out as a graph output, or
one graph output copied to another); `Sum` is gone (one input: removed; more: a chain of `Add`,
because TVM imports `Sum` as stack + sum, a copy and a 5-D tensor its NHWC layout conversion
cannot take); constant subgraphs are folded into initializers and unused nodes dropped. Every
node it creates is placed (and staged) like the node it replaces, a graph output keeps its name,
graph inputs and outputs are never removed. It runs first, so split-layer and split see the canonical graph; the builder's `sum`
emits `Add` chains, so later rewrites keep it canonical.

Who does what: onnxscript folds constants (`onnxscript.optimizer.fold_constants`, which also
turns shape no-ops — Reshape/Expand/Cast to the same shape and type, Concat of one — into
Identity); onnx-ir lifts Constant nodes into initializers and removes unused nodes. The table
`LOCAL_RULES` is edgec's own: onnxscript's Dropout rules only match opset-11 Dropouts with
`ratio=0`, onnx-ir's identity elimination renames a graph output that is also the Identity's
input (losing that output's name), and neither rewrites Sum. onnxscript's no-op arithmetic
rules (`x*1`, `x+0`) are not used: they match constants within a tolerance, which is not exact.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, NamedTuple

import onnx_ir as ir
import onnx_ir.passes.common as ir_passes
import onnxscript.optimizer

from ..compiler.annotations import PLACEMENT, is_edgec_op
from ..compiler.builder import Builder, annotate_like
from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, PassResult
from ..compiler.program import Program

MAX_ROUNDS = 8
FOLD_INPUT_LIMIT = 1 << 24
"""Elements an input of a folded node may have: like model loading, fold weight transforms (Cast, Mul, …) too."""


class Rule(NamedTuple):
    applies: Callable[[ir.Node, int], bool]
    rewrite: Callable[[ir.Graph, ir.Node], None]
    label: str


def _is_onnx(node: ir.Node, op_type: str) -> bool:
    return node.op_type == op_type and node.domain in ("", "ai.onnx")


def _unused(values) -> bool:
    return all(not v.uses() and not v.is_graph_output() for v in values)


def _inference_dropout(node: ir.Node, opset: int) -> bool:
    """Dropout is the identity at inference: before opset 12 always, then unless `training_mode` may be true."""
    if not _is_onnx(node, "Dropout") or not _unused(node.outputs[1:]):
        return False
    if opset < 12 or len(node.inputs) < 3 or node.inputs[2] is None:
        return True
    mode = node.inputs[2].const_value
    return mode is not None and not bool(mode.numpy().any())


def _to_identity(graph: ir.Graph, node: ir.Node) -> None:
    """Dropout → Identity (or Sum of one): the same node, so its name and annotations stay."""
    node.resize_outputs(1)
    node.resize_inputs(1)
    node.attributes.clear()
    node.op_type = "Identity"


def _removable_identity(node: ir.Node, opset: int) -> bool:
    if not _is_onnx(node, "Identity") or len(node.inputs) != 1 or node.inputs[0] is None:
        return False
    x, y = node.inputs[0], node.outputs[0]
    return not y.is_graph_output() or not (x.is_graph_input() or x.is_initializer() or x.is_graph_output())


def _remove_identity(graph: ir.Graph, node: ir.Node) -> None:
    """Consumers read the input directly; a graph output renames the input to keep its own name."""
    x, y = node.inputs[0], node.outputs[0]
    keep = y.name if y.is_graph_output() else None
    y.replace_all_uses_with(x, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    if keep is not None:
        y.name = None
        x.name = keep


def _sum_of_many(node: ir.Node, opset: int) -> bool:
    return _is_onnx(node, "Sum") and len(node.inputs) >= 2


def _sum_to_adds(graph: ir.Graph, node: ir.Node) -> None:
    out, name = node.outputs[0], node.outputs[0].name
    total = Builder(graph, node, node.name).sum("add", list(node.inputs))
    out.replace_all_uses_with(total, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    out.name = None
    total.name = name
    total.producer().name = node.name


LOCAL_RULES: tuple[Rule, ...] = (
    Rule(_inference_dropout, _to_identity, "Dropout → Identity"),
    Rule(lambda n, _: _is_onnx(n, "Sum") and len(n.inputs) == 1, _to_identity, "Sum of one → Identity"),
    Rule(_sum_of_many, _sum_to_adds, "Sum → Add"),
    Rule(_removable_identity, _remove_identity, "Identity removed"),
)
"""edgec's own local rewrites, tried on every node in order (a Dropout becomes an Identity, then goes)."""


class Canonicalize(Pass):
    """Canonical graph: Dropout and Identity removed, Sum as a chain of Add, constant subgraphs folded.

    requires placed; provides canonical; invalidates comm. Refuses a program that already holds
    Send/Recv nodes: it runs before communication is inserted.
    """

    name = "canonicalize"
    requires = frozenset({Fact.PLACED})
    provides = frozenset({Fact.CANONICAL})
    invalidates = frozenset({Fact.COMM})

    def precondition(self, program: Program) -> None:
        for node in program.nodes():
            if is_edgec_op(node):
                raise self.fail(f"the program already holds communication ('{node.name}'); canonicalize runs before "
                                "comm-insert")

    def call(self, program: Program) -> PassResult:
        counts: Counter[str] = Counter()
        modified = False
        for _ in range(MAX_ROUNDS):
            rewritten = _local_rewrites(program, counts)
            folded = self._fold(program, counts)
            modified |= rewritten or folded
            if not folded:  # the rewrites finish in one sweep; only a fold can expose more for them
                break
        summary = ", ".join(f"{n} {label}" for label, n in counts.items())
        summary = summary or ("inputs rewired by folding" if modified else "already canonical")
        return PassResult(modified, summary, dict(counts))

    def _fold(self, program: Program, counts: Counter[str]) -> bool:
        """onnxscript's constant folding, then onnx-ir's constant lifting and dead-node removal; new nodes placed."""
        model, graph = program.model, program.graph
        existing = {id(n) for n in graph}
        origin = {v.name: n for n in graph for v in n.outputs}
        folded = onnxscript.optimizer.fold_constants(model, input_size_limit=FOLD_INPUT_LIMIT,
                                                     should_fold=_keeps_graph_outputs).modified
        lifted = ir_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model).modified
        removed = ir_passes.RemoveUnusedNodesPass()(model).modified
        self._adopt_new_nodes(graph, existing, origin)
        gone = len(existing) - sum(1 for n in graph if id(n) in existing)
        if gone:
            counts["nodes folded or removed"] += gone
        return bool(folded or lifted or removed)

    def _adopt_new_nodes(self, graph: ir.Graph, existing: set[int], origin: dict[str, ir.Node]) -> None:
        """A node the folder made takes the annotations and name of the node whose output it now produces;
        a node feeding only such nodes (e.g. the Shape of a mask) those of its consumer."""
        new = [n for n in graph if id(n) not in existing]
        taken = {n.name for n in graph if id(n) in existing}
        for node in reversed(new):
            template = next((origin[v.name] for v in node.outputs if v.name in origin), None)
            if template is None:
                template = next((u.node for v in node.outputs for u in v.uses() if PLACEMENT in u.node.meta), None)
            if template is None:
                raise self.fail(f"constant folding made node '{node.name}' ({node.op_type}) from no node it replaces")
            annotate_like(node, template)
            name, suffix = template.name, 1
            while name in taken:
                name, suffix = f"{template.name}/{node.op_type}{suffix}", suffix + 1
            node.name = name
            taken.add(name)

    def postcondition(self, program: Program) -> None:
        opset = _opset(program.graph)
        for node in program.nodes():
            for rule in LOCAL_RULES:
                if rule.applies(node, opset):
                    raise self.fail(f"node '{node.name}' ({node.op_type}) is still to be rewritten ({rule.label})")


def _keeps_graph_outputs(node: ir.Node) -> bool | None:
    """A node producing a graph output stays a node (as at model loading): some stage must produce each output."""
    return False if any(v.is_graph_output() for v in node.outputs) else None


def _opset(graph: ir.Graph) -> int:
    return graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 1))


def _local_rewrites(program: Program, counts: Counter[str]) -> bool:
    graph, opset = program.graph, _opset(program.graph)
    changed = False
    for node in list(graph):
        for rule in LOCAL_RULES:
            if node.graph is graph and rule.applies(node, opset):
                rule.rewrite(graph, node)
                counts[rule.label] += 1
                changed = True
    return changed
