"""A pass shipped by another package: found by edgec through the `edgec.passes` entry point."""

from __future__ import annotations

from dataclasses import dataclass

from edgec import Pass, PassResult
from edgec.compiler.facts import Fact


@dataclass(frozen=True)
class TagNodes(Pass):
    """Count the nodes whose op type is `op` on every stage (changes nothing)."""

    name = "tag-nodes"
    requires = frozenset({Fact.STAGED})
    op: str = "Conv"
    at_least: int = 1
    crash: bool = False

    def call(self, program):
        if self.crash:
            return {}["a bug in this pass"]
        count = sum(1 for node in program.nodes() if node.op_type == self.op)
        if count < self.at_least:
            raise self.fail(f"found {count} {self.op} nodes, fewer than {self.at_least}")
        return PassResult(False, f"{count} {self.op} nodes")
