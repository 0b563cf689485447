"""The vector ISA a TVM CPU target compiles for: vector width, register count, int8 dot products.

Why not `llvm_get_vector_width`: in apache-tvm 0.27 it answers 512 for `-mcpu=haswell` and for
`-mattr=+avx2` on this AVX-512 host (it reflects the host, not the target), so an AVX2 device
got AVX-512 tiles (16-lane vectors, 28 accumulators: twice the 16 registers AVX2 has, so LLVM
spills). The target's own LLVM features (`target_has_features`, which reads `-mcpu` and
`-mattr` of the target) say what the device has; the schedules size their tiles from that.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm.target import Target, codegen


@dataclass(frozen=True)
class Isa:
    """What a conv tile may use: `vector_bits` wide registers (`registers` of them), FMA, and the
    int8 dot-product instruction family (`avx512-vnni`, `avx-vnni`, `sdot`) where there is one."""

    name: str
    vector_bits: int
    registers: int
    fma: bool
    int8_dot: str | None = None

    @property
    def lanes(self) -> int:
        """float32 lanes of one vector register."""
        return self.vector_bits // 32


def _has(target: Target, feature: str) -> bool:
    try:
        return bool(codegen.target_has_features([feature], target))
    except Exception:  # noqa: BLE001 - a feature LLVM does not know for this triple is absent
        return False


def isa_of(target: Target) -> Isa:
    """The ISA of an LLVM CPU target (128-bit, 16 registers for anything not recognized)."""
    triple = str(target.attrs.get("mtriple", "")) or codegen.llvm_get_system_triple()
    if triple.startswith(("aarch64", "arm64")):
        return Isa("neon", 128, 32, True, "sdot" if _has(target, "dotprod") else None)
    if triple.startswith(("arm", "thumb")):
        return Isa("neon" if _has(target, "neon") else "scalar", 128 if _has(target, "neon") else 32, 16,
                   _has(target, "vfp4"))
    if triple.startswith(("x86_64", "i686", "i386")):
        fma = _has(target, "fma")
        if _has(target, "avx512f"):
            return Isa("avx512", 512, 32, True, "avx512-vnni" if _has(target, "avx512vnni") else None)
        if _has(target, "avx2") or _has(target, "avx"):
            return Isa("avx2" if _has(target, "avx2") else "avx", 256, 16, fma,
                       "avx-vnni" if _has(target, "avxvnni") else None)
        return Isa("sse", 128, 16, False)
    return Isa("generic", 128, 16, False)
