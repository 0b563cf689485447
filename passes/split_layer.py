"""Intra-layer split: one layer (or a spatial chain) computed by several devices.

Requires: nodes carrying a `SplitSpec` (the plan's `split` statements); other nodes placed.
Guarantees: every split node is replaced by its parts (placed on the split's targets), the
slices that feed them (placed where the sliced tensor is produced) and a merge (on the merge
device: `merge on`, default the device of the consumer); the merged tensor keeps the original
name; `program.splits` reports what each part receives and sends. After an output/filter
split, channel-wise consumers (activations, BatchNorm, pooling) follow the split into the
parts when that is exact, so the merge moves past them (not for a `cdc`-coded layer: its parts
stay linear so that parity decodes them; its followers run after the merge). Runs before the
vertical split, which then turns parts on different devices into stages like any other nodes.
"""

from __future__ import annotations

import onnx_ir as ir

from ..compiler.annotations import CDC, split_of
from ..compiler.diagnostics import PlanError
from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, PassResult
from ..compiler.program import Program
from .split_parts import ConcatParts, SplitContext, nbytes
from ..compiler.split_rules import CHANNELWISE, ELEMENTWISE, rule_for, splittable_ops
from .split_spatial import split_spatial


class SplitLayer(Pass):
    """Intra-layer splits: each `split` layer becomes parts on its targets, the slices feeding them, and a merge."""

    name = "split-layer"
    requires = frozenset({Fact.PLACED})
    provides = frozenset({Fact.LAYERS_SPLIT})
    invalidates = frozenset({Fact.STAGED, Fact.COMM})
    after = frozenset({Fact.CANONICAL})

    def call(self, program: Program) -> PassResult:
        groups: dict[int, list[ir.Node]] = {}
        for node in program.nodes():
            if (spec := split_of(node)) is not None:
                groups.setdefault(id(spec), []).append(node)
        for nodes in groups.values():
            spec = split_of(nodes[0])
            if spec.kind == "spatial":
                self._rewrite(program, nodes, spec, chain=True)
            else:
                for node in nodes:
                    self._rewrite(program, [node], spec, chain=False)
        _drop_unused_initializers(program.graph)
        return PassResult(bool(groups), f"{len(program.splits)} layers split")

    def _rewrite(self, program: Program, nodes: list[ir.Node], spec, *, chain: bool) -> None:
        graph, node = program.graph, nodes[0]
        if chain:
            ctx = SplitContext.for_node(graph, node, spec, last=nodes[-1])
            merged, removed = split_spatial(ctx, nodes), list(nodes)
        else:
            rule = rule_for(node.op_type, spec.kind)
            if rule is None:
                raise PlanError(f"cannot split {node.op_type} '{node.name}' by {spec.kind}: only "
                                f"{', '.join(splittable_ops())} layers can be split (spatial also takes pooling and "
                                "pointwise chains)", spec.span)
            followers = _followers(node) if rule.merge == "concat" and CDC not in node.meta else []
            ctx = SplitContext.for_node(graph, node, spec, last=followers[-1] if followers else None)
            result = rule.rewrite()(ctx)
            if isinstance(result, ConcatParts):
                result = _follow(ctx, result, followers)
                merged = ctx.builder.concat("merge", result.values, result.axis, ctx.merge_at)
            else:
                merged = result
            removed = [node, *followers]
        out = removed[-1].outputs[0]
        name = out.name
        ctx.report.nodes = [n.name for n in removed]
        out.replace_all_uses_with(merged, replace_graph_outputs=True)
        graph.remove(list(reversed(removed)), safe=True)
        out.name = None
        merged.name = name
        program.splits.append(ctx.report)


def _followers(node: ir.Node) -> list[ir.Node]:
    """Consumers that can run inside each part of an output split: a chain of channel-wise ops."""
    chain, value = [], node.outputs[0]
    while len(value.uses()) == 1 and not value.is_graph_output():
        user = value.uses()[0].node
        rank = len(value.shape)
        legal = user.op_type in ELEMENTWISE or (user.op_type in CHANNELWISE and rank >= 3)
        constant_rest = all(v is None or v.const_value is not None for v in user.inputs[1:])
        if not (legal and user.inputs[0] is value and constant_rest and len(user.outputs) == 1 and split_of(user) is None):
            break
        chain.append(user)
        value = user.outputs[0]
    return chain


def _follow(ctx: SplitContext, parts: ConcatParts, followers: list[ir.Node]) -> ConcatParts:
    values = list(parts.values)
    for follower in followers:
        for i, ((lo, hi), place) in enumerate(zip(parts.ranges, ctx.spec.parts)):
            inputs = [values[i], *follower.inputs[1:]]
            if follower.op_type == "BatchNormalization":
                inputs = [values[i]] + [ctx.builder.const(f"part{i}/{follower.name}.{k}", v.const_value.numpy()[lo:hi])
                                        for k, v in enumerate(follower.inputs[1:], start=1)]
            shape = list(follower.outputs[0].shape)
            shape[parts.axis] = hi - lo
            values[i] = ctx.builder.clone(follower, f"part{i}/{follower.name}", inputs, shape, place)
    for report, value in zip(ctx.report.parts, values):
        report.sends = nbytes(value)
    return ConcatParts(values, parts.axis, parts.ranges)


def _drop_unused_initializers(graph: ir.Graph) -> None:
    for name, value in list(graph.initializers.items()):
        if not value.uses() and not value.is_graph_output():
            del graph.initializers[name]
