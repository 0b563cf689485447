"""The int8 dot-product tensor intrinsics the int8 conv schedule tensorizes with.

One step: `C[i] += Σ_k A[k] · B[i, k]` for `lanes` int32 accumulators `C`, `reduce` activations
`A` (one 32-bit word, broadcast to every lane) and `lanes` x `reduce` weights `B`: x86 `vpdpbusd`
(u8 x s8, 4 per lane; 16 lanes on AVX-512 VNNI, 8 on AVX-VNNI), x86 `pmaddwd` (s16 x s16, 2 per
lane; 16/8/4 lanes on AVX-512BW/AVX2/SSE2; it returns the sums, which are added to `C`) and
aarch64 `sdot` (s8 x s8, 4 per lane, 4 lanes).

Why edgec's own instead of TVM's `dot_16x4_vnni` / `dot_4x4_i8i8s32_sdot`: apache-tvm 0.27's VNNI
intrinsic passes `int32x16` operands to `llvm.x86.avx512.vpdpbusd.512`, whose signature in the LLVM
TVM links takes `<64 x i8>` (module verification fails: "Call parameter type does not match
function signature"); and both declare the accumulator `global`, while the schedule keeps it in a
`local` tile (registers) — a tensor intrinsic only matches buffers of its own scope.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

LLVM = {("vpdpbusd", 16): "llvm.x86.avx512.vpdpbusd.512", ("vpdpbusd", 8): "llvm.x86.avx512.vpdpbusd.256",
        ("sdot", 4): "llvm.aarch64.neon.sdot.v4i32.v16i8", ("pmaddwd", 16): "llvm.x86.avx512.pmaddw.d.512",
        ("pmaddwd", 8): "llvm.x86.avx2.pmadd.wd", ("pmaddwd", 4): "llvm.x86.sse2.pmadd.wd"}
DTYPES = {"vpdpbusd": ("uint8", "int8", 4), "sdot": ("int8", "int8", 4), "pmaddwd": ("int16", "int16", 2)}
"""(activation dtype, weight dtype, products summed per lane) of each instruction."""
_registered: set[str] = set()


def dot_intrinsic(instruction: str, lanes: int) -> str | None:
    """The registered name of `instruction`'s `lanes`-wide step (None if there is no such form)."""
    llvm_name = LLVM.get((instruction, lanes))
    if llvm_name is None:
        return None
    name = f"edgec_{instruction}_{lanes}x{DTYPES[instruction][2]}"
    if name not in _registered:
        TensorIntrin.register(name, *_intrinsic(llvm_name, *DTYPES[instruction], lanes, instruction != "pmaddwd"),
                              override=True)
        _registered.add(name)
    return name


def _intrinsic(llvm_name: str, data_dtype: str, weight_dtype: str, reduce: int, lanes: int, accumulates: bool):
    """`accumulates`: the instruction adds into its first operand (vpdpbusd, sdot); pmaddwd returns
    the pair sums, which are added to `C`."""
    width = reduce * lanes

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (reduce,), data_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, reduce), weight_dtype, offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:reduce], B[0:lanes, 0:reduce])
            T.writes(C[0:lanes])
            for i, k in T.grid(lanes, reduce):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (reduce,), data_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, reduce), weight_dtype, offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:reduce], B[0:lanes, 0:reduce])
            T.writes(C[0:lanes])
            word = T.reinterpret(A.vload([0], f"{data_dtype}x{reduce}"), dtype="int32")
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_name),
                C.vload([0], dtype=f"int32x{lanes}"),
                T.reinterpret(T.broadcast(word, lanes), dtype=f"{data_dtype}x{width}"),
                B.vload([0, 0], dtype=f"{weight_dtype}x{width}"),
                dtype=f"int32x{lanes}",
            )

    @T.prim_func(s_tir=True)
    def impl_add(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (reduce,), data_dtype, offset_factor=1)
        B = T.match_buffer(b, (lanes, reduce), weight_dtype, offset_factor=1)
        C = T.match_buffer(c, (lanes,), "int32", offset_factor=1, scope="local")
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:reduce], B[0:lanes, 0:reduce])
            T.writes(C[0:lanes])
            word = T.reinterpret(A.vload([0], f"{data_dtype}x{reduce}"), dtype="int32")
            C[T.ramp(T.int32(0), 1, lanes)] = C.vload([0], dtype=f"int32x{lanes}") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm_name),
                T.reinterpret(T.broadcast(word, lanes), dtype=f"{data_dtype}x{width}"),
                B.vload([0, 0], dtype=f"{weight_dtype}x{width}"),
                dtype=f"int32x{lanes}",
            )

    return desc, impl if accumulates else impl_add
