"""A small CNN trained here on a real data set, exported to ONNX with its BatchNorm nodes, cached.

    python benchmarks/trained_cnn.py [--kind resnet|dwsep] [--dataset auto|fashion-mnist|digits]
                                     [--cache DIR] [--threads 1] [--retrain]

Why: the quantize and prune benchmarks measure accuracy, which random weights cannot show; they
need a trained model with residual blocks and BatchNorm, its calibration images and a test set,
all made from data an installed package ships (image_datasets.py), with torch as a benchmark-only
extra (`pip install -e ".[bench]"`). Training takes a minute or two on one core, so the result
is cached under `~/.cache/edgec-bench/trained/<kind>-<dataset>-<hash>/`, the hash covering this
file, image_datasets.py and every setting, so changed code or seeds retrain and nothing else does.

What the cache directory holds (the formats edgec reads):
- `model.onnx`: opset 17, input `input` of static shape [1, C, H, W] (edgec wants static shapes),
  output `logits` [1, classes]; BatchNormalization nodes kept (prune ranks channels by BN gamma
  and re-estimates BN statistics; quantize folds BN itself). The TorchScript exporter in
  `TrainingMode.EVAL` fuses BN into the convolutions, so the export uses `TrainingMode.PRESERVE`
  with the module in eval mode, which keeps each BN with its running statistics.
- `calibration/input.npy`: [N, C, H, W] float32, samples on axis 0, drawn from the training
  file but disjoint from the images the model trained on and from the test set: the folder
  `quantize … calibrate "DIR"` and `prune … calibrate "DIR"` read (one `<input>.npy` per input).
- `test.npz`: `input` [N, C, H, W] float32 and `labels` [N] int64 (`edgec verify --dataset`).
- `info.json`: the figures the table prints.

Models: `resnet` (stem conv, four basic residual blocks, two of them downsampling with a 1x1
projection shortcut, global average pool, Linear) and `dwsep` (MobileNet-v1-style depthwise 3x3
+ BN + ReLU, pointwise 1x1 + BN + ReLU; ReLU and not ReLU6, because cross-layer equalization
rescales channels and is exact only for a positively homogeneous activation).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import image_datasets as data_sets
from tables import machine, markdown, seconds

CACHE_DIR = Path.home() / ".cache" / "edgec-bench" / "trained"
KINDS = ("resnet", "dwsep")
SEED = 0
OPSET = 17
BATCH = 128
EPOCHS = {"fashion-mnist": 4, "digits": 30}
TRAIN_SIZE = {"fashion-mnist": 20_000, "digits": None}
LEARNING_RATE = 3e-3
WEIGHT_DECAY = 5e-4
DIGITS_TEST = 450
CALIBRATION_POOL = 5_000  # held out of training whatever `calibration` is, so the model stays the same


@dataclass(frozen=True)
class TrainedModel:
    kind: str
    dataset: str
    onnx_path: Path
    calibration_dir: Path
    test_npz: Path
    float_accuracy: float
    input_shape: tuple[int, int, int, int]
    classes: tuple[str, ...]
    info: dict


# --- data ------------------------------------------------------------------------------------

def splits(dataset: data_sets.Dataset, calibration: int, test: int | None, seed: int = SEED):
    """Fixed train / calibration / test split: calibration never overlaps training or test."""
    rng = np.random.default_rng(seed)
    if "test" in dataset.splits:
        x, y = dataset.splits["train"]
        tx, ty = dataset.splits["test"]
        if calibration > CALIBRATION_POOL:
            raise ValueError(f"at most {CALIBRATION_POOL} calibration samples (asked for {calibration})")
        order = rng.permutation(len(x))
        calib_idx, train_idx = order[:calibration], order[CALIBRATION_POOL:]
        size = TRAIN_SIZE.get(dataset.name)
        if size is not None:
            train_idx = train_idx[:size]
        if test is not None:
            tx, ty = tx[:test], ty[:test]
    else:
        x, y = dataset.splits["train"]
        order = rng.permutation(len(x))
        n_test = min(test or DIGITS_TEST, len(x) // 3)
        calibration = min(calibration, len(x) // 6)
        test_idx = order[:n_test]
        calib_idx = order[n_test:n_test + calibration]
        train_idx = order[n_test + calibration:]
        tx, ty = x[test_idx], y[test_idx]
    return (x[train_idx], y[train_idx]), x[calib_idx], (tx, ty)


def normalise(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((images - mean) / std).astype(np.float32)


# --- models ----------------------------------------------------------------------------------

def build(kind: str, channels: int, classes: int):
    """Modules named like torchvision's, so the ONNX node names read `layer2_conv1`, `fc`."""
    import torch.nn as nn

    class ConvBN(nn.Sequential):
        def __init__(self, cin, cout, k, stride=1, groups=1, relu=True):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False)
            self.bn = nn.BatchNorm2d(cout)
            if relu:
                self.relu = nn.ReLU()

    class Basic(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.downsample = (ConvBN(cin, cout, 1, stride, relu=False)
                               if stride != 1 or cin != cout else nn.Identity())
            self.relu2 = nn.ReLU()

        def forward(self, x):
            y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
            return self.relu2(y + self.downsample(x))

    class Net(nn.Module):
        def __init__(self, stages, width):
            super().__init__()
            for name, module in stages:
                self.add_module(name, module)
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.flatten = nn.Flatten()
            self.fc = nn.Linear(width, classes)

        def forward(self, x):
            for module in self.children():
                x = module(x)
            return x

    if kind == "resnet":
        stages = [("stem", ConvBN(channels, 16, 3)), ("layer1", Basic(16, 16, 1)),
                  ("layer2", Basic(16, 32, 2)), ("layer3", Basic(32, 64, 2)), ("layer4", Basic(64, 64, 1))]
        return Net(stages, 64)
    if kind == "dwsep":
        stages, cin = [("stem", ConvBN(channels, 16, 3))], 16
        for i, (cout, stride) in enumerate(((32, 1), (64, 2), (64, 1), (128, 2), (128, 1)), 1):
            stages += [(f"block{i}_dw", ConvBN(cin, cin, 3, stride, groups=cin)),
                       (f"block{i}_pw", ConvBN(cin, cout, 1))]
            cin = cout
        return Net(stages, cin)
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, seed: int, progress: bool) -> None:
    import torch

    torch.manual_seed(seed)
    xs, ys = torch.from_numpy(x), torch.from_numpy(y)
    steps = epochs * ((len(xs) + BATCH - 1) // BATCH)
    opt = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LEARNING_RATE, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        order, total, start = torch.randperm(len(xs), generator=gen), 0.0, time.perf_counter()
        for i in range(0, len(xs), BATCH):
            idx = order[i:i + BATCH]
            loss = torch.nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        if progress:
            print(f"  epoch {epoch + 1}/{epochs}: loss {total / len(xs):.4f} "
                  f"({time.perf_counter() - start:.1f} s)", file=sys.stderr, flush=True)
    model.eval()


def torch_logits(model, x: np.ndarray):
    import torch

    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(x[i:i + 500])).numpy() for i in range(0, len(x), 500)])


def export(model, input_shape: tuple[int, ...], path: Path) -> None:
    """TorchScript exporter, PRESERVE mode on an eval module: BN nodes stay, with running stats."""
    import onnx
    import torch

    dummy = torch.zeros(input_shape)
    with warnings.catch_warnings():  # chosen on purpose: the torch.export-based one folds BN away
        warnings.filterwarnings("ignore", "You are using the legacy TorchScript", DeprecationWarning)
        torch.onnx.export(model, (dummy,), str(path), input_names=["input"], output_names=["logits"],
                          opset_version=OPSET, dynamo=False, do_constant_folding=False,
                          training=torch.onnx.TrainingMode.PRESERVE)
    proto = onnx.load(str(path))
    _undo_shared_initializers(proto.graph)
    _name_nodes(proto.graph, {n for n, m in model.named_modules() if not list(m.children())})
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(path))


def _name_nodes(graph, leaves: set[str]) -> None:
    """Name each node and its output after its module (`/layer2/downsample/conv/Conv` becomes
    `layer2_downsample_conv`; an op a module's forward calls gets its op type appended,
    `layer2_add`), so plans name nodes without quotes."""
    renamed: dict[str, str] = {}
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        scope = node.name.strip("/").split("/")[:-1]
        name = "_".join(scope) if ".".join(scope) in leaves else "_".join([*scope, node.op_type.lower()])
        node.name = name
        for j, out in enumerate(node.output):
            if out not in outputs:
                renamed[out] = name if len(node.output) == 1 else f"{name}_{j}"
    if len({n.name for n in graph.node}) != len(graph.node):
        raise RuntimeError("module-based node names are not unique")
    for node in graph.node:
        node.input[:] = [renamed.get(x, x) for x in node.input]
        node.output[:] = [renamed.get(x, x) for x in node.output]


def _undo_shared_initializers(graph) -> None:
    """The exporter turns equal parameters (two BN biases still zero) into one initializer read
    through Identity nodes; give each reader its own copy, so every BN owns its parameters."""
    inits = {t.name: t for t in graph.initializer}
    for node in [n for n in graph.node if n.op_type == "Identity" and n.input[0] in inits]:
        copy = type(inits[node.input[0]])()
        copy.CopyFrom(inits[node.input[0]])
        copy.name = node.output[0]
        graph.initializer.append(copy)
        graph.node.remove(node)


# --- onnxruntime -----------------------------------------------------------------------------

def session(onnx_path: Path, threads: int = 1):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def predict(onnx_path: Path, images: np.ndarray, *, threads: int = 1) -> np.ndarray:
    """Logits for every image; batched when the model's batch dimension allows, else one by one."""
    sess = session(onnx_path, threads)
    inp = sess.get_inputs()[0]
    batch = inp.shape[0]
    step = len(images) if not isinstance(batch, int) else batch
    out = []
    for i in range(0, len(images), step):
        chunk = images[i:i + step]
        if len(chunk) < step:
            chunk = np.concatenate([chunk, np.zeros((step - len(chunk), *chunk.shape[1:]), chunk.dtype)])
        out.append(sess.run(None, {inp.name: chunk})[0][:len(images) - i])
    return np.concatenate(out)


def accuracy(onnx_path: Path | str, test_npz: Path | str, *, threads: int = 1) -> float:
    """Top-1 accuracy (fraction) of an ONNX model on a `test.npz` (`input`, `labels`)."""
    with np.load(test_npz) as test:
        logits = predict(Path(onnx_path), test["input"], threads=threads)
        return float((logits.argmax(axis=1) == test["labels"]).mean())


def graph_figures(onnx_path: Path) -> dict:
    """Parameters, MACs (Conv and Gemm/MatMul, from shape inference) and nodes by op type."""
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    g = model.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*g.value_info, *g.input, *g.output]}
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    shapes.update({k: list(v.shape) for k, v in inits.items()})
    macs = 0
    for node in g.node:
        if node.op_type == "Conv":
            out, w = shapes[node.output[0]], shapes[node.input[1]]
            macs += int(np.prod(out)) * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul"):
            out, w = shapes[node.output[0]], shapes[node.input[1]]
            k = w[1] if node.op_type == "Gemm" and any(a.name == "transB" and a.i for a in node.attribute) else w[0]
            macs += int(np.prod(out)) * int(k)
    params = sum(int(v.size) for k, v in inits.items()
                 if not any(n.op_type == "BatchNormalization" and k in n.input[3:] for n in g.node))
    return {"params": params, "macs": macs, "ops": dict(sorted(Counter(n.op_type for n in g.node).items()))}


# --- cache -----------------------------------------------------------------------------------

def _key(kind: str, dataset: str, calibration: int, test: int | None, seed: int) -> str:
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in (here / "trained_cnn.py", here / "image_datasets.py"):
        h.update(f.read_bytes())
    h.update(json.dumps([kind, dataset, calibration, test, seed]).encode())
    return h.hexdigest()[:12]


def _loaded(kind: str, dataset: str, folder: Path, info: dict) -> TrainedModel:
    return TrainedModel(kind, dataset, folder / "model.onnx", folder / "calibration", folder / "test.npz",
                        info["float_accuracy_ort"], tuple(info["input_shape"]), tuple(info["classes"]), info)


def trained_model(kind: str = "resnet", *, dataset: str = "auto", cache: Path | str | None = None,
                  threads: int = 1, calibration: int = 500, test: int | None = None, seed: int = SEED,
                  progress: bool = True, retrain: bool = False) -> TrainedModel:
    """The trained model of this kind, from the cache when there, else trained, exported, checked.

    `test=None` keeps the whole test split (Fashion-MNIST: the official 10 000 images, so a
    0.3-point accuracy change is 30 images); `float_accuracy` is onnxruntime's on it.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; known: {', '.join(KINDS)}")
    ds = data_sets.load(dataset)
    root = Path(cache) if cache is not None else CACHE_DIR
    folder = root / f"{kind}-{ds.name}-{_key(kind, ds.name, calibration, test, seed)}"
    info_path = folder / "info.json"
    if info_path.exists() and not retrain:
        return _loaded(kind, ds.name, folder, json.loads(info_path.read_text()))

    import torch

    torch.set_num_threads(threads)
    (train_x, train_y), calib_x, (test_x, test_y) = splits(ds, calibration, test, seed)
    mean, std = float(train_x.mean()), float(train_x.std())
    train_x, calib_x, test_x = (normalise(a, mean, std) for a in (train_x, calib_x, test_x))
    torch.manual_seed(seed)
    model = build(kind, ds.image_shape[0], len(ds.classes))
    if progress:
        print(f"training {kind} on {ds.name} ({len(train_x)} images, {EPOCHS[ds.name]} epochs, "
              f"{threads} thread(s))", file=sys.stderr, flush=True)
    load_before, start, cpu = os.getloadavg()[0], time.perf_counter(), time.process_time()
    train(model, train_x, train_y, EPOCHS[ds.name], seed, progress)
    train_s, train_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    ref = torch_logits(model, test_x)

    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "calibration").mkdir(parents=True)
    input_shape = (1, *ds.image_shape)
    export(model, input_shape, tmp / "model.onnx")
    np.save(tmp / "calibration" / "input.npy", calib_x)
    np.savez(tmp / "test.npz", input=test_x, labels=test_y)
    ort_logits = predict(tmp / "model.onnx", test_x, threads=threads)
    info = {
        "kind": kind, "dataset": ds.name, "source": ds.source, "seed": seed,
        "mean": mean, "std": std, "epochs": EPOCHS[ds.name], "batch": BATCH,
        "samples": {"train": len(train_x), "calibration": len(calib_x), "test": len(test_x)},
        "train_s": train_s, "train_cpu_s": train_cpu_s, "load": [load_before, os.getloadavg()[0]], "threads": threads, "input_shape": list(input_shape),
        "classes": list(ds.classes),
        "float_accuracy_torch": float((ref.argmax(1) == test_y).mean()),
        "float_accuracy_ort": float((ort_logits.argmax(1) == test_y).mean()),
        "max_abs_logit_diff": float(np.abs(ref - ort_logits).max()),
        "changed_predictions": int((ref.argmax(1) != ort_logits.argmax(1)).sum()),
        "torch": torch.__version__, **graph_figures(tmp / "model.onnx"),
    }
    (tmp / "info.json").write_text(json.dumps(info, indent=1))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    return _loaded(kind, ds.name, folder, info)


# --- table -----------------------------------------------------------------------------------

def table(models: list[TrainedModel]) -> str:
    rows = []
    for m in models:
        i = m.info
        s = i["samples"]
        rows.append([m.kind, f"{m.dataset} ({i['source']})", f"{s['train']} / {s['calibration']} / {s['test']}",
                     i["epochs"], f"{seconds(i['train_s'])} wall, {seconds(i['train_cpu_s'])} CPU "
                     f"({i['threads']} thr, load {i['load'][0]:.1f}–{i['load'][1]:.1f})",
                     f"{100 * i['float_accuracy_torch']:.2f} %", f"{100 * i['float_accuracy_ort']:.2f} %",
                     f"{i['max_abs_logit_diff']:.1e}", f"{i['params']:,}", f"{i['macs'] / 1e6:.2f} M",
                     ", ".join(f"{k} {v}" for k, v in i["ops"].items())])
    return markdown(["model", "data set", "train / calib / test", "epochs", "training",
                     "top-1 torch", "top-1 onnxruntime", "max |logit diff|", "params", "MACs",
                     "nodes"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=KINDS, action="append", help="default: both")
    parser.add_argument("--dataset", default="auto", choices=("auto", *data_sets.NAMES))
    parser.add_argument("--cache", type=Path, help=f"default {CACHE_DIR}")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--calibration", type=int, default=500)
    parser.add_argument("--retrain", action="store_true", help="ignore the cached model")
    args = parser.parse_args()
    print(machine() + "\n")
    try:
        models = [trained_model(k, dataset=args.dataset, cache=args.cache, threads=args.threads,
                                calibration=args.calibration, retrain=args.retrain)
                  for k in (args.kind or KINDS)]
    except data_sets.DatasetMissing as exc:
        sys.exit(f"error: {exc}")
    print(table(models))
    for m in models:
        print(f"\n{m.kind}: {m.onnx_path.parent}")


if __name__ == "__main__":
    main()
