"""`edgec run --rebalance`: when to move layers off the slowest stage, and where to move them.

The rule (`imbalanced`): over the last window of W frames every rank has finished, the slowest
stage's mean compute time is more than (1 + margin) times the mean over the stages. Compute, not
wait: a stage that waits is waiting for the slow one, so only compute says which device is slow.

The new plan (`Replanner.replan`) keeps every stage on its device and rank, in the same order, and
moves only the split points, so one MPI job runs before and after a switch. It is the exact
minimum-bottleneck chain partition of the explorer's cost model (`explorer/chain_dp.py`'s DP step,
with every position used once), fed the measurements: each stage's speed factor is its measured
mean compute ÷ the profile's prediction for its nodes, and the nodes a stage may take cost the
profile's time × that factor. A device that computes 3x slower is then charged 3x for any layer,
which is what lets one window of measurements predict the whole new plan. The profile is taken
with onnxruntime's graph optimizations off (`explorer/profile.py`, `fused=False`): a fused kernel is
charged to one of its nodes, and a stage cut through a fused group then looked 6x off its measured
time (benchmarks/rebalance.py), which sent the plans back and forth. The plan is taken only
when it is predicted to beat the current bottleneck by more than the margin, so a balanced
pipeline is left alone and noise does not make plans oscillate.

Only plain pipeline plans are rebalanced: stages that are contiguous ranges of the model's
topological order, one per `place`, with no split, quantize, prune, cdc or replicate statement
(those would have to be carried over to different layers; `check_rebalanceable` says which).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..backends.manifest import Manifest
from ..compiler.diagnostics import UsageError
from ..dsl import ast
from ..dsl.ast import format_name, quote

DEFAULT_WINDOW = 32
DEFAULT_MARGIN = 0.2
PLAIN_STATEMENTS = (ast.ModelStmt, ast.InputStmt, ast.DeviceStmt, ast.LinkStmt, ast.PlaceStmt)


def check_window_margin(window: int, margin: float) -> None:
    if window < 8 or window % 2:
        raise UsageError(f"--window {window}: give an even number of frames, at least 8",
                         hint="ranks agree on a switch half a window ahead, and a switch keeps frame parity")
    if not 0 < margin < float("inf"):
        raise UsageError(f"--margin {margin}: give a positive fraction, e.g. 0.2 (20 %)")


def imbalanced(compute: Sequence[float], margin: float) -> bool:
    """Whether the slowest stage's mean compute exceeds (1 + margin) × the mean over stages."""
    c = np.asarray(compute, dtype=float)
    return len(c) > 1 and bool(c.max() > (1.0 + margin) * c.mean())


def window_means(times: Sequence[np.ndarray], start: int, window: int) -> tuple[np.ndarray, int] | None:
    """Per rank, the mean of the last `window` frames >= `start` that every rank has finished (NaN: not yet),
    and the frame after that window; None until every rank has finished `window` such frames."""
    done = []
    for t in times:
        part = np.isnan(t[start:])
        done.append(int(np.argmax(part)) if part.any() else len(part))
    hi = start + min(done)
    if hi - start < window:
        return None
    return np.asarray([float(np.mean(t[hi - window:hi])) for t in times]), hi


@dataclass(frozen=True)
class Stage:
    """A stage as the replanner sees it: node positions first..last (inclusive) on a device with a resource."""

    first: int
    last: int
    device: str
    resource: str
    threads: int | None


def stage_ranges(manifest: Manifest, names: list[str]) -> list[Stage]:
    """The output's stages as consecutive node ranges of `names` (the loaded model's topological order);
    UsageError when they are not (the output was not compiled from a plain range plan)."""
    index = {n: i for i, n in enumerate(names)}
    stages, expected = [], 0
    for s in manifest.stages:
        if s.first_node not in index or s.last_node not in index:
            raise UsageError(f"--rebalance: stage {s.rank} starts or ends at a node the model does not have "
                             f"('{s.first_node}' .. '{s.last_node}')")
        first, last = index[s.first_node], index[s.last_node]
        if first != expected or last - first + 1 != s.nodes:
            raise UsageError(f"--rebalance: stage {s.rank} is not the next contiguous node range of the model "
                             f"('{s.first_node}' .. '{s.last_node}', {s.nodes} nodes)",
                             hint="rebalancing moves split points of a pipeline of `place FIRST .. LAST` ranges")
        stages.append(Stage(first, last, s.device, s.resource, s.threads))
        expected = last + 1
    if expected != len(names):
        raise UsageError(f"--rebalance: the stages cover {expected} of the model's {len(names)} nodes")
    return stages


def check_rebalanceable(plan: ast.Plan) -> None:
    """Refuse a plan with statements a rebalanced plan could not carry over to other split points."""
    for statement in plan.statements:
        if not isinstance(statement, PLAIN_STATEMENTS):
            kind = type(statement).__name__.removesuffix("Stmt").lower()
            raise UsageError(f"--rebalance: the plan has a `{kind}` statement; only plans of `place` ranges are "
                             "rebalanced", hint="run without --rebalance, or drop the statement")


@dataclass(frozen=True)
class Proposal:
    """A plan the replanner proposes: its stages, the measured and predicted bottlenecks, the speed factors."""

    stages: tuple[Stage, ...]
    current_s: float
    predicted_s: float
    factors: tuple[float, ...]

    @property
    def gain(self) -> float:
        return self.current_s / self.predicted_s - 1.0 if self.predicted_s > 0 else 0.0


class Replanner:
    """The explorer's cost model of the output's model and platform, to re-split it from measured stage times."""

    def __init__(self, loaded, profile: dict, points: int = 96) -> None:
        from ..explorer.graph_facts import graph_facts
        from ..explorer.platform_costs import platform_costs
        from ..explorer.units import candidate_units

        self.loaded = loaded
        self.names = loaded.names
        self.facts = graph_facts(loaded.model.graph)
        self.costs = platform_costs(loaded.platform, profile, self.names, loaded.plan_dir)
        self.units = candidate_units(self.facts, self.costs.node_time.mean(axis=0), points)
        self.devices = list(self.costs.devices)

    def predicted(self, stage: Stage) -> float:
        """The profile's time for the stage's nodes. A stage of nodes the profile saw fused into others (a Relu
        after its Conv) is predicted near 0; `replan` floors it at 5 % of the mean stage so its factor stays sane."""
        return float(self.costs.node_time[self.devices.index(stage.device), stage.first:stage.last + 1].sum())

    def replan(self, stages: Sequence[Stage], measured: Sequence[float],
               earlier: Sequence[tuple[Sequence[Stage], Sequence[float]]] = ()) -> Proposal:
        """The best re-split of `stages` (same devices, same order) for the measured mean compute per stage.
        `earlier` (stages, measured) of the plans run before pool into each position's factor (Σ measured ÷ Σ
        predicted): every plan cuts the profile's errors differently, so the pooled factor is the steadier one."""
        spent = np.zeros(len(stages))
        expected = np.zeros(len(stages))
        for plan, times in [*earlier, (stages, measured)]:
            predicted = [self.predicted(s) for s in plan]
            floor = max(0.05 * sum(predicted) / len(predicted), 1e-9)
            spent += np.asarray(times, dtype=float)
            expected += np.maximum(predicted, floor)
        return self.best_split(stages, list(spent / expected), float(max(measured)))

    def best_split(self, stages: Sequence[Stage], factors: Sequence[float], current_s: float) -> Proposal:
        """The best re-split of `stages` when stage k computes factors[k] times the profile's node times."""
        from ..explorer.cost_model import CostModel

        rows = [self.devices.index(s.device) for s in stages]
        c = self.costs
        positions = replace(
            c, devices=tuple(f"{s.device}#{k}" for k, s in enumerate(stages)),
            node_time=np.asarray([c.node_time[d] * f for d, f in zip(rows, factors)]),
            mem_bytes=c.mem_bytes[rows], bandwidth=c.bandwidth[np.ix_(rows, rows)],
            latency=c.latency[np.ix_(rows, rows)], power_active=c.power_active[rows], power_idle=c.power_idle[rows],
            wire_factor=None if c.wire_factor is None else c.wire_factor[np.ix_(rows, rows)])
        model = CostModel(self.facts, self.units, positions)
        starts = every_position_chain(model)
        if starts is None:
            return Proposal(tuple(stages), current_s, current_s, tuple(factors))
        firsts = [int(self.units.starts[u]) for u in starts]
        lasts = [f - 1 for f in firsts[1:]] + [len(self.names) - 1]
        new = tuple(replace(s, first=a, last=b) for s, a, b in zip(stages, firsts, lasts))
        predicted = max(float(positions.node_time[k, s.first:s.last + 1].sum()) for k, s in enumerate(new))
        return Proposal(new, current_s, predicted, tuple(factors))

    def plan_text(self, stages: Sequence[Stage], header: list[str]) -> str:
        """A plan file of `stages`: the platform as compiled, one `place` range per stage (its resource and threads)."""
        from ..explorer.plan_text import platform_text

        loaded = self.loaded
        lines = [f"# {line}" for line in header]
        if loaded.model_path is not None:
            lines.append(f"model {quote(str(loaded.model_path))}")
        lines += [f"input {format_name(n)} [{', '.join(map(str, dims))}]" for n, dims in loaded.inputs.items()]
        lines += ["", *platform_text(loaded.platform), ""]
        for s in stages:
            threads = f" threads {s.threads}" if s.threads else ""
            lines.append(f"place {format_name(self.names[s.first])} .. {format_name(self.names[s.last])} "
                         f"on {format_name(s.device)}.{s.resource}{threads}")
        return "\n".join(lines) + "\n"


def every_position_chain(model) -> list[int] | None:
    """First unit of each stage of the minimum-bottleneck chain that uses every position of the cost model's
    platform once, in order (chain_dp's step without skipping a device); None when nothing fits."""
    from ..explorer.chain_dp import relax

    p = model.platform
    u, k_count = model.units.count, p.count
    if u < k_count:
        return None
    a_idx, b_idx = np.meshgrid(np.arange(u), np.arange(u), indexing="ij")
    valid = a_idx <= b_idx
    memory = np.where(valid, model.memory_range(a_idx, b_idx), np.inf)
    f = np.full((k_count, u), np.inf)
    back = np.zeros((k_count, u), dtype=np.int64)
    cols = np.arange(u)
    for k in range(k_count):
        c = model.time_prefix[k][None, 1:] - model.time_prefix[k][:-1, None]
        c = np.where(valid & (memory <= p.mem_bytes[k]), c, np.inf)
        if k == 0:
            f[0] = c[0]
            continue
        t = c + model.in_bytes * (model.wire(k - 1, k) / p.bandwidth[k - 1, k]) + model.in_msgs * p.latency[k - 1, k]
        best = np.full(u, np.inf)
        arg = np.full((u, 2), -1, dtype=np.int64)
        relax(best, arg, f[k - 1], t, k - 1, cols)
        f[k], back[k] = best, arg[:, 0]
    if not np.isfinite(f[-1, -1]):
        return None
    starts, b = [], u - 1
    for k in range(k_count - 1, 0, -1):
        a = int(back[k, b])
        starts.append(a)
        b = a - 1
    return [0, *reversed(starts)]


def load_for_rebalance(manifest: Manifest, profile_path: Path | None, progress: Callable[[str], None]):
    """(Replanner, the output's stages) for an output `--rebalance` accepts; UsageError naming why not."""
    from ..backends.manifest import sha256_file
    from ..explorer.session import load, profile_threads

    if manifest.replicas is not None or manifest.cdc is not None or manifest.splits:
        raise UsageError("--rebalance: this output has replicated, coded or split layers; only plain pipelines "
                         "are rebalanced")
    if manifest.plan is None:
        raise UsageError("--rebalance: the manifest records no plan to rebalance")
    model = Path(manifest.model.path) if manifest.model.path else None
    if model is None or not model.is_file():
        raise UsageError(f"--rebalance: the source model '{manifest.model.path}' is gone",
                         hint="recompile the output from the model, or put the model back")
    if manifest.model.sha256 and sha256_file(model) != manifest.model.sha256:
        raise UsageError(f"--rebalance: the source model '{model}' changed since the output was compiled "
                         "(sha256 differs)", hint="recompile the output first")
    from .. import api

    plan = api.load_plan(manifest.plan.source if "\n" in manifest.plan.source else manifest.plan.source + "\n")
    check_rebalanceable(plan)
    loaded = load(model, plan)
    stages = stage_ranges(manifest, loaded.names)
    from ..explorer.profile import profile as measure_profile, read_profile

    if profile_path is not None:
        data = read_profile(profile_path, loaded.names)
    else:
        threads = profile_threads(loaded.platform)
        progress(f"profiling the model for the rebalancer ({len(loaded.names)} nodes, threads {threads})")
        data = measure_profile(loaded.model, threads, repeats=3, with_mpi=False, source=str(model), fused=False)
    return Replanner(loaded, data), stages
