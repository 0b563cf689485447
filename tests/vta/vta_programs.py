"""Tiny hand-written VTA programs shared by the VTA tests."""

from __future__ import annotations

import numpy as np

from edgec.vta.isa import FinishInsn, Mem, MemInsn, Opcode, encode_uops
from edgec.vta.program import DramBuilder, VtaProgram


def program(insns, **arrays) -> VtaProgram:
    """A program over a DRAM image holding `arrays` (name → array) and a 64-vector 'out' region."""
    d = DramBuilder()
    for name, a in arrays.items():
        d.add(name, a)
    d.reserve("out", (64, 16), np.int8)
    return VtaProgram(list(insns), d.image(), d.regions)


def load(mem: Mem, region_offset_elems: int, n: int, sram: int = 0, **kw) -> MemInsn:
    return MemInsn(opcode=Opcode.LOAD, mem_type=mem, sram_base=sram, dram_base=region_offset_elems,
                   y_size=kw.pop("y_size", 1), x_size=n, x_stride=kw.pop("x_stride", n), **kw)


def uops(dst, src, wgt):
    return encode_uops(dst, src, wgt)


FINISH = FinishInsn()
