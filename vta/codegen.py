"""Code generation for int8 Conv, Gemm/MatMul and residual Add layers on VTA.

`conv2d`, `gemm` and `add` take plain numpy arrays (int8 activations and weights, int32 bias) and the
layer's attributes, and return a `CompiledLayer`: the instruction stream, the micro-ops and the
DRAM image (packed input NCHW1n16c, weights OIHW16o16i, bias, output), ready for the simulator,
the lint and the cycle model. Requantisation is `clip((acc + bias + 2^(shift-1)) >> shift)`,
the rounding constant folded into the bias, so the ALU runs ADD, SHR, MAX, MIN per output vector.
A per-output-channel shift (an array) is loaded into the accumulators beside the bias and applied
with a register-operand SHR: the HLS ALU (`vta.cc`) shifts each lane by the low bits of the
`src` lane, so amounts 0..15 behave as the immediate form; the lint checks the loaded values.

Tiling: output channels in groups of `toc` 16-channel blocks (a group's weights fill one half of
WGT), output rows in tiles of `th` rows at full width (their accumulators fill one half of ACC),
and each tile's input rows in steps of `icc` input-channel blocks (one half of INP; several steps
accumulate into one tile when all channels do not fit). The halves alternate, so the load module
fetches step i+1 while compute works on step i and store drains the previous tile; the token
queues carry "INP half free" (compute→load), "step loaded" (load→compute), "tile ready"
(compute→store) and "ACC half free" (store→compute). A group's weights are fetched in pieces
beside the previous group's input, into the other WGT half. Micro-op kernels are unrolled per
(INP half, ACC half, WGT half, channel step, tap); when they overflow the UOP buffer, each group
reloads its WGT half's set.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..compiler.diagnostics import UsageError
from .isa import DEFAULT, AluInsn, AluOp, FinishInsn, GemmInsn, Mem, MemInsn, Opcode, VtaConfig, encode_uops
from .program import DramBuilder, VtaProgram
from .tiles import output_tiles, store_tile

BIAS_SLOTS = 32  # accumulator entries kept for one group's bias (and as many for its shifts)


@dataclass(frozen=True)
class TilePlan:
    toc: int  # output-channel blocks per group
    th: int  # output rows per tile
    groups: int
    tiles_per_group: int
    estimate: int  # cycles the planner expects
    icc: int = 0  # input-channel blocks per load step (all of them unless they do not fit one INP half)


@dataclass
class CompiledLayer:
    program: VtaProgram
    out_shape: tuple[int, int, int, int]  # N, C, H, W of the int8 result
    macs: int  # multiply-accumulates of the layer itself (no channel padding)
    plan: TilePlan
    unpack: object = field(repr=False, default=None)

    def output(self) -> np.ndarray:
        """The result in the DRAM image, unpacked to NCHW int8 (after `simulate`)."""
        n, c, h, w = self.out_shape
        packed = self.program.read("out")  # (OCB, H, W, 16)
        y = packed.transpose(0, 3, 1, 2).reshape(-1, h, w)[:c][None]
        return self.unpack(y) if self.unpack else y


def _blocks(n: int, block: int) -> int:
    return -(-n // block)


def pack_activation(x: np.ndarray, block: int = 16) -> np.ndarray:
    """(1, C, H, W) → NCHW1n16c without the unit batch axes: (C/16, H, W, 16), channels zero-padded."""
    _, c, h, w = x.shape
    cb = _blocks(c, block)
    xp = np.zeros((cb * block, h, w), np.int8)
    xp[:c] = x[0]
    return xp.reshape(cb, block, h, w).transpose(0, 2, 3, 1).copy()


def pack_weight(w: np.ndarray, block: int = 16) -> np.ndarray:
    """(O, C, KH, KW) → OIHW16o16i: (O/16, C/16, KH, KW, 16 out, 16 in), zero-padded."""
    o, c, kh, kw = w.shape
    ob, ib = _blocks(o, block), _blocks(c, block)
    wp = np.zeros((ob * block, ib * block, kh, kw), np.int8)
    wp[:o, :c] = w
    return wp.reshape(ob, block, ib, block, kh, kw).transpose(0, 2, 4, 5, 1, 3).copy()


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *, stride: int = 1,
           pads: tuple[int, int, int, int] = (0, 0, 0, 0), shift: int | np.ndarray = 0,
           clip: tuple[int, int] = (-128, 127), config: VtaConfig = DEFAULT) -> CompiledLayer:
    """An int8 Conv (groups 1, dilation 1) with bias, requantisation by `shift` and clip to `clip`.

    `shift` is one amount or one per output channel (O,); equal amounts use the immediate SHR.

    `x` is (1, C, H, W) int8, `w` (O, C, KH, KW) int8, `bias` (O,) int32; `pads` are ONNX's
    (top, left, bottom, right). ReLU is clip (0, 127); ONNX Clip gives its own int8 bounds.
    """
    x, w = np.asarray(x), np.asarray(w)
    if x.dtype != np.int8 or w.dtype != np.int8:
        raise UsageError(f"VTA conv needs int8 activations and weights, not {x.dtype}/{w.dtype}")
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise UsageError(f"VTA conv: input {x.shape} and weight {w.shape} do not match (groups must be 1)")
    if x.shape[0] != 1:
        raise UsageError(f"VTA conv: batch {x.shape[0]} not supported (BATCH=1 hardware; split the batch)")
    if stride not in (1, 2):
        raise UsageError(f"VTA conv: stride {stride} not supported (1 or 2)")
    shift = _shift_amounts(shift, w.shape[0])
    lo, hi = clip
    if not -128 <= lo <= hi <= 127:
        raise UsageError(f"VTA clip bounds {clip} must lie in -128..127")
    if any(p < 0 or p > 15 for p in pads):
        raise UsageError(f"VTA conv: pads {pads} outside 0..15 (4-bit LOAD padding)")
    o = w.shape[0]
    bias = np.zeros(o, np.int32) if bias is None else np.asarray(bias, dtype=np.int64)
    if bias.shape != (o,):
        raise UsageError(f"VTA conv: bias shape {bias.shape}, expected ({o},)")
    return _Conv(x, w, bias, stride, pads, shift, clip, config).compile()


def _shift_amounts(shift, channels: int) -> int | np.ndarray:
    """One int when every channel shifts alike (immediate SHR), else the (channels,) int32 array."""
    arr = np.asarray(shift)
    if arr.ndim and arr.shape != (channels,):
        raise UsageError(f"VTA requantisation: {arr.shape} shifts for {channels} output channels")
    if np.any(arr < 0) or np.any(arr > 15):
        raise UsageError(f"VTA requantisation shift {arr.min()}..{arr.max()} outside 0..15 (the portable SHR range)")
    if arr.ndim == 0 or np.all(arr == arr.reshape(-1)[0]):
        return int(arr.reshape(-1)[0])
    return arr.astype(np.int32)


def gemm(a: np.ndarray, w: np.ndarray, bias: np.ndarray | None = None, *, shift: int | np.ndarray = 0,
         clip: tuple[int, int] = (-128, 127), config: VtaConfig = DEFAULT) -> CompiledLayer:
    """Y = clip(((A · Wᵀ + bias) + 2^(shift-1)) >> shift) for int8 A (M, K) and W (N, K).

    Runs as a 1x1 convolution whose "pixels" are the rows of A, laid out W' ≤ 64 per row.
    A single row is computed twice when N ≤ 16: one accumulator written on consecutive cycles is a
    hazard on the hardware.
    """
    a, w = np.asarray(a), np.asarray(w)
    if a.ndim != 2 or w.ndim != 2 or a.shape[1] != w.shape[1]:
        raise UsageError(f"VTA gemm: A {a.shape} and W {w.shape} do not match (W is (N, K))")
    m = a.shape[0]
    rows = max(m, 2)
    width = min(rows, 64)
    height = _blocks(rows, width)
    ap = np.zeros((height * width, a.shape[1]), a.dtype)
    ap[:m] = a
    x = ap.T.reshape(1, a.shape[1], height, width)
    layer = conv2d(x, w[:, :, None, None], bias, shift=shift, clip=clip, config=config)
    layer.macs = m * w.shape[0] * w.shape[1]
    layer.unpack = lambda y: y[0].reshape(w.shape[0], -1)[:, :m].T
    return layer


def add(a: np.ndarray, b: np.ndarray, *, shift_a: int = 0, shift_b: int = 0, shift: int = 0,
        clip: tuple[int, int] = (-128, 127), config: VtaConfig = DEFAULT) -> CompiledLayer:
    """A residual Add of two int8 NCHW tensors: clip(((a << shift_a) + (b << shift_b) + 2^(shift-1)) >> shift).

    VTA's ALU only reads accumulators, and LOAD ACC reads int32 from DRAM; so the two int8
    operands go through the GEMM core with fixed weight blocks 2^shift_a·I and 2^shift_b·I
    (exact: int8 products, int32 sums); see `eltwise`. `shift_a`/`shift_b` (0..6, so the weight
    stays int8) align two power-of-two scales.
    """
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 4:
        raise UsageError(f"VTA add: operand shapes {a.shape} and {b.shape} differ")
    if not (0 <= shift_a <= 6 and 0 <= shift_b <= 6):
        raise UsageError(f"VTA add: operand shifts {shift_a}, {shift_b} outside 0..6 (weights must stay int8)")
    if a.dtype != np.int8 or b.dtype != np.int8 or a.shape[0] != 1:
        raise UsageError(f"VTA add needs two int8 tensors of batch 1, not {a.dtype}/{b.dtype} {a.shape}")
    if not 0 <= shift <= 15:
        raise UsageError(f"VTA requantisation shift {shift} outside 0..15 (the portable SHR range)")
    if not -128 <= clip[0] <= clip[1] <= 127:
        raise UsageError(f"VTA clip bounds {clip} must lie in -128..127")
    from .eltwise import compile_add
    return compile_add(a, b, shift_a, shift_b, shift, clip, config)


class _Conv:
    def __init__(self, x, w, bias, stride, pads, shift, clip, config: VtaConfig) -> None:
        self.c = config
        blk = config.block
        _, self.C, self.H, self.W = x.shape
        self.O, _, self.KH, self.KW = w.shape
        self.s = stride
        self.pt, self.pl, self.pb, self.pr = pads
        self.ICB, self.OCB = _blocks(self.C, blk), _blocks(self.O, blk)
        self.Ho = (self.H + self.pt + self.pb - self.KH) // stride + 1
        self.Wo = (self.W + self.pl + self.pr - self.KW) // stride + 1
        if self.Ho < 1 or self.Wo < 1:
            raise UsageError(f"VTA conv: kernel {self.KH}x{self.KW} larger than the padded input")
        self.Wp = self.W + self.pl + self.pr
        self.per_channel = isinstance(shift, np.ndarray)
        self.shift, self.clip = (0 if self.per_channel else shift), clip
        self.x, self.w = x, w
        amounts = np.zeros(self.OCB * blk, np.int64)
        amounts[: self.O] = shift
        rounding = np.where(amounts > 0, np.left_shift(1, np.maximum(amounts - 1, 0)), 0)
        self.has_shift = bool(np.any(amounts))
        self.shifts = amounts.astype(np.int32).reshape(self.OCB, blk)
        b = rounding.copy()
        b[: self.O] += bias
        self.bias = b.astype(np.uint32).view(np.int32).reshape(self.OCB, blk)  # wraps like the ALU
        self.macs = self.Ho * self.Wo * self.O * self.C * self.KH * self.KW
        self.inp_half = config.depth[Mem.INP] // 2
        self.wgt_half = config.depth[Mem.WGT] // 2
        reserved = BIAS_SLOTS * (2 if self.per_channel else 1)
        self.acc_half = (config.depth[Mem.ACC] - reserved) // 2
        self.bias_base = 2 * self.acc_half
        self.shift_base = self.bias_base + BIAS_SLOTS
        self.alu_sets = 4 if self.per_channel else 2

    # ---- planning -----------------------------------------------------------------------------
    def _rows(self, th: int) -> int:
        return (th - 1) * self.s + self.KH

    def _chunk(self, th: int) -> int:
        """Input-channel blocks per load step: as many as fit one INP half (all of them if they fit)."""
        return min(self.ICB, self.inp_half // (self._rows(th) * self.Wp))

    def _uop_count(self, toc: int, th: int) -> tuple[int, int, int]:
        """(ALU micro-ops, GEMM micro-ops of one WGT half's kernels, number of WGT halves used)."""
        groups, tiles = _blocks(self.OCB, toc), _blocks(self.Ho, th)
        chunks = _blocks(self.ICB, self._chunk(th))
        wpars = 2 if groups > 1 else 1
        combos = 2 if chunks == 1 else (2 if chunks % 2 == 0 else 4) * chunks
        combos = min(combos, _blocks(groups, wpars) * tiles * chunks)
        return self.alu_sets * toc * self.Wo, combos * self.KH * self.KW * toc * self.Wo, wpars

    def _uop_reload(self, toc: int, th: int) -> bool:
        """Whether the UOP buffer cannot hold every kernel, so each group reloads its WGT half's set."""
        alu, per_set, wpars = self._uop_count(toc, th)
        return alu + wpars * per_set > self.c.depth[Mem.UOP]

    def _fits(self, toc: int, th: int) -> bool:
        taps = self.KH * self.KW
        rows = self._rows(th)
        last = self.OCB - (_blocks(self.OCB, toc) - 1) * toc  # blocks in the last group
        return (self._chunk(th) >= 1 and toc * th * self.Wo <= self.acc_half
                and toc * self.ICB * taps <= self.wgt_half and toc <= BIAS_SLOTS and last * self.Wo >= 2
                and sum(self._uop_count(toc, th)[:2]) <= self.c.depth[Mem.UOP] and rows * self.Wp < 2048
                and self.s * self.Wp < 2048 and self.Wo < 2048 and th * self.Wo < 1 << 16)

    def _estimate(self, toc: int, th: int) -> int:
        e, bus = self.c.elem_bytes, self.c.bus_bytes
        groups, tiles = _blocks(self.OCB, toc), _blocks(self.Ho, th)
        chunks = _blocks(self.ICB, self._chunk(th))
        rows = self._rows(th)
        acc = toc * th * self.Wo
        n_alu = 3 + self.has_shift
        issue = 1  # cycles per instruction, as in the cycle model
        compute = acc * (self.KH * self.KW * self.ICB + 1 + n_alu) + toc * e[Mem.ACC] // bus
        compute += issue * (self.KH * self.KW * chunks + 2 + n_alu)
        load = self.ICB * (rows * self.Wp * e[Mem.INP] // bus + issue)
        wload = toc * self.ICB * self.KH * self.KW * e[Mem.WGT] // bus
        store = acc * e[Mem.OUT] // bus + issue * toc
        if self._uop_reload(toc, th):
            compute += self._uop_count(toc, th)[1] * e[Mem.UOP] // bus // tiles
        per_group = max(tiles * compute, tiles * load + wload, tiles * store)
        return groups * per_group + load // chunks + wload + store + acc * (1 + n_alu)  # + fill and drain

    def plan(self) -> TilePlan:
        plans = [TilePlan(toc, th, _blocks(self.OCB, toc), _blocks(self.Ho, th), self._estimate(toc, th),
                          self._chunk(th))
                 for toc in range(1, min(self.OCB, BIAS_SLOTS) + 1) for th in range(1, self.Ho + 1)
                 if self._fits(toc, th)]
        best = None
        if plans:  # within 1 % of the fastest, the fewest steps: fewer instructions, less to simulate
            fastest = min(p.estimate for p in plans)
            best = min((p for p in plans if p.estimate <= fastest * 1.01),
                       key=lambda p: (p.groups * p.tiles_per_group * _blocks(self.ICB, p.icc), p.estimate))
        if best is None and self.Wo * self.OCB < 2:
            raise UsageError(
                f"VTA conv {self.C}->{self.O} with one output column and ≤ 16 output channels writes one "
                f"accumulator on consecutive cycles (a hazard on the hardware); pad the width or the channels")
        if best is None:
            raise UsageError(
                f"VTA conv {self.C}->{self.O} {self.KH}x{self.KW} on {self.H}x{self.W}: a tile of one "
                f"output row does not fit the on-chip buffers (INP/ACC/WGT halves, or its micro-op "
                f"kernels the UOP buffer); width tiling is not implemented")
        return best

    # ---- emission -----------------------------------------------------------------------------
    def compile(self) -> CompiledLayer:
        p = self.plan()
        toc, th, icc, c = p.toc, p.th, p.icc, self.c
        taps, Wo = self.KH * self.KW, self.Wo
        R = self._rows(th)
        chunks = _blocks(self.ICB, icc)
        dram = DramBuilder()
        r_inp = dram.add("inp", pack_activation(self.x, c.block))
        r_wgt = dram.add("wgt", pack_weight(self.w, c.block))
        r_bias = dram.add("bias", self.bias)
        r_shift = dram.add("shift", self.shifts) if self.per_channel else None

        # steps: (group, first output row, rows, output blocks, input-chunk); a tile is one
        # (group, rows) pair and owns an ACC half; each step owns an INP half
        tiles = output_tiles(self.OCB, toc, self.Ho, th)
        steps = [(t, ch) for t in range(len(tiles)) for ch in range(chunks)]

        # micro-ops: ALU/reset per ACC parity; GEMM per (INP parity, ACC parity, WGT parity, chunk, tap)
        obl, col = np.meshgrid(np.arange(toc), np.arange(Wo), indexing="ij")
        obl, col = obl.reshape(-1), col.reshape(-1)
        alu_at, gemm_at = {}, {}
        alu_parts = [(par * self.acc_half + obl * th * Wo + col, self.bias_base + obl, np.zeros_like(obl))
                     for par in (0, 1)]
        if self.per_channel:  # SHR reads ACC[shift_base + block]
            alu_parts += [(par * self.acc_half + obl * th * Wo + col, self.shift_base + obl, np.zeros_like(obl))
                          for par in (0, 1)]
        for par in (0, 1):
            alu_at[par] = par * obl.size
        n_alu = self.alu_sets * obl.size
        sets: dict[int, list] = {0: [], 1: []}  # GEMM kernels per WGT half, offsets relative to the set
        rel: dict = {}
        for si, (t, ch) in enumerate(steps):
            g = tiles[t][0]
            key = (si % 2, t % 2, g % 2 if p.groups > 1 else 0, ch)
            if key in rel:
                continue
            ipar, apar, wpar, _ = key
            rel[key] = sum(a.size for a, _, _ in sets[wpar])
            for ky in range(self.KH):
                for kx in range(self.KW):
                    sets[wpar].append((apar * self.acc_half + obl * th * Wo + col,
                                       ipar * self.inp_half + ky * self.Wp + kx + col * self.s,
                                       wpar * self.wgt_half + obl * self.ICB * taps + ch * icc * taps
                                       + ky * self.KW + kx))
        size = {w: sum(a.size for a, _, _ in sets[w]) for w in sets}
        reload = n_alu + size[0] + size[1] > c.depth[Mem.UOP]
        set_base = {0: n_alu, 1: n_alu if reload else n_alu + size[0]}
        for key, off in rel.items():
            gemm_at[key] = set_base[key[2]] + off

        def packed(parts):
            return encode_uops(*(np.concatenate([p_[i] for p_ in parts]) for i in range(3)), c)

        uops = packed(alu_parts + sets[0] + ([] if reload else sets[1]))
        r_uop = dram.add("uop", uops)
        r_uop1 = dram.add("uop1", packed(sets[1])) if reload and sets[1] else None
        r_out = dram.reserve("out", (self.OCB, self.Ho, Wo, c.block), np.int8)

        # group g's weights go to WGT half g % 2, free once group g-2 is done: the load module fetches
        # them in pieces beside the input of group g-1's steps 2.., so they arrive while g-1 computes
        first_step = {}
        for si, (t, ch) in enumerate(steps):
            first_step.setdefault(tiles[t][0], si)
        early_weights: dict[int, list] = {}
        for g, fs in first_step.items():
            at = fs if g == 0 else min(first_step[g - 1] + 1, fs)
            count = min(toc, self.OCB - g * toc) * self.ICB * taps
            cuts = np.linspace(0, count, min(fs - at + 1, count) + 1).astype(int)
            for k, (b0, b1) in enumerate(zip(cuts[:-1], cuts[1:])):
                early_weights.setdefault(at + k, []).append(
                    MemInsn(opcode=Opcode.LOAD, mem_type=Mem.WGT, sram_base=(g % 2) * self.wgt_half + b0,
                            dram_base=r_wgt.element(Mem.WGT, c) + g * toc * self.ICB * taps + b0,
                            y_size=1, x_size=b1 - b0, x_stride=b1 - b0))
        loads, computes, stores = [], [], []
        na_of = lambda tc: tc * Wo
        for si, (t, ch) in enumerate(steps):
            g, oy0, th_t, tc = tiles[t]
            ib0, nib = ch * icc, min(icc, self.ICB - ch * icc)
            first_chunk, last_chunk = ch == 0, ch == chunks - 1
            # load module: weights (once per group), then this chunk's input-channel blocks
            ld = list(early_weights.get(si, []))
            iy_lo = oy0 * self.s - self.pt
            iy_hi = iy_lo + (th_t - 1) * self.s + self.KH
            v_lo, v_hi = max(iy_lo, 0), min(iy_hi, self.H)
            for j in range(nib):
                cb = ib0 + j
                ld.append(MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP,
                                  sram_base=(si % 2) * self.inp_half + j * R * self.Wp,
                                  dram_base=r_inp.element(Mem.INP, c) + (cb * self.H + v_lo) * self.W,
                                  y_size=v_hi - v_lo, x_size=self.W, x_stride=self.W,
                                  y_pad_0=v_lo - iy_lo, y_pad_1=iy_hi - v_hi,
                                  x_pad_0=self.pl, x_pad_1=self.pr))
            ld[0] = replace(ld[0], pop_next=si >= 2)
            ld[-1] = replace(ld[-1], push_next=True)
            loads.append(ld)

            # compute module
            cp = []
            par, a0, na = t % 2, alu_at[t % 2], na_of(tc)
            loops = dict(iter_out=th_t, iter_in=1, dst_factor_out=Wo)
            if first_chunk:
                if oy0 == 0 and reload and g > 0:  # this group's WGT half kernels
                    src_region, skip = (r_uop, n_alu) if g % 2 == 0 else (r_uop1, 0)
                    cp.append(MemInsn(opcode=Opcode.LOAD, mem_type=Mem.UOP, sram_base=n_alu,
                                      dram_base=src_region.element(Mem.UOP, c) + skip, y_size=1,
                                      x_size=size[g % 2], x_stride=size[g % 2]))
                if oy0 == 0:
                    cp.append(MemInsn(opcode=Opcode.LOAD, mem_type=Mem.ACC, sram_base=self.bias_base,
                                      dram_base=r_bias.element(Mem.ACC, c) + g * toc, y_size=1, x_size=tc,
                                      x_stride=tc))
                    if self.per_channel:
                        cp.append(MemInsn(opcode=Opcode.LOAD, mem_type=Mem.ACC, sram_base=self.shift_base,
                                          dram_base=r_shift.element(Mem.ACC, c) + g * toc, y_size=1, x_size=tc,
                                          x_stride=tc))
                cp.append(GemmInsn(reset=True, uop_bgn=a0, uop_end=a0 + na, pop_next=t >= 2, **loops))
            u_base = gemm_at[si % 2, par, g % 2 if p.groups > 1 else 0, ch]
            for tap in range(taps):
                u0 = u_base + tap * toc * Wo
                cp.append(GemmInsn(uop_bgn=u0, uop_end=u0 + na, iter_out=th_t, iter_in=nib,
                                   dst_factor_out=Wo, src_factor_out=self.s * self.Wp,
                                   src_factor_in=R * self.Wp, wgt_factor_in=taps, pop_prev=tap == 0))
            cp[-1] = replace(cp[-1], push_prev=True)
            if last_chunk:
                cp.append(AluInsn(alu_op=AluOp.ADD, uop_bgn=a0, uop_end=a0 + na, **loops))
                if self.per_channel:
                    s0 = a0 + 2 * obl.size
                    cp.append(AluInsn(alu_op=AluOp.SHR, use_imm=False, uop_bgn=s0, uop_end=s0 + na, **loops))
                elif self.shift:
                    cp.append(AluInsn(alu_op=AluOp.SHR, use_imm=True, imm=self.shift, uop_bgn=a0,
                                      uop_end=a0 + na, **loops))
                cp.append(AluInsn(alu_op=AluOp.MAX, use_imm=True, imm=self.clip[0], uop_bgn=a0,
                                  uop_end=a0 + na, **loops))
                cp.append(AluInsn(alu_op=AluOp.MIN, use_imm=True, imm=self.clip[1], uop_bgn=a0,
                                  uop_end=a0 + na, push_next=True, **loops))
            computes.append(cp)

            st = []
            if last_chunk:
                st = store_tile(r_out.element(Mem.OUT, c), par * self.acc_half, tiles[t], toc, th, self.Ho, Wo)
            stores.append(st)

        insns = [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.UOP, dram_base=r_uop.element(Mem.UOP, c),
                         y_size=1, x_size=len(uops), x_stride=len(uops))]
        insns += loads[0]
        for si in range(len(steps)):
            if si + 1 < len(steps):
                insns += loads[si + 1]
            insns += computes[si] + stores[si]
        # the last steps' "INP half free" and the last tiles' "ACC half free" tokens nobody waited for
        insns += [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.INP, pop_next=True) for _ in range(min(len(steps), 2))]
        insns += [MemInsn(opcode=Opcode.LOAD, mem_type=Mem.UOP, pop_next=True) for _ in range(min(len(tiles), 2))]
        insns.append(FinishInsn())
        program = VtaProgram(insns, dram.image(), dram.regions, c)
        return CompiledLayer(program, (1, self.O, self.Ho, Wo), self.macs, p)

