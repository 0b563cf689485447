"""A functional VTA simulator: bit-exact results of a program on its DRAM image.

Each instruction runs as a few vectorised numpy operations. The three modules are interleaved
in program order as far as the dependency tokens allow (a module whose next instruction would
pop an empty queue, or push into a full one, waits), so a program that deadlocks or leaves
tokens behind on the hardware is refused here too. GEMM and ALU ADD wrap at 32 bits, SHR is
arithmetic, STORE keeps the low 8 bits of each accumulator lane.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools

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


def _copy_stats(stats: SimStats) -> SimStats:
    return dataclasses.replace(stats, load_bytes=dict(stats.load_bytes))


def _as_index(idx: np.ndarray):
    """A slice when `idx` counts up by one (numpy then gives views, and in-place ufuncs), else `idx`."""
    if idx.size and int(idx[-1]) - int(idx[0]) == idx.size - 1 and (idx.size == 1 or (np.diff(idx) == 1).all()):
        return slice(int(idx[0]), int(idx[0]) + idx.size)
    return idx


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
    """`reuse=True` (a runtime running one program per sample): the first run records what each
    instruction did as numpy operations on fixed views and index arrays (`_rec`), and running the
    same program object (and DRAM array) again just runs them, with no Python work per instruction
    beyond one call; a new DRAM array replays the kept schedule and records again. Exact as long
    as the program's instructions and its micro-op regions are not changed between runs (the
    runtime only rewrites the input regions)."""

    def __init__(self, config: VtaConfig = DEFAULT, *, reuse: bool = False) -> None:
        self.config = c = config
        self.reuse = reuse
        self._program: VtaProgram | None = None
        self._schedule: list[int] = []
        self._ops: list | None = None  # the kept run's operations, replayed in order (reuse=True)
        self._rec: list | None = None
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
        if self.reuse and program is self._program and len(self._schedule) == len(insns):
            if self._ops is not None and program.dram is self._ops_dram:
                for op in self._ops:
                    op()
                return _copy_stats(self._stats)
            self._views(program.dram)
            self._pending: list[tuple] = []
            self._uop_version = 0
            self._rec, self._load_run = [], None
            for i in self._schedule:
                self._execute(i, insns[i], stats)
            self._flush()
            stats.instructions = len(insns)
            self._keep_ops(program, stats)
            return stats
        self._views(program.dram)
        self._pending = []
        self._uop_version = 0
        self._rec = [] if self.reuse else None
        self._load_run = None
        self._program, self._schedule, self._ops = None, [], None
        self._index_cache: dict = {}
        self._plan_cache: dict = {}
        self._op_cache: dict = {}  # replay operations, per (instruction or GEMM batch, UOP version)
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
            self._keep_ops(program, stats)
        return stats

    def _keep_ops(self, program: VtaProgram, stats: SimStats) -> None:
        """Keep the run's recorded operations: each one numpy call or two on views and index arrays
        fixed by the instructions and micro-ops, so a replay runs them with no decoding, no cache
        look-up and no bounds check (all done, on the same values, by the run that recorded them)."""
        self._ops = [f for op in self._rec for f in (self._load_ops(op) if isinstance(op, dict) else (op,))]
        self._rec = None
        self._ops_dram, self._stats = program.dram, _copy_stats(stats)

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
        inner = tile[insn.y_pad_0:insn.y_pad_0 + insn.y_size, insn.x_pad_0:insn.x_pad_0 + insn.x_size]
        padded = inner.size != tile.size
        if padded:
            tile[...] = 0
        inner[...] = data
        wgt_f = None
        if mem == Mem.WGT:
            wgt_f = self._wgt_f[insn.sram_base:insn.sram_base + xt * yt].reshape(tile.shape)
            wgt_f[...] = np.swapaxes(tile, -1, -2)
        if self._rec is not None:
            self._record_load(insn, buf, yt, xt)

    def _record_load(self, insn: MemInsn, buf: np.ndarray, yt: int, xt: int) -> None:
        """Record a LOAD for replays. A run of loads of one shape, right after one another, whose
        SRAM tiles follow at a fixed step (not overlapping) and whose DRAM rows follow at a fixed step
        (a tile's channel blocks, a weight group's pieces) becomes one strided copy for them all."""
        mem, rec, g = insn.mem_type, self._rec, self._load_run
        shape = (mem, yt, xt, insn.y_size, insn.x_size, insn.x_stride, insn.y_pad_0, insn.x_pad_0)
        if g is not None and g["shape"] == shape and rec and rec[-1] is g and (
                insn.sram_base - g["last"][0] >= yt * xt and insn.dram_base - g["last"][1] > 0) and (
                g["count"] == 1 or (insn.sram_base - g["last"][0], insn.dram_base - g["last"][1]) == g["step"]):
            g["step"] = (insn.sram_base - g["last"][0], insn.dram_base - g["last"][1])
            g["count"] += 1
        else:
            g = self._load_run = {"shape": shape, "first": (insn.sram_base, insn.dram_base), "step": (0, 0),
                                  "count": 1, "insn": insn, "buf": buf}
            rec.append(g)  # a placeholder: `_load_ops` makes its operations when the run is kept
        g["last"] = (insn.sram_base, insn.dram_base)

    def _load_ops(self, g: dict) -> list:
        insn, buf, mem = g["insn"], g["buf"], g["insn"].mem_type
        _, yt, xt = g["shape"][:3]
        n, (ds, dd), (s0, d0) = g["count"], g["step"], g["first"]
        ops = []
        strided = np.lib.stride_tricks.as_strided

        def tiles(b: np.ndarray) -> np.ndarray:
            rs = b.strides[0]
            return strided(b[s0:], (n, yt, xt) + b.shape[1:], (ds * rs, xt * rs, rs) + b.strides[1:], writeable=True)
        view = self._dv[mem]
        rs = view.strides[0]
        data = strided(view[d0:], (n, insn.y_size, insn.x_size) + view.shape[1:],
                       (dd * rs, insn.x_stride * rs, rs) + view.strides[1:], writeable=False)
        dst = tiles(buf)
        inner = dst[:, insn.y_pad_0:insn.y_pad_0 + insn.y_size, insn.x_pad_0:insn.x_pad_0 + insn.x_size]
        if inner.size != dst.size:
            ops.append(functools.partial(dst.fill, 0))
        ops.append(functools.partial(np.copyto, inner, data))
        if mem == Mem.WGT:
            ops.append(functools.partial(np.copyto, tiles(self._wgt_f), np.swapaxes(dst, -1, -2), casting="unsafe"))
        return ops

    def _store(self, insn: MemInsn, stats: SimStats) -> None:
        if insn.is_nop:
            return
        out = self._dv[Mem.OUT]
        n = insn.y_size * insn.x_size
        if insn.sram_base + n > len(self.acc):
            raise IndexError("ACC buffer")
        vals = self.acc[insn.sram_base:insn.sram_base + n].astype(np.int8)  # low 8 bits
        rows = self._dram_rows(out, insn)
        rows[...] = vals.reshape(insn.y_size, insn.x_size, -1)
        stats.store_bytes += vals.nbytes
        if self._rec is not None:
            acc = self.acc[insn.sram_base:insn.sram_base + n].reshape(insn.y_size, insn.x_size, -1)
            self._rec.append(functools.partial(np.copyto, rows, acc, casting="unsafe"))

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
            if self._rec is not None:
                d = _as_index(np.sort(dst))
                if isinstance(d, slice):
                    self._rec.append(functools.partial(self.acc[d].fill, 0))
                else:
                    self._rec.append(functools.partial(self.acc.__setitem__, d, 0))
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
            if self._rec is not None:
                self._rec.append(functools.partial(self._flush_general, *plan[1:]))
            return
        if self._rec is not None:
            ops = self._op_cache.get(key)
            if ops is None:
                if len(self._op_cache) > _CACHE_ENTRIES:
                    self._op_cache.clear()
                ops = self._op_cache[key] = self._matmul_ops(plan[1])
            self._rec.extend(ops)
        blk = self.config.block
        for targets, chunks in plan[1]:
            total = self.acc[targets].astype(np.int64)
            for src_idx, blocks in chunks:  # src_idx (k, G), blocks (G,), G ≤ 64: float32 is exact
                xs = np.take(self.inp, src_idx, axis=0).reshape(len(src_idx), -1).astype(np.float32)
                total += (xs @ self._wgt_f[blocks].reshape(-1, blk)).astype(np.int64)
            self.acc[targets] = _wrap32(total)

    def _matmul_ops(self, steps) -> list:
        """A matmul plan as replay operations: int32 adds wrap as the accumulators do, and each
        chunk's float32 product is an exact integer (|sum| <= 2^24), so this equals `_flush`.
        Sets of accumulators that read the same input rows with weight blocks and accumulators at a
        fixed step (a tile's output-channel blocks) share one gather and one wider matmul."""
        blk, acc, inp, wgt_f = self.config.block, self.acc, self.inp, self._wgt_f
        sets = []
        for targets, chunks in steps:
            order = np.argsort(targets, kind="stable")  # distinct accumulators: rows in any order
            t = _as_index(targets[order])
            parts = []
            for src_idx, blocks in chunks:
                src_idx = np.ascontiguousarray(src_idx[order])
                b = _as_index(blocks)
                w = wgt_f[b].reshape(-1, blk) if isinstance(b, slice) else None
                parts.append((src_idx, len(src_idx), w, blocks, b))
            sets.append((t, parts))
        groups: list[list] = []
        for t, parts in sets:
            if groups and self._stacks(groups[-1], t, parts):
                groups[-1].append((t, parts))
            else:
                groups.append([(t, parts)])
        ops = []
        for group in groups:
            t, parts = group[0]
            if len(group) > 1:
                ops.append(self._stacked_op(group))
            elif isinstance(t, slice):
                def op(view=acc[t], parts=parts):
                    for src_idx, k, w, blocks, _ in parts:
                        x = np.take(inp, src_idx, axis=0).reshape(k, -1).astype(np.float32)  # take: ~10x faster than [ ]
                        view += (x @ (w if w is not None else wgt_f[blocks].reshape(-1, blk))).astype(np.int32)
                ops.append(op)
            else:
                def op(t=t, parts=parts):
                    total = acc[t]
                    for src_idx, k, w, blocks, _ in parts:
                        x = np.take(inp, src_idx, axis=0).reshape(k, -1).astype(np.float32)  # take: ~10x faster than [ ]
                        total += (x @ (w if w is not None else wgt_f[blocks].reshape(-1, blk))).astype(np.int32)
                    acc[t] = total
                ops.append(op)
        return ops

    @staticmethod
    def _stacks(group: list, t, parts) -> bool:
        """Whether set (t, parts) continues `group`: the same input rows per chunk, and its
        accumulators and each chunk's weight blocks one more fixed, non-overlapping step on."""
        t0, parts0 = group[0]
        j = len(group)
        if not (isinstance(t, slice) and isinstance(t0, slice) and t.stop - t.start == t0.stop - t0.start
                and len(parts) == len(parts0)):
            return False
        step = (group[1][0].start - t0.start) if j > 1 else t.start - t0.start
        if step < t0.stop - t0.start or t.start - t0.start != j * step:
            return False
        for c, ((src, _, w, _, b), (src0, _, w0, _, b0)) in enumerate(zip(parts, parts0)):
            if w is None or w0 is None or w.shape != w0.shape or not np.array_equal(src, src0):
                return False
            bstep = (group[1][1][c][4].start - b0.start) if j > 1 else b.start - b0.start
            if bstep < b0.stop - b0.start or b.start - b0.start != j * bstep:
                return False
        return True

    def _stacked_op(self, group: list):
        acc, inp, wgt_f, blk = self.acc, self.inp, self._wgt_f, self.config.block
        strided = np.lib.stride_tricks.as_strided
        (t0, parts0), n = group[0], len(group)
        k = t0.stop - t0.start
        tstep = group[1][0].start - t0.start
        targets = strided(acc[t0.start:], (n, k, blk), (tstep * acc.strides[0],) + acc.strides, writeable=True)
        chunks = []
        for c, (src_idx, _, _, _, b0) in enumerate(parts0):
            g = b0.stop - b0.start
            bstep = group[1][1][c][4].start - b0.start
            ws = strided(wgt_f[b0.start:], (n, g * blk, blk), (bstep * wgt_f.strides[0],) + wgt_f.strides[1:])
            chunks.append((src_idx, ws))

        def op():
            for src_idx, ws in chunks:
                x = np.take(inp, src_idx, axis=0).reshape(k, -1).astype(np.float32)
                w = ws.transpose(1, 0, 2).reshape(ws.shape[1], -1)  # (16 G, 16 n): one matmul for the n sets
                r = (x @ w).astype(np.int32).reshape(k, n, blk)
                np.add(targets, r.transpose(1, 0, 2), out=targets)
        return op

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
        if self._rec is not None:
            key = (insn, self._uop_version)
            replay = self._op_cache.get(key)
            if replay is None:
                if len(self._op_cache) > _CACHE_ENTRIES:
                    self._op_cache.clear()
                replay = self._op_cache[key] = self._alu_replay(op, dst, src, insn.use_imm, insn.imm, sequential)
            self._rec.append(replay)
        if sequential:
            for d, s in zip(dst, src):
                self.acc[d] = self._alu_op(op, self.acc[d][None], None if insn.use_imm else self.acc[s][None], insn.imm)[0]
        else:
            self.acc[dst] = self._alu_op(op, self.acc[dst], None if insn.use_imm else self.acc[src], insn.imm)

    _INT32_UFUNCS = {AluOp.MIN: np.minimum, AluOp.MAX: np.maximum, AluOp.ADD: np.add}

    def _alu_replay(self, op, dst, src, use_imm: bool, imm: int, sequential: bool):
        """One ALU instruction as a replay operation. MIN, MAX, ADD and SHR by 0..31 give the same
        bits computed in int32 in place (ADD wraps there too) as `_alu_op` does in int64."""
        acc = self.acc
        if not sequential:  # each accumulator written once, and none read by another micro-op: any order
            order = np.argsort(dst, kind="stable")
            dst, src = dst[order], src[order]
        d, s = _as_index(dst), _as_index(src)
        ufunc = self._INT32_UFUNCS.get(op)
        if use_imm and op == AluOp.SHR and 0 <= imm <= 31:
            ufunc = np.right_shift
        if not sequential and ufunc is not None and isinstance(d, slice) and (use_imm or isinstance(s, slice)):
            a = acc[d]
            return functools.partial(ufunc, a, np.int32(imm) if use_imm else acc[s], out=a)
        if not sequential and ufunc is not None:  # take and a row-wide void view: ~2x faster than [ ]
            b = np.int32(imm) if use_imm else None
            rows = acc.view(f"V{acc.strides[0]}").reshape(-1)

            def fancy():
                x = acc[d] if isinstance(d, slice) else np.take(acc, d, axis=0)
                ufunc(x, b if use_imm else acc[s] if isinstance(s, slice) else np.take(acc, s, axis=0), out=x)
                if not isinstance(d, slice):
                    rows[d] = x.view(rows.dtype).reshape(-1)
            return fancy

        if not sequential and op == AluOp.SHR and not use_imm:
            rows = acc.view(f"V{acc.strides[0]}").reshape(-1)

            def shr():  # by register: int32 in place when every amount is 0..31, else as _alu_op
                x = acc[d] if isinstance(d, slice) else np.take(acc, d, axis=0)
                sh = acc[s] if isinstance(s, slice) else np.take(acc, s, axis=0)
                if sh.min() >= 0 and sh.max() <= 31:
                    np.right_shift(x, sh, out=x)
                else:
                    x[...] = self._alu_op(op, x, sh, imm)
                if not isinstance(d, slice):
                    rows[d] = x.view(rows.dtype).reshape(-1)
            return shr

        def run():
            if sequential:
                for i, j in zip(dst, src):
                    acc[i] = self._alu_op(op, acc[i][None], None if use_imm else acc[j][None], imm)[0]
            else:
                acc[dst] = self._alu_op(op, acc[dst], None if use_imm else acc[src], imm)
        return run

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
