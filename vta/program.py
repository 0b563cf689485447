"""A VTA program: the instruction stream plus the DRAM image it reads and writes.

DRAM addresses in LOAD/STORE count elements of the memory type, so every region is aligned to
the largest element (a 256-byte weight block); `regions` names each one for the caller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .isa import DEFAULT, Insn, Mem, VtaConfig, encode_program

ALIGN = 256


@dataclass(frozen=True)
class Region:
    offset: int  # bytes
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def element(self, mem: Mem, config: VtaConfig = DEFAULT) -> int:
        """The region's start in LOAD/STORE element units of `mem`."""
        e = config.elem_bytes[mem]
        assert self.offset % e == 0
        return self.offset // e


class DramBuilder:
    """Lays out named arrays in one DRAM image."""

    def __init__(self) -> None:
        self.regions: dict[str, Region] = {}
        self._chunks: list[tuple[int, np.ndarray]] = []
        self.size = 0

    def add(self, name: str, array: np.ndarray) -> Region:
        array = np.ascontiguousarray(array)
        region = Region(self.size, array.shape, array.dtype.str)
        self.regions[name] = region
        self._chunks.append((self.size, array))
        self.size += -(-max(array.nbytes, 1) // ALIGN) * ALIGN
        return region

    def reserve(self, name: str, shape: tuple[int, ...], dtype) -> Region:
        return self.add(name, np.zeros(shape, dtype=dtype))

    def image(self) -> np.ndarray:
        img = np.zeros(self.size, dtype=np.uint8)
        for off, arr in self._chunks:
            img[off:off + arr.nbytes] = arr.reshape(-1).view(np.uint8)
        return img


@dataclass
class VtaProgram:
    insns: list[Insn]
    dram: np.ndarray  # uint8 image, updated in place by the simulator
    regions: dict[str, Region] = field(default_factory=dict)
    config: VtaConfig = DEFAULT

    def read(self, name: str) -> np.ndarray:
        r = self.regions[name]
        return self.dram[r.offset:r.offset + r.nbytes].view(np.dtype(r.dtype)).reshape(r.shape)

    def binary(self) -> np.ndarray:
        """The instruction stream as the hardware fetches it: (n, 2) little-endian uint64."""
        return encode_program(self.insns, self.config)
