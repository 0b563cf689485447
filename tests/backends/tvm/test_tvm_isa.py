"""Schedules per ISA: the target string decides vector width, registers and so the conv tile.

AVX2 and AVX-512 modules run on this (AVX-512) machine and are compared with onnxruntime; the
aarch64 NEON one is compiled only, and its assembly checked for NEON FMAs.
"""

from __future__ import annotations

import pytest
import tvm

from edgec.backends.tvm.frontend import import_onnx
from edgec.backends.tvm.isa import isa_of
from edgec.backends.tvm.lowering import cpu_build_pipeline
from edgec.backends.tvm.schedules import register_tiles
from edgec.backends.tvm.targets import parse_target
from edgec.runtime.tvm_stage import TvmSession
from tvm_helpers import TOLERANCE, conv_relu_model, ort_run, random_feeds, rel_err

X86 = "llvm -mtriple=x86_64-linux-gnu"
TARGETS = {
    "avx2": (f"{X86} -mcpu=haswell", "avx2", 256, 16, (16, 4)),
    "avx2-mattr": (f"{X86} -mattr=+avx2,+fma", "avx2", 256, 16, (16, 4)),
    "avx512": (f"{X86} -mcpu=skylake-avx512", "avx512", 512, 32, (32, 14)),
    "sse": (f"{X86} -mcpu=x86-64", "sse", 128, 16, (8, 4)),
    "neon": ("llvm -mtriple=aarch64-linux-gnu -mattr=+neon", "neon", 128, 32, (8, 14)),
}


def _target(text: str) -> tvm.target.Target:
    return tvm.target.Target(parse_target(text))


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_target_string_decides_isa_and_tile(name: str) -> None:
    text, isa, bits, registers, tile = TARGETS[name]
    found = isa_of(_target(text))
    assert (found.name, found.vector_bits, found.registers) == (isa, bits, registers)
    assert register_tiles(_target(text), 64, 28) == tile


def test_int8_dot_products_are_recognized() -> None:
    assert isa_of(_target(f"{X86} -mcpu=cascadelake")).int8_dot == "avx512-vnni"
    assert isa_of(_target(f"{X86} -mcpu=skylake-avx512")).int8_dot is None
    assert isa_of(_target("llvm -mtriple=aarch64-linux-gnu -mattr=+neon,+dotprod")).int8_dot == "sdot"


@pytest.fixture(scope="module")
def conv(tmp_path_factory):
    return conv_relu_model(tmp_path_factory.mktemp("isa") / "conv.onnx", 32, 64, 14)


def _asm(conv, target: tvm.target.Target) -> tuple[object, str]:
    executable = tvm.compile(import_onnx(conv, None, str(target)), target, relax_pipeline=cpu_build_pipeline(target))
    return executable, next(m for m in executable.mod.imports if m.kind == "llvm").inspect_source("asm")


@pytest.mark.parametrize("name, register", [("avx2", "%ymm"), ("avx512", "%zmm")])
def test_x86_modules_use_their_vectors_and_match_onnxruntime(name: str, register: str, conv, tmp_path) -> None:
    executable, asm = _asm(conv, _target(TARGETS[name][0]))
    assert "vfmadd" in asm and register in asm
    if name == "avx2":
        assert "%zmm" not in asm
    module = tmp_path / f"{name}.so"
    executable.export_library(str(module))
    feeds = random_feeds(conv)
    got = TvmSession.from_onnx(module, conv, threads=1).run(None, feeds)
    assert rel_err(got[0], ort_run(conv, feeds)[0]) < TOLERANCE


def test_neon_module_compiles_to_neon_fmas(conv) -> None:
    _, asm = _asm(conv, _target(TARGETS["neon"][0]))
    assert "fmla\tv" in asm or "fmla v" in asm
