"""VTA per-layer figures for a ResNet-18-style network (224x224 input; the stem conv stays on the
CPU): simulated cycles and time at 100 MHz, utilization =
MACs / (cycles x 256), DMA bytes, and the functional simulator's own speed.

Every layer is checked bit-exact against the numpy integer reference and lint-clean before its
figures count.  `python benchmarks/vta_layers.py [--repeats N] [--quick]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

# the simulator is single-threaded by design; OpenBLAS's threads only fight the other processes
# on a shared machine (and make the small matmuls 10-100x slower under load)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from edgec.vta import codegen, reference  # noqa: E402
from edgec.vta.cycles import estimate  # noqa: E402
from edgec.vta.lint import check  # noqa: E402
from edgec.vta.pool import maxpool  # noqa: E402
from edgec.vta.simulator import Simulator  # noqa: E402

LAYERS = [  # name, C, O, H(=W), kernel, stride
    ("stem max-pool 3x3 s2", 64, 64, 112, "pool", 2),
    ("layer1 3x3", 64, 64, 56, 3, 1),
    ("layer1 3x3 per-ch shift", 64, 64, 56, 3, 1),
    ("layer2 3x3 s2", 64, 128, 56, 3, 2),
    ("layer2 3x3", 128, 128, 28, 3, 1),
    ("layer2 1x1 s2", 64, 128, 56, 1, 2),
    ("layer3 3x3 s2", 128, 256, 28, 3, 2),
    ("layer3 3x3", 256, 256, 14, 3, 1),
    ("layer3 1x1 s2", 128, 256, 28, 1, 2),
    ("layer4 3x3 s2", 256, 512, 14, 3, 2),
    ("layer4 3x3", 512, 512, 7, 3, 1),
    ("layer4 1x1 s2", 256, 512, 14, 1, 2),
    ("layer1 residual add", 64, 64, 56, "add", None),
    ("layer4 residual add", 512, 512, 7, "add", None),
    ("fc (gemm 1x512x1000)", 512, 1000, None, None, None),
]


def build(name, c, o, hw, k, s, rng):
    if hw is None:
        a = rng.integers(-128, 128, (1, c), dtype=np.int8)
        w = rng.integers(-128, 128, (o, c), dtype=np.int8)
        b = rng.integers(-5000, 5000, o).astype(np.int32)
        return codegen.gemm(a, w, b, shift=10), lambda: reference.gemm(a, w, b, shift=10)
    x = rng.integers(-128, 128, (1, c, hw, hw), dtype=np.int8)
    if k == "pool":
        def window_max():
            xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-128)
            win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::s, ::s]
            return win.max(axis=(-1, -2))
        return maxpool(x, (3, 3), s, (1, 1, 1, 1)), window_max
    if k == "add":
        y = rng.integers(-128, 128, (1, c, hw, hw), dtype=np.int8)
        return (codegen.add(x, y, shift_a=1, shift=1, clip=(0, 127)),
                lambda: reference.add(x, y, shift_a=1, shift=1, clip=(0, 127)))
    w = rng.integers(-128, 128, (o, c, k, k), dtype=np.int8)
    b = rng.integers(-5000, 5000, o).astype(np.int32)
    p = k // 2
    pads = (p, p, p, p)
    shift = rng.integers(10, 15, o) if "per-ch" in name else 12
    layer = codegen.conv2d(x, w, b, stride=s, pads=pads, shift=shift, clip=(0, 127))
    return layer, lambda: reference.conv2d(x, w, b, stride=s, pads=pads, shift=shift, clip=(0, 127))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3, help="replays after the first run (at least 1)")
    ap.add_argument("--quick", action="store_true", help="only the first three layers")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"load average before: {os.getloadavg()}")
    head = (f"{'layer':<22} {'MACs':>11} {'cycles':>10} {'ms@100MHz':>9} {'util':>6} {'DMA bytes':>11} "
            f"{'first s':>7} {'replay s min/med':>16} {'Gops/s':>7} {'tiles':>10}")
    print(head)
    print("-" * len(head))
    tot_macs = tot_cycles = tot_ops = mac_cycles = 0
    tot_time = 0.0
    for spec in LAYERS[:3] if args.quick else LAYERS:
        layer, ref = build(*spec, rng)
        check(layer.program)
        report = estimate(layer.program.insns)
        times = []
        sim = Simulator(reuse=True)  # as the runtime keeps one per layer: runs after the first replay its schedule
        image = layer.program.dram.copy()
        for _ in range(1 + max(args.repeats, 1)):
            layer.program.dram[:] = image
            t0 = time.perf_counter()
            stats = sim.run(layer.program)
            times.append(time.perf_counter() - t0)
        if not np.array_equal(layer.output(), ref()):
            raise SystemExit(f"{spec[0]}: simulated output differs from the integer reference")
        first, tmin, tmed = times[0], min(times[1:]), statistics.median(times[1:])
        ops = 2 * stats.macs  # simulated int8 ops, channel padding included
        if "per-ch" not in spec[0]:  # a variant of layer1, not a layer of the network
            tot_macs += layer.macs
            tot_cycles += report.cycles
            mac_cycles += report.cycles if layer.macs else 0
            tot_ops += ops
            tot_time += tmin
        plan = layer.plan
        print(f"{spec[0]:<22} {layer.macs:>11,} {report.cycles:>10,} {report.seconds * 1e3:>9.2f} "
              f"{f'{report.utilization(layer.macs):.1%}' if layer.macs else '-':>6} {stats.dma_bytes:>11,} {first:>7.3f} {tmin:>7.3f}/{tmed:<8.3f} "
              f"{ops / tmin / 1e9:>7.2f} {f'{plan.toc}x{plan.th} {plan.groups}g':>10}")
    print("-" * len(head))
    print(f"{'total':<22} {tot_macs:>11,} {tot_cycles:>10,} {tot_cycles / 1e5:>9.2f} "
          f"{tot_macs / (mac_cycles * 256):>6.1%} {'':>11} {'':>7} {tot_time:>7.3f}{'':<9} {tot_ops / tot_time / 1e9:>7.2f}")
    print(f"load average after: {os.getloadavg()}")
    print("util of the total: convs and fc only (an add or a pool has no MACs of its own); "
          "the total leaves out the per-channel-shift variant of layer1")
    print("tiles: output-channel blocks per group x output rows per tile, number of weight groups; "
          "Gops/s = 2 x simulated MACs / min replay host seconds; first: the first run (schedule and caches built)")


if __name__ == "__main__":
    main()
