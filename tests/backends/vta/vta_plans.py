"""A small quantized ResNet-style model and plan for the VTA tests: conv 3x3 and 1x1, a residual add,
a max-pool and a dense head on one device's VTA, the last layer on a second (CPU) device."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from graphs import Net

INPUT = [2, 3, 10, 10]


def resnet_model():
    net = Net({"x": INPUT}, seed=4)
    c1 = net.op("Relu", "r1", [net.op("Conv", "c1", ["x", net.weight("c1.w", 16, 3, 3, 3), net.weight("c1.b", 16)],
                                      pads=[1, 1, 1, 1])])
    c2 = net.op("Relu", "r2", [net.op("Conv", "c2", [c1, net.weight("c2.w", 16, 16, 3, 3), net.weight("c2.b", 16)],
                                      pads=[1, 1, 1, 1])])
    c3 = net.op("Conv", "c3", [c2, net.weight("c3.w", 16, 16, 1, 1), net.weight("c3.b", 16)])
    a = net.op("Relu", "ra", [net.op("Add", "add", [c3, c1])])
    p = net.op("MaxPool", "pool", [a], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    f = net.op("Flatten", "flat", [p])
    g = net.op("Relu", "rg", [net.op("Gemm", "fc1", [f, net.weight("fc1.w", 24, 16 * 25), net.weight("fc1.b", 24)],
                                     transB=1)])
    net.op("Gemm", "fc2", [g, net.weight("fc2.w", 10, 24), net.weight("fc2.b", 10)], transB=1)
    return net.model(["fc2"])


def calibration(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    np.save(folder / "x.npy", rng.standard_normal((16, *INPUT[1:])).astype(np.float32))
    return folder


def plan_text(cal: Path) -> str:
    return (f'device f {{ accel vta }}\ndevice h {{ }}\n'
            f'place c1 .. rg on f.vta\nplace * on h.cpu\n'
            f'quantize f int8 calibrate "{cal}"\n')
