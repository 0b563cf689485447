"""A functional VTA simulator: bit-exact results of a program on its DRAM image.

Each instruction runs as a few vectorised numpy operations. The three modules are interleaved
in program order as far as the dependency tokens allow (a module whose next instruction would
pop an empty queue, or push into a full one, waits), so a program that deadlocks or leaves
tokens behind on the hardware is refused here too. GEMM and ALU ADD wrap at 32 bits, SHR is
arithmetic, STORE keeps the low 8 bits of each accumulator lane.
"""

from __future__ import annotations

import contextlib

from dataclasses import dataclass, field

import numpy as np

from ..compiler.diagnostics import VerifyError
from .isa import DEFAULT, AluInsn, AluOp, FinishInsn, GemmInsn, Mem, MemInsn, Opcode, VtaConfig, decode_uops
from .modules import MODULES, QUEUES, invalid_bits, module_of, pops, pushes, split_streams
from .program import VtaProgram


@dataclass
class SimStats:
    gemm_uops: int = 0
    alu_uops: int = 0
    macs: int = 0
    load_bytes: dict = field(default_factory=lambda: {m.name: 0 for m in Mem})
    store_bytes: int = 0
    instructions: int = 0

    @property
    def dma_bytes(self) -> int:
        return sum(self.load_bytes.values()) + self.store_bytes


_EXACT_F32_BLOCKS = 64
_CACHE_ENTRIES = 256


def _wrap32(a: np.ndarray) -> np.ndarray:
    return a.astype(np.int64).astype(np.uint32).view(np.int32) if a.dtype != np.int32 else a


_blas = []  # one threadpoolctl controller: making one scans the loaded libraries (~0.3 ms a call)


def _single_threaded_blas():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return contextlib.nullcontext()
    if not _blas:
        _blas.append(ThreadpoolController())
    return _blas[0].limit(limits=1, user_api="blas")


class Simulator:
    """`reuse=True` (a runtime running one program per sample): running the same program object
    again replays its first run's schedule and keeps its micro-op index and GEMM batching caches.
    Exact as long as the program's instructions and its micro-op regions are not changed between
    runs (the runtime only rewrites the input regions)."""

    def __init__(self, config: VtaConfig = DEFAULT, *, reuse: bool = False) -> None:
        self.config = c = config
        self.reuse = reuse
        self._program: VtaProgram | None = None
        self._schedule: list[int] = []
        b, blk = c.batch, c.block
        if b != 1:
            raise VerifyError("the simulator implements BATCH=1 configurations only")
        self.inp = np.zeros((c.depth[Mem.INP], blk), np.int8)
        self.wgt = np.zeros((c.depth[Mem.WGT], blk, blk), np.int8)
        self.acc = np.zeros((c.depth[Mem.ACC], blk), np.int32)
        self.uop = np.zeros((3, c.depth[Mem.UOP]), np.int64)  # decoded dst, src, wgt
        self._wgt_f = np.zeros((c.depth[Mem.WGT], blk, blk), np.float32)  # weights, transposed [in][out]

    # ---- driver ------------------------------------------------------------------------------
    def run(self, program: VtaProgram) -> SimStats:
        """Execute `program`, writing its stores into `program.dram`.

        The batched GEMMs are many small matmuls: OpenBLAS's worker threads only cost time on them
        (10-100x on a loaded machine), so BLAS runs single-threaded here when threadpoolctl is
        installed."""
        with _single_threaded_blas():
            return self._run(program)

    def _run(self, program: VtaProgram) -> SimStats:
        insns, stats = program.insns, SimStats()
        self._views(program.dram)
        self._pending: list[tuple] = []
        self._uop_version = 0
        if self.reuse and program is self._program and len(self._schedule) == len(insns):
            for i in self._schedule:
                self._execute(i, insns[i], stats)
            self._flush()
            stats.instructions = len(insns)
            return stats
        self._program, self._schedule = None, []
        self._index_cache: dict = {}
        self._plan_cache: dict = {}
        self._in_bounds: set = set()
        order: list[int] = []
        known: dict = {}  # tiles repeat instructions: work out each distinct one's tokens once
        deps = []
        for i, insn in enumerate(insns):
            d = known.get(insn)
            if d is None:
                bad = invalid_bits(insn)
                if bad:
                    raise VerifyError(f"instruction {i}: the {module_of(insn)} module has no queue for {', '.join(bad)}")
                d = known[insn] = (tuple(pops(insn)), tuple(pushes(insn)))
            deps.append(d)
        streams = split_streams(insns)
        pos = {m: 0 for m in MODULES}
        queues = {q: 0 for q in QUEUES}
        depth = self.config.token_queue_depth
        finished = False
        while True:
            best = None
            for m in MODULES:
                stream = streams[m]
                if pos[m] < len(stream):
                    i = stream[pos[m]]
                    if best is not None and i > best:
                        continue
                    pop, push = deps[i]
                    if all(queues[q] > 0 for q in pop) and all(queues[q] < depth for q in push):
                        best, best_m = i, m
            if best is None:
                break
            pop, push = deps[best]
            for q in pop:
                queues[q] -= 1
            insn = insns[best]
            self._execute(best, insn, stats)
            order.append(best)
            for q in push:
                queues[q] += 1
            pos[best_m] += 1
            stats.instructions += 1
            if isinstance(insn, FinishInsn):
                finished = True
        self._flush()
        left = [m for m in MODULES if pos[m] < len(streams[m])]
        if left:
            waits = ", ".join(f"{m} at instruction {streams[m][pos[m]]}" for m in left)
            raise VerifyError(f"VTA program deadlocks: {waits} wait for tokens (queues {queues})")
        if not finished:
            raise VerifyError("VTA program has no FINISH instruction")
        full = {q: n for q, n in queues.items() if n}
        if full:
            raise VerifyError(f"VTA program ends with tokens left in its queues: {full}")
        if self.reuse:
            self._program, self._schedule = program, order
        return stats

    def _views(self, dram: np.ndarray) -> None:
        c = self.config
        self.dram = dram
        self._dv = {}
        for mem, lanes, dt in ((Mem.INP, (c.block,), np.int8), (Mem.WGT, (c.block, c.block), np.int8),
                               (Mem.ACC, (c.block,), np.int32), (Mem.UOP, (), np.uint32),
                               (Mem.OUT, (c.block,), np.int8)):
            e = c.elem_bytes[mem]
            n = dram.size // e
            self._dv[mem] = dram[: n * e].view(dt).reshape((n,) + lanes)

    # ---- instructions ------------------------------------------------------------------------
    def _execute(self, index: int, insn, stats: SimStats) -> None:
        if self._pending and not (isinstance(insn, GemmInsn) and not insn.reset) and not (
                isinstance(insn, MemInsn) and (insn.is_nop or insn.mem_type == Mem.UOP)):
            self._flush()
        try:
            if isinstance(insn, MemInsn):
                if insn.opcode == Opcode.LOAD:
                    self._load(insn, stats)
                else:
                    self._store(insn, stats)
            elif isinstance(insn, GemmInsn):
                self._gemm(insn, stats)
            elif isinstance(insn, AluInsn):
                self._alu(insn, stats)
        except IndexError as exc:
            raise VerifyError(f"instruction {index} ({type(insn).__name__}) addresses memory out of range: {exc}") from None

    @staticmethod
    def _dram_rows(view: np.ndarray, insn: MemInsn) -> np.ndarray:
        """The y_size x x_size elements a LOAD reads (or a STORE writes), x_stride apart, as a view."""
        last = insn.dram_base + (insn.y_size - 1) * insn.x_stride + insn.x_size
        if last > len(view):
            raise IndexError(f"DRAM element {last - 1} of {len(view)}")
        start = view[insn.dram_base:]
        return np.lib.stride_tricks.as_strided(
            start, (insn.y_size, insn.x_size) + view.shape[1:],
            (insn.x_stride * view.strides[0],) + view.strides, writeable=True)

    def _load(self, insn: MemInsn, stats: SimStats) -> None:
        if insn.is_nop:
            return
        mem = insn.mem_type
        src = self._dv[mem]
        data = self._dram_rows(src, insn)
        stats.load_bytes[mem.name] += data.nbytes
        if mem == Mem.UOP:
            n = data.size
            if insn.sram_base + n > self.uop.shape[1]:
                raise IndexError("UOP buffer")
            self.uop[:, insn.sram_base:insn.sram_base + n] = np.stack(decode_uops(data.reshape(-1), self.config))
            self._uop_version += 1
            return
        buf = {Mem.INP: self.inp, Mem.WGT: self.wgt, Mem.ACC: self.acc}[mem]
        xt = insn.x_pad_0 + insn.x_size + insn.x_pad_1
        yt = insn.y_pad_0 + insn.y_size + insn.y_pad_1
        if insn.sram_base + xt * yt > len(buf):
            raise IndexError(f"{mem.name} buffer: {insn.sram_base + xt * yt} > {len(buf)}")
        tile = buf[insn.sram_base:insn.sram_base + xt * yt].reshape((yt, xt) + buf.shape[1:])
        tile[...] = 0
        tile[insn.y_pad_0:insn.y_pad_0 + insn.y_size, insn.x_pad_0:insn.x_pad_0 + insn.x_size] = data
        if mem == Mem.WGT:
            self._wgt_f[insn.sram_base:insn.sram_base + xt * yt] = np.swapaxes(tile, -1, -2).reshape(-1, *buf.shape[1:])

    def _store(self, insn: MemInsn, stats: SimStats) -> None:
        if insn.is_nop:
            return
        out = self._dv[Mem.OUT]
        n = insn.y_size * insn.x_size
        if insn.sram_base + n > len(self.acc):
            raise IndexError("ACC buffer")
        vals = self.acc[insn.sram_base:insn.sram_base + n].astype(np.int8)  # low 8 bits
        self._dram_rows(out, insn)[...] = vals.reshape(insn.y_size, insn.x_size, -1)
        stats.store_bytes += vals.nbytes

    def _indices(self, insn, *names: str) -> list[np.ndarray]:
        """Affine micro-op indices in execution order (outer, inner, uop) for each named field;
        cached per (instruction, micro-op buffer contents), as tiles repeat the same instructions."""
        key = (insn, names, self._uop_version)
        hit = self._index_cache.get(key)
        if hit is not None:
            return hit
        uops = slice(insn.uop_bgn, insn.uop_end)
        o = np.arange(insn.iter_out)[:, None, None]
        i = np.arange(insn.iter_in)[None, :, None]
        row = {"dst": 0, "src": 1, "wgt": 2}
        out = []
        for n in names:
            base = self.uop[row[n], uops][None, None, :]
            fo, fi = getattr(insn, f"{n}_factor_out"), getattr(insn, f"{n}_factor_in")
            out.append((base + o * fo + i * fi).reshape(-1))
        if len(self._index_cache) > _CACHE_ENTRIES:
            self._index_cache.clear()
        self._index_cache[key] = out
        return out

    def _gemm(self, insn: GemmInsn, stats: SimStats) -> None:
        if insn.reset:
            (dst,) = self._indices(insn, "dst")
            self.acc[dst] = 0
            return
        dst, src, wgt = self._indices(insn, "dst", "src", "wgt")
        n = dst.size
        stats.gemm_uops += n
        stats.macs += n * self.config.block * self.config.block
        if n:
            key = (insn, self._uop_version)
            if key not in self._in_bounds:
                if dst.max() >= len(self.acc) or src.max() >= len(self.inp) or wgt.max() >= len(self.wgt):
                    raise IndexError("GEMM index past its buffer")
                self._in_bounds.add(key)
            self._pending.append((insn, dst, src, wgt))

    def _flush(self) -> None:
        """Run the queued GEMM micro-ops as one batch. Exact: int32 accumulation wraps, and a sum
        modulo 2^32 does not depend on the order, so consecutive GEMMs (with no write to INP/WGT and
        no other use of ACC between them) may be summed together. How to batch depends only on
        the indices, so the plan is cached for the next tile that runs the same instructions."""
        if not self._pending:
            return
        key = (self._uop_version, tuple(p[0] for p in self._pending))
        plan = self._plan_cache.get(key)
        if plan is None:
            dst, src, wgt = (np.concatenate(a) for a in list(zip(*self._pending))[1:])
            plan = self._plan_matmuls(dst, src, wgt) or ("general", dst, src, wgt)
            if len(self._plan_cache) > _CACHE_ENTRIES:
                self._plan_cache.clear()
            self._plan_cache[key] = plan
        self._pending = []
        if plan[0] == "general":
            self._flush_general(*plan[1:])
            return
        blk = self.config.block
        for targets, chunks in plan[1]:
            total = self.acc[targets].astype(np.int64)
            for src_idx, blocks in chunks:  # src_idx (k, G), blocks (G,), G ≤ 64: float32 is exact
                xs = self.inp[src_idx].reshape(len(src_idx), -1).astype(np.float32)
                total += (xs @ self._wgt_f[blocks].reshape(-1, blk)).astype(np.int64)
            self.acc[targets] = _wrap32(total)

    def _plan_matmuls(self, dst, src, wgt):
        """The im2col case: weight blocks that each meet the same k accumulators (in the same order)
        fold into dense (k, 16·G) x (16·G, 16) matmuls per set of accumulators, G ≤ 64 blocks at a
        time so float32 stays exact (|sum| ≤ 64·16·2^14 = 2^24). None when the pattern does not hold."""
        n = dst.size
        order = np.argsort(wgt.astype(np.uint16), kind="stable")  # a radix sort: indices < 2^16
        ws = wgt[order]
        starts = np.flatnonzero(np.r_[True, ws[1:] != ws[:-1]])
        counts = np.diff(np.r_[starts, n])
        if counts.min() != counts.max():
            return None
        g, k = len(starts), int(counts[0])
        rows = dst[order].reshape(g, k)
        _, first, which = np.unique(rows[:, 0], return_index=True, return_inverse=True)
        sets = rows[first]
        if not (rows == sets[which]).all():  # two sets share a first accumulator: sort rows fully
            sets, which = np.unique(rows, axis=0, return_inverse=True)
            which = which.reshape(-1)
        srt = np.sort(sets, axis=1)
        if (srt[:, 1:] == srt[:, :-1]).any():
            return None
        src_rows = src[order].reshape(g, k)
        blocks = ws[starts]
        steps = []
        for s, targets in enumerate(sets):
            members = np.flatnonzero(which == s)
            chunks = [(src_rows[part].T.copy(), blocks[part])
                      for part in (members[c:c + _EXACT_F32_BLOCKS] for c in range(0, len(members), _EXACT_F32_BLOCKS))]
            steps.append((targets, chunks))
        return ("matmul", steps)

    def _flush_general(self, dst, src, wgt) -> None:
        n, blk = dst.size, self.config.block
        order = np.argsort(wgt.astype(np.uint16), kind="stable")
        ws = wgt[order]
        starts = np.flatnonzero(np.r_[True, ws[1:] != ws[:-1]])
        counts = np.diff(np.r_[starts, n])
        groups, kmax = len(starts), int(counts.max())
        x = self.inp[src[order]].astype(np.float32)
        if groups * kmax <= 4 * n:  # one batched matmul per weight block, rows padded to the largest group
            gid = np.repeat(np.arange(groups), counts)
            row = np.arange(n) - np.repeat(starts, counts)
            xp = np.zeros((groups, kmax, blk), np.float32)
            xp[gid, row] = x
            contrib = np.matmul(xp, self._wgt_f[ws[starts]])[gid, row]  # exact: |sum| < 2^24
        else:
            contrib = np.einsum("ni,nio->no", x, self._wgt_f[ws])
        d = dst[order]
        by_dst = np.argsort(d, kind="stable")
        ds = d[by_dst]
        first = np.flatnonzero(np.r_[True, ds[1:] != ds[:-1]])
        sums = np.add.reduceat(contrib[by_dst].astype(np.float64), first, axis=0)
        idx = ds[first]
        self.acc[idx] = _wrap32(self.acc[idx].astype(np.int64) + sums.astype(np.int64))

    def _alu(self, insn: AluInsn, stats: SimStats) -> None:
        dst, src = self._indices(insn, "dst", "src")
        stats.alu_uops += dst.size
        if not dst.size:
            return
        op = insn.alu_op
        if op not in (AluOp.MIN, AluOp.MAX, AluOp.ADD, AluOp.SHR, AluOp.MUL):
            raise VerifyError(f"unknown ALU opcode {int(op)}")
        hits = np.bincount(dst, minlength=len(self.acc))
        sequential = hits.max() > 1 or (  # a later micro-op reads or rewrites an earlier one's result
            not insn.use_imm and hits[src].any() and not np.array_equal(dst, src))
        if sequential:
            for d, s in zip(dst, src):
                self.acc[d] = self._alu_op(op, self.acc[d][None], None if insn.use_imm else self.acc[s][None], insn.imm)[0]
        else:
            self.acc[dst] = self._alu_op(op, self.acc[dst], None if insn.use_imm else self.acc[src], insn.imm)

    @staticmethod
    def _alu_op(op: AluOp, a: np.ndarray, b: np.ndarray | None, imm: int) -> np.ndarray:
        a64 = a.astype(np.int64)
        b64 = np.int64(imm) if b is None else b.astype(np.int64)
        if op == AluOp.MIN:
            r = np.minimum(a64, b64)
        elif op == AluOp.MAX:
            r = np.maximum(a64, b64)
        elif op == AluOp.ADD:
            r = a64 + b64
        elif op == AluOp.MUL:
            r = a64 * b64
        else:  # SHR: arithmetic right shift; a negative amount shifts left (upstream simulator)
            sh = np.broadcast_to(b64, a64.shape)
            r = np.where(sh >= 0, a64 >> np.clip(sh, 0, 63), a64 << np.clip(-sh, 0, 63))
        return _wrap32(r)


def simulate(program: VtaProgram) -> SimStats:
    return Simulator(program.config).run(program)
