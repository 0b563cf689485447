"""A cycle model of VTA: the load, compute and store modules each run their instructions in order,
concurrently, and wait only on dependency tokens.

Assumptions (the hardware's, where the HLS design fixes them; ours, where it does not):
  * GEMM and ALU issue one micro-op per cycle (initiation interval 1); a reset GEMM too;
  * LOAD and STORE move 8 bytes per cycle over the 64-bit AXI bus; the zero padding a LOAD writes
    costs the same as data; UOP and ACC loads run on the compute module;
  * every instruction, NOPs and FINISH included, costs one more cycle to issue;
  * a token pushed at the end of cycle t can be popped from cycle t on; a push into a full queue
    (8 tokens) waits until the consumer pops one;
  * the three modules' DMA transfers do not contend for DRAM (one port each), and instruction
    fetch is free.
At 100 MHz a cycle is 10 ns; peak is BLOCK_IN x BLOCK_OUT = 256 MACs per cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..compiler.diagnostics import VerifyError
from .isa import DEFAULT, AluInsn, GemmInsn, MemInsn, VtaConfig
from .modules import MODULES, QUEUES, pops, pushes, split_streams

ISSUE = 1


def duration(insn, config: VtaConfig = DEFAULT) -> int:
    """Cycles one instruction keeps its module busy."""
    if isinstance(insn, MemInsn):
        if insn.is_nop:
            return ISSUE
        elems = (insn.y_size + insn.y_pad_0 + insn.y_pad_1) * (insn.x_size + insn.x_pad_0 + insn.x_pad_1)
        return ISSUE + -(-elems * config.elem_bytes[insn.mem_type] // config.bus_bytes)
    if isinstance(insn, (GemmInsn, AluInsn)):
        return ISSUE + insn.iter_out * insn.iter_in * max(insn.uop_end - insn.uop_bgn, 0)
    return ISSUE


@dataclass
class CycleReport:
    cycles: int
    busy: dict[str, int] = field(default_factory=dict)  # cycles each module worked
    gemm_cycles: int = 0
    clock_hz: int = DEFAULT.clock_hz

    @property
    def seconds(self) -> float:
        return self.cycles / self.clock_hz

    def utilization(self, macs: int, config: VtaConfig = DEFAULT) -> float:
        return macs / (max(self.cycles, 1) * config.block * config.block)


def estimate(insns: list, config: VtaConfig = DEFAULT) -> CycleReport:
    """Cycles from the first instruction's issue to the last module going idle."""
    streams = split_streams(insns)
    pos = {m: 0 for m in MODULES}
    free = {m: 0 for m in MODULES}
    busy = {m: 0 for m in MODULES}
    push_times = {q: [] for q in QUEUES}  # when each token became available
    pop_times = {q: [] for q in QUEUES}  # when each token was taken
    depth = config.token_queue_depth
    gemm = 0
    progress = True
    while progress:
        progress = False
        for m in MODULES:
            while pos[m] < len(streams[m]):
                insn = insns[streams[m][pos[m]]]
                start = free[m]
                ready = True
                for q in pops(insn):
                    k = len(pop_times[q])
                    if k >= len(push_times[q]):
                        ready = False
                        break
                    start = max(start, push_times[q][k])
                for q in pushes(insn):
                    k = len(push_times[q]) - depth  # this push needs the k-th pop to have happened
                    if k >= 0:
                        if k >= len(pop_times[q]):
                            ready = False
                            break
                        start = max(start, pop_times[q][k])
                if not ready:
                    break
                for q in pops(insn):
                    pop_times[q].append(start)
                d = duration(insn, config)
                end = start + d
                for q in pushes(insn):
                    push_times[q].append(end)
                free[m] = end
                busy[m] += d
                if isinstance(insn, GemmInsn) and not insn.reset:
                    gemm += d - ISSUE
                pos[m] += 1
                progress = True
    stuck = [m for m in MODULES if pos[m] < len(streams[m])]
    if stuck:
        raise VerifyError("VTA program deadlocks in the cycle model: " +
                          ", ".join(f"{m} at instruction {streams[m][pos[m]]}" for m in stuck))
    return CycleReport(max(free.values()), busy, gemm, config.clock_hz)
