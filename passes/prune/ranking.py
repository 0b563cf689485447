"""Rank channel classes and choose which to remove for each `prune` statement.

Importance of a class is the mean of its members' importances, each normalized by the mean of
its layer (so a wide layer's large norms do not dominate a global ranking): `l1`/`l2` are the
norms of the source layers' output filters (Li et al.'s filter norms), `bn_gamma` is
|γ| of the BatchNorms on the class, `activation` the mean |activation| where consumers read the
channel, `contribution` the variance of the channel's contribution to each consumer's output,
Var(x_j)·||W[:, j]||² (what bias compensation cannot restore; both from calibration). A class a metric cannot score (no BatchNorm, no statistics) falls
back to `l1`.

Allocation: `per_layer` removes P % of each *tie bucket* (the classes that involve exactly the
same source layers — one layer in a chain, all tied layers of a residual stream); otherwise the
lowest-ranked classes across all selected layers go first until P % of the selected channels
are removed (global ranking). No layer keeps fewer than `MIN_KEEP` of its channels.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx_ir as ir

from . import params
from .channels import ChannelGraph
from .request import PRUNE, PruneRequest

MIN_KEEP = 0.1
ROUND_MIN = 16
"""Rounding to a channel multiple applies to buckets of at least ROUND_MIN multiples (steps ≤ 1/16)."""


@dataclass
class Choice:
    """What one statement removes, and what it had to say about it."""

    request: PruneRequest
    removed: set[int] = field(default_factory=set)
    candidates: int = 0
    widened: set[str] = field(default_factory=set)
    blocked: dict[str, str] = field(default_factory=dict)


def _row_norms(array: np.ndarray, axis: int, order: int) -> np.ndarray:
    moved = np.moveaxis(np.abs(array.astype(np.float64)), axis, 0).reshape(array.shape[axis], -1)
    return moved.sum(1) if order == 1 else np.sqrt((moved ** 2).sum(1))


def _normalized(values: np.ndarray) -> np.ndarray:
    mean = float(values.mean()) if values.size else 0.0
    return values / mean if mean > 0 else np.ones_like(values)


def _weight_axes(node: ir.Node) -> tuple[int, int]:
    """(output axis, input axis) of a layer's weight."""
    if node.op_type == "Gemm" and node.attributes.get_int("transB", 0):
        return 0, 1
    if node.op_type in ("Gemm", "MatMul"):
        return 1, 0
    return 0, 1


def _norm_contributions(cg: ChannelGraph, order: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(roots, normalized importance) of each source layer's output filters."""
    out = []
    for node in _layers(cg):
        w = params.weight(node.inputs[1])
        out_axis, _ = _weight_axes(node)
        m_out = cg.maps.get(node.outputs[0])
        if m_out is not None and node.attributes.get_int("group", 1) == 1:
            out.append((cg.roots(m_out.elems), _normalized(_row_norms(w, out_axis, order))))
    return out


def _bn_contributions(cg: ChannelGraph, graph: ir.Graph) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for node in graph:
        m = cg.maps.get(node.inputs[0]) if node.op_type == "BatchNormalization" and node.inputs else None
        gamma = params.constant(node.inputs[1]) if m is not None else None
        if gamma is not None:
            out.append((cg.roots(m.elems), _normalized(np.abs(gamma.astype(np.float64)))))
    return out


def _activation_contributions(cg: ChannelGraph, stats: dict) -> list:
    out = []
    for value, found in stats.items():
        m = cg.maps.get(value)
        if m is not None and len(found.mean_abs) == len(m.elems):
            out.append((cg.roots(m.elems), _normalized(found.mean_abs)))
    return out


def _contribution_contributions(cg: ChannelGraph, stats: dict) -> list:
    """Per consumer, Var(x_j)·||W[:, j]||²: the energy channel j adds to the consumer's output beyond its
    mean — what is lost when it is removed and its mean compensated in the bias."""
    by_name = {v.name: s for v, s in stats.items()}
    out = []
    for node in _layers(cg):
        m = cg.maps.get(node.inputs[0])
        found = by_name.get(node.inputs[0].name)
        if m is None or found is None or node.attributes.get_int("group", 1) != 1:
            continue
        w = params.weight(node.inputs[1]).astype(np.float64)
        _, in_axis = _weight_axes(node)
        energy = np.moveaxis(w ** 2, in_axis, 0).reshape(w.shape[in_axis], -1).sum(1)
        if len(energy) == len(m.elems):
            out.append((cg.roots(m.elems), _normalized(energy * found.var)))
    return out


def _layers(cg: ChannelGraph) -> list[ir.Node]:
    seen, layers = set(), []
    for value, _ in cg.maps.items():
        node = value.producer()
        if node is not None and node.op_type in ("Conv", "Gemm", "MatMul") and id(node) not in seen:
            if params.weight(node.inputs[1]) is not None:
                seen.add(id(node))
                layers.append(node)
    return layers


def scores(cg: ChannelGraph, graph: ir.Graph, metric: str, stats: dict | None = None) -> dict[int, float]:
    """Class root → importance for `metric` (lower is removed first)."""
    def mean_by_root(contribs) -> dict[int, float]:
        total: dict[int, float] = defaultdict(float)
        count: dict[int, int] = defaultdict(int)
        for roots, values in contribs:
            for r, v in zip(roots.tolist(), values.tolist()):
                total[r] += v
                count[r] += 1
        return {r: total[r] / count[r] for r in total}

    order = 2 if metric == "l2" else 1
    base = mean_by_root(_norm_contributions(cg, order))
    if metric == "bn_gamma":
        base.update(mean_by_root(_bn_contributions(cg, graph)))
    elif metric == "activation" and stats:
        base.update(mean_by_root(_activation_contributions(cg, stats)))
    elif metric == "contribution" and stats:
        base.update(mean_by_root(_contribution_contributions(cg, stats)))
    return base


def choose(cg: ChannelGraph, graph: ir.Graph, stats: dict | None = None, multiple: int = 1) -> list[Choice]:
    """Per statement (in order), the class roots it removes; with `multiple` > 1 every tie bucket of at
    least ROUND_MIN·multiple channels keeps a multiple of `multiple` (SIMD kernels work in blocks of 8 or 16)."""
    blocked = cg.blocked()
    members: dict[int, list[tuple[ir.Node, int]]] = defaultdict(list)
    for source in cg.sources:
        for pos, root in enumerate(cg.roots(source.elems).tolist()):
            members[root].append((source.node, pos))
    requests: dict[int, PruneRequest] = {}
    for source in cg.sources:
        req = source.node.meta.get(PRUNE)
        if req is not None:
            requests.setdefault(id(req), req)
    choices = []
    owned: set[int] = set()
    layer_size = {id(s.node): len(s.elems) for s in cg.sources}
    removed_from: dict[int, int] = defaultdict(int)
    for req in sorted(requests.values(), key=lambda r: r.index):
        choice = Choice(req)
        mine = [r for r, ms in members.items() if r not in owned and any(n.meta.get(PRUNE) is req for n, _ in ms)]
        candidates = []
        for root in mine:
            if root in blocked:
                for n, _ in members[root]:
                    if n.meta.get(PRUNE) is req:
                        choice.blocked.setdefault(n.name, blocked[root])
                continue
            candidates.append(root)
        owned.update(mine)
        for root in candidates:
            choice.widened.update(n.name for n, _ in members[root] if n.meta.get(PRUNE) is not req)
        choice.blocked = {n: why for n, why in choice.blocked.items()
                          if not any(m.name == n for r in candidates for m, _ in members[r])}
        choice.candidates = len(candidates)
        if req.fraction > 0 and candidates:
            score = scores(cg, graph, req.metric, stats)
            ranked = sorted(candidates, key=lambda r: (score.get(r, math.inf), r))
            def take(root: int) -> bool:
                if not _fits(root, members, layer_size, removed_from):
                    return False
                choice.removed.add(root)
                for n, _ in members[root]:
                    removed_from[id(n)] += 1
                return True

            (_per_layer if req.per_layer else _global)(ranked, members, req, take)
            if multiple > 1:
                _round_buckets(ranked, members, choice, multiple, layer_size, removed_from)
        choices.append(choice)
    return choices


def _fits(root: int, members: dict, layer_size: dict[int, int], removed_from: dict[int, int]) -> bool:
    for node, _ in members[root]:
        size = layer_size[id(node)]
        if size - removed_from[id(node)] - 1 < max(1, math.ceil(MIN_KEEP * size)):
            return False
    return True


def _global(ranked: list[int], members: dict, req: PruneRequest, take) -> None:
    weight = {r: sum(1 for n, _ in members[r] if n.meta.get(PRUNE) is req) for r in ranked}
    target, total = round(req.fraction * sum(weight.values())), 0
    for root in ranked:
        if total >= target:
            break
        if take(root):
            total += weight[root]


def _per_layer(ranked: list[int], members: dict, req: PruneRequest, take) -> None:
    buckets: dict[frozenset, list[int]] = defaultdict(list)
    for root in ranked:
        buckets[frozenset(id(n) for n, _ in members[root])].append(root)
    for roots in buckets.values():
        quota, done = int(req.fraction * len(roots) + 0.5), 0
        for root in roots:
            if done >= quota:
                break
            done += take(root)


def _round_buckets(ranked: list[int], members: dict, choice: Choice, multiple: int, layer_size: dict,
                   removed_from: dict) -> None:
    """Move each bucket's kept count to the nearest multiple, removing or restoring its edge classes."""
    buckets: dict[frozenset, list[int]] = defaultdict(list)
    for root in ranked:
        buckets[frozenset(id(n) for n, _ in members[root])].append(root)
    for roots in buckets.values():
        n = len(roots)
        removed = [r for r in roots if r in choice.removed]
        if n < ROUND_MIN * multiple or n % multiple or not removed:
            continue
        kept = max(multiple, int(round((n - len(removed)) / multiple)) * multiple)
        want = n - kept
        for root in roots[:want]:
            if root not in choice.removed:
                choice.removed.add(root)
                for node, _ in members[root]:
                    removed_from[id(node)] += 1
        for root in roots[want:]:
            if root in choice.removed:
                choice.removed.discard(root)
                for node, _ in members[root]:
                    removed_from[id(node)] -= 1
