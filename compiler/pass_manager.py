"""The PassManager and the base class every edgec pass derives from.

A pass is a class with a stable `name` (the CLI, `--passes` and `--print-after` use it), typed
options as dataclass fields, and a contract in facts (`compiler/facts.py`): `requires`,
`provides`, `invalidates` and `after`. The manager checks a pipeline against the contracts
when it is built — before anything runs — and names the missing fact and the pass that would
provide it. `canonical_order` derives the order of a set of passes from the same facts, so
no pass carries a slot number. A pass with no declarations runs anywhere.

Failures inside a pass are reported with the pass name and the passes that ran: a user error
(`EdgecError`) keeps its type; anything else is a bug and becomes an `InternalError` whose
cause is the original exception (the CLI shows its traceback with `--debug`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable, Mapping, Sequence

from .diagnostics import EdgecError, InternalError, PassError, UsageError, VerifyError
from .facts import Fact, fact_names
from .program import Program


@dataclass
class PassResult:
    """What a pass reports: whether it changed the program (honestly), a one-line summary, details."""

    modified: bool
    summary: str = ""
    details: dict = field(default_factory=dict)


class Pass:
    """Base class of every pass: set `name` and the facts, implement `call(program) -> PassResult`.

    Options are dataclass fields: decorate the subclass with `@dataclass(frozen=True)` and they
    become settable from Python (`MyPass(threshold=3)`) and from a pipeline spec
    (`my-pass{threshold=3}`). `precondition`/`postcondition` check what facts cannot say.
    The manager adds `provides` to the program's facts and removes `invalidates` after `call`.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[frozenset[Fact]] = frozenset()
    provides: ClassVar[frozenset[Fact]] = frozenset()
    invalidates: ClassVar[frozenset[Fact]] = frozenset()
    after: ClassVar[frozenset[Fact]] = frozenset()
    repeatable: ClassVar[bool] = True
    """False for a pass that cannot run again once its facts hold (the vertical split, comm-insert)."""

    def precondition(self, program: Program) -> None:
        """Raise (via `self.fail`) if `program` is in a state this pass cannot take."""

    def postcondition(self, program: Program) -> None:
        """Raise (via `self.fail`) if the pass did not establish what it promises."""

    def call(self, program: Program) -> PassResult:
        raise NotImplementedError(f"pass '{self.name}' does not implement call()")

    def fail(self, message: str, **kwargs) -> PassError:
        return PassError(message, pass_name=self.name, ran=[], **kwargs)

    def __call__(self, program: Program) -> PassResult:
        """Run the pass alone (as pass-level tests do): requirements, call, facts, postcondition."""
        missing = self.requires - program.facts
        if missing:
            raise self.fail(_missing_text(missing, _default_providers()))
        self.precondition(program)
        result = self.call(program)
        if not isinstance(result, PassResult):
            raise self.fail(f"call() returned {type(result).__name__}, not a PassResult")
        program.facts -= self.invalidates
        program.facts |= self.provides
        self.postcondition(program)
        return result

    @property
    def spec(self) -> str:
        """The pipeline-spec text that recreates this pass: `name` or `name{opt=value,…}`."""
        from ..passes.pipeline_spec import spec_value

        changed = [f"{f.name}={spec_value(getattr(self, f.name))}" for f in options_of(type(self))
                   if getattr(self, f.name) != option_default(f)]
        return f"{self.name}{{{','.join(changed)}}}" if changed else self.name


def options_of(cls: type) -> list[dataclasses.Field]:
    """A pass class's options: its dataclass fields (none for a plain class)."""
    return [f for f in dataclasses.fields(cls) if f.init] if dataclasses.is_dataclass(cls) else []


def option_default(f: dataclasses.Field):
    """An option field's default value (`dataclasses.MISSING` when it has none)."""
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


Hook = Callable[[Pass, Program, PassResult], None]
Providers = Callable[[Fact], list[str]]


def _no_providers(_fact: Fact) -> list[str]:
    return []


class PassManager:
    """Runs passes in a checked order, verifying the IR before the first pass and after each one.

    `initial`: the facts the program has before the first pass (plan lowering places every node).
    `target`: facts that must hold after the last pass, keyed by who needs them
    (`{"backend 'tvm'": {Fact.BATCHNORM_FOLDED, …}}`). `providers` names the registered passes
    that provide a fact, for the error messages (the registry passes its own).
    """

    def __init__(
        self,
        passes: Sequence[Pass],
        *,
        verify: bool = True,
        hooks: Sequence[Hook] = (),
        initial: Iterable[Fact] = (Fact.PLACED,),
        target: Mapping[str, Iterable[Fact]] | None = None,
        providers: Providers | None = None,
    ) -> None:
        self.passes = _checked_instances(passes)
        self.verify = verify
        self.hooks = list(hooks)
        self.initial = frozenset(initial)
        self.target = {who: frozenset(facts) for who, facts in (target or {}).items()}
        self.providers = providers or _default_providers()
        check_pipeline(self.passes, self.initial, self.target, self.providers)

    def run(self, program: Program) -> list[PassResult]:
        if self.verify:
            try:
                program.verify()
            except VerifyError as exc:
                raise VerifyError(f"the input program is invalid before any pass ran: {exc.message}",
                                  hint=exc.hint) from None
        ran: list[str] = []
        results: list[PassResult] = []
        for p in self.passes:
            start = time.perf_counter()
            try:
                missing = p.requires - program.facts
                if missing:
                    raise p.fail(_missing_text(missing, self.providers))
                result = p(program)
                if self.verify:
                    program.verify()
            except PassError as exc:
                raise PassError(exc.reason, pass_name=p.name, ran=ran, hint=exc.hint) from None
            except VerifyError as exc:
                raise PassError(f"IR invariant broken: {exc.message}", pass_name=p.name, ran=ran, hint=exc.hint) from None
            except EdgecError:
                raise
            except Exception as exc:
                raise InternalError(f"{type(exc).__name__}: {exc}", pass_name=p.name, ran=ran) from exc
            elapsed = time.perf_counter() - start
            program.pass_log.append(
                {"pass": p.spec, "modified": result.modified, "summary": result.summary, "seconds": round(elapsed, 6)}
            )
            ran.append(p.name)
            results.append(result)
            for hook in self.hooks:
                hook(p, program, result)
        return results


def _checked_instances(passes: Sequence[Pass]) -> list[Pass]:
    if isinstance(passes, (str, bytes)) or not isinstance(passes, Iterable):
        raise UsageError(f"passes must be a list of Pass instances, not {type(passes).__name__}")
    checked = []
    for p in passes:
        if isinstance(p, type) and issubclass(p, Pass):
            raise UsageError(f"the pipeline lists the class {p.__name__}; pass an instance: {p.__name__}()")
        if not isinstance(p, Pass):
            raise UsageError(f"the pipeline lists {p!r}, which is not an edgec Pass")
        if not p.name:
            raise UsageError(f"pass class {type(p).__name__} has no `name`")
        checked.append(p)
    return checked


def _default_providers() -> Providers:
    """The registry's providers when the passes package is importable (it always is in edgec)."""
    try:
        from ..passes.registry import providers_of
    except ImportError:  # the compiler core used on its own
        return _no_providers
    return providers_of


def missing_facts_text(missing: Iterable[Fact]) -> str:
    """`needs the fact 'comm' (provided by 'comm-insert'), which the program does not have`."""
    return _missing_text(missing, _default_providers())


def _missing_text(missing: Iterable[Fact], providers: Providers) -> str:
    """`needs the fact 'staged' (provided by 'split'), which the program does not have`."""
    parts = []
    for fact in sorted(missing, key=list(Fact).index):
        names = providers(fact)
        parts.append(f"'{fact}'" + (f" (provided by {', '.join(repr(n) for n in names)})" if names else ""))
    return f"needs the fact {', '.join(parts)}, which the program does not have"


def _provider_hint(missing: Iterable[Fact], providers: Providers) -> str | None:
    parts = []
    for fact in sorted(missing, key=list(Fact).index):
        names = providers(fact)
        if names:
            parts.append(f"'{fact}' is provided by {', '.join(repr(n) for n in names)}")
    return "; ".join(parts) or None


_HERE = "cannot run at this point of the pipeline"


def check_pipeline(
    passes: Sequence[Pass],
    initial: frozenset[Fact],
    target: Mapping[str, frozenset[Fact]],
    providers: Providers = _no_providers,
) -> None:
    """Refuse a pipeline whose declared facts do not line up; the message names the fact and a provider."""
    facts = set(initial)
    broken_by: dict[Fact, str] = {}
    for i, p in enumerate(passes):
        for fact in sorted(p.requires - facts, key=list(Fact).index):
            raise PassError(_order_problem(p.name, fact, passes, i, broken_by, providers), pass_name=p.name, ran=[],
                            hint=_provider_hint([fact], providers), when=_HERE)
        if not p.repeatable and p.provides and p.provides <= facts:
            earlier = next((q.name for q in reversed(passes[:i]) if q.provides & p.provides), None)
            by = f" by '{earlier}'" if earlier else ""
            raise PassError(f"{fact_names(p.provides)} already holds{by}, and '{p.name}' runs only once", pass_name=p.name,
                            ran=[], hint="list it once", when=_HERE)
        for q in passes[i + 1:]:
            early = p.after & q.provides
            if early:
                raise PassError(f"must run after '{q.name}', which provides {fact_names(early)}", pass_name=p.name, ran=[],
                                hint=f"move '{q.name}' before '{p.name}'", when=_HERE)
        for fact in p.invalidates & facts:
            broken_by[fact] = p.name
        facts -= p.invalidates
        facts |= p.provides
        for fact in p.provides:
            broken_by.pop(fact, None)
    for who, needed in target.items():
        missing = needed - facts
        if missing:
            fact = sorted(missing, key=list(Fact).index)[0]
            where = f"; '{broken_by[fact]}' invalidates it" if fact in broken_by else ""
            raise UsageError(f"{who} needs the fact '{fact}', which the pipeline does not provide{where}",
                             hint=_provider_hint([fact], providers))


def _order_problem(name: str, fact: Fact, passes: Sequence[Pass], index: int, broken_by: dict[Fact, str],
                   providers: Providers) -> str:
    if fact in broken_by:
        return f"needs the fact '{fact}', which '{broken_by[fact]}' invalidates before it"
    later = [q.name for q in passes[index + 1:] if fact in q.provides]
    if later:
        return f"needs the fact '{fact}', which '{later[0]}' provides, but '{later[0]}' runs after it"
    return f"needs the fact '{fact}', which no earlier pass provides"


def canonical_order(passes: Sequence[Pass]) -> list[Pass]:
    """Order `passes` so every contract holds, keeping the given order where the facts allow.

    q runs before p when q provides a fact p requires or wants `after`. A pass that invalidates a
    fact runs before the passes that provide it again, or, when none does, after the passes
    that require it. Among passes free to run, the earliest in the input goes first.
    """
    passes = list(passes)
    before: dict[int, set[int]] = {i: set() for i in range(len(passes))}
    for i, p in enumerate(passes):
        for j, q in enumerate(passes):
            if i != j and q.provides & (p.requires | p.after):
                before[i].add(j)
        for fact in p.invalidates:
            restorers = [j for j, r in enumerate(passes) if j != i and fact in r.provides]
            for j in restorers:
                before[j].add(i)
            if not restorers:
                before[i] |= {j for j, q in enumerate(passes) if j != i and fact in q.requires}
    order: list[Pass] = []
    done: set[int] = set()
    while len(done) < len(passes):
        ready = [i for i in range(len(passes)) if i not in done and before[i] <= done]
        if not ready:
            names = ", ".join(passes[i].name for i in range(len(passes)) if i not in done)
            raise PassError(f"the facts of these passes admit no order: {names}", pass_name=names, ran=[], when=_HERE)
        done.add(ready[0])
        order.append(passes[ready[0]])
    return order
