"""One behaviour of the functional simulator per test, on programs of a few instructions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from edgec import VerifyError
from edgec.vta.isa import AluInsn, AluOp, FinishInsn, GemmInsn, Mem, MemInsn, Opcode
from edgec.vta.simulator import Simulator
from vta_programs import FINISH, load, program, uops


def _run(prog):
    sim = Simulator()
    return sim, sim.run(prog)


def test_load_inp_strided_rows_with_zero_padding():
    x = (np.arange(9 * 16) % 100).astype(np.int8).reshape(9, 16)  # a 3x3 image of 16-lane vectors
    p = program([], x=x)
    base = p.regions["x"].element(Mem.INP)
    # rows 1..2, columns 0..1 of the image, padded by one on every side → a 4x4 tile at INP[10]
    p.insns = [replace(load(Mem.INP, base + 3, 2, sram=10, y_size=2, x_stride=3),
                       y_pad_0=1, y_pad_1=1, x_pad_0=1, x_pad_1=1), FINISH]
    sim, stats = _run(p)
    tile = sim.inp[10:26].reshape(4, 4, 16)
    assert not tile[[0, 3]].any() and not tile[:, [0, 3]].any()
    np.testing.assert_array_equal(tile[1:3, 1:3], x.reshape(3, 3, 16)[1:3, 0:2])
    assert stats.load_bytes["INP"] == 4 * 16


def _gemm_program(inp, wgt, acc0=None):
    arrays = dict(inp=inp, wgt=wgt, uop=uops([0, 1], [0, 1], [0, 1]))
    if acc0 is not None:
        arrays["acc"] = acc0
    p = program([], **arrays)
    e = lambda n, m: p.regions[n].element(m)
    ins = [load(Mem.UOP, e("uop", Mem.UOP), 2), load(Mem.INP, e("inp", Mem.INP), 2),
           load(Mem.WGT, e("wgt", Mem.WGT), 2, push_next=True)]
    ins.append(load(Mem.ACC, e("acc", Mem.ACC), 2) if acc0 is not None else GemmInsn(reset=True, uop_bgn=0, uop_end=2))
    p.insns = ins + [GemmInsn(uop_bgn=0, uop_end=2, pop_prev=True), FINISH]
    return p


def test_gemm_signed_int8_dot_products():
    rng = np.random.default_rng(0)
    inp = rng.integers(-128, 128, (2, 16), dtype=np.int8)
    wgt = rng.integers(-128, 128, (2, 16, 16), dtype=np.int8)  # [out][in]
    sim, stats = _run(_gemm_program(inp, wgt))
    want = np.stack([wgt[i].astype(np.int64) @ inp[i].astype(np.int64) for i in range(2)])
    np.testing.assert_array_equal(sim.acc[:2], want)
    assert stats.gemm_uops == 2 and stats.macs == 512


def test_gemm_accumulates_with_int32_wraparound():
    inp = np.full((2, 16), -128, np.int8)
    wgt = np.full((2, 16, 16), -128, np.int8)  # each lane gains 16 * 2^14 = 262144
    acc0 = np.full((2, 16), 2**31 - 100, np.int32)
    sim, _ = _run(_gemm_program(inp, wgt, acc0))
    assert sim.acc[0, 0] == 2**31 - 100 + 262144 - 2**32


def test_gemm_loops_use_affine_factors():
    inp = np.arange(4 * 16).astype(np.int8).reshape(4, 16)
    wgt = np.zeros((2, 16, 16), np.int8)
    wgt[0, 0, :], wgt[1, 1, :] = 1, 1  # lane 0 sums inp through wgt 0, lane 1 through wgt 1
    p = program([], inp=inp, wgt=wgt, uop=uops([0], [0], [0]))
    e = lambda n, m: p.regions[n].element(m)
    p.insns = [load(Mem.UOP, e("uop", Mem.UOP), 1), load(Mem.INP, e("inp", Mem.INP), 4),
               load(Mem.WGT, e("wgt", Mem.WGT), 2, push_next=True),
               GemmInsn(reset=True, uop_bgn=0, uop_end=1, iter_out=2, dst_factor_out=1),
               GemmInsn(uop_bgn=0, uop_end=1, iter_out=2, iter_in=2, dst_factor_out=1, src_factor_out=2,
                        src_factor_in=1, wgt_factor_in=1, pop_prev=True), FINISH]
    sim, _ = _run(p)
    s = inp.astype(np.int64).sum(1)
    assert list(sim.acc[0, :2]) == [s[0], s[1]] and list(sim.acc[1, :2]) == [s[2], s[3]]


def _alu_program(acc0, *alu):
    p = program([], acc=acc0.astype(np.int32), uop=uops([0, 1, 2, 3], [4, 4, 4, 4], [0, 0, 0, 0]))
    p.insns = [load(Mem.UOP, p.regions["uop"].element(Mem.UOP), 4),
               load(Mem.ACC, p.regions["acc"].element(Mem.ACC), len(acc0)), *alu, FINISH]
    return p


def test_alu_add_min_max_shr_with_immediate():
    acc0 = np.array([[2**31 - 1] * 16, [-7] * 16, [300] * 16, [-300] * 16, [0] * 16], np.int64)
    sim, _ = _run(_alu_program(acc0, AluInsn(alu_op=AluOp.ADD, use_imm=True, imm=1, uop_bgn=0, uop_end=1),
                               AluInsn(alu_op=AluOp.SHR, use_imm=True, imm=1, uop_bgn=1, uop_end=2),
                               AluInsn(alu_op=AluOp.MIN, use_imm=True, imm=127, uop_bgn=2, uop_end=3),
                               AluInsn(alu_op=AluOp.MAX, use_imm=True, imm=-127, uop_bgn=3, uop_end=4)))
    assert sim.acc[0, 0] == -2**31  # ADD wraps at 32 bits
    assert sim.acc[1, 0] == -4  # arithmetic shift: -7 >> 1 = -4
    assert sim.acc[2, 0] == 127 and sim.acc[3, 0] == -127


def test_alu_register_operand_with_loops():
    acc0 = np.zeros((5, 16), np.int64)
    acc0[:4], acc0[4] = 10, np.arange(16)
    sim, stats = _run(_alu_program(acc0, AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=2, iter_out=2,
                                                 dst_factor_out=2)))
    np.testing.assert_array_equal(sim.acc[:4], np.tile(10 + np.arange(16), (4, 1)))
    assert stats.alu_uops == 4


def test_alu_chained_operands_run_in_order():
    acc0 = np.zeros((5, 16), np.int64)
    acc0[0] = 1
    p = program([], acc=acc0.astype(np.int32), uop=uops([1, 2], [0, 1], [0, 0]))
    p.insns = [load(Mem.UOP, p.regions["uop"].element(Mem.UOP), 2),
               load(Mem.ACC, p.regions["acc"].element(Mem.ACC), 5),
               AluInsn(alu_op=AluOp.ADD, uop_bgn=0, uop_end=2), FINISH]  # acc1 += acc0; acc2 += acc1
    sim, _ = _run(p)
    assert sim.acc[2, 0] == 1


def test_store_keeps_low_8_bits():
    acc0 = np.array([[300] * 16, [-129] * 16, [5] * 16, [0] * 16, [0] * 16], np.int64)
    p = _alu_program(acc0, AluInsn(alu_op=AluOp.ADD, use_imm=True, imm=0, uop_bgn=0, uop_end=1, push_next=True))
    out = p.regions["out"].element(Mem.OUT)
    p.insns[-1:] = [MemInsn(opcode=Opcode.STORE, mem_type=Mem.OUT, dram_base=out + 1, y_size=1, x_size=3,
                            x_stride=3, pop_prev=True, push_prev=True),
                    MemInsn(opcode=Opcode.LOAD, mem_type=Mem.UOP, pop_next=True), FINISH]
    _, stats = _run(p)
    assert list(p.read("out")[1:4, 0]) == [44, 127, 5]  # 300 & 0xff = 44; -129 → 127
    assert stats.store_bytes == 48


def test_pop_of_an_empty_queue_deadlocks():
    p = program([GemmInsn(pop_prev=True), FINISH])
    with pytest.raises(VerifyError, match="deadlock"):
        _run(p)


def test_tokens_left_at_finish_are_refused():
    p = program([GemmInsn(push_prev=True), FINISH])
    with pytest.raises(VerifyError, match="tokens left"):
        _run(p)


def test_missing_finish_is_refused():
    with pytest.raises(VerifyError, match="FINISH"):
        _run(program([GemmInsn()]))


def test_out_of_range_load_is_refused():
    p = program([])
    p.insns = [load(Mem.INP, 0, 16, sram=2040), FinishInsn()]
    with pytest.raises(VerifyError, match="out of range"):
        _run(p)
