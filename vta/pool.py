"""Max-pooling on VTA: the int8 window maximum of an NCHW tensor, exactly.

The ALU reads only accumulators, so each tile's input rows go INP → ACC through the GEMM core
with the identity weight block (an exact copy), and the output accumulators are the first tap
(reset, then ALU ADD of that tap) followed by one register-operand ALU MAX per further tap,
each a kernel of `W_out` micro-ops with the output rows in `iter_out` and the channel blocks in
`iter_in`. LOAD pads with zeros, which is not the window maximum's neutral value, so after the
copy an ALU MIN with -128 sets the padded columns and rows to -128 (exact: no int8 value is below
it). Tiles, halves and tokens follow the residual add (`eltwise`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..compiler.diagnostics import UsageError
from .isa import DEFAULT, AluInsn, AluOp, GemmInsn, Mem, MemInsn, Opcode, VtaConfig, encode_uops
from .tiles import output_tiles, store_tile, tile_stream
from .program import DramBuilder, VtaProgram


def maxpool(x: np.ndarray, kernel: tuple[int, int], stride: int, pads: tuple[int, int, int, int] = (0, 0, 0, 0), *,
            config: VtaConfig = DEFAULT):
    """MaxPool of int8 `x` (1, C, H, W), ONNX `pads` (top, left, bottom, right), equal strides."""
    from .codegen import CompiledLayer, TilePlan, _blocks, pack_activation

    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim != 4 or x.shape[0] != 1:
        raise UsageError(f"VTA max-pool needs one int8 NCHW sample, not {x.dtype} {x.shape}")
    if any(p < 0 or p > 15 for p in pads):
        raise UsageError(f"VTA max-pool: pads {pads} outside 0..15 (4-bit LOAD padding)")
    c, blk = config, config.block
    _, ch, H, W = x.shape
    kh, kw = kernel
    pt, pl, pb, pr = pads
    s = stride
    Wp = W + pl + pr
    Ho, Wo = (H + pt + pb - kh) // s + 1, (Wp - kw) // s + 1
    if Ho < 1 or Wo < 1 or s < 1:
        raise UsageError(f"VTA max-pool: kernel {kh}x{kw} larger than the padded input")
    CB = _blocks(ch, blk)
    inp_half, acc_half = c.depth[Mem.INP] // 2, c.depth[Mem.ACC] // 2
    taps = kh * kw
    best = None
    for toc in range(1, CB + 1):
        for th in range(1, Ho + 1):
            R = (th - 1) * s + kh
            groups, tiles = _blocks(CB, toc), _blocks(Ho, th)
            last_c, last_h = CB - (groups - 1) * toc, Ho - (tiles - 1) * th
            if (toc * R * Wp <= inp_half and toc * R * Wp + toc * th * Wo <= acc_half and last_c * last_h * Wo >= 2
                    and s * Wp < 2048 and R * Wp < 2048 and th * Wo < 2048
                    and 2 * (3 * Wp + taps * Wo) <= c.depth[Mem.UOP]):
                if best is None or groups * tiles < best[2]:
                    best = (toc, th, groups * tiles)
    if best is None:
        raise UsageError(f"VTA max-pool {kh}x{kw} on {ch}x{H}x{W}: no tile fits the on-chip buffers without an "
                         "accumulator hazard (width tiling is not implemented)")
    toc, th, _ = best
    R = (th - 1) * s + kh
    in_size = toc * R * Wp

    dram = DramBuilder()
    r_x = dram.add("inp", pack_activation(x, blk))
    r_w = dram.add("wgt", np.eye(blk, dtype=np.int8)[None])
    cols, ox = np.arange(Wp), np.arange(Wo)
    at, parts = {}, []
    for par in (0, 1):
        at[par, "copy"] = sum(len(d) for d, _ in parts)
        parts.append((par * acc_half + cols, par * inp_half + cols))
        for ky in range(kh):
            for kx in range(kw):
                at[par, ky * kw + kx] = sum(len(d) for d, _ in parts)
                parts.append((par * acc_half + in_size + ox, par * acc_half + ky * Wp + kx + ox * s))
    pad_cols = np.r_[np.arange(pl), np.arange(pl + W, Wp)]
    for par in (0, 1):
        at[par, "pad-cols"] = sum(len(d) for d, _ in parts)
        parts.append((par * acc_half + pad_cols, np.zeros_like(pad_cols)))
    bottom = {}  # first padded bottom row of a tile → its kernel of one full row
    for oy0 in range(0, Ho, th):
        th_t = min(th, Ho - oy0)
        iy_hi = oy0 * s - pt + (th_t - 1) * s + kh
        if iy_hi > H:
            row = (th_t - 1) * s + kh - (iy_hi - H)
            for par in (0, 1):
                if (par, row) not in bottom:
                    bottom[par, row] = sum(len(d) for d, _ in parts)
                    parts.append((par * acc_half + row * Wp + cols, np.zeros_like(cols)))
    dst = np.concatenate([d for d, _ in parts])
    uops = encode_uops(dst, np.concatenate([v for _, v in parts]), np.zeros_like(dst), c)
    r_uop = dram.add("uop", uops)
    r_out = dram.reserve("out", (CB, Ho, Wo, blk), np.int8)

    tiles = output_tiles(CB, toc, Ho, th)
    loads, computes, stores = [], [], []
    for t, (g, oy0, th_t, tc) in enumerate(tiles):
        par = t % 2
        ld = [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.WGT, dram_base=r_w.element(Mem.WGT, c), y_size=1,
                      x_size=1, x_stride=1)] if t == 0 else []
        iy_lo = oy0 * s - pt
        iy_hi = iy_lo + (th_t - 1) * s + kh
        v_lo, v_hi = max(iy_lo, 0), min(iy_hi, H)
        for k in range(tc):
            ld.append(MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP, sram_base=par * inp_half + k * R * Wp,
                              dram_base=r_x.element(Mem.INP, c) + ((g * toc + k) * H + v_lo) * W,
                              y_size=v_hi - v_lo, x_size=W, x_stride=W, y_pad_0=v_lo - iy_lo, y_pad_1=iy_hi - v_hi,
                              x_pad_0=pl, x_pad_1=pr))
        ld[0] = replace(ld[0], pop_next=t >= 2)
        ld[-1] = replace(ld[-1], push_next=True)
        loads.append(ld)
        rows = tc * R
        copy = dict(uop_bgn=at[par, "copy"], uop_end=at[par, "copy"] + Wp, iter_out=rows, dst_factor_out=Wp)
        cp = [GemmInsn(reset=True, pop_next=t >= 2, **copy),
              GemmInsn(src_factor_out=Wp, pop_prev=True, push_prev=True, **copy)]
        low = dict(alu_op=AluOp.MIN, use_imm=True, imm=-128)
        if pad_cols.size:
            u = at[par, "pad-cols"]
            cp.append(AluInsn(uop_bgn=u, uop_end=u + pad_cols.size, iter_out=rows, dst_factor_out=Wp, **low))
        if v_lo > iy_lo:  # top rows: the copy kernel's first rows
            u = at[par, "copy"]
            cp.append(AluInsn(uop_bgn=u, uop_end=u + Wp, iter_out=v_lo - iy_lo, iter_in=tc, dst_factor_out=Wp,
                              dst_factor_in=R * Wp, **low))
        if iy_hi > v_hi:
            u = bottom[par, (th_t - 1) * s + kh - (iy_hi - v_hi)]
            cp.append(AluInsn(uop_bgn=u, uop_end=u + Wp, iter_out=iy_hi - v_hi, iter_in=tc, dst_factor_out=Wp,
                              dst_factor_in=R * Wp, **low))
        for tap in range(taps):
            loops = dict(uop_bgn=at[par, tap], uop_end=at[par, tap] + Wo, iter_out=th_t, iter_in=tc,
                         dst_factor_out=Wo, dst_factor_in=th * Wo, src_factor_out=s * Wp, src_factor_in=R * Wp)
            if tap == 0:
                cp.append(GemmInsn(reset=True, **{k: v for k, v in loops.items() if not k.startswith("src")}))
            cp.append(AluInsn(alu_op=AluOp.ADD if tap == 0 else AluOp.MAX, **loops))
        cp[-1] = replace(cp[-1], push_next=True)
        computes.append(cp)
        stores.append(store_tile(r_out.element(Mem.OUT, c), par * acc_half + in_size, tiles[t], toc, th, Ho, Wo))

    insns = tile_stream(r_uop.element(Mem.UOP, c), len(uops), loads, computes, stores)
    plan = TilePlan(toc, th, _blocks(CB, toc), _blocks(Ho, th), 0, 1)
    return CompiledLayer(VtaProgram(insns, dram.image(), dram.regions, c), (1, ch, Ho, Wo), 0, plan)
