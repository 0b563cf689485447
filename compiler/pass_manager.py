"""The PassManager and the base class every edgec pass derives from.

A pass is a class with a stable `name` (the CLI and `--print-after` use it), an `order`
(its slot in the canonical pipeline split → quantize → prune → cdc-encode → comm-insert),
`requires()` / `ensures()` that raise when their contract does not hold, and
`call(program) -> PassResult` that reports `modified` honestly. Other compilers build their
own pipelines from these classes; the manager refuses orders that break the contracts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Sequence

from .diagnostics import EdgecError, PassError, VerifyError
from .program import Program


@dataclass
class PassResult:
    modified: bool
    summary: str = ""
    details: dict = field(default_factory=dict)


class Pass:
    """Base class: subclasses set `name` and `order` and implement `call`."""

    name: ClassVar[str] = ""
    order: ClassVar[int] = 0

    def requires(self, program: Program) -> None:
        """Raise PassError if `program` is not in a state this pass can take."""

    def ensures(self, program: Program) -> None:
        """Raise PassError if the pass did not establish what it promises."""

    def call(self, program: Program) -> PassResult:
        raise NotImplementedError

    def fail(self, message: str, **kwargs) -> PassError:
        return PassError(message, pass_name=self.name, ran=[], **kwargs)

    def __call__(self, program: Program) -> PassResult:
        self.requires(program)
        result = self.call(program)
        self.ensures(program)
        return result


Hook = Callable[[Pass, Program, PassResult], None]


class PassManager:
    """Runs passes in a validated order, verifying the IR and calling hooks after each one."""

    def __init__(self, passes: Sequence[Pass], *, verify: bool = True, hooks: Sequence[Hook] = ()) -> None:
        self.passes = list(passes)
        self.verify = verify
        self.hooks = list(hooks)
        self._check_order()

    def _check_order(self) -> None:
        seen: set[str] = set()
        for before, after in zip(self.passes, self.passes[1:]):
            if after.order < before.order:
                raise PassError(
                    f"'{after.name}' cannot run after '{before.name}' "
                    "(the order is split → quantize → prune → cdc-encode → comm-insert)",
                    pass_name=after.name,
                    ran=[],
                )
        for p in self.passes:
            if p.name in seen:
                raise PassError("listed twice in the pipeline", pass_name=p.name, ran=[])
            seen.add(p.name)

    def run(self, program: Program) -> list[PassResult]:
        ran: list[str] = []
        results: list[PassResult] = []
        for p in self.passes:
            start = time.perf_counter()
            try:
                result = p(program)
                if self.verify:
                    program.verify()
            except PassError as exc:
                raise PassError(exc.reason, pass_name=p.name, ran=ran, hint=exc.hint) from None
            except VerifyError as exc:
                raise PassError(f"IR invariant broken: {exc.message}", pass_name=p.name, ran=ran) from None
            except EdgecError:
                raise
            elapsed = time.perf_counter() - start
            program.pass_log.append(
                {"pass": p.name, "modified": result.modified, "summary": result.summary, "seconds": round(elapsed, 6)}
            )
            ran.append(p.name)
            results.append(result)
            for hook in self.hooks:
                hook(p, program, result)
        return results
