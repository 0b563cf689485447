"""Instruction and micro-op encodings, checked bit by bit against upstream's hw_spec.h layout."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.vta.isa import (DEFAULT, AluInsn, AluOp, FieldOverflow, FinishInsn, GemmInsn, Mem, MemInsn, Opcode,
                           decode, decode_program, decode_uops, encode, encode_program, encode_uops)


def test_default_configuration_depths():
    assert DEFAULT.name == "1x16_i8w8a32_15_15_18_17"
    assert DEFAULT.depth == {Mem.UOP: 8192, Mem.WGT: 1024, Mem.INP: 2048, Mem.ACC: 2048, Mem.OUT: 2048}
    assert DEFAULT.elem_bytes[Mem.WGT] == 256 and DEFAULT.elem_bytes[Mem.ACC] == 64


def test_field_positions_match_upstream():
    pos = {k: {n: (lo, lo + w - 1) for n, lo, w in v} for k, v in DEFAULT.layouts.items()}
    assert pos["mem"]["dram_base"] == (26, 57) and pos["mem"]["y_size"] == (64, 79)
    assert pos["mem"]["x_pad_1"] == (124, 127)
    assert pos["gemm"]["uop_end"] == (21, 34) and pos["gemm"]["iter_in"] == (49, 62)
    assert pos["gemm"]["dst_factor_out"] == (64, 74) and pos["gemm"]["wgt_factor_in"] == (118, 127)
    assert pos["alu"]["alu_op"] == (108, 110) and pos["alu"]["imm"] == (112, 127)
    assert pos["uop"] == {"dst": (0, 10), "src": (11, 21), "wgt": (22, 31)}


def _words(insn):
    w = encode(insn)
    return w & (2**64 - 1), w >> 64


def test_load_golden():
    insn = MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP, sram_base=5, dram_base=0x1234, y_size=3, x_size=7,
                   x_stride=9, y_pad_0=1, y_pad_1=2, x_pad_0=3, x_pad_1=4, pop_next=True, push_next=True)
    # lo: pop_next<<4 | push_next<<6 | INP(2)<<7 | 5<<10 | 0x1234<<26; hi: 3 | 7<<16 | 9<<32 | pads<<48..
    assert _words(insn) == (0x48D0001550, 0x4321000900070003)
    assert decode(encode(insn)) == insn


def test_gemm_golden():
    insn = GemmInsn(pop_prev=True, uop_bgn=100, uop_end=200, iter_out=3, iter_in=4, dst_factor_out=56,
                    dst_factor_in=1, src_factor_out=58, src_factor_in=232, wgt_factor_in=9)
    assert _words(insn) == (0x800181900640A, 0x24001D00E800838)
    assert decode(encode(insn)) == insn


def test_alu_golden_negative_immediate():
    insn = AluInsn(alu_op=AluOp.MAX, use_imm=True, imm=-127, uop_bgn=7, uop_end=9, iter_out=2,
                   dst_factor_out=10, push_next=True)
    assert _words(insn) == (0x2001001200744, 0xFF8190000000000A)
    assert decode(encode(insn)).imm == -127


def test_finish_and_program_round_trip():
    prog = [FinishInsn(), MemInsn(opcode=Opcode.STORE, mem_type=Mem.OUT, x_size=2, y_size=1, pop_prev=True)]
    words = encode_program(prog)
    assert words.dtype == np.uint64 and words.shape == (2, 2) and int(words[0, 0]) == 3
    assert decode_program(words) == prog


def test_overflow_refused():
    with pytest.raises(FieldOverflow, match="iter_out"):
        encode(GemmInsn(iter_out=1 << 14))
    with pytest.raises(FieldOverflow, match="imm"):
        encode(AluInsn(use_imm=True, imm=40000))


def test_uop_golden_and_round_trip():
    assert int(encode_uops([5], [7], [9])[0]) == 0x2403805
    d, s, w = decode_uops(encode_uops([2047, 0], [0, 2047], [1023, 1]))
    assert list(d) == [2047, 0] and list(s) == [0, 2047] and list(w) == [1023, 1]
    with pytest.raises(FieldOverflow):
        encode_uops([2048], [0], [0])
