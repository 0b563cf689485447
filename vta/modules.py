"""Which of VTA's three concurrent modules runs an instruction, and which token queues its
dependency bits pop and push (the hardware's `fetch`, `load`, `compute` and `store` in vta.cc)."""

from __future__ import annotations

from .isa import Insn, Mem, MemInsn, Opcode

LOAD, COMPUTE, STORE = "load", "compute", "store"
MODULES = (LOAD, COMPUTE, STORE)
# queue names: producer→consumer
QUEUES = ("l2c", "c2l", "c2s", "s2c")

_POP = {LOAD: {"pop_next": "c2l"}, COMPUTE: {"pop_prev": "l2c", "pop_next": "s2c"},
        STORE: {"pop_prev": "c2s"}}
_PUSH = {LOAD: {"push_next": "l2c"}, COMPUTE: {"push_prev": "c2l", "push_next": "c2s"},
         STORE: {"push_prev": "s2c"}}


def module_of(insn: Insn) -> str:
    """LOAD of INP/WGT goes to the load module, LOAD of UOP/ACC, GEMM, ALU and FINISH to compute,
    STORE to store — as the fetch stage dispatches them."""
    if isinstance(insn, MemInsn):
        if insn.opcode == Opcode.STORE:
            return STORE
        return LOAD if insn.mem_type in (Mem.INP, Mem.WGT) else COMPUTE
    return COMPUTE


def dependency_bits(insn: Insn) -> dict[str, bool]:
    return {b: getattr(insn, b) for b in ("pop_prev", "pop_next", "push_prev", "push_next")}


def pops(insn: Insn) -> list[str]:
    """Queues this instruction pops before it runs; a bit the module has no queue for is ignored here
    (`invalid_bits` names it)."""
    table = _POP[module_of(insn)]
    return [q for bit, q in table.items() if getattr(insn, bit)]


def pushes(insn: Insn) -> list[str]:
    table = _PUSH[module_of(insn)]
    return [q for bit, q in table.items() if getattr(insn, bit)]


def invalid_bits(insn: Insn) -> list[str]:
    """Dependency bits set on a module that has no such queue (load has no 'prev', store no 'next')."""
    m = module_of(insn)
    valid = set(_POP[m]) | set(_PUSH[m])
    return [b for b, v in dependency_bits(insn).items() if v and b not in valid]


def split_streams(insns: list[Insn]) -> dict[str, list[int]]:
    """Program indices of the instructions each module executes, in program order."""
    out = {m: [] for m in MODULES}
    for i, insn in enumerate(insns):
        out[module_of(insn)].append(i)
    return out

