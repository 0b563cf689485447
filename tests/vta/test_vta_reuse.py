"""A simulator kept for one program (`reuse=True`, as the runtime runs a layer per sample) replays the
first run's schedule and caches: new inputs give exactly what a fresh simulator gives."""

from __future__ import annotations

import numpy as np

from edgec.vta import codegen, reference
from edgec.vta.simulator import Simulator


def test_reused_simulator_equals_fresh_runs():
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, (40, 20, 3, 3), dtype=np.int8)
    shift = rng.integers(4, 12, 40)
    layer = codegen.conv2d(np.zeros((1, 20, 9, 9), np.int8), w, None, pads=(1, 1, 1, 1), shift=shift)
    image, inp = layer.program.dram.copy(), layer.program.regions["inp"]
    sim = Simulator(reuse=True)
    for _ in range(3):
        x = rng.integers(-128, 128, (1, 20, 9, 9), dtype=np.int8)
        layer.program.dram[:] = image
        layer.program.dram[inp.offset:inp.offset + inp.nbytes] = codegen.pack_activation(x).reshape(-1).view(np.uint8)
        stats = sim.run(layer.program)
        np.testing.assert_array_equal(layer.output(), reference.conv2d(x, w, pads=(1, 1, 1, 1), shift=shift))
        assert stats.instructions == len(layer.program.insns)
    assert sim._schedule and sim._program is layer.program
