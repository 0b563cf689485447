"""`Program`: the one object every pass and backend works on.

It holds the onnx-ir model, the platform, per-node annotations (in `node.meta`), and the
facts passes establish (`stages` after split, `transfers` after comm-insert). `verify()`
checks the invariants that hold at the current point of the pipeline; the PassManager calls
it after every pass so a broken rewrite is caught where it happens, not in a backend.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import onnx_ir as ir

from .annotations import BOUNDARY, is_edgec_op, placement_of, stage_of
from .diagnostics import PlanWarning, VerifyError
from .facts import Fact
from .platform import Platform
from .records import Fields, Record
from .tensor_types import nbytes


@dataclass
class Stage:
    """A maximal group of nodes one rank runs; stages are numbered in a topological order."""

    index: int
    device: str
    resource: str
    threads: int | None

    @property
    def rank(self) -> int:
        return self.index

    @property
    def label(self) -> str:
        return f"s{self.index}@{self.device}.{self.resource}"


@dataclass(frozen=True)
class Transfer:
    """One tensor moving from one stage to another over MPI."""

    tensor: str
    src: int
    dst: int
    tag: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return nbytes(self.shape, self.dtype)


@dataclass(frozen=True)
class StageQuantization(Record):
    """What the quantize pass did to one stage, and why; written to the manifest's `quantization`
    section as it is (a `Record`, read back checked key by key).

    `activation_dtype` is what the pass chose for the stage's engine (`engine`); `reason` says
    why in a sentence a user reads in `edgec show`; `granularity` of the weights is `per_channel`
    or `per_tensor`. `nodes` are the quantized compute nodes.
    """

    stage: int
    device: str
    engine: str
    activation_dtype: str
    weight_dtype: str
    granularity: str
    method: str
    nodes: tuple[str, ...]
    reason: str
    bias_correction: bool = False
    equalization: bool = False

    @classmethod
    def read(cls, f: Fields) -> StageQuantization:
        f.only(*cls.__dataclass_fields__)
        return cls(f.integer("stage"), f.string("device"), f.string("engine"), f.string("activation_dtype"),
                   f.string("weight_dtype"), f.string("granularity"), f.string("method"), f.strs("nodes"),
                   f.string("reason"), f.boolean("bias_correction", default=False),
                   f.boolean("equalization", default=False))


@dataclass(frozen=True)
class WireQuantization(Record):
    """One boundary tensor that travels quantized: float `tensor` crosses as `wire_tensor` in format `wire`,
    with `scale` and `zero_point` (None for fp16, which has neither); a manifest record as it is."""

    tensor: str
    wire_tensor: str
    wire: str
    scale: float | None = None
    zero_point: int | None = None

    @classmethod
    def read(cls, f: Fields) -> WireQuantization:
        f.only(*cls.__dataclass_fields__)
        return cls(f.string("tensor"), f.string("wire_tensor"), f.string("wire"),
                   f.number("scale", null=True, default=None), f.integer("zero_point", null=True, default=None))


@dataclass(frozen=True)
class LayerPruning(Record):
    """One layer the prune pass shrank: channels before and after, and the statement that asked (also the
    manifest's `pruning.layers` entry)."""

    node: str
    channels_before: int
    channels_after: int
    statement: str

    @classmethod
    def read(cls, f: Fields) -> LayerPruning:
        f.only(*cls.__dataclass_fields__)
        return cls(f.string("node"), f.integer("channels_before"), f.integer("channels_after"), f.string("statement"))


@dataclass(frozen=True)
class PruningCost(Record):
    """Parameters and MACs before and after one prune statement: of one stage, or of the whole model (`stage` None);
    also the manifest's `pruning.costs` entry."""

    statement: str
    stage: int | None
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @classmethod
    def read(cls, f: Fields) -> PruningCost:
        f.only(*cls.__dataclass_fields__)
        return cls(f.string("statement"), f.integer("stage", null=True), f.integer("params_before"),
                   f.integer("params_after"), f.integer("macs_before"), f.integer("macs_after"))


@dataclass(frozen=True)
class StageReplicas:
    """A replicated stage: replica i runs on `placements[i]` as rank `ranks[i]` (`ranks[0]` is the stage's own);
    frame f is computed by replica f mod r. Set by the split pass from the plan's `replicate` statements."""

    stage: int
    placements: tuple
    ranks: tuple[int, ...]
    statement: str

    @property
    def count(self) -> int:
        return len(self.ranks)


@dataclass
class Program:
    """The model being compiled, the platform it is compiled for, and what passes established.

    `facts` says which contracts hold (`compiler/facts.py`); `stages` is set by the split pass,
    `transfers` by comm-insert, `splits` (one report per split layer) by split-layer. Node
    annotations live in `node.meta` (`compiler/annotations.py`). Passes change a Program in
    place; backends only read it.
    """

    model: ir.Model
    platform: Platform = field(default_factory=Platform)
    stages: list[Stage] = field(default_factory=list)
    transfers: list[Transfer] = field(default_factory=list)
    splits: list = field(default_factory=list)
    input_owner: dict[str, int] = field(default_factory=dict)
    facts: set[Fact] = field(default_factory=set)
    pass_log: list[dict] = field(default_factory=list)
    source_path: str | None = None
    warnings: list[PlanWarning] = field(default_factory=list)
    """What lowering the plan found worth saying that is no error (a placed node folded away at load time)."""
    quantization: list[StageQuantization] = field(default_factory=list)
    """Set by the quantize pass: one record per stage it quantized."""
    wire_quantization: list[WireQuantization] = field(default_factory=list)
    """Set by the quantize pass for `quantize wire`: the boundary tensors that travel quantized."""
    pruning: list[LayerPruning] = field(default_factory=list)
    """Set by the prune pass: one record per layer that lost channels."""
    pruning_cost: list[PruningCost] = field(default_factory=list)
    """Set by the prune pass: parameters and MACs before/after each statement, per stage and in total."""
    replicas: list[StageReplicas] = field(default_factory=list)
    """Set by the split pass for `replicate` statements: the stages that run as several replicas."""

    @property
    def graph(self) -> ir.Graph:
        return self.model.graph

    def nodes(self) -> Iterator[ir.Node]:
        return iter(self.model.graph)

    def node_names(self) -> list[str]:
        return [n.name for n in self.model.graph]

    def node(self, name: str) -> ir.Node:
        for n in self.model.graph:
            if n.name == name:
                return n
        raise KeyError(name)

    def stage_nodes(self, index: int) -> list[ir.Node]:
        return [n for n in self.model.graph if stage_of(n) == index]

    def nodes_by_stage(self) -> dict[int, list[ir.Node]]:
        """Every stage's nodes (edgec ops included) in graph order, from one scan of the graph."""
        groups: dict[int, list[ir.Node]] = {s.index: [] for s in self.stages}
        for node in self.model.graph:
            groups[stage_of(node)].append(node)
        return groups

    def verify(self) -> None:
        """Check the invariants of DESIGN.md that hold given `facts`; raise VerifyError on the first broken one."""
        graph = self.model.graph
        defined: set[int] = {id(v) for v in graph.inputs} | {id(v) for v in graph.initializers.values()}
        names: dict[str, str] = {}
        for value in list(graph.inputs) + list(graph.initializers.values()):
            self._check_unique(value, names, "graph input/initializer")
        for node in graph:
            for value in node.inputs:
                if value is not None and id(value) not in defined:
                    raise VerifyError(f"node '{node.name}' uses '{value.name}' before it is defined (graph not in topological order)")
            for value in node.outputs:
                if value.producer() is not node:
                    raise VerifyError(f"value '{value.name}' has an inconsistent producer")
                self._check_unique(value, names, f"node '{node.name}'")
                if not (value.dtype is not None and value.shape is not None and all(isinstance(d, int) for d in value.shape)):
                    raise VerifyError(f"value '{value.name}' of node '{node.name}' has no static shape/dtype")
                defined.add(id(value))
        for value in graph.outputs:
            if id(value) not in defined:
                raise VerifyError(f"graph output '{value.name}' is never defined")
        if Fact.PLACED in self.facts:
            self._verify_placements()
        if Fact.STAGED in self.facts:
            self._verify_stages()
        if Fact.COMM in self.facts:
            self._verify_comm()

    @staticmethod
    def _check_unique(value: ir.Value, names: dict[str, str], where: str) -> None:
        if value.name is None:
            raise VerifyError(f"a value of {where} has no name")
        if value.name in names:
            raise VerifyError(f"value name '{value.name}' is defined twice ({names[value.name]} and {where})")
        names[value.name] = where

    def _verify_placements(self) -> None:
        """Every node is placed on a device and resource of the platform, within its cores."""
        devices = self.platform.devices
        for node in self.model.graph:
            placement = placement_of(node)
            if placement is None:
                raise VerifyError(f"node '{node.name}' is not placed")
            device = devices.get(placement.device)
            if device is None:
                known = ", ".join(devices) or "none"
                raise VerifyError(f"node '{node.name}' is placed on device '{placement.device}', which the platform "
                                  f"does not have (devices: {known})")
            if placement.resource not in device.resources:
                raise VerifyError(f"node '{node.name}' is placed on '{placement}', but device '{device.name}' has "
                                  f"only {', '.join(device.resources)}")
            if placement.threads is not None and not 1 <= placement.threads <= device.cores:
                raise VerifyError(f"node '{node.name}' asks for {placement.threads} threads on '{device.name}', "
                                  f"which has {device.cores} cores")

    def _verify_stages(self) -> None:
        count = len(self.stages)
        for node in self.model.graph:
            stage = stage_of(node)
            if stage is None or not 0 <= stage < count:
                raise VerifyError(f"node '{node.name}' has no valid stage")
            placement, owner = placement_of(node), self.stages[stage]
            if placement is not None and (placement.device, placement.resource) != (owner.device, owner.resource):
                raise VerifyError(f"node '{node.name}' is placed on '{placement}' but is in stage {stage} "
                                  f"({owner.label})")
            for value in node.inputs:
                producer = value.producer() if value is not None else None
                if producer is not None and stage_of(producer) > stage:
                    raise VerifyError(
                        f"node '{node.name}' (stage {stage}) consumes '{value.name}' from a later stage {stage_of(producer)}"
                    )

    def _verify_comm(self) -> None:
        for node in self.model.graph:
            if is_edgec_op(node, "Send"):
                continue
            stage = stage_of(node)
            for value in node.inputs:
                if value is None or value.const_value is not None and value.is_initializer():
                    continue
                producer = value.producer()
                owner = stage_of(producer) if producer is not None else self.input_owner.get(value.name)
                if owner != stage:
                    raise VerifyError(
                        f"node '{node.name}' (stage {stage}) reads '{value.name}' of stage {owner} without a Send/Recv pair"
                    )
        for node in self.model.graph:
            if is_edgec_op(node, "Recv") and BOUNDARY not in node.outputs[0].meta:
                raise VerifyError(f"Recv node '{node.name}' does not record its boundary tensor")
