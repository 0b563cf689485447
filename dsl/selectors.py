"""Resolve a parsed selector against a model's node names in topological order.

The result is always in topological order without duplicates, so statements behave the same
however their selectors are written. Every way of selecting nothing by mistake (an unknown
name, a glob that matches nothing, a reversed range) is a `PlanError` at the selector.

Plans are written against the model as the user sees it (Netron, the exporter's names), but
loading folds constant subgraphs away (`compiler/model_loader.py`). So a selector resolves
against `Names`: the nodes that are left, and every node as read from the file. A range is cut
out of the file's node order and keeps the nodes that survived, so a range ending on a folded
node still means the same slice of the model; a folded node selected on its own (a name, a
list item, a glob matching only folded nodes, a range holding nothing else) is a warning that
it needs no placement, not an error. A name the file never had stays an "unknown node" error.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Callable, Collection, Mapping, Sequence

from edgec.compiler.diagnostics import PlanError, PlanWarning, SourceSpan, closest
from edgec.dsl.ast import AllSel, GlobSel, ListSel, NameSel, RangeSel, Selector

Warn = Callable[[PlanWarning], None]


@dataclass(frozen=True)
class Names:
    """What a plan may name: `order`, the loaded model's nodes in topological order; `file_order`,
    every node as read from the file, in order, before folding (defaults to `order`); `removed`,
    name → why a node of the file is not in `order` (e.g. "was folded into a constant at load time")."""

    order: Sequence[str]
    file_order: Sequence[str] = ()
    removed: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.file_order:
            object.__setattr__(self, "file_order", tuple(self.order))


def resolve(selector: Selector, order: Sequence[str] | Names, *, unplaced: Collection[str] | None = None,
            warn: Warn | None = None, purpose: str = "placement") -> list[str]:
    """The names `selector` picks out of `order` (topological), in that order.

    `*` picks every name in `unplaced` (all names when None). A glob also matches a node whose
    name equals the pattern literally, so names containing `[` or `*` stay selectable. Selecting
    only removed nodes calls `warn` (it needs no `purpose`) and picks nothing there.
    """
    names = order if isinstance(order, Names) else Names(order)
    resolver = _Resolver(names, unplaced, warn or (lambda _w: None), purpose)
    chosen = resolver.indices(selector)
    return [names.order[i] for i in sorted(chosen)]


class _Resolver:
    def __init__(self, names: Names, unplaced: Collection[str] | None, warn: Warn, purpose: str) -> None:
        self.names, self.unplaced, self.warn, self.purpose = names, unplaced, warn, purpose
        self.index = {name: i for i, name in enumerate(names.order)}
        self.file_index = {name: i for i, name in enumerate(names.file_order)}
        # a surviving node's place in the file order; one the loader made sits just after its predecessor
        self.position: list[float] = []
        last = -1.0
        for name in names.order:
            last = float(self.file_index[name]) if name in self.file_index else last + 1e-6
            self.position.append(last)

    def indices(self, selector: Selector) -> set[int]:
        if isinstance(selector, NameSel):
            if selector.name in self.index:
                return {self.index[selector.name]}
            self._removed_or_unknown(selector)
            return set()
        if isinstance(selector, GlobSel):
            return self._glob(selector)
        if isinstance(selector, RangeSel):
            return self._range(selector)
        if isinstance(selector, AllSel):
            if self.unplaced is None:
                return set(range(len(self.names.order)))
            pending = set(self.unplaced)
            return {i for i, name in enumerate(self.names.order) if name in pending}
        if isinstance(selector, ListSel):
            return set().union(*(self.indices(item) for item in selector.items))
        raise TypeError(f"not a selector: {selector!r}")

    def _glob(self, selector: GlobSel) -> set[int]:
        pattern = selector.pattern
        matches = lambda name: name == pattern or fnmatchcase(name, pattern)  # noqa: E731
        found = {i for i, name in enumerate(self.names.order) if matches(name)}
        if found:
            return found
        gone = [name for name in self.names.file_order if name in self.names.removed and matches(name)]
        if not gone:
            raise PlanError(f"pattern '{pattern}' matches no node", selector.span)
        example = ", ".join(f"'{n}'" for n in gone[:3]) + (", …" if len(gone) > 3 else "")
        self._warn(f"pattern '{pattern}' matches only node(s) removed at load time ({len(gone)}: {example}); "
                   f"they need no {self.purpose}", selector.span)
        return set()

    def _range(self, selector: RangeSel) -> set[int]:
        start, end = self._file_position(selector.start), self._file_position(selector.end)
        if end < start:
            raise PlanError(
                f"range end '{selector.end.name}' comes before '{selector.start.name}' in topological order",
                selector.span,
                hint=f"write '{selector.end} .. {selector.start}'",
            )
        found = {i for i, pos in enumerate(self.position) if start <= pos <= end}
        if not found:
            self._warn(f"range '{selector.start.name} .. {selector.end.name}' holds only nodes removed at load time; "
                       f"they need no {self.purpose}", selector.span)
        return found

    def _file_position(self, selector: NameSel) -> float:
        if selector.name in self.file_index:
            return float(self.file_index[selector.name])
        if selector.name in self.index:  # a node the loader made: where it sits among the survivors
            return self.position[self.index[selector.name]]
        raise self._unknown(selector)

    def _removed_or_unknown(self, selector: NameSel) -> None:
        reason = self.names.removed.get(selector.name)
        if reason is None:
            raise self._unknown(selector)
        self._warn(f"node '{selector.name}' {reason}; it needs no {self.purpose}", selector.span)

    def _unknown(self, selector: NameSel) -> PlanError:
        candidates = list(self.names.order) + [n for n in self.names.file_order if n in self.names.removed]
        return PlanError(f"unknown node '{selector.name}'", selector.span, suggestion=closest(selector.name, candidates))

    def _warn(self, message: str, span: SourceSpan | None) -> None:
        self.warn(PlanWarning(message, span))
