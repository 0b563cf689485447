"""The onnx package's light model zoo, with weights made informative for equivalence tests.

The light models' weights are all 0.02 (ConstantOfShape), which makes every output nearly
uniform and an equivalence test nearly vacuous. `randomized` loads a model through edgec
(folding those constants into initializers), draws seeded random weights with the right
scale for each role (conv/FC weight, BatchNorm statistics, bias), and saves the result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

import edgec

ZOO_DIR = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
ZOO = sorted(p.stem.removeprefix("light_") for p in ZOO_DIR.glob("light_*.onnx"))


def zoo_path(name: str) -> Path:
    return ZOO_DIR / f"light_{name}.onnx"


def _draw(rng: np.random.Generator, value: ir.Value) -> np.ndarray | None:
    array = value.const_value.numpy()
    if array.dtype != np.float32:
        return None
    use = value.uses()[0] if value.uses() else None
    op, idx = (use.node.op_type, use.idx) if use else ("", -1)
    if op in ("Conv", "Gemm", "MatMul") and idx == 1:
        fan_in = int(np.prod(array.shape[1:])) if op == "Conv" else array.shape[0 if op == "MatMul" else 1]
        if op == "Gemm" and not use.node.attributes.get_int("transB", 0):
            fan_in = array.shape[0]
        return rng.normal(0, np.sqrt(2.0 / max(fan_in, 1)), array.shape).astype(np.float32)
    if op == "BatchNormalization" and idx in (1, 4):
        return rng.uniform(0.5, 1.5, array.shape).astype(np.float32)
    if op == "Mul":
        return rng.uniform(0.5, 1.5, array.shape).astype(np.float32)
    return rng.normal(0, 0.1, array.shape).astype(np.float32)


def randomized(name: str, directory: Path, seed: int = 0) -> Path:
    path = directory / f"{name}.onnx"
    if path.exists():
        return path
    model = edgec.load_model(zoo_path(name))
    rng = np.random.default_rng(seed)
    for value in model.graph.initializers.values():
        drawn = _draw(rng, value)
        if drawn is not None:
            value.const_value = ir.Tensor(drawn, name=value.name)
    ir.save(model, path)
    return path


def range_plan(order: list[str], stages: int = 4, devices: tuple[str, ...] = ("a", "b", "c")) -> str:
    """A plan placing `stages` contiguous ranges (by node name) round-robin on `devices` (A→B→C→A)."""
    lines = [f"device {d} {{ arch x86_64 cores 2 }}" for d in devices]
    bounds = np.linspace(0, len(order), stages + 1).astype(int)
    for i in range(stages):
        first, last = order[bounds[i]], order[bounds[i + 1] - 1]
        lines.append(f'place "{first}" .. "{last}" on {devices[i % len(devices)]}.cpu')
    return "\n".join(lines) + "\n"
