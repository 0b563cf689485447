"""Vertical (pipeline) split: group placed nodes into stages, one MPI rank each.

Requires: every node carries a `Placement` (the plan's `place` statements).
Guarantees: every node has a stage; stages are numbered in a topological order of the stage
graph, so stage k only consumes tensors of stages < k and a pipeline of ranks cannot deadlock.

Nodes go, in topological order, into the newest stage of their placement unless joining it
would close a cycle in the stage graph (A → B → A): then the device gets a second stage.
That keeps stages as large as possible while working on any DAG, not just chains. Stages the
plan's `replicate` statements select then get their replicas (`passes/replicate.py`).
"""

from __future__ import annotations

import heapq

from ..compiler.annotations import STAGE, placement_of
from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, PassResult
from ..compiler.program import Program, Stage
from .replicate import apply_replicas


class SplitVertical(Pass):
    """Pipeline split: placed nodes grouped into stages (one MPI rank each) in topological order."""

    name = "split"
    requires = frozenset({Fact.PLACED})
    provides = frozenset({Fact.STAGED})
    after = frozenset({Fact.CANONICAL, Fact.LAYERS_SPLIT})
    repeatable = False

    def precondition(self, program: Program) -> None:
        for node in program.nodes():
            if placement_of(node) is None:
                raise self.fail(f"node '{node.name}' is not placed", hint="add `place * on DEVICE` to the plan")
        if program.stages:
            raise self.fail("the program is already split into stages")

    def call(self, program: Program) -> PassResult:
        graph = program.graph
        successors: list[set[int]] = []
        keys: list[tuple] = []
        newest: dict[tuple, int] = {}
        assignment: dict[int, int] = {}

        for node in graph:
            key = placement_of(node).key
            preds = {assignment[id(p)] for p in node.predecessors()}
            stage = newest.get(key)
            if stage is None or any(p != stage and _reaches(successors, stage, p) for p in preds):
                stage = len(keys)
                keys.append(key)
                newest[key] = stage
                successors.append(set())
            for p in preds:
                if p != stage:
                    successors[p].add(stage)
            assignment[id(node)] = stage

        order = _smallest_first_order(successors)
        renumber = {old: new for new, old in enumerate(order)}
        program.stages = [Stage(renumber[old], *keys[old]) for old in order]
        for node in graph:
            node.meta[STAGE] = renumber[assignment[id(node)]]
        self._assign_input_owners(program)
        replicated = apply_replicas(program)
        devices = len({s.device for s in program.stages} | {p.device for r in program.replicas for p in r.placements})
        note = f", {replicated} replicated ({sum(r.count for r in program.replicas)} replicas)" if replicated else ""
        return PassResult(True, f"{len(program.stages)} stages on {devices} devices{note}")

    @staticmethod
    def _assign_input_owners(program: Program) -> None:
        """A graph input is read by the earliest stage that uses it; others receive it from there."""
        for value in program.graph.inputs:
            users = [use.node.meta[STAGE] for use in value.uses()]
            program.input_owner[value.name] = min(users) if users else 0

    def postcondition(self, program: Program) -> None:
        if any(node.meta.get(STAGE) is None for node in program.nodes()):
            raise self.fail("some nodes got no stage")


def _reaches(successors: list[set[int]], source: int, target: int) -> bool:
    """Whether the stage graph has a path from `source` to `target` (depth-first)."""
    seen, todo = {source}, [source]
    while todo:
        for nxt in successors[todo.pop()]:
            if nxt == target:
                return True
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return False


def _smallest_first_order(successors: list[set[int]]) -> list[int]:
    """The topological order that always takes the smallest ready stage (a stable numbering)."""
    indegree = [0] * len(successors)
    for targets in successors:
        for t in targets:
            indegree[t] += 1
    ready = [s for s, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        s = heapq.heappop(ready)
        order.append(s)
        for t in successors[s]:
            indegree[t] -= 1
            if indegree[t] == 0:
                heapq.heappush(ready, t)
    return order
