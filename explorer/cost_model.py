"""The analytic cost of a plan: stage times, throughput, latency, memory and energy per frame.

A plan is contiguous stages of units (`units.py`), stage k on device d_k. With bytes measured
in the wire format (float32 ×1, fp16 ×½, int8 ×¼ for a float tensor; `wire_factor` per link):

    compute_k  = Σ profiled time of the stage's nodes on d_k (a device's own profile, or the
                 profiled machine's ÷ the device's `speed`)
    comm_k     = Σ over tensors t the stage receives from stage m:
                     bytes(t) · wire(d_m, d_k) / bandwidth(d_m, d_k) + latency(d_m, d_k) + mpi_overhead
    stage_k    = compute_k + comm_k
    throughput = 1 / max_k stage_k                  (a pipeline: the slowest stage sets the pace)
    latency    = finish of the last stage, finish_k = max over senders m of finish_m + stage_k
                 (the critical path through the stage graph; a chain's sum of stage times)
    memory_d   = weights of its stages + receive and send buffers + the largest node working set
                 + the runtime's measured overhead, refused when above the device's `mem`
    energy     = Σ_k power_active(d_k) · stage_k + power_idle(d_k) · (1/throughput − stage_k)

A replicated stage (`Plan.replicas`) runs every r-th frame on each of its r devices: its stage
time is the slowest replica's ÷ r (`replication.py`).

A graph input is owned by the stage of its first reader; a tensor read by several later
stages is sent to each once, over the link between its producer's and the reader's device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .graph_facts import GraphFacts
from .units import Units

WIRE_FACTORS = {"float32": 1.0, "fp16": 0.5, "int8": 0.25}


@dataclass(frozen=True)
class PlatformCosts:
    devices: tuple[str, ...]
    node_time: np.ndarray
    """[device, node] seconds."""
    mem_bytes: np.ndarray
    """[device] capacity; inf when the plan gives no `mem`."""
    bandwidth: np.ndarray
    """[device, device] bytes per second."""
    latency: np.ndarray
    """[device, device] seconds per message: the link's latency plus the measured MPI overhead."""
    power_active: np.ndarray
    power_idle: np.ndarray
    runtime_overhead_bytes: int = 0
    wire_factor: np.ndarray | None = None
    """[device, device] wire bytes per tensor byte; None: float32 everywhere."""

    @property
    def count(self) -> int:
        return len(self.devices)

    @property
    def has_power(self) -> bool:
        return bool(np.all(np.isfinite(self.power_active)) and np.all(np.isfinite(self.power_idle)))


@dataclass(frozen=True)
class Plan:
    """Unit-level plan: stage k covers units starts[k] … starts[k+1]-1 and runs on device devices[k]."""

    starts: tuple[int, ...]
    devices: tuple[int, ...]
    wire: str = "float32"
    """How float tensors cross devices (`quantize wire fp16|int8`): scales every link's bytes."""
    replicas: tuple[tuple[int, ...], ...] = ()
    """Per stage, the devices of its further replicas (`replicate`; `replication.py`); () when none is replicated."""


@dataclass
class PlanCost:
    compute: np.ndarray
    comm: np.ndarray
    memory: np.ndarray
    period: float
    latency: float
    energy: float
    feasible: bool
    transfers: list[tuple[int, int, int]] = field(default_factory=list)
    """(src stage, dst stage, wire bytes) per stage pair that exchanges tensors."""

    @property
    def stage_time(self) -> np.ndarray:
        return self.compute + self.comm

    @property
    def throughput(self) -> float:
        return 1.0 / self.period if self.period > 0 else float("inf")

    @property
    def peak_memory(self) -> float:
        return float(self.memory.max())


class CostModel:
    """Tables over units, built once per (model, units, platform), so a plan costs microseconds."""

    def __init__(self, facts: GraphFacts, units: Units, platform: PlatformCosts) -> None:
        self.facts, self.units, self.platform = facts, units, platform
        u = units.count
        node_unit = units.unit_of(np.arange(facts.size))
        self.unit_time = np.zeros((platform.count, u))
        np.add.at(self.unit_time.T, node_unit, platform.node_time.T)
        self.time_prefix = np.concatenate([np.zeros((platform.count, 1)), np.cumsum(self.unit_time, axis=1)], axis=1)
        unit_weights = np.bincount(node_unit, weights=facts.weight_bytes, minlength=u)
        self.weight_prefix = np.concatenate([[0.0], np.cumsum(unit_weights)])
        unit_work = np.zeros(u)
        np.maximum.at(unit_work, node_unit, facts.work_bytes.astype(float))
        self.unit_work = unit_work
        pair_value, pair_unit = [], []
        producer_unit = np.empty(len(facts.value_bytes), dtype=np.int64)
        for v, (producer, reads) in enumerate(zip(facts.value_producer, facts.reads)):
            readers = np.unique(node_unit[reads])
            producer_unit[v] = node_unit[producer] if producer >= 0 else readers[0]
            readers = readers[readers != producer_unit[v]]
            pair_value.extend([v] * len(readers))
            pair_unit.extend(readers.tolist())
        self.producer_unit = producer_unit
        self.pair_value = np.asarray(pair_value, dtype=np.int64)
        self.pair_unit = np.asarray(pair_unit, dtype=np.int64)
        self.value_bytes = facts.value_bytes.astype(float)
        self._range_tables()

    def _range_tables(self) -> None:
        """in_bytes/in_msgs[a, b]: what a stage of units a..b receives; out_bytes[a, b]: what it sends
        (each tensor once); work[a, b]: its largest node working set. Only a <= b is meaningful."""
        u = self.units.count
        in_diff = np.zeros((u, u + 1))
        msg_diff = np.zeros((u, u + 1))
        out_diff = np.zeros((u + 1, u + 1))
        by_value: dict[int, list[int]] = {}
        for v, r in zip(self.pair_value.tolist(), self.pair_unit.tolist()):
            by_value.setdefault(v, []).append(r)
        for v, readers in by_value.items():
            p, size = int(self.producer_unit[v]), self.value_bytes[v]
            readers = sorted(r for r in readers if r > p)
            if not readers:
                continue
            last = readers[-1]
            nxt = 0
            for a in range(p + 1, last + 1):
                while readers[nxt] < a:
                    nxt += 1
                in_diff[a, readers[nxt]] += size
                msg_diff[a, readers[nxt]] += 1
            out_diff[0, p] += size
            out_diff[0, last] -= size
            out_diff[p + 1, p] -= size
            out_diff[p + 1, last] += size
        self.in_bytes = np.cumsum(in_diff, axis=1)[:, :u]
        self.in_msgs = np.cumsum(msg_diff, axis=1)[:, :u]
        self.out_bytes = np.cumsum(np.cumsum(out_diff, axis=0), axis=1)[:u, :u]
        work = np.tile(self.unit_work, (u, 1))
        self.work = np.triu(np.maximum.accumulate(np.triu(work), axis=1))

    def compute_range(self, device: int, a: int, b: int) -> float:
        return float(self.time_prefix[device, b + 1] - self.time_prefix[device, a])

    def memory_range(self, a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray | float:
        return (self.weight_prefix[np.asarray(b) + 1] - self.weight_prefix[a] + self.in_bytes[a, b]
                + self.out_bytes[a, b] + self.work[a, b] + self.platform.runtime_overhead_bytes)

    def wire(self, src: int, dst: int, wire: str = "float32") -> float:
        factors = self.platform.wire_factor
        return WIRE_FACTORS[wire] * (1.0 if factors is None else float(factors[src, dst]))

    def evaluate(self, plan: Plan) -> PlanCost:
        if any(plan.replicas):
            from .replication import evaluate_replicated

            return evaluate_replicated(self, plan)
        starts = np.asarray(plan.starts, dtype=np.int64)
        devices = np.asarray(plan.devices, dtype=np.int64)
        k = len(starts)
        ends = np.append(starts[1:] - 1, self.units.count - 1)
        compute = self.time_prefix[devices, ends + 1] - self.time_prefix[devices, starts]
        stage_of = np.searchsorted(starts, np.arange(self.units.count), side="right") - 1
        comm = np.zeros(k)
        transfers: list[tuple[int, int, int]] = []
        senders: list[set[int]] = [set() for _ in range(k)]
        if len(self.pair_value):
            src = stage_of[self.producer_unit[self.pair_value]]
            dst = stage_of[self.pair_unit]
            cross = src != dst
            keys = np.unique(self.pair_value[cross] * k + dst[cross])
            value, dst_stage = keys // k, keys % k
            src_stage = stage_of[self.producer_unit[value]]
            d_src, d_dst = devices[src_stage], devices[dst_stage]
            factors = WIRE_FACTORS[plan.wire] * (1.0 if self.platform.wire_factor is None
                                                  else self.platform.wire_factor[d_src, d_dst])
            wire_bytes = self.value_bytes[value] * factors
            seconds = wire_bytes / self.platform.bandwidth[d_src, d_dst] + self.platform.latency[d_src, d_dst]
            np.add.at(comm, dst_stage, seconds)
            pair = src_stage * k + dst_stage
            for key in np.unique(pair):
                s, d = divmod(int(key), k)
                senders[d].add(s)
                transfers.append((s, d, int(round(wire_bytes[pair == key].sum()))))
        stage = compute + comm
        finish = np.zeros(k)
        for i in range(k):
            finish[i] = max((finish[m] for m in senders[i]), default=0.0) + stage[i]
        memory = np.asarray(self.memory_range(starts, ends), dtype=float)
        period = float(stage.max())
        p = self.platform
        energy = float(np.sum(p.power_active[devices] * stage + p.power_idle[devices] * (period - stage)))
        feasible = bool(np.all(memory <= p.mem_bytes[devices]))
        return PlanCost(compute, comm, memory, period, float(finish.max()), energy, feasible, transfers)
