"""edgec's passes, one module each, registered by name in `registry.py`.

`default_pipeline(needs)` is what `edgec compile` runs without `--passes`: the default passes
in the order their facts give, completed with the built-in pass that provides each fact the
backends need (e.g. fold-batchnorm for `--backend tvm`).
"""

from __future__ import annotations

from typing import Iterable

from ..compiler.facts import Fact
from ..compiler.pass_manager import Pass, canonical_order
from .canonicalize import Canonicalize
from .comm_insert import CommInsert
from .fold_batchnorm import FoldBatchNorm
from .quantize import Quantize
from .prune import Prune
from .registry import get_pass, pass_class, provider_for, register_pass, registered_passes
from .cdc import CdcEncode
from .split_layer import SplitLayer
from .split_vertical import SplitVertical

__all__ = ["CdcEncode", "Canonicalize", "CommInsert", "FoldBatchNorm", "Prune", "Quantize", "SplitLayer", "SplitVertical", "default_pipeline", "get_pass",
           "pass_class", "register_pass", "registered_passes", "DEFAULT_PASSES"]

for _cls in (Canonicalize, SplitLayer, CdcEncode, SplitVertical, FoldBatchNorm, Quantize, Prune, CommInsert):
    register_pass(_cls)

DEFAULT_PASSES: tuple[type[Pass], ...] = (Canonicalize, SplitLayer, SplitVertical, Quantize, Prune, CommInsert)


def default_pipeline(needs: Iterable[Fact] = ()) -> list[Pass]:
    """The default passes plus a provider for each needed fact they lack, in canonical order."""
    passes = [cls() for cls in DEFAULT_PASSES]
    for fact in needs:
        if not any(fact in p.provides for p in passes) and (cls := provider_for(fact)) is not None:
            passes.append(cls())
    return canonical_order(passes)
