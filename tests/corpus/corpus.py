"""The corpus of real exported models: where each file is, and the 3-stage plan the tests give it.

Shared by `make_corpus.py` (which runs in the exporters' own environments, so this module needs
nothing but `onnx` and the standard library) and `test_corpus.py`.

`MANIFEST.json` lists every model: the committed ones under `models/`, the ones an installed
Python package ships (found inside the installed package, never downloaded), and the onnx
package's own test data. Each entry says where the file is (`file`, or `package` + `path`),
which exporter wrote it, the input shapes the tests fix (`run_shapes`), and how its plan picks
its split points (`split_on`).

The plan is written against the model *as it is in the file*, as a user reading it in Netron
would write it: node names come from the file (an unnamed node is `<op_type>_<index>`, the
name edgec's loader gives it), ranges follow the file's node order. Which nodes fold into
constants is predicted here from the file alone (see `foldable_nodes`), independently of
edgec, so a plan can deliberately end a range on a node that folds away.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import onnx

HERE = Path(__file__).resolve().parent
MODELS = HERE / "models"
MANIFEST = HERE / "MANIFEST.json"

# Ops whose value is never a constant, even with constant inputs.
_NEVER_CONSTANT = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "Dropout",
}
# Ops whose value depends only on the *shape* of their input: constant once input shapes are fixed.
_SHAPE_ONLY = {"Shape", "Size"}
# Ops that typically carry shape arithmetic into a Reshape/Expand/Resize etc.
_SHAPE_CHAIN = {"Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Mul", "Div", "Floor",
                "Range", "ConstantOfShape", "Constant", "Add", "Sub", "ReduceProd", "Equal", "Where"}

# Kept ops whose inputs after the first are shapes, sizes, indices or (RNNs) initial states.
_SHAPE_OPERANDS = {"Reshape", "Expand", "Tile", "Resize", "Upsample", "Slice", "Range", "Pad", "Gather",
                   "LSTM", "GRU", "RNN"}


@dataclass(frozen=True)
class Entry:
    """One corpus model, as MANIFEST.json describes it."""

    name: str
    data: dict

    @property
    def path(self) -> Path | None:
        """The model file, or None when the package that ships it is not installed."""
        if "file" in self.data:
            return HERE / self.data["file"]
        spec = importlib.util.find_spec(self.data["package"]["import"])
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / self.data["package"]["path"]
        return path if path.is_file() else None

    @property
    def run_shapes(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in self.data.get("run_shapes", {}).items()}

    @property
    def input_specs(self) -> list[dict]:
        return self.data["inputs"]


def entries() -> list[Entry]:
    data = json.loads(MANIFEST.read_text())
    return [Entry(e["name"], e) for e in data["models"]]


def node_names(model: onnx.ModelProto) -> list[str]:
    """The nodes' names as a plan can write them: the file's, or `<op_type>_<index>` for unnamed ones."""
    names, seen = [], set()
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        base, suffix = name, 1
        while name in seen:
            name = f"{base}_{suffix}"
            suffix += 1
        seen.add(name)
        names.append(name)
    return names


def foldable_nodes(model: onnx.ModelProto) -> set[int]:
    """Indices (in the file's node list) of nodes whose outputs are constants once the inputs'
    shapes are fixed: constant inputs only, or `Shape`/`Size`, and no subgraph or randomness.
    This is the part of the graph a constant folder removes."""
    constant = {init.name for init in model.graph.initializer}
    constant.add("")
    graph_outputs = {o.name for o in model.graph.output}
    found: set[int] = set()
    for index, node in enumerate(model.graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type in _NEVER_CONSTANT:
            continue
        if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in node.attribute):
            continue
        if any(o in graph_outputs for o in node.output):
            continue
        if node.op_type in _SHAPE_ONLY or all(i in constant for i in node.input):
            found.add(index)
            constant.update(node.output)
    return found


def feeds_reshape(model: onnx.ModelProto, index: int) -> bool:
    """Whether node `index`'s output reaches a shape operand (Reshape/Expand/Tile/Resize/… input ≥ 1)
    or an RNN's initial state, through foldable nodes only."""
    fold = foldable_nodes(model)
    nodes = model.graph.node
    consumers: dict[str, list[tuple[int, int]]] = {}
    for j, node in enumerate(nodes):
        for k, name in enumerate(node.input):
            consumers.setdefault(name, []).append((j, k))
    todo, seen = [index], set()
    while todo:
        i = todo.pop()
        if i in seen:
            continue
        seen.add(i)
        for out in nodes[i].output:
            for j, k in consumers.get(out, []):
                if j not in fold and k >= 1 and nodes[j].op_type in _SHAPE_OPERANDS:
                    return True
                if j in fold:
                    todo.append(j)
    return False


def split_points(model: onnx.ModelProto, split_on: str) -> list[tuple[int, int]]:
    """Three (start, end) ranges of the file's node list (inclusive), consecutive and covering it
    from the first to the last node that stays after folding.

    `split_on="kept"`: every range starts and ends on a node that stays (not foldable); the
    inner ends are the kept nodes nearest to 1/3 and 2/3 of the node list.
    `split_on="folded"`: the inner range ends are foldable nodes (preferably a computed one —
    Shape/Gather/Concat…, not a Constant — feeding a Reshape or an RNN state), the nearest to 1/3
    and 2/3, and the next ranges start right after them: a plan whose ranges end on nodes the
    loader folds away. When the foldable nodes sit in one cluster, only the first end is
    foldable and the second is the kept node nearest to 2/3."""
    n = len(model.graph.node)
    fold = foldable_nodes(model)
    kept = [i for i in range(n) if i not in fold]
    if len(kept) < 3:
        raise ValueError(f"only {len(kept)} node(s) survive folding; a 3-stage plan needs 3")
    first, last = kept[0], kept[-1]
    targets = [first + (last - first) * k // 3 for k in (1, 2)]
    if split_on == "kept":
        end1 = min(kept[:-2], key=lambda i: (abs(i - targets[0]), i))
        end2 = min((k for k in kept[:-1] if k > end1), key=lambda i: (abs(i - targets[1]), i))
        start2 = min(k for k in kept if k > end1)
        start3 = min(k for k in kept if k > end2)
        return [(first, end1), (start2, end2), (start3, last)]
    if split_on != "folded":
        raise ValueError(f"split_on must be 'kept' or 'folded', not {split_on!r}")
    chain = [i for i in sorted(fold) if first < i < last and model.graph.node[i].op_type in _SHAPE_CHAIN]
    feeding = [i for i in chain if feeds_reshape(model, i)]
    computed = [i for i in feeding if model.graph.node[i].op_type != "Constant"]
    pool = next(p for p in (computed, feeding, chain) if len(p) >= 2 or p is chain)
    # each stage keeps at least one node that stays
    usable = lambda i, lo: any(lo < k <= i for k in kept) and any(i < k <= last for k in kept)  # noqa: E731
    ends1 = [i for i in pool if usable(i, first - 1)]
    if not ends1:
        raise ValueError("no foldable node to end a range on between the first and the last kept node")
    end1 = min(ends1, key=lambda i: (abs(i - targets[0]), i))
    ends2 = [i for i in pool if i > end1 and usable(i, end1)] or [i for i in kept[:-1] if usable(i, end1)]
    if not ends2:
        raise ValueError(f"no node to end the second range on after node {end1}")
    end2 = min(ends2, key=lambda i: (abs(i - targets[1]), i))
    return [(first, end1), (end1 + 1, end2), (end2 + 1, last)]


def three_stage_plan(model: onnx.ModelProto, split_on: str = "kept") -> str:
    """A plan placing three consecutive ranges of the file's nodes on devices a, b, a; any node
    before the first kept one that the loader keeps after all lands on a (`place *`)."""
    names = node_names(model)
    ranges = split_points(model, split_on)
    lines = ["device a { arch x86_64 cores 2 mem 2GiB }",
             "device b { arch x86_64 cores 2 mem 2GiB }",
             "link a <-> b { bandwidth 100Mbit latency 1ms }"]
    for (start, end), device in zip(ranges, "aba"):
        lines.append(f"place {quote(names[start])} .. {quote(names[end])} on {device}.cpu")
    lines.append("place * on a.cpu")
    return "\n".join(lines) + "\n"


def quote(name: str) -> str:
    """A plan string literal: `\\` and `\"` are its only escapes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
