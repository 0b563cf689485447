"""The pieces every double-buffered VTA layer program shares: its tile grid, the STORE block that hands a
finished tile back, and the instruction stream that interleaves tile t+1's loads with tile t's compute."""

from __future__ import annotations

from dataclasses import replace

from .isa import FinishInsn, Mem, MemInsn, Opcode


def output_tiles(blocks: int, toc: int, rows: int, th: int) -> list[tuple[int, int, int, int]]:
    """(group, first output row, rows, channel blocks) of every tile: groups of `toc` of the `blocks`
    16-channel blocks, `th` output rows at a time."""
    return [(g, oy0, min(th, rows - oy0), min(toc, blocks - g * toc))
            for g in range(-(-blocks // toc)) for oy0 in range(0, rows, th)]


def store_tile(out_base: int, acc_base: int, tile: tuple[int, int, int, int], toc: int, th: int, rows: int,
               width: int) -> list[MemInsn]:
    """The STOREs of one tile's channel blocks from ACC (at `acc_base`, `th` rows of `width` per block) to the
    output at element `out_base`; the first pops compute's "tile ready", the last pushes "ACC half free"."""
    g, oy0, th_t, tc = tile
    st = [MemInsn(opcode=Opcode.STORE, mem_type=Mem.OUT, sram_base=acc_base + k * th * width,
                  dram_base=out_base + ((g * toc + k) * rows + oy0) * width,
                  y_size=1, x_size=th_t * width, x_stride=th_t * width) for k in range(tc)]
    st[0] = replace(st[0], pop_prev=True)
    st[-1] = replace(st[-1], push_prev=True)
    return st


def tile_stream(uop_base: int, uop_count: int, loads: list, computes: list, stores: list) -> list:
    """The instruction stream of a double-buffered tile loop: the micro-ops, tile 0's loads, then per
    tile t the loads of t+1 beside the compute and store of t, and the NOPs that drain the last tokens."""
    insns = [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.UOP, dram_base=uop_base, y_size=1,
                     x_size=uop_count, x_stride=uop_count)] + loads[0]
    for t in range(len(computes)):
        if t + 1 < len(loads):
            insns += loads[t + 1]
        insns += computes[t] + stores[t]
    left = min(len(computes), 2)
    insns += [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP, pop_next=True) for _ in range(left)]
    insns += [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.UOP, pop_next=True) for _ in range(left)]
    insns.append(FinishInsn())
    return insns
