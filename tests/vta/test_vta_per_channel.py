"""Per-output-channel requantisation shifts: loaded into ACC beside the bias and applied with a
register-operand SHR, bit-exact against the reference; the lint accepts such a SHR only when the
ACC entries it reads were loaded with amounts in 0..15."""

from __future__ import annotations

import numpy as np
import pytest

from edgec import UsageError
from edgec.vta import codegen, reference
from edgec.vta.isa import AluInsn, AluOp, Mem
from edgec.vta.lint import check, lint
from edgec.vta.simulator import simulate
from vta_programs import FINISH, load, program, uops


@pytest.mark.parametrize("c,o,h,w,k,stride,pads,clip", [
    (5, 20, 6, 7, 3, 1, (1, 1, 1, 1), (-128, 127)),
    (17, 40, 9, 8, 3, 2, (1, 1, 1, 1), (0, 127)),
    (64, 33, 4, 4, 1, 1, (0, 0, 0, 0), (-128, 127)),
])
def test_per_channel_shift_conv_is_bit_exact(c, o, h, w, k, stride, pads, clip):
    rng = np.random.default_rng(c + o)
    x = rng.integers(-128, 128, (1, c, h, w), dtype=np.int8)
    wt = rng.integers(-128, 128, (o, c, k, k), dtype=np.int8)
    b = rng.integers(-30000, 30000, o).astype(np.int32)
    shift = rng.integers(0, 16, o)
    layer = codegen.conv2d(x, wt, b, stride=stride, pads=pads, shift=shift, clip=clip)
    assert "shift" in layer.program.regions
    assert any(isinstance(i, AluInsn) and i.alu_op == AluOp.SHR and not i.use_imm for i in layer.program.insns)
    check(layer.program)
    simulate(layer.program)
    want = reference.conv2d(x, wt, b, stride=stride, pads=pads, shift=shift, clip=clip)
    np.testing.assert_array_equal(layer.output(), want)
    assert want.min() < -64 or clip[0] == 0  # the range reaches the negative side, so the clip matters


def test_per_channel_gemm_and_equal_shifts_use_the_immediate():
    rng = np.random.default_rng(7)
    a = rng.integers(-128, 128, (3, 50), dtype=np.int8)
    w = rng.integers(-128, 128, (24, 50), dtype=np.int8)
    shift = rng.integers(3, 12, 24)
    layer = codegen.gemm(a, w, None, shift=shift)
    check(layer.program)
    simulate(layer.program)
    np.testing.assert_array_equal(layer.output(), reference.gemm(a, w, None, shift=shift))
    same = codegen.gemm(a, w, None, shift=np.full(24, 9))
    assert "shift" not in same.program.regions
    with pytest.raises(UsageError, match="shift"):
        codegen.gemm(a, w, None, shift=np.r_[np.zeros(23, int), 16])


def test_lint_register_shift_needs_loaded_amounts():
    def prog(amounts):
        acc = np.zeros((2, 16), np.int32)
        acc[1] = amounts
        p = program([], uop=uops([0], [1], [0]), acc=acc)
        p.insns = [load(Mem.UOP, p.regions["uop"].element(Mem.UOP), 1),
                   load(Mem.ACC, p.regions["acc"].element(Mem.ACC), 2),
                   AluInsn(alu_op=AluOp.SHR, uop_bgn=0, uop_end=1), FINISH]
        return p

    assert lint(prog(np.arange(16) % 16)) == []
    assert "shift-range" in {f.rule for f in lint(prog(np.r_[np.zeros(15, int), 16]))}
