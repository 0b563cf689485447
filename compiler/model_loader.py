"""Load an ONNX model into the IR and bring it to the form every pass relies on.

Passes assume: every node has a unique name plans can refer to, every value has a static
shape and a dtype, weights are initializers (not graph inputs, not `ConstantOfShape`
chains). Real models rarely arrive like that, so loading normalizes them:

1. refuse external-data paths that leave the model's directory (nothing is read first), and a
   file that is truncated or no ONNX model at all, saying so with its size;
2. models older than opset 9 are converted to opset 9 by `onnx.version_converter` (reported
   through `progress`); only what the converter cannot convert is refused;
3. initializers listed as graph inputs (old model-zoo convention) become plain weights;
4. unnamed nodes get `<op_type>_<index>` (index in the original node list), duplicates a suffix;
5. nodes listed out of topological order are sorted; a graph with a cycle is refused, naming
   the nodes on the cycle (no pass could make sense of it);
6. symbolic input dims are fixed from the plan or `--input-shape`;
7. shape inference and constant folding alternate until nothing changes.

Weights are never read at load time: external data stays on disk, and a single-file model's
initializers become `onnx_ir.ExternalTensor`s into the model file itself (`onnx_wire`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes
from onnx.reference import ReferenceEvaluator

from .diagnostics import ModelError, UsageError, closest, first_line
from .onnx_wire import WireFormatError, load_without_weights

MIN_OPSET = 9
MAX_DIM = 2**31 - 1
Progress = Callable[[str], None]
_NOT_FOLDABLE = {
    "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
    "Bernoulli", "If", "Loop", "Scan", "SequenceConstruct", "Dropout",
}
_MAX_FOLD_ROUNDS = 8

def load_model(
    source: str | os.PathLike | onnx.ModelProto | ir.Model,
    *,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    progress: Progress | None = None,
) -> ir.Model:
    """Read `source` and normalize it (see module docstring). Raises ModelError/UsageError."""
    return normalize_model(read_model(source), input_shapes=input_shapes, progress=progress)


def read_model(source: str | os.PathLike | onnx.ModelProto | ir.Model) -> ir.Model:
    """Read without normalizing; external data is checked but stays on disk."""
    return _read(source)


def normalize_model(model: ir.Model, *, input_shapes: Mapping[str, Sequence[int]] | None = None,
                    progress: Progress | None = None) -> ir.Model:
    """The normalized model (a new object when an old opset was converted). `progress` hears what
    was changed that a user should know about (the opset conversion)."""
    _check_graph_form(model)
    model = _convert_old_opset(model, progress or (lambda _msg: None))
    common_passes.RemoveInitializersFromInputsPass()(model)
    name_nodes(model.graph)
    sort_or_refuse_cycles(model.graph)
    fix_input_shapes(model.graph, input_shapes or {})
    infer_and_fold(model)
    check_static(model.graph)
    return model


def _read(source: str | os.PathLike | onnx.ModelProto | ir.Model) -> ir.Model:
    if isinstance(source, ir.Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return ir.from_proto(source)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"model file '{path}' does not exist")
    if not path.is_file():
        raise UsageError(f"model path '{path}' is not a file")
    try:
        model = load_without_weights(path)
    except Exception as exc:  # protobuf raises several unrelated types on garbage
        detail = str(exc) if isinstance(exc, WireFormatError) else first_line(exc)
        raise ModelError(f"cannot read '{path}' ({path.stat().st_size} bytes) as an ONNX model: the file is "
                         f"truncated or not an ONNX model ({detail})") from None
    _check_external_data(model, path.parent)
    return model


def _check_external_data(model: ir.Model, model_dir: Path) -> None:
    """External data must live inside the model's directory and be fully present."""
    root = model_dir.resolve()
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if not isinstance(tensor, ir.ExternalTensor):
            continue
        location = Path(tensor.location)
        target = (root / location).resolve()
        if location.is_absolute() or not target.is_relative_to(root):
            raise ModelError(
                f"initializer '{value.name}' points to external data '{tensor.location}' outside "
                f"the model's directory; refusing to read it"
            )
        if not target.is_file():
            raise ModelError(f"initializer '{value.name}': external data file '{target}' is missing")
        end = (tensor.offset or 0) + (tensor.length if tensor.length is not None else tensor.nbytes)
        if end > target.stat().st_size:
            raise ModelError(
                f"initializer '{value.name}': external data '{tensor.location}' is truncated "
                f"(needs {end} bytes, file has {target.stat().st_size})"
            )


def _default_opset(model: ir.Model) -> int:
    version = model.opset_imports.get("", model.opset_imports.get("ai.onnx"))
    if version is None:
        raise ModelError("the model imports no default ONNX opset")
    return version


def _convert_old_opset(model: ir.Model, progress: Progress) -> ir.Model:
    """A model older than MIN_OPSET converted by the ONNX version converter. Weights are not read:
    they travel as external-data references and point at the same bytes afterwards."""
    version = _default_opset(model)
    if version >= MIN_OPSET:
        return model
    base_dirs = {v.name: v.const_value.base_dir for v in model.graph.initializers.values()
                 if isinstance(v.const_value, ir.ExternalTensor)}
    try:
        converted = onnx.version_converter.convert_version(ir.to_proto(model), MIN_OPSET)
        result = ir.from_proto(converted)
    except Exception as exc:  # the converter raises RuntimeError/ValueError/ConvertError for what it cannot do
        raise ModelError(f"the model uses opset {version} and the ONNX version converter cannot convert it to "
                         f"opset {MIN_OPSET}: {first_line(exc)}",
                         hint=f"convert it yourself (onnx.version_converter, or re-export at opset {MIN_OPSET} or newer)") from None
    for value in result.graph.initializers.values():
        tensor = value.const_value
        if isinstance(tensor, ir.ExternalTensor) and value.name in base_dirs:
            tensor.base_dir = base_dirs[value.name]
    progress(f"the model uses opset {version}; converted it to opset {MIN_OPSET} with onnx.version_converter")
    return result


def sort_or_refuse_cycles(graph: ir.Graph) -> None:
    """Sort nodes into topological order, or refuse a graph with a cycle naming the nodes on one."""
    nodes = list(graph)
    index = {id(n): i for i, n in enumerate(nodes)}
    preds = [{index[id(p)] for v in n.inputs if v is not None and (p := v.producer()) is not None and id(p) in index}
             for n in nodes]
    if all(all(p < i for p in ps) for i, ps in enumerate(preds)):
        return
    succs: list[list[int]] = [[] for _ in nodes]
    for i, ps in enumerate(preds):
        for p in ps:
            succs[p].append(i)
    waiting = [len(ps) for ps in preds]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    done = 0
    while ready:
        i = ready.pop()
        done += 1
        for s in succs[i]:
            waiting[s] -= 1
            if waiting[s] == 0:
                ready.append(s)
    if done == len(nodes):
        graph.sort()
        return
    cycle = _find_cycle(preds, {i for i, w in enumerate(waiting) if w > 0})
    names = " -> ".join(nodes[i].name or nodes[i].op_type for i in [*cycle, cycle[0]])
    raise ModelError(f"the graph has a cycle: {names}", node=nodes[cycle[0]].name,
                     hint="an ONNX graph must be acyclic; check how the model was exported or edited")


def _find_cycle(preds: list[set[int]], stuck: set[int]) -> list[int]:
    """One cycle among `stuck` (nodes Kahn's algorithm could not order), in data-flow order."""
    start = min(stuck)
    path, seen, node = [], {}, start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(p for p in preds[node] if p in stuck)
    return list(reversed(path[seen[node]:]))


def _check_graph_form(model: ir.Model) -> None:
    graph = model.graph
    if not graph.outputs:
        raise ModelError("the model's graph has no outputs")
    for node in graph:
        for attr in node.attributes.values():
            if attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
                raise ModelError(
                    f"control flow ({node.op_type} with a subgraph) is not supported",
                    node=node.name or node.op_type,
                )


def name_nodes(graph: ir.Graph) -> None:
    """Give every node a unique, stable name a plan can use."""
    seen: set[str] = set()
    for index, node in enumerate(graph):
        name = node.name or f"{node.op_type}_{index}"
        base, suffix = name, 1
        while name in seen:
            name = f"{base}_{suffix}"
            suffix += 1
        node.name = name
        seen.add(name)


def fix_input_shapes(graph: ir.Graph, shapes: Mapping[str, Sequence[int]]) -> None:
    inputs = {v.name: v for v in graph.inputs}
    for name, dims in shapes.items():
        value = inputs.get(name)
        if value is None:
            raise ModelError(
                f"the model has no input '{name}' (inputs: {', '.join(inputs) or 'none'})",
                hint=f"did you mean '{closest(name, inputs)}'?" if closest(name, inputs) else None,
            )
        dims = [int(d) for d in dims]
        if any(d <= 0 for d in dims):
            raise ModelError(f"input '{name}': every dimension must be positive, got {dims}")
        if any(d > MAX_DIM for d in dims):
            raise ModelError(f"input '{name}': every dimension must be at most {MAX_DIM}, got {dims}")
        old = value.shape
        if old is not None:
            if len(old) != len(dims):
                raise ModelError(f"input '{name}' has rank {len(old)} ({_dims(old)}), got {len(dims)} dims {dims}")
            for axis, (a, b) in enumerate(zip(old, dims)):
                if isinstance(a, int) and a != b:
                    raise ModelError(f"input '{name}' dim {axis} is fixed to {a} in the model, got {b}")
        value.shape = ir.Shape(dims)


def _dims(shape: ir.Shape | None) -> str:
    if shape is None:
        return "unknown rank"
    return "[" + ", ".join(str(d) if isinstance(d, int) else (str(d) if d.value else "?") for d in shape) + "]"


def _is_static(value: ir.Value) -> bool:
    return value.shape is not None and all(isinstance(d, int) for d in value.shape) and value.dtype is not None


def infer_and_fold(model: ir.Model) -> None:
    """Alternate shape inference and constant folding until a fixed point."""
    for _ in range(_MAX_FOLD_ROUNDS):
        infer_shapes(model)
        if not fold_constants(model.graph):
            break
    common_passes.RemoveUnusedNodesPass()(model)


def infer_shapes(model: ir.Model) -> None:
    try:
        proto = ir.to_proto(_without_weights(model))
        inferred = onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        raise ModelError(f"shape inference failed: {first_line(exc)}") from None
    except Exception as exc:
        raise ModelError(f"shape inference failed: {first_line(exc)}") from None
    known = {vi.name: vi for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for node in model.graph:
        for value in node.outputs:
            info = known.get(value.name)
            if info is None or not info.type.HasField("tensor_type"):
                continue
            tt = info.type.tensor_type
            if value.dtype is None and tt.elem_type:
                value.dtype = ir.DataType(tt.elem_type)
            if tt.HasField("shape"):
                dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim]
                if value.shape is None or not all(isinstance(d, int) for d in value.shape):
                    value.shape = ir.Shape(dims)


def _without_weights(model: ir.Model) -> ir.Model:
    """A shallow view for shape inference: initializers become typed inputs, so no weight bytes are serialized."""
    graph = model.graph
    weights = [v for v in graph.initializers.values()]
    small = {v.name for v in weights if v.const_value is not None and v.const_value.size <= 1024}
    view = ir.GraphView(
        inputs=list(graph.inputs) + [v for v in weights if v.name not in small],
        outputs=list(graph.outputs),
        nodes=list(graph),
        initializers=[v for v in weights if v.name in small],
        opset_imports=graph.opset_imports,
        name=graph.name,
    )
    return ir.Model(view, ir_version=max(model.ir_version, 4))  # type: ignore[arg-type]


def fold_constants(graph: ir.Graph) -> bool:
    """Replace nodes whose result is fixed (all inputs constant, or `Shape` of a static value) by initializers."""
    folded = False
    opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", MIN_OPSET))
    for node in list(graph):
        outputs = _fold(node, opset)
        if outputs is None:
            continue
        for value, array in zip(node.outputs, outputs):
            name = value.name
            constant = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                                const_value=ir.Tensor(np.array(array, order="C"), name=name))
            value.replace_all_uses_with(constant, replace_graph_outputs=True)
            value.name = None
            graph.register_initializer(constant)
        graph.remove(node, safe=True)
        folded = True
    return folded


def _fold(node: ir.Node, opset: int) -> list[np.ndarray] | None:
    if node.domain not in ("", "ai.onnx") or node.op_type in _NOT_FOLDABLE or not node.outputs:
        return None
    if any(out.is_graph_output() for out in node.outputs):
        return None
    if node.op_type in ("Shape", "Size") and node.inputs and node.inputs[0] is not None and _is_static(node.inputs[0]):
        shape = np.array(list(node.inputs[0].shape), dtype=np.int64)
        if node.op_type == "Size":
            return [np.array(int(np.prod(shape)), dtype=np.int64)]
        start = node.attributes.get_int("start", 0)
        end = node.attributes.get_int("end", len(shape))
        return [shape[start:end]]
    if not all(v is None or v.const_value is not None for v in node.inputs):
        return None
    if node.op_type != "Constant" and not any(v is not None for v in node.inputs):
        return None
    feeds = {v.name: v.const_value.numpy() for v in node.inputs if v is not None}
    try:
        results = ReferenceEvaluator(_single_node_model(node, opset)).run(None, feeds)
    except Exception as exc:
        raise ModelError(f"constant folding failed: {first_line(exc)}", node=node.name) from None
    return [np.asarray(r) for r in results]


def _single_node_model(node: ir.Node, opset: int) -> onnx.ModelProto:
    proto = ir.serde.serialize_node(node)
    graph = onnx.helper.make_graph(
        [proto], "fold",
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in proto.input if n],
        [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in proto.output],
    )
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", opset)])


def check_static(graph: ir.Graph) -> None:
    """Every value must have a dtype and a fully static shape; say which input to fix if not."""
    for value in graph.inputs:
        if not _is_static(value):
            dims = _dims(value.shape)
            raise ModelError(
                f"input '{value.name}' has unknown dimensions {dims}",
                hint=f"fix them in the plan (input \"{value.name}\" [1, 3, 224, 224]) "
                f"or with --input-shape '{value.name}=1,3,224,224'",
            )
    for node in graph:
        for value in node.outputs:
            if not _is_static(value):
                raise ModelError(
                    f"output '{value.name}' has unknown shape {_dims(value.shape)} after shape inference",
                    node=node.name,
                    hint="edgec needs static shapes; check the model's reshape/shape logic",
                )
