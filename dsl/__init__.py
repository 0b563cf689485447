"""The plan language: `plan.edge` text -> `Plan`, node selectors, and the AutoDiCE importer.

Only parsing and model-free checks live here; the lowering resolves a `Plan` against a model.
"""

from __future__ import annotations

from edgec.dsl.ast import Plan
from edgec.dsl.parser import parse_plan, parse_plan_file

__all__ = ["Plan", "parse_plan", "parse_plan_file"]
