"""A lint for VTA programs: what the simulator would run but the hardware would not, or would run
differently.

Rules (each finding names one):
  sim-only-alu     ALU MUL or an unknown ALU opcode: only upstream's functional simulator has them
  shift-range      SHR by an immediate outside 0..15, or by a register whose ACC entries were not
                   loaded (LOAD ACC) with amounts in 0..15
  field-overflow   a value that does not fit its instruction field (it would be silently cut)
  sram-range       a LOAD, STORE, GEMM or ALU index past the end of its on-chip buffer
  dram-range       a LOAD or STORE past the end of the DRAM image
  bad-padding      padding on a WGT/UOP load or on a STORE (only INP/ACC loads pad)
  acc-hazard       two micro-ops on consecutive cycles writing the same accumulator
  token-bits       a dependency bit for a queue the module does not have
  token-deadlock   a module waits for a token nobody will push (or a full queue nobody drains)
  token-leftover   tokens still queued at the end (the next program would pop them)
  no-finish        the program does not end with FINISH
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..compiler.diagnostics import VerifyError
from .cycles import estimate
from .isa import AluInsn, AluOp, FinishInsn, GemmInsn, Mem, MemInsn, Opcode, decode_uops, field_overflows
from .modules import QUEUES, invalid_bits, pops, pushes
from .program import VtaProgram

HARDWARE_ALU = (AluOp.MIN, AluOp.MAX, AluOp.ADD, AluOp.SHR)
MAX_PORTABLE_SHIFT = 15


@dataclass(frozen=True)
class LintFinding:
    rule: str
    index: int  # instruction index, -1 for the whole program
    message: str

    def __str__(self) -> str:
        where = f"instruction {self.index}" if self.index >= 0 else "program"
        return f"{where}: [{self.rule}] {self.message}"


def lint(program: VtaProgram) -> list[LintFinding]:
    c = program.config
    out: list[LintFinding] = []
    uop = np.zeros((3, c.depth[Mem.UOP]), np.int64)
    shift_ok = np.zeros(c.depth[Mem.ACC], bool)  # ACC entries last written by a LOAD of amounts in 0..15
    last_dst = None  # ACC index the previous compute micro-op wrote

    def add(rule, i, msg):
        out.append(LintFinding(rule, i, msg))

    for i, insn in enumerate(program.insns):
        for bad in field_overflows(insn, c):
            add("field-overflow", i, bad)
        for bit in invalid_bits(insn):
            add("token-bits", i, f"{bit} set on a {type(insn).__name__} of a module without that queue")
        if isinstance(insn, MemInsn):
            _lint_mem(i, insn, program, uop, add)
            _track_shift_loads(insn, program, shift_ok)
        elif isinstance(insn, (GemmInsn, AluInsn)):
            if isinstance(insn, AluInsn):
                if insn.alu_op not in HARDWARE_ALU:
                    add("sim-only-alu", i, f"ALU opcode {int(insn.alu_op)} exists only in the functional simulator")
                if insn.alu_op == AluOp.SHR:
                    if not insn.use_imm and not _register_shifts_ok(insn, uop, shift_ok):
                        add("shift-range", i, "SHR by a register operand whose ACC entries were not loaded with "
                                              "amounts in 0..15")
                    elif not 0 <= insn.imm <= MAX_PORTABLE_SHIFT:
                        add("shift-range", i, f"SHR by {insn.imm}: only 0..15 behave the same on every implementation")
            last_dst = _lint_compute(i, insn, uop, c, add, last_dst)
            dst = _indices(insn, uop, 0, insn.dst_factor_out, insn.dst_factor_in)
            shift_ok[dst[dst < shift_ok.size]] = False
    if not program.insns or not isinstance(program.insns[-1], FinishInsn):
        add("no-finish", -1, "the program does not end with FINISH")
    if not any(f.rule == "token-bits" for f in out):
        try:
            estimate(program.insns, c)
        except VerifyError as exc:
            add("token-deadlock", -1, exc.message)
        else:
            balance = {q: 0 for q in QUEUES}
            for insn in program.insns:
                for q in pushes(insn):
                    balance[q] += 1
                for q in pops(insn):
                    balance[q] -= 1
            left = {q: n for q, n in balance.items() if n}
            if left:
                add("token-leftover", -1, f"tokens left in queues at the end: {left}")
    return out


def check(program: VtaProgram) -> None:
    """Raise one VerifyError listing every finding; silent for a clean program."""
    findings = lint(program)
    if findings:
        raise VerifyError(f"VTA program rejected ({len(findings)} finding(s)):\n  " +
                          "\n  ".join(str(f) for f in findings[:20]))


def _lint_mem(i, insn: MemInsn, program: VtaProgram, uop, add) -> None:
    c = program.config
    mem = insn.mem_type
    if mem not in c.depth:
        add("field-overflow", i, f"memory type {int(mem)} does not exist")
        return
    pads = insn.y_pad_0 + insn.y_pad_1 + insn.x_pad_0 + insn.x_pad_1
    if pads and (insn.opcode == Opcode.STORE or mem in (Mem.WGT, Mem.UOP)):
        add("bad-padding", i, f"padding on a {insn.opcode.name} of {mem.name}")
    if insn.is_nop:
        return
    if insn.opcode == Opcode.STORE and mem != Mem.OUT or insn.opcode == Opcode.LOAD and mem == Mem.OUT:
        add("field-overflow", i, f"{insn.opcode.name} cannot address {mem.name}")
        return
    written = (insn.y_size + insn.y_pad_0 + insn.y_pad_1) * (insn.x_size + insn.x_pad_0 + insn.x_pad_1)
    if insn.sram_base + written > c.depth[mem]:
        add("sram-range", i, f"{mem.name}[{insn.sram_base}:{insn.sram_base + written}] past its {c.depth[mem]} elements")
    last = insn.dram_base + (insn.y_size - 1) * insn.x_stride + insn.x_size
    if last * c.elem_bytes[mem] > program.dram.size:
        add("dram-range", i, f"DRAM element {last - 1} of {mem.name} past the {program.dram.size}-byte image")
    elif mem == Mem.UOP and insn.opcode == Opcode.LOAD and insn.sram_base + insn.x_size <= uop.shape[1]:
        e = c.elem_bytes[Mem.UOP]
        words = program.dram[insn.dram_base * e:(insn.dram_base + insn.x_size) * e].view(np.uint32)
        uop[:, insn.sram_base:insn.sram_base + insn.x_size] = np.stack(decode_uops(words, c))


def _indices(insn, uop, row: int, fo: int, fi: int) -> np.ndarray:
    if insn.uop_end > uop.shape[1] or insn.uop_bgn > insn.uop_end:
        return np.zeros(0, np.int64)
    k = np.arange(insn.uop_bgn, insn.uop_end)
    o = np.arange(insn.iter_out)[:, None, None]
    n = np.arange(insn.iter_in)[None, :, None]
    return (uop[row, k][None, None, :] + o * fo + n * fi).reshape(-1)


def _track_shift_loads(insn: MemInsn, program: VtaProgram, shift_ok: np.ndarray) -> None:
    """Mark the ACC entries a LOAD ACC fills with lanes all in 0..15 (zero padding included)."""
    c = program.config
    if insn.opcode != Opcode.LOAD or insn.mem_type != Mem.ACC or insn.is_nop:
        return
    lanes = c.elem_bytes[Mem.ACC] // 4
    rows_y, rows_x = insn.y_size + insn.y_pad_0 + insn.y_pad_1, insn.x_size + insn.x_pad_0 + insn.x_pad_1
    block = np.zeros((rows_y, rows_x, lanes), np.int64)
    acc = program.dram[: program.dram.size // 4 * 4].view(np.int32)
    for y in range(insn.y_size):
        start = (insn.dram_base + y * insn.x_stride) * lanes
        data = acc[start:start + insn.x_size * lanes]
        if data.size != insn.x_size * lanes:
            return
        block[insn.y_pad_0 + y, insn.x_pad_0:insn.x_pad_0 + insn.x_size] = data.reshape(-1, lanes)
    ok = np.all((block >= 0) & (block <= MAX_PORTABLE_SHIFT), axis=-1).reshape(-1)
    end = min(insn.sram_base + ok.size, shift_ok.size)
    shift_ok[insn.sram_base:end] = ok[: end - insn.sram_base]


def _register_shifts_ok(insn: AluInsn, uop: np.ndarray, shift_ok: np.ndarray) -> bool:
    src = _indices(insn, uop, 1, insn.src_factor_out, insn.src_factor_in)
    return bool(src.size == 0 or (src.max() < shift_ok.size and shift_ok[src].all()))


def _lint_compute(i, insn, uop, c, add, last_dst):
    if insn.uop_end > uop.shape[1] or insn.uop_bgn > insn.uop_end:
        add("sram-range", i, f"micro-ops [{insn.uop_bgn}, {insn.uop_end}) outside the {uop.shape[1]}-entry UOP buffer")
        return None
    k = np.arange(insn.uop_bgn, insn.uop_end)
    o = np.arange(insn.iter_out)[:, None, None]
    n = np.arange(insn.iter_in)[None, :, None]

    def index(row, fo, fi):
        return (uop[row, k][None, None, :] + o * fo + n * fi).reshape(-1)

    dst = index(0, insn.dst_factor_out, insn.dst_factor_in)
    if not dst.size:
        return last_dst
    checks = [("ACC", dst, c.depth[Mem.ACC])]
    if isinstance(insn, GemmInsn) and not insn.reset:
        checks += [("INP", index(1, insn.src_factor_out, insn.src_factor_in), c.depth[Mem.INP]),
                   ("WGT", index(2, insn.wgt_factor_out, insn.wgt_factor_in), c.depth[Mem.WGT])]
    elif isinstance(insn, AluInsn) and not insn.use_imm:
        checks.append(("ACC", index(1, insn.src_factor_out, insn.src_factor_in), c.depth[Mem.ACC]))
    for name, idx, depth in checks:
        if idx.max() >= depth:
            add("sram-range", i, f"{name} index {int(idx.max())} past its {depth} elements")
    seq = dst if last_dst is None else np.concatenate([[last_dst], dst])
    same = np.flatnonzero(seq[1:] == seq[:-1])
    if same.size:
        add("acc-hazard", i, f"accumulator {int(seq[same[0] + 1])} written on consecutive cycles "
                             f"({same.size} time(s)); the read-modify-write pipeline would lose an update")
    return int(dst[-1])
