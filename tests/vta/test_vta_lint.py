"""One test per lint rule, each on a program the simulator alone would accept or misjudge."""

from __future__ import annotations

import numpy as np
import pytest

from edgec import VerifyError
from edgec.vta.isa import AluInsn, AluOp, GemmInsn, Mem, MemInsn, Opcode
from edgec.vta.lint import check, lint
from vta_programs import FINISH, load, program, uops


def _rules(p):
    return {f.rule for f in lint(p)}


def _with_uops(*compute, dst=(0, 1), src=(0, 1), wgt=(0, 0)):
    p = program([], uop=uops(list(dst), list(src), list(wgt)))
    p.insns = [load(Mem.UOP, p.regions["uop"].element(Mem.UOP), len(dst)), *compute, FINISH]
    return p


def test_clean_program_passes():
    p = _with_uops(AluInsn(alu_op=AluOp.SHR, use_imm=True, imm=3, uop_bgn=0, uop_end=2))
    assert lint(p) == []
    check(p)


def test_sim_only_alu():
    assert "sim-only-alu" in _rules(_with_uops(AluInsn(alu_op=AluOp.MUL, use_imm=True, imm=2, uop_bgn=0, uop_end=2)))


@pytest.mark.parametrize("alu", [AluInsn(alu_op=AluOp.SHR, use_imm=True, imm=16, uop_bgn=0, uop_end=2),
                                 AluInsn(alu_op=AluOp.SHR, use_imm=True, imm=-1, uop_bgn=0, uop_end=2),
                                 AluInsn(alu_op=AluOp.SHR, uop_bgn=0, uop_end=2)])
def test_shift_range(alu):
    assert "shift-range" in _rules(_with_uops(alu))


def test_field_overflow():
    assert "field-overflow" in _rules(_with_uops(GemmInsn(uop_bgn=0, uop_end=2, iter_out=1 << 14)))


def test_sram_range():
    p = _with_uops(AluInsn(alu_op=AluOp.ADD, use_imm=True, imm=1, uop_bgn=0, uop_end=2, iter_out=2,
                           dst_factor_out=2047))
    assert "sram-range" in _rules(p)


def test_dram_range():
    p = program([])
    p.insns = [load(Mem.INP, 10**6, 4), FINISH]
    assert "dram-range" in _rules(p)


def test_bad_padding_on_weights():
    p = program([], w=np.zeros((1, 16, 16), np.int8))
    ld = load(Mem.WGT, p.regions["w"].element(Mem.WGT), 1)
    p.insns = [MemInsn(**{**ld.__dict__, "x_pad_0": 1}), FINISH]
    assert "bad-padding" in _rules(p)


def test_acc_hazard():
    p = _with_uops(AluInsn(alu_op=AluOp.ADD, use_imm=True, imm=1, uop_bgn=0, uop_end=2), dst=(3, 3))
    assert "acc-hazard" in _rules(p)
    p = _with_uops(GemmInsn(uop_bgn=0, uop_end=1, iter_in=4, src_factor_in=1))  # same dst, 4 cycles running
    assert "acc-hazard" in _rules(p)


def test_token_bits():
    p = program([MemInsn(opcode=Opcode.STORE, mem_type=Mem.OUT, push_next=True), FINISH])
    assert "token-bits" in _rules(p)


def test_token_deadlock():
    assert "token-deadlock" in _rules(program([GemmInsn(pop_next=True), FINISH]))


def test_token_leftover():
    assert "token-leftover" in _rules(program([GemmInsn(push_next=True), FINISH]))


def test_no_finish_and_check_raises():
    p = program([GemmInsn()])
    assert "no-finish" in _rules(p)
    with pytest.raises(VerifyError, match="no-finish"):
        check(p)
