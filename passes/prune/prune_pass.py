"""The prune pass: structured channel pruning that leaves a smaller dense model.

Requires placed; provides pruned; invalidates comm (tensor sizes change); runs after
canonicalize, split-layer, split and quantize when they are in the pipeline, so it prunes the
parts of an intra-layer split and keeps QDQ scales consistent, and its per-stage figures are
per stage. It neither requires nor breaks batchnorm-folded: with BatchNorms still in the graph
it ranks by γ and re-estimates their statistics; after folding it prunes the folded layers.

Statements apply in plan order. For each one: build the dependency graph of tied channels
(`channels.py`), rank the classes its layers touch (`ranking.py`), remove the chosen ones
everywhere (`rewrite.py`), and, with `calibrate`, repair (`repair.py`): bias compensation
from the statistics of the model before the statement, optionally (`reconstruct`) a
least-squares refit of the consumers' weights (`reconstruct.py`) and BatchNorm re-estimation,
depth level by depth level on the pruned model, so each is measured behind repaired ones. No fine-tuning happens. Without any prune statement (or at 0 %) the pass
changes nothing and says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from ...compiler.diagnostics import PlanWarning
from ...compiler.facts import Fact
from ...compiler.pass_manager import Pass, PassResult
from ...compiler.program import LayerPruning, Program, PruningCost
from . import calibration, channels, cost_report, ranking, repair, rewrite
from .reconstruct import reconstruct as least_squares
from .request import PRUNE, PruneRequest


@dataclass(frozen=True)
class Prune(Pass):
    """Structured pruning of the plan's `prune` statements, with statistics repair from calibration data.

    Options: `bias_correction` and `bn_stats` switch the two repairs (used when calibration
    data is given); `reconstruct` refits the consumers' weights by least squares on the
    calibration activations (`reconstruct.py`); `channel_multiple` rounds each tie group's kept channels
    to a multiple (8: the SIMD block of onnxruntime's and TVM's kernels; 1 turns it off) for groups
    of at least 16 times that many channels; `samples` caps the calibration samples read.
    """

    bias_correction: bool = True
    bn_stats: bool = True
    reconstruct: bool = False
    channel_multiple: int = 8
    samples: int = 512

    name = "prune"
    requires = frozenset({Fact.PLACED})
    provides = frozenset({Fact.PRUNED})
    invalidates = frozenset({Fact.COMM})
    after = frozenset({Fact.CANONICAL, Fact.LAYERS_SPLIT, Fact.STAGED, Fact.QUANTIZED})

    def call(self, program: Program) -> PassResult:
        requests = sorted({id(r): r for n in program.nodes() if (r := n.meta.get(PRUNE)) is not None}.values(),
                          key=lambda r: r.index)
        if not requests:
            return PassResult(False, "no prune statement")
        removed_total = 0
        for request in requests:
            removed_total += self._statement(program, request)
        if not removed_total:
            return PassResult(False, "nothing to remove")
        total = [c for c in program.pruning_cost if c.stage is None]
        before, after = total[0], total[-1]
        return PassResult(True, f"{removed_total} channel classes removed; MACs {before.macs_before} -> {after.macs_after}, "
                                f"parameters {before.params_before} -> {after.params_after}",
                          {"removed": removed_total})

    def _statement(self, program: Program, request: PruneRequest) -> int:
        graph = program.graph
        cg = channels.build(graph)
        stats, wanted = None, {}

        def batches():
            return calibration.feeds(request.calibrate, graph, self.samples, request.span)

        if request.calibrate:
            wanted = {n.inputs[0]: cg.maps[n.inputs[0]].axis for n in graph
                      if n.op_type in repair.LINEAR and n.inputs and n.inputs[0] in cg.maps}
            stats = calibration.collect(program.model, wanted, batches())
        measured = {v: stats[v.name] for v in wanted} if stats else None
        choice = next(c for c in ranking.choose(cg, graph, measured, self.channel_multiple) if c.request is request)
        self._warn(program, choice)
        if request.metric == "bn_gamma" and not any(n.op_type == "BatchNormalization" for n in graph):
            program.warnings.append(PlanWarning("`by bn_gamma` found no BatchNormalization (folded before pruning?); "
                                                "channels are ranked by l1", request.span))
        if not choice.removed:
            return 0
        before = cost_report.totals(graph)
        channels_before = _layer_channels(graph)
        consumers = repair.shrunk_consumers(cg, graph, choice.removed)
        deltas = repair.compensations(consumers, stats) if stats and self.bias_correction else {}
        original = calibration.session(program.model, [n.outputs[0] for n, _ in consumers]) \
            if stats and (self.reconstruct or request.reconstruct) and consumers else None
        kept_out = {n.name: cg.kept(n.outputs[0], choice.removed) for n, _ in consumers}
        rewrite.remove(graph, cg, choice.removed)
        if stats:
            repair.apply_compensations(graph, cg, choice.removed, deltas)
            layers = [n for n, _ in consumers]
            todo = (repair.affected_batchnorms(graph, layers) if self.bn_stats else []) + \
                (layers if original is not None else [])
            for group in repair.levels(graph, todo):
                fit = [n for n in group if n.op_type in repair.LINEAR]
                if fit:
                    least_squares(program.model, original, fit, batches, kept_out)
                if len(fit) < len(group):
                    repair.reestimate_batchnorms(program.model, [n for n in group if n.op_type == "BatchNormalization"], batches)
        after = cost_report.totals(graph)
        for name, (node, count) in _layer_channels(graph).items():
            old = channels_before.get(name)
            if old is not None and old[1] != count:
                program.pruning.append(LayerPruning(name, old[1], count, request.label))
        program.pruning_cost.append(_cost(request.label, None, before, after))
        for stage in sorted(set(before["stages"]) - {None}):
            program.pruning_cost.append(_cost(request.label, stage, before["stages"][stage],
                                              after["stages"].get(stage, {"params": 0, "macs": 0})))
        return len(choice.removed)

    @staticmethod
    def _warn(program: Program, choice: ranking.Choice) -> None:
        span = choice.request.span
        if choice.widened:
            names = ", ".join(sorted(choice.widened)[:6]) + (" …" if len(choice.widened) > 6 else "")
            program.warnings.append(PlanWarning(
                f"prune widened to {len(choice.widened)} layer(s) the selector does not name, whose channels are tied to "
                f"the selected ones (residual Add, Concat, depthwise): {names}", span))
        if choice.blocked:
            items = sorted(choice.blocked.items())
            shown = "; ".join(f"'{n}': {why}" for n, why in items[:4]) + (" …" if len(items) > 4 else "")
            program.warnings.append(PlanWarning(
                f"{len(items)} selected layer(s) keep their channels: {shown}", span))


def _layer_channels(graph: ir.Graph) -> dict[str, tuple[ir.Node, int]]:
    out = {}
    for node in graph:
        if node.op_type in repair.LINEAR and node.outputs and node.outputs[0].shape is not None:
            shape = node.outputs[0].shape
            axis = 1 if node.op_type != "MatMul" else len(shape) - 1
            out[node.name] = (node, int(shape[axis]))
    return out


def _cost(statement: str, stage: int | None, before: dict, after: dict) -> PruningCost:
    return PruningCost(statement, stage, int(before["params"]), int(after["params"]), int(before["macs"]),
                       int(after["macs"]))
