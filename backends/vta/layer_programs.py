"""One integer layer as a VTA program: compiled once per stage (`compile_layer`), stored as two files,
and run per sample by the engine (`LoadedLayer.run`).

Why the programs are compiled with zero inputs: a VTA program's instructions, micro-ops, weights,
biases and shifts depend on the layer's shapes only, never on the activations; the activations are
regions of the DRAM image (`inp`, or `a`/`b` for an add) that the runtime fills before each run and
`out`, which it reads after. So the artifact is the exact image the hardware would be given, with
its input regions left zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...compiler.diagnostics import UsageError, VerifyError
from ...vta import codegen, lint
from ...vta.pool import maxpool
from ...vta.cycles import estimate
from ...vta.isa import DEFAULT, MemInsn, decode_program
from ...vta.program import Region, VtaProgram
from ...vta.simulator import Simulator
from .int_layers import IntAdd, IntConv, IntLayer, IntMaxPool
from .section import VtaLayer

CLIP = {False: (-128, 127), True: (0, 127)}
"""int8 result bounds: QuantizeLinear's range, or ReLU's."""


def _dma_bytes(program: VtaProgram) -> int:
    return sum(i.y_size * i.x_size * program.config.elem_bytes[i.mem_type]
               for i in program.insns if isinstance(i, MemInsn) and not i.is_nop)


def compile_layer(layer: IntLayer, shapes: dict[str, tuple[int, ...]]) -> tuple[codegen.CompiledLayer, str]:
    """The layer's VTA program for one sample, lint-clean; a UsageError saying why VTA cannot run it."""
    if isinstance(layer, IntConv):
        x = np.zeros((1, *shapes[layer.x.name][1:]), np.int8)
        clip = CLIP[layer.relu]
        if layer.dense:
            compiled = codegen.gemm(x, layer.weight[:, :, 0, 0], layer.bias, shift=layer.shift, clip=clip)
            kind = "dense"
        else:
            if layer.strides[0] != layer.strides[1]:
                raise UsageError(f"strides {layer.strides} differ between height and width")
            compiled = codegen.conv2d(x, layer.weight, layer.bias, stride=layer.strides[0], pads=layer.pads,
                                      shift=layer.shift, clip=clip)
            kind = "conv"
    elif isinstance(layer, IntAdd):
        a = np.zeros((1, *shapes[layer.a.name][1:]), np.int8)
        if a.ndim != 4:
            raise UsageError(f"an Add of {a.ndim}-D tensors (VTA's add runs on NCHW activations)")
        compiled = codegen.add(a, a.copy(), shift_a=layer.a_left, shift_b=layer.b_left, shift=layer.shift,
                               clip=CLIP[layer.relu])
        kind = "add"
    elif isinstance(layer, IntMaxPool):
        x = np.zeros((1, *shapes[layer.x.name][1:]), np.int8)
        if layer.strides[0] != layer.strides[1] or x.ndim != 4:
            raise UsageError(f"a max-pool with strides {layer.strides} on a {x.ndim}-D tensor")
        compiled = maxpool(x, layer.kernel, layer.strides[0], layer.pads)
        kind = "pool"
    else:
        raise UsageError(f"VTA has no {type(layer).__name__}")
    try:
        lint.check(compiled.program)
    except VerifyError as exc:
        raise UsageError(f"the generated program fails the VTA lint: {exc.message}") from None
    return compiled, kind


def write_layer(layer: IntLayer, compiled: codegen.CompiledLayer, kind: str, folder: Path, root: Path,
                index: int, output_shape: tuple[int, ...]) -> VtaLayer:
    """Store the program (`<index>.insn`) and DRAM image (`<index>.dram`) under `folder`; the manifest record."""
    folder.mkdir(parents=True, exist_ok=True)
    program = compiled.program
    insn_file, dram_file = folder / f"{index:03d}.insn", folder / f"{index:03d}.dram"
    insn_file.write_bytes(program.binary().astype("<u8").tobytes())
    dram_file.write_bytes(program.dram.tobytes())
    report = estimate(program.insns, program.config)
    inputs = (layer.a.name, layer.b.name) if isinstance(layer, IntAdd) else (layer.x.name,)
    regions = {name: {"offset": int(r.offset), "shape": [int(d) for d in r.shape], "dtype": str(r.dtype)}
               for name, r in program.regions.items()}
    macs = compiled.macs
    op = {"conv": "Conv", "dense": "Gemm", "add": "Add", "pool": "MaxPool"}[kind]
    return VtaLayer(layer.name, op, kind, inputs, layer.y.name,
                    tuple(int(d) for d in output_shape), insn_file.relative_to(root).as_posix(),
                    dram_file.relative_to(root).as_posix(), regions, len(program.insns), int(report.cycles), int(macs),
                    float(round(report.utilization(macs), 4)) if macs else 0.0, int(_dma_bytes(program)))


@dataclass
class LoadedLayer:
    """A stored layer program, ready to run on the simulator for one sample at a time (one simulator per
    layer, replaying the program's schedule and keeping its caches from run to run)."""

    record: VtaLayer
    program: VtaProgram
    image: np.ndarray
    simulator: Simulator = field(default_factory=lambda: Simulator(DEFAULT, reuse=True))

    @classmethod
    def load(cls, root: Path, record: VtaLayer) -> LoadedLayer:
        for rel in (record.program, record.dram):
            if not (root / rel).is_file():
                raise UsageError(f"VTA artifact '{root / rel}' is missing; compile with --backend vta")
        words = np.frombuffer((root / record.program).read_bytes(), "<u8").reshape(-1, 2)
        image = np.frombuffer((root / record.dram).read_bytes(), np.uint8).copy()
        regions = {name: Region(int(r["offset"]), tuple(int(d) for d in r["shape"]), str(r["dtype"]))
                   for name, r in record.regions.items()}
        return cls(record, VtaProgram(decode_program(words, DEFAULT), image.copy(), regions, DEFAULT), image)

    def _fill(self, name: str, x: np.ndarray) -> None:
        r = self.program.regions[name]
        self.program.dram[r.offset:r.offset + r.nbytes] = codegen.pack_activation(x).reshape(-1).view(np.uint8)

    def run(self, samples: list[np.ndarray]) -> np.ndarray:
        """The int8 output of one sample from its int8 input(s) (no batch axis)."""
        self.program.dram[:] = self.image
        if self.record.kind == "add":
            self._fill("a", samples[0][None])
            self._fill("b", samples[1][None])
        elif self.record.kind == "dense":
            x = samples[0].reshape(-1)
            rows = np.zeros((2, x.size), np.int8)  # codegen.gemm's layout of one row: two pixels, one real
            rows[0] = x
            self._fill("inp", rows.T.reshape(1, x.size, 1, 2))
        else:
            self._fill("inp", samples[0][None])
        self.simulator.run(self.program)
        packed = self.program.read("out")  # (OCB, H, W, 16)
        channels = self.record.output_shape[0]
        y = packed.transpose(0, 3, 1, 2).reshape(-1, *packed.shape[1:3])[:channels]
        return y[:, 0, 0].copy() if self.record.kind == "dense" else y.copy()
