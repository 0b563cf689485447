"""Resolve a parsed selector against a model's node names in topological order.

The result is always in topological order without duplicates, so statements behave the same
however their selectors are written. Every way of selecting nothing by mistake (an unknown
name, a glob that matches nothing, a reversed range) is a `PlanError` at the selector.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Collection, Sequence

from edgec.compiler.diagnostics import PlanError, closest
from edgec.dsl.ast import AllSel, GlobSel, ListSel, NameSel, RangeSel, Selector


def resolve(selector: Selector, order: Sequence[str], *, unplaced: Collection[str] | None = None) -> list[str]:
    """The names `selector` picks out of `order` (topological), in that order.

    `*` picks every name in `unplaced` (all names when None). A glob also matches a node whose
    name equals the pattern literally, so names containing `[` or `*` stay selectable.
    """
    index = {name: i for i, name in enumerate(order)}
    chosen = _indices(selector, order, index, unplaced)
    return [order[i] for i in sorted(chosen)]


def _indices(
    selector: Selector, order: Sequence[str], index: dict[str, int], unplaced: Collection[str] | None
) -> set[int]:
    if isinstance(selector, NameSel):
        return {_lookup(selector, order, index)}
    if isinstance(selector, GlobSel):
        found = {i for i, name in enumerate(order) if name == selector.pattern or fnmatchcase(name, selector.pattern)}
        if not found:
            raise PlanError(f"pattern '{selector.pattern}' matches no node", selector.span)
        return found
    if isinstance(selector, RangeSel):
        start, end = _lookup(selector.start, order, index), _lookup(selector.end, order, index)
        if end < start:
            raise PlanError(
                f"range end '{selector.end.name}' comes before '{selector.start.name}' in topological order",
                selector.span,
                hint=f"write '{selector.end} .. {selector.start}'",
            )
        return set(range(start, end + 1))
    if isinstance(selector, AllSel):
        if unplaced is None:
            return set(range(len(order)))
        pending = set(unplaced)
        return {i for i, name in enumerate(order) if name in pending}
    if isinstance(selector, ListSel):
        return set().union(*(_indices(item, order, index, unplaced) for item in selector.items))
    raise TypeError(f"not a selector: {selector!r}")


def _lookup(selector: NameSel, order: Sequence[str], index: dict[str, int]) -> int:
    if selector.name not in index:
        raise PlanError(f"unknown node '{selector.name}'", selector.span, suggestion=closest(selector.name, order))
    return index[selector.name]
