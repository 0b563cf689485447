"""The VTA instruction set (ISA 0.0.2): configuration, 128-bit instructions and 32-bit micro-ops.

Every width, depth and bit position is derived from one `VtaConfig`, the way upstream's
`hw_spec_const.h` derives them from `vta_config.json`; the field layout follows upstream's C
bit-fields (`hw_spec.h`), where a field that would straddle a 64-bit word starts the next word.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import IntEnum
from functools import cached_property

import numpy as np


class Opcode(IntEnum):
    LOAD = 0
    STORE = 1
    GEMM = 2
    FINISH = 3
    ALU = 4


class AluOp(IntEnum):
    MIN = 0
    MAX = 1
    ADD = 2
    SHR = 3
    MUL = 4  # the upstream functional simulator's only; no hardware implements it


class Mem(IntEnum):
    UOP = 0
    WGT = 1
    INP = 2
    ACC = 3
    OUT = 4


@dataclass(frozen=True)
class VtaConfig:
    """A VTA hardware configuration; the default is `1x16_i8w8a32_15_15_18_17` (PYNQ-Z1)."""

    log_inp_width: int = 3
    log_wgt_width: int = 3
    log_acc_width: int = 5
    log_batch: int = 0
    log_block: int = 4
    log_uop_buff_size: int = 15
    log_inp_buff_size: int = 15
    log_wgt_buff_size: int = 18
    log_acc_buff_size: int = 17
    log_bus_width: int = 6
    clock_hz: int = 100_000_000
    token_queue_depth: int = 8  # STREAM_IN_DEPTH of the HLS design

    @property
    def name(self) -> str:
        return (f"{1 << self.log_batch}x{1 << self.log_block}_i{1 << self.log_inp_width}"
                f"w{1 << self.log_wgt_width}a{1 << self.log_acc_width}_{self.log_uop_buff_size}_"
                f"{self.log_inp_buff_size}_{self.log_wgt_buff_size}_{self.log_acc_buff_size}")

    @property
    def batch(self) -> int:
        return 1 << self.log_batch

    @property
    def block(self) -> int:
        return 1 << self.log_block

    @property
    def bus_bytes(self) -> int:
        return (1 << self.log_bus_width) // 8

    @cached_property
    def elem_bytes(self) -> dict[Mem, int]:
        """Bytes of one element of each on-chip memory (the unit of LOAD/STORE addresses)."""
        b = self.batch * self.block
        return {
            Mem.UOP: 4,
            Mem.WGT: self.block * self.block << self.log_wgt_width >> 3,
            Mem.INP: b << self.log_inp_width >> 3,
            Mem.ACC: b << self.log_acc_width >> 3,
            Mem.OUT: b << self.log_inp_width >> 3,
        }

    @cached_property
    def depth(self) -> dict[Mem, int]:
        """Elements each on-chip memory holds; OUT shares the accumulator's index space."""
        size = {Mem.UOP: self.log_uop_buff_size, Mem.WGT: self.log_wgt_buff_size,
                Mem.INP: self.log_inp_buff_size, Mem.ACC: self.log_acc_buff_size}
        d = {m: (1 << s) // self.elem_bytes[m] for m, s in size.items()}
        d[Mem.OUT] = d[Mem.ACC]
        return d

    def log_depth(self, mem: Mem) -> int:
        return self.depth[mem].bit_length() - 1

    @cached_property
    def layouts(self) -> dict[str, tuple[tuple[str, int, int], ...]]:
        """(name, low bit, width) of every field of each instruction format and of the micro-op."""
        uop = self.log_depth(Mem.UOP)
        acc, inp, wgt = self.log_depth(Mem.ACC), self.log_depth(Mem.INP), self.log_depth(Mem.WGT)
        head = [("opcode", 3), ("pop_prev", 1), ("pop_next", 1), ("push_prev", 1), ("push_next", 1)]
        loops = [("reset", 1), ("uop_bgn", uop), ("uop_end", uop + 1), ("iter_out", 14), ("iter_in", 14),
                 ("dst_factor_out", acc), ("dst_factor_in", acc)]
        formats = {
            "generic": head,
            "mem": head + [("mem_type", 3), ("sram_base", 16), ("dram_base", 32), ("y_size", 16),
                           ("x_size", 16), ("x_stride", 16), ("y_pad_0", 4), ("y_pad_1", 4),
                           ("x_pad_0", 4), ("x_pad_1", 4)],
            "gemm": head + loops + [("src_factor_out", inp), ("src_factor_in", inp),
                                    ("wgt_factor_out", wgt), ("wgt_factor_in", wgt)],
            "alu": head + loops + [("src_factor_out", acc), ("src_factor_in", acc), ("alu_op", 3),
                                   ("use_imm", 1), ("imm", 16)],
            "uop": [("dst", acc), ("src", max(acc, inp)), ("wgt", wgt)],
        }
        return {k: _place(v, 32, 32) if k == "uop" else _place(v, 64, 128) for k, v in formats.items()}


def _place(spec: list[tuple[str, int]], word: int, total: int) -> tuple[tuple[str, int, int], ...]:
    """C bit-field packing: fields fill a word from its LSB; one that does not fit starts the next."""
    out, pos = [], 0
    for name, width in spec:
        if pos % word + width > word:
            pos += word - pos % word
        out.append((name, pos, width))
        pos += width
    if pos > total:
        raise ValueError(f"instruction format needs {pos} bits")
    return tuple(out)


DEFAULT = VtaConfig()


@dataclass(frozen=True)
class _Insn:
    pop_prev: bool = False
    pop_next: bool = False
    push_prev: bool = False
    push_next: bool = False


@dataclass(frozen=True)
class MemInsn(_Insn):
    """LOAD or STORE: a 2-D strided copy of y_size rows of x_size elements, x_stride apart."""

    opcode: Opcode = Opcode.LOAD
    mem_type: Mem = Mem.INP
    sram_base: int = 0
    dram_base: int = 0
    y_size: int = 0
    x_size: int = 0
    x_stride: int = 0
    y_pad_0: int = 0
    y_pad_1: int = 0
    x_pad_0: int = 0
    x_pad_1: int = 0

    @property
    def is_nop(self) -> bool:
        return self.x_size == 0 or self.y_size == 0


@dataclass(frozen=True)
class GemmInsn(_Insn):
    reset: bool = False
    uop_bgn: int = 0
    uop_end: int = 0
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    wgt_factor_out: int = 0
    wgt_factor_in: int = 0
    opcode: Opcode = Opcode.GEMM


@dataclass(frozen=True)
class AluInsn(_Insn):
    alu_op: AluOp = AluOp.ADD
    use_imm: bool = False
    imm: int = 0
    uop_bgn: int = 0
    uop_end: int = 0
    iter_out: int = 1
    iter_in: int = 1
    dst_factor_out: int = 0
    dst_factor_in: int = 0
    src_factor_out: int = 0
    src_factor_in: int = 0
    reset: bool = False
    opcode: Opcode = Opcode.ALU


@dataclass(frozen=True)
class FinishInsn(_Insn):
    opcode: Opcode = Opcode.FINISH


Insn = MemInsn | GemmInsn | AluInsn | FinishInsn
_FORMAT = {MemInsn: "mem", GemmInsn: "gemm", AluInsn: "alu", FinishInsn: "generic"}
_SIGNED = {"imm"}


class FieldOverflow(ValueError):
    """A value does not fit its bit field (the lint reports these; `encode` refuses them)."""


def field_overflows(insn: Insn, config: VtaConfig = DEFAULT) -> list[str]:
    """Fields of `insn` whose value does not fit its width."""
    bad = []
    for name, _, width in config.layouts[_FORMAT[type(insn)]]:
        v = int(getattr(insn, name))
        lo, hi = (-(1 << width - 1), (1 << width - 1) - 1) if name in _SIGNED else (0, (1 << width) - 1)
        if not lo <= v <= hi:
            bad.append(f"{name}={v} outside {lo}..{hi}")
    return bad


def encode(insn: Insn, config: VtaConfig = DEFAULT) -> int:
    """The 128-bit instruction word (bit 0 = LSB of the first little-endian uint64)."""
    bad = field_overflows(insn, config)
    if bad:
        raise FieldOverflow(f"{type(insn).__name__}: " + ", ".join(bad))
    word = 0
    for name, low, width in config.layouts[_FORMAT[type(insn)]]:
        word |= (int(getattr(insn, name)) & ((1 << width) - 1)) << low
    return word


def decode(word: int, config: VtaConfig = DEFAULT) -> Insn:
    opcode = Opcode(word & 7)
    cls = {Opcode.LOAD: MemInsn, Opcode.STORE: MemInsn, Opcode.GEMM: GemmInsn,
           Opcode.ALU: AluInsn, Opcode.FINISH: FinishInsn}[opcode]
    kinds = {f.name: f.type for f in fields(cls)}
    values = {}
    for name, low, width in config.layouts[_FORMAT[cls]]:
        v = (word >> low) & ((1 << width) - 1)
        if name in _SIGNED and v >> (width - 1):
            v -= 1 << width
        values[name] = v
    for name in ("pop_prev", "pop_next", "push_prev", "push_next", "reset", "use_imm"):
        if name in values:
            values[name] = bool(values[name])
    values["opcode"] = opcode
    if "mem_type" in values:
        values["mem_type"] = Mem(values["mem_type"])
    if "alu_op" in values:
        values["alu_op"] = AluOp(values["alu_op"]) if values["alu_op"] in AluOp._value2member_map_ else values["alu_op"]
    return cls(**{k: v for k, v in values.items() if k in kinds})


def encode_program(insns: list[Insn], config: VtaConfig = DEFAULT) -> np.ndarray:
    """Instructions as the (n, 2) uint64 array the hardware fetches."""
    out = np.zeros((len(insns), 2), dtype=np.uint64)
    for i, insn in enumerate(insns):
        w = encode(insn, config)
        out[i, 0], out[i, 1] = w & (2**64 - 1), w >> 64
    return out


def decode_program(words: np.ndarray, config: VtaConfig = DEFAULT) -> list[Insn]:
    return [decode(int(lo) | int(hi) << 64, config) for lo, hi in np.asarray(words, dtype=np.uint64)]


def _uop_shifts(config: VtaConfig) -> tuple[tuple[int, int], ...]:
    return tuple((low, width) for _, low, width in config.layouts["uop"])


def encode_uops(dst, src, wgt, config: VtaConfig = DEFAULT) -> np.ndarray:
    """Micro-ops (dst ACC index, src INP/ACC index, wgt WGT index) packed into uint32 words."""
    parts = [np.asarray(a, dtype=np.int64) for a in (dst, src, wgt)]
    word = np.zeros(np.broadcast(*parts).shape, dtype=np.uint64)
    for a, (low, width) in zip(parts, _uop_shifts(config)):
        if a.size and (a.min() < 0 or a.max() >= 1 << width):
            raise FieldOverflow(f"micro-op field at bit {low} needs more than {width} bits")
        word |= a.astype(np.uint64) << np.uint64(low)
    return word.astype(np.uint32)


def decode_uops(words, config: VtaConfig = DEFAULT) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    w = np.asarray(words, dtype=np.uint32).astype(np.int64)
    return tuple((w >> low) & ((1 << width) - 1) for low, width in _uop_shifts(config))
