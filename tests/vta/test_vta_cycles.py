"""The cycle model on programs small enough to count by hand."""

from __future__ import annotations

from edgec.vta.cycles import estimate
from edgec.vta.isa import AluInsn, AluOp, FinishInsn, GemmInsn, Mem, MemInsn, Opcode


def _inp(n, **kw):
    return MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP, y_size=1, x_size=n, x_stride=n, **kw)


def test_serial_chain_adds_up():
    # load 64 INP vectors = 1024 B = 128 cycles (+1 issue); GEMM 3 uops x 4 x 5 = 60 (+1); FINISH 1
    prog = [_inp(64, push_next=True), GemmInsn(uop_bgn=0, uop_end=3, iter_out=4, iter_in=5, pop_prev=True),
            FinishInsn()]
    r = estimate(prog)
    assert r.cycles == 129 + 61 + 1
    assert r.busy == {"load": 129, "compute": 62, "store": 0} and r.gemm_cycles == 60


def test_independent_modules_overlap():
    # a 100-uop ALU and a 64-vector load with no tokens between them run side by side
    prog = [_inp(64), AluInsn(alu_op=AluOp.ADD, use_imm=True, uop_bgn=0, uop_end=100), FinishInsn()]
    assert estimate(prog).cycles == max(129, 101 + 1)


def test_padding_costs_like_data_and_weights_are_256_bytes():
    pad = MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP, y_size=2, x_size=2, x_stride=2, y_pad_0=1, x_pad_1=1)
    assert estimate([pad, FinishInsn()]).busy["load"] == 1 + 3 * 3 * 16 // 8
    wgt = MemInsn(opcode=Opcode.LOAD, mem_type=Mem.WGT, y_size=1, x_size=2, x_stride=2)
    assert estimate([wgt, FinishInsn()]).busy["load"] == 1 + 2 * 256 // 8


def test_double_buffering_hides_the_second_load():
    # load A (129), compute A (101) while load B (129) runs, compute B (101) after load B
    g = dict(uop_bgn=0, uop_end=100)
    prog = [_inp(64, push_next=True), _inp(64, push_next=True), GemmInsn(pop_prev=True, **g),
            GemmInsn(pop_prev=True, **g), FinishInsn()]
    assert estimate(prog).cycles == 129 + 129 + 101 + 1
    serial = [_inp(64, push_next=True), GemmInsn(pop_prev=True, push_prev=True, **g),
              _inp(64, push_next=True, pop_next=True), GemmInsn(pop_prev=True, **g), FinishInsn()]
    assert estimate(serial).cycles == 129 + 101 + 129 + 101 + 1
