"""Residual Add on VTA: clip(((a << ka) + (b << kb) + 2^(n-1)) >> n) for two int8 NCHW tensors.

The ALU reads only accumulators and LOAD ACC reads int32, so the int8 operands enter the
accumulators through the GEMM core: per output block, two micro-op passes with the fixed weight
blocks 2^ka·I and 2^kb·I (exact). Tiles are (channel-block group, output rows); INP and ACC halves
alternate between tiles with the same token protocol as the convolution (see codegen).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..compiler.diagnostics import UsageError
from .isa import DEFAULT, AluInsn, AluOp, GemmInsn, Mem, MemInsn, Opcode, VtaConfig, encode_uops
from .program import DramBuilder, VtaProgram
from .tiles import output_tiles, store_tile, tile_stream


def compile_add(a: np.ndarray, b: np.ndarray, shift_a: int, shift_b: int, shift: int, clip, config: VtaConfig = DEFAULT):
    from .codegen import CompiledLayer, TilePlan, _blocks, pack_activation

    c, blk = config, config.block
    _, ch, H, W = a.shape
    CB = _blocks(ch, blk)
    inp_half, acc_half = c.depth[Mem.INP] // 2, c.depth[Mem.ACC] // 2
    best = None
    for toc in range(1, CB + 1):
        for th in range(1, H + 1):
            last = CB - (_blocks(CB, toc) - 1) * toc  # blocks in the last group
            if (2 * toc * th * W <= inp_half and toc * th * W <= acc_half and last * W >= 2
                    and toc * th * W < 2048 and 4 * toc * W <= c.depth[Mem.UOP]):
                tiles = _blocks(CB, toc) * _blocks(H, th)
                if best is None or tiles < best[2]:
                    best = (toc, th, tiles)
    if best is None and W * CB < 2:
        raise UsageError(f"VTA add on {H}x{W} with ≤ 16 channels writes one accumulator on consecutive "
                         f"cycles (a hazard on the hardware); pad the width or the channels")
    if best is None:
        raise UsageError(f"VTA add on {H}x{W}: one row does not fit the on-chip buffers (width tiling is not implemented)")
    toc, th, _ = best

    dram = DramBuilder()
    r_a, r_b = dram.add("a", pack_activation(a, blk)), dram.add("b", pack_activation(b, blk))
    eye = np.eye(blk, dtype=np.int64)
    r_w = dram.add("wgt", np.stack([eye << shift_a, eye << shift_b]).astype(np.int8))
    obl, col = (m.reshape(-1) for m in np.meshgrid(np.arange(toc), np.arange(W), indexing="ij"))
    at = {}
    parts = []
    for par in (0, 1):
        at[par] = len(parts) * obl.size
        parts.append((par * acc_half + obl * th * W + col, par * inp_half + obl * th * W + col))
    uops = encode_uops(np.concatenate([d for d, _ in parts]), np.concatenate([s for _, s in parts]),
                       np.zeros(2 * obl.size, np.int64), c)
    r_uop = dram.add("uop", uops)
    r_out = dram.reserve("out", (CB, H, W, blk), np.int8)

    tiles = output_tiles(CB, toc, H, th)
    loads, computes, stores = [], [], []
    for t, (g, oy0, th_t, tc) in enumerate(tiles):
        par = t % 2
        ld = [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.WGT, dram_base=r_w.element(Mem.WGT, c), y_size=1,
                      x_size=2, x_stride=2)] if t == 0 else []
        for which, region in enumerate((r_a, r_b)):
            for k in range(tc):
                ld.append(MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP,
                                  sram_base=par * inp_half + (which * toc + k) * th * W,
                                  dram_base=region.element(Mem.INP, c) + ((g * toc + k) * H + oy0) * W,
                                  y_size=1, x_size=th_t * W, x_stride=th_t * W))
        ld[0] = replace(ld[0], pop_next=t >= 2)
        ld[-1] = replace(ld[-1], push_next=True)
        loads.append(ld)
        u0, na = at[par], tc * W
        loops = dict(uop_bgn=u0, uop_end=u0 + na, iter_out=th_t, dst_factor_out=W)
        cp = [GemmInsn(reset=True, pop_next=t >= 2, **loops),
              GemmInsn(iter_in=2, src_factor_out=W, src_factor_in=toc * th * W, wgt_factor_in=1,
                       pop_prev=True, push_prev=True, **loops)]
        if shift:
            cp.append(AluInsn(alu_op=AluOp.ADD, use_imm=True, imm=1 << (shift - 1), **loops))
            cp.append(AluInsn(alu_op=AluOp.SHR, use_imm=True, imm=shift, **loops))
        cp.append(AluInsn(alu_op=AluOp.MAX, use_imm=True, imm=clip[0], **loops))
        cp.append(AluInsn(alu_op=AluOp.MIN, use_imm=True, imm=clip[1], push_next=True, **loops))
        computes.append(cp)
        stores.append(store_tile(r_out.element(Mem.OUT, c), par * acc_half, tiles[t], toc, th, H, W))

    insns = tile_stream(r_uop.element(Mem.UOP, c), len(uops), loads, computes, stores)
    plan = TilePlan(toc, th, _blocks(CB, toc), _blocks(H, th), 0, 2)
    return CompiledLayer(VtaProgram(insns, dram.image(), dram.regions, c), (1, ch, H, W), 0, plan)
