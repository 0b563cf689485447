"""Real-size VGG, ResNet and DenseNet as ONNX (random weights), cached on disk, for the compile-time benchmarks.

    python benchmarks/zoo.py [--cache DIR] [--width 1.0] [NAME ...]   # build (if missing) and list

Why: AutoDiCE published its split/codegen times for VGG-19, ResNet-101 and DenseNet-121; a fair
comparison needs the same architectures at full size, not the light zoo's stand-ins. The
builders follow torchvision layer for layer (same shapes, torchvision-like node names such as
`features.0` or `layer1.0.conv1`, BatchNorm as real BatchNormalization nodes, no Dropout, as
an eval-mode export gives), so the parameter counts are torchvision's exactly. `width` scales
every channel count (and VGG's hidden FC width) for the small variants the tests compile.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import onnx

from zoo_graph import GraphBuilder

CACHE_DIR = Path.home() / ".cache" / "edgec-bench"
BUILDER_VERSION = 1
RESOLUTION = 224
CLASSES = 1000

VGG_CFG = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}
RESNET_CFG = {18: ("basic", [2, 2, 2, 2]), 34: ("basic", [3, 4, 6, 3]), 50: ("bottleneck", [3, 4, 6, 3]),
              101: ("bottleneck", [3, 4, 23, 3]), 152: ("bottleneck", [3, 8, 36, 3])}
DENSENET_CFG = {121: (32, (6, 12, 24, 16), 64), 169: (32, (6, 12, 32, 32), 64),
                201: (32, (6, 12, 48, 32), 64), 161: (48, (6, 12, 36, 24), 96)}

TORCHVISION_PARAMS = {
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "densenet121": 7_978_856, "densenet161": 28_681_000, "densenet169": 14_149_480, "densenet201": 20_013_928,
}


def _ch(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def vgg(depth: int = 19, width: float = 1.0) -> GraphBuilder:
    g = GraphBuilder(f"vgg{depth}")
    x, cin, i = "input", 3, 0
    for item in VGG_CFG[depth]:
        if item == "M":
            x = g.maxpool(f"features.{i}", x, 2, 2)
            i += 1
            continue
        cout = _ch(item, width)
        x = g.conv(f"features.{i}", x, cin, cout, 3, pad=1, bias=True)
        x = g.relu(f"features.{i + 1}", x)
        cin, i = cout, i + 2
    x = g.avgpool("avgpool", x, 1, 1)  # AdaptiveAvgPool2d((7, 7)) on a 7x7 map, as torch.onnx exports it
    x = g.flatten("flatten", x)
    hidden = _ch(4096, width)
    x = g.relu("classifier.1", g.linear("classifier.0", x, cin * 7 * 7, hidden))
    x = g.relu("classifier.4", g.linear("classifier.3", x, hidden, hidden))
    g.linear("classifier.6", x, hidden, CLASSES)
    return g


def _basic(g: GraphBuilder, p: str, x: str, cin: int, planes: int, stride: int) -> tuple[str, int]:
    y = g.relu(f"{p}.relu", g.bn(f"{p}.bn1", g.conv(f"{p}.conv1", x, cin, planes, 3, stride, 1), planes))
    y = g.bn(f"{p}.bn2", g.conv(f"{p}.conv2", y, planes, planes, 3, 1, 1), planes, residual=True)
    return g.relu(f"{p}.relu_1", g.add(f"{p}.add", y, _shortcut(g, p, x, cin, planes, stride))), planes


def _bottleneck(g: GraphBuilder, p: str, x: str, cin: int, planes: int, stride: int) -> tuple[str, int]:
    out = planes * 4
    y = g.relu(f"{p}.relu", g.bn(f"{p}.bn1", g.conv(f"{p}.conv1", x, cin, planes, 1), planes))
    y = g.relu(f"{p}.relu_1", g.bn(f"{p}.bn2", g.conv(f"{p}.conv2", y, planes, planes, 3, stride, 1), planes))
    y = g.bn(f"{p}.bn3", g.conv(f"{p}.conv3", y, planes, out, 1), out, residual=True)
    return g.relu(f"{p}.relu_2", g.add(f"{p}.add", y, _shortcut(g, p, x, cin, out, stride))), out


def _shortcut(g: GraphBuilder, p: str, x: str, cin: int, cout: int, stride: int) -> str:
    if stride == 1 and cin == cout:
        return x
    return g.bn(f"{p}.downsample.1", g.conv(f"{p}.downsample.0", x, cin, cout, 1, stride), cout)


def resnet(depth: int = 101, width: float = 1.0) -> GraphBuilder:
    kind, blocks = RESNET_CFG[depth]
    block = _basic if kind == "basic" else _bottleneck
    g = GraphBuilder(f"resnet{depth}")
    cin = _ch(64, width)
    x = g.relu("relu", g.bn("bn1", g.conv("conv1", "input", 3, cin, 7, 2, 3), cin))
    x = g.maxpool("maxpool", x, 3, 2, 1)
    for layer, count in enumerate(blocks, start=1):
        planes = _ch(64 * 2 ** (layer - 1), width)
        for b in range(count):
            x, cin = block(g, f"layer{layer}.{b}", x, cin, planes, 2 if b == 0 and layer > 1 else 1)
    x = g.flatten("flatten", g.global_avgpool("avgpool", x))
    g.linear("fc", x, cin, CLASSES)
    return g


def densenet(depth: int = 121, width: float = 1.0) -> GraphBuilder:
    growth, blocks, init = DENSENET_CFG[depth]
    growth, c, bottleneck = _ch(growth, width), _ch(init, width), 4 * _ch(growth, width)
    g = GraphBuilder(f"densenet{depth}")
    x = g.relu("features.relu0", g.bn("features.norm0", g.conv("features.conv0", "input", 3, c, 7, 2, 3), c))
    x = g.maxpool("features.pool0", x, 3, 2, 1)
    for b, count in enumerate(blocks, start=1):
        features, cin = [x], c
        for i in range(1, count + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            y = g.concat(f"{p}.cat", features)
            y = g.relu(f"{p}.relu1", g.bn(f"{p}.norm1", y, cin))
            y = g.relu(f"{p}.relu2", g.bn(f"{p}.norm2", g.conv(f"{p}.conv1", y, cin, bottleneck, 1), bottleneck))
            features.append(g.conv(f"{p}.conv2", y, bottleneck, growth, 3, 1, 1))
            cin += growth
        x, c = g.concat(f"features.denseblock{b}.cat", features), cin
        if b < len(blocks):
            p = f"features.transition{b}"
            x = g.conv(f"{p}.conv", g.relu(f"{p}.relu", g.bn(f"{p}.norm", x, c)), c, c // 2, 1)
            x, c = g.avgpool(f"{p}.pool", x, 2, 2), c // 2
    x = g.relu("relu", g.bn("features.norm5", x, c))
    x = g.flatten("flatten", g.global_avgpool("avgpool", x))
    g.linear("classifier", x, c, CLASSES)
    return g


FAMILIES: dict[str, tuple[Callable[[int, float], GraphBuilder], dict]] = {
    "vgg": (vgg, VGG_CFG), "resnet": (resnet, RESNET_CFG), "densenet": (densenet, DENSENET_CFG),
}


def builder(name: str, width: float = 1.0) -> GraphBuilder:
    """`builder("resnet101", width=0.125)`: the graph and weight specs, nothing drawn yet."""
    for family, (build, configs) in FAMILIES.items():
        if name.startswith(family) and name[len(family):].isdigit() and int(name[len(family):]) in configs:
            return build(int(name[len(family):]), width)
    known = [f"{f}{d}" for f, (_, cfg) in FAMILIES.items() for d in cfg]
    raise ValueError(f"unknown model '{name}' (known: {', '.join(known)})")


@dataclass(frozen=True)
class ZooModel:
    """A built model on disk and the figures the tables report."""

    name: str
    width: float
    path: Path
    nodes: list[str]
    parameters: int
    buffers: int
    weight_bytes: int

    @property
    def layers(self) -> int:
        return len(self.nodes)


def file_name(name: str, width: float = 1.0) -> str:
    suffix = "" if width == 1.0 else f"-w{width:g}"
    return f"{name}{suffix}.v{BUILDER_VERSION}.onnx"


def cached(name: str, cache: Path | None = None, width: float = 1.0, *, external: bool = False,
           seed: int = 0) -> ZooModel:
    """The model from the cache, built (random weights) and saved atomically if missing.

    `external=True` gives the same weights stored as external data (a directory of its own,
    since edgec only reads external data beside the model), which edgec memory-maps on load.
    """
    cache = Path(cache) if cache is not None else CACHE_DIR
    g = builder(name, width)
    path = cache / file_name(name, width)
    if external:
        path = cache / f"{path.stem}.ext" / path.name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"tmp{os.getpid()}.onnx")
        data = f"{path.name}.data" if external else None
        if data:
            (path.parent / data).unlink(missing_ok=True)  # onnx appends to an existing data file
        onnx.save(g.model(CLASSES, RESOLUTION, seed=seed), tmp, save_as_external_data=external,
                  location=data, size_threshold=1024)
        os.replace(tmp, path)
    return ZooModel(name, width, path, [n.name for n in g.nodes], g.parameters, g.buffers, g.weight_bytes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=["vgg19", "resnet101", "densenet121"])
    parser.add_argument("--cache", type=Path, default=CACHE_DIR)
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args()
    print("| model | layers (ONNX nodes) | parameters (torchvision) | + BN running stats | weights | file |")
    print("|---|---|---|---|---|---|")
    for name in args.names:
        m = cached(name, args.cache, args.width)
        expected = TORCHVISION_PARAMS.get(name) if args.width == 1.0 else None
        check = "" if expected is None else (" ✓" if expected == m.parameters else f" ✗ (torchvision {expected:,})")
        print(f"| {name} | {m.layers} | {m.parameters:,}{check} | {m.parameters + m.buffers:,} "
              f"| {m.weight_bytes / 2**20:.1f} MiB | {m.path} |")


if __name__ == "__main__":
    main()
