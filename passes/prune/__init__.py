"""Structured channel pruning: dependency graph of tied channels, ranking, rewrite, repair.

`Prune` is the pass; the modules are its parts: `channels` + `channel_rules` (which channels
are tied), `ranking` (which to remove), `rewrite` (the smaller dense model), `calibration` +
`repair` (statistics repair without fine-tuning), `reconstruct` (least-squares refit of the
consumers), `params` (constants and QDQ weights behind parameter inputs), `cost_report`
(parameters and MACs).
"""

from __future__ import annotations

from .prune_pass import Prune
from .request import METRICS, PRUNE, PruneRequest

__all__ = ["Prune", "PruneRequest", "PRUNE", "METRICS"]
