"""Load an ONNX model into the IR and bring it to the form every pass relies on.

Passes assume: every node has a unique name plans can refer to, every value has a static
shape and a dtype, weights are initializers (not graph inputs, not `ConstantOfShape`
chains), and a node reads only its explicit inputs. Real models rarely arrive like that, so
loading normalizes them:

1. refuse external-data paths that leave the model's directory (nothing is read first); an empty
   file, a truncated one, and bytes that are no ONNX model are told apart (`onnx_wire`); a graph
   input or output that is not a tensor (ZipMap's maps, sequences) is refused naming it and its
   type, since stages exchange and return tensors only;
2. models older than opset 9 are converted to opset 9 by `onnx.version_converter` (reported
   through `progress`); only what the converter cannot convert is refused;
3. initializers listed as graph inputs (old model-zoo convention) become plain weights;
4. unnamed nodes get `<op_type>_<index>` (index in the original node list), duplicates a suffix;
5. nodes listed out of topological order are sorted (what control-flow subgraphs read counts);
   a graph with a cycle is refused, naming the nodes on the cycle;
6. input dims that are symbolic, `-1`, `0` or empty are fixed from the plan or `--input-shape`;
   an input left with one is an error naming the input to fix;
7. every shape and type the file declares for computed values (`value_info`, graph outputs) is
   dropped and re-derived: exporters leave stale ones (PaddlePaddle, old PyTorch), and
   onnxruntime runs the model whatever they say;
8. onnxscript's constant folder (with its node-level ONNX shape inference) and onnx-ir's constant
   lifting and dead-node removal run until nothing changes; ONNX's whole-graph inference
   (onnx-ir's `ShapeInferencePass`, non-strict) fills what the node-level one missed. Dropout and
   the Identity of a computed value stay: the canonicalize pass removes them after placement;
9. what ONNX inference still leaves unknown (ai.onnx.ml and com.microsoft ops, ops used beyond
   their opset's rules that onnxruntime accepts, control-flow outputs) is measured by running
   onnxruntime on the model with those values as extra outputs, twice (inputs of zeros, then of
   ones), so a shape that depends on the data is refused naming it rather than fixed wrongly;
10. control-flow nodes (Loop, Scan, If) are placed whole, their subgraphs travel with them: what a
    Loop's or Scan's body reads from the enclosing graph becomes an explicit loop-carried input
    passed through unchanged, so every pass and backend sees an ordinary node; an If whose
    branches read a non-constant value from outside is refused naming the node and the value;
11. every value must now have a static shape and a dtype.

Plans are written against the model as read from the file, so the loader records on the
model's `meta`: `FILE_NODES`, every node name in (sorted) file order before folding, and
`REMOVED_NODES`, name → what happened to each node that is gone (folded into a constant, or
removed as a no-op/unused). `dsl/selectors.py` resolves plans against both.

Weights are never read at load time: external data stays on disk, a single-file model's
initializers become `onnx_ir.ExternalTensor`s into the model file itself (`onnx_wire`), and
onnxruntime (step 9) is fed them as memory-mapped inputs of a weight-free copy of the graph.

Why these libraries: onnxscript's folder and onnx-ir's passes replaced a home-made loop of ONNX
inference and onnx's reference evaluator that folded scalar Gathers and opset-13 Squeeze/
Unsqueeze to the wrong rank and refused stale `value_info`; onnxruntime's own symbolic shape
inference (`onnxruntime.tools.symbolic_shape_infer`) was measured for step 9 and resolves none of
the com.microsoft LSTM's or the ai.onnx.ml Scaler's values, where running onnxruntime resolves
every one (README: model loading).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common_passes

from .diagnostics import ModelError, UsageError, closest, first_line
from .onnx_wire import WireFormatError, attach_weights, parse_without_weights

MIN_OPSET = 9
MAX_DIM = 2**31 - 1
Progress = Callable[[str], None]
FILE_NODES = "edgec.file_nodes"
"""`model.meta` key: every node name as read from the file (after naming and sorting), before folding."""
REMOVED_NODES = "edgec.removed_nodes"
"""`model.meta` key: node name → why it is not in the loaded graph (`FOLDED` or `NO_OP`)."""
FOLDED = "was folded into a constant at load time"
NO_OP = "was removed at load time (it passes its input through unchanged, or nothing uses its result)"
FOLD_LIMIT = 1 << 24
"""Elements an input or output of a folded node may have (canonicalize uses the same input limit)."""
FEED_ELEMENTS = 1024
"""Initializers above this size are fed to onnxruntime as inputs of a weight-free graph, never copied."""
_MAX_ROUNDS = 8
_DEFAULT_DOMAINS = ("", "ai.onnx")
_NEVER_CONSTANT = {"RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike", "Multinomial",
                   "Bernoulli", "Dropout"}


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
    was changed that a user should know about (the opset conversion, shapes onnxruntime measured)."""
    say = progress or (lambda _msg: None)
    _check_graph_form(model)
    model = _convert_old_opset(model, say)
    common_passes.RemoveInitializersFromInputsPass()(model)
    name_nodes(model.graph)
    sort_or_refuse_cycles(model.graph)
    file_nodes = [n.name for n in model.graph]
    fix_input_shapes(model.graph, input_shapes or {})
    _check_inputs_static(model.graph)
    constant = _constant_nodes(model.graph)
    drop_declared_shapes(model.graph)
    infer_and_fold(model, say)
    make_captures_explicit(model.graph)
    check_static(model.graph)
    kept = {n.name for n in model.graph}
    model.meta[FILE_NODES] = file_nodes
    model.meta[REMOVED_NODES] = {name: FOLDED if name in constant else NO_OP for name in file_nodes if name not in kept}
    return model


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

def _read(source: str | os.PathLike | onnx.ModelProto | ir.Model) -> ir.Model:
    if isinstance(source, ir.Model):
        return source
    if isinstance(source, onnx.ModelProto):
        return _from_proto(source, copy_before_editing=True)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"model file '{path}' does not exist")
    if not path.is_file():
        raise UsageError(f"model path '{path}' is not a file")
    size = path.stat().st_size
    try:
        proto, places = parse_without_weights(path)
    except WireFormatError as exc:
        raise ModelError(f"cannot read '{path}' ({size} bytes) as an ONNX model: {_why_unreadable(exc)}") from None
    except (OSError, ValueError) as exc:  # mmap of an unusual file
        raise ModelError(f"cannot read '{path}' ({size} bytes) as an ONNX model: {first_line(exc)}") from None
    model = _from_proto(proto, copy_before_editing=False)
    attach_weights(model, proto, places, path)
    _check_external_data(model, path.parent)
    return model


def _why_unreadable(exc: WireFormatError) -> str:
    if exc.kind == "empty":
        return "the file is empty"
    if exc.kind == "truncated":
        return f"the file is truncated ({exc})"
    return f"it is not an ONNX model ({exc})"


def type_text(type_proto: onnx.TypeProto) -> str:
    """A value type as ONNX and onnxruntime spell it: `tensor(float)`, `seq(map(int64, tensor(float)))`."""
    kind = type_proto.WhichOneof("value")
    if kind in ("tensor_type", "sparse_tensor_type"):
        elem = type_proto.tensor_type.elem_type if kind == "tensor_type" else type_proto.sparse_tensor_type.elem_type
        name = onnx.TensorProto.DataType.Name(elem).lower() if elem else "undefined"
        return f"{'tensor' if kind == 'tensor_type' else 'sparse_tensor'}({name})"
    if kind == "sequence_type":
        return f"seq({type_text(type_proto.sequence_type.elem_type)})"
    if kind == "optional_type":
        return f"optional({type_text(type_proto.optional_type.elem_type)})"
    if kind == "map_type":
        key = onnx.TensorProto.DataType.Name(type_proto.map_type.key_type).lower()
        return f"map({key}, {type_text(type_proto.map_type.value_type)})"
    return kind or "no type"


def _from_proto(proto: onnx.ModelProto, *, copy_before_editing: bool) -> ir.Model:
    """The IR of `proto`. A graph input or output that is not a tensor is refused (stages exchange
    tensors); other values' non-tensor `value_info` hints are dropped (onnx-ir cannot hold maps, and
    loading re-derives every type anyway)."""
    graph = proto.graph
    producers = {o: n for n in graph.node for o in n.output}
    for kind, infos in (("input", graph.input), ("output", graph.output)):
        for info in infos:
            if info.HasField("type") and info.type.WhichOneof("value") not in (None, "tensor_type"):
                node = producers.get(info.name)
                hint = ("export the model without the ZipMap (skl2onnx: options={id(model): {'zipmap': False}}), "
                        "or end the graph at the ZipMap's input" if node is not None and node.op_type == "ZipMap"
                        else "give the model tensor inputs and outputs")
                raise ModelError(f"graph {kind} '{info.name}' has type {type_text(info.type)}, which edgec cannot "
                                 "split: stages exchange and return tensors only", hint=hint)
    hints = [i for i, info in enumerate(graph.value_info) if info.type.WhichOneof("value") != "tensor_type"]
    if hints:
        if copy_before_editing:
            proto = onnx.ModelProto.FromString(proto.SerializeToString())
            graph = proto.graph
        for i in reversed(hints):
            del graph.value_info[i]
    try:
        return ir.from_proto(proto)
    except Exception as exc:  # onnx_ir.serde.SerdeError chains the real reason
        cause: BaseException = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        raise ModelError(f"onnx-ir cannot read the model: {first_line(cause)}") from None


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


def _default_opset(model: ir.Model) -> int | None:
    """The default-domain opset; None for a model of other domains only (ai.onnx.ml)."""
    version = model.opset_imports.get("", model.opset_imports.get("ai.onnx"))
    if version is None and any(n.domain in _DEFAULT_DOMAINS for n in model.graph.all_nodes()):
        raise ModelError("the model uses ONNX operators but imports no default ONNX opset",
                         hint="the file may be truncated or edited; re-export it")
    return version


def _convert_old_opset(model: ir.Model, progress: Progress) -> ir.Model:
    """A model older than MIN_OPSET converted by the ONNX version converter. Weights are not read:
    they travel as external-data references and point at the same bytes afterwards."""
    version = _default_opset(model)
    if version is None or version >= MIN_OPSET:
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


# ---------------------------------------------------------------------------------------------
# structure: names, order, control flow
# ---------------------------------------------------------------------------------------------

def _subgraphs(node: ir.Node) -> list[ir.Graph]:
    graphs: list[ir.Graph] = []
    for attr in node.attributes.values():
        if attr.type == ir.AttributeType.GRAPH:
            graphs.append(attr.as_graph())
        elif attr.type == ir.AttributeType.GRAPHS:
            graphs.extend(attr.as_graphs())
    return graphs


def captured_values(node: ir.Node) -> list[ir.Value]:
    """Values of the enclosing graph that `node`'s subgraphs (nested ones included) read, in first-use order."""
    inside: set[int] = set()
    found: dict[int, ir.Value] = {}

    def walk(graph: ir.Graph) -> None:
        inside.update(id(v) for v in graph.inputs)
        inside.update(id(v) for v in graph.initializers.values())
        for inner in graph:
            for value in inner.inputs:
                if value is not None and id(value) not in inside:
                    found.setdefault(id(value), value)
            for sub in _subgraphs(inner):
                walk(sub)
            inside.update(id(v) for v in inner.outputs)

    for graph in _subgraphs(node):
        walk(graph)
    return list(found.values())


def _reads(node: ir.Node) -> Iterable[ir.Value]:
    yield from (v for v in node.inputs if v is not None)
    if any(a.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS) for a in node.attributes.values()):
        yield from captured_values(node)


def sort_or_refuse_cycles(graph: ir.Graph) -> None:
    """Sort nodes into topological order, or refuse a graph with a cycle naming the nodes on one."""
    nodes = list(graph)
    index = {id(n): i for i, n in enumerate(nodes)}
    preds = [{index[id(q)] for v in _reads(n) if (q := v.producer()) is not None and id(q) in index}
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
    path: list[int] = []
    seen: dict[int, int] = {}
    node = start
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = min(p for p in preds[node] if p in stuck)
    return list(reversed(path[seen[node]:]))


def _check_graph_form(model: ir.Model) -> None:
    if not model.graph.outputs:
        raise ModelError("the model's graph has no outputs")


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


def _unique(base: str, taken: set[str]) -> str:
    name, suffix = base, 1
    while name in taken:
        name, suffix = f"{base}_{suffix}", suffix + 1
    taken.add(name)
    return name


def make_captures_explicit(graph: ir.Graph) -> None:
    """Make every control-flow node read only its explicit inputs, so it is placed and moved whole.

    Loop and Scan: each value the body reads from this graph becomes an extra loop-carried value
    (Scan: state) that the body passes through unchanged; its final value is an extra output
    nobody uses. If: constants its branches read are copied into the branches; a computed value
    cannot be passed to an If, so such an If is refused naming the node and the value."""
    taken: set[str] | None = None
    for node in list(graph):
        captured = captured_values(node)
        if not captured:
            continue
        if taken is None:
            taken = {v.name for g in [graph, *(s for n in graph.all_nodes() for s in _subgraphs(n))]
                     for v in [*g.inputs, *g.initializers.values(), *(o for n in g for o in n.outputs)] if v.name}
        if node.domain in _DEFAULT_DOMAINS and node.op_type in ("Loop", "Scan"):
            _pass_through(node, captured, taken)
        elif node.domain in _DEFAULT_DOMAINS and node.op_type == "If":
            _copy_constants_into_branches(node, captured, taken)
        else:
            raise ModelError(f"{node.op_type} has a subgraph that reads '{captured[0].name}' from the enclosing graph; "
                             "edgec places control flow only as Loop, Scan or If", node=node.name)


def _replace_inside(graphs: Sequence[ir.Graph], old: ir.Value, new: ir.Value) -> None:
    members: set[int] = set()

    def collect(graph: ir.Graph) -> None:
        for inner in graph:
            members.add(id(inner))
            for sub in _subgraphs(inner):
                collect(sub)

    for graph in graphs:
        collect(graph)
    for use in list(old.uses()):
        if id(use.node) in members:
            use.node.replace_input_with(use.idx, new)


def _pass_through(node: ir.Node, captured: list[ir.Value], taken: set[str]) -> None:
    body = node.attributes["body"].as_graph()
    k = len(captured)
    if node.op_type == "Loop":
        carried = len(node.inputs) - 2
        input_at, body_input_at, body_output_at = len(node.inputs), len(body.inputs), 1 + carried
    else:
        scan_inputs = node.attributes.get_int("num_scan_inputs", 0)
        carried = len(node.inputs) - scan_inputs
        input_at, body_input_at, body_output_at = carried, carried, carried
    inputs = list(node.inputs)
    node.resize_inputs(len(inputs) + k)
    for i, value in enumerate([*inputs[:input_at], *captured, *inputs[input_at:]]):
        if node.inputs[i] is not value:
            node.replace_input_with(i, value)
    for i, value in enumerate(captured):
        inner = ir.Value(name=_unique(f"{value.name}.in_{node.name}", taken), shape=value.shape, type=value.type)
        body.inputs.insert(body_input_at + i, inner)
        _replace_inside([body], value, inner)
        # through an Identity: onnxruntime's Scan can hand out garbage for a body output that is a body input
        keep = ir.Node("", "Identity", [inner], name=_unique(f"{node.name}/keep_{value.name}", taken), num_outputs=1)
        keep.outputs[0].name = _unique(f"{value.name}.out_{node.name}", taken)
        keep.outputs[0].shape, keep.outputs[0].type = value.shape, value.type
        body.append(keep)
        body.outputs.insert(body_output_at + i, keep.outputs[0])
    outputs = list(node.outputs)
    node.resize_outputs(len(outputs) + k)
    scans = len(outputs) - carried
    for j in reversed(range(scans)):  # scan outputs move k places right; the freed slots are the new finals
        _move_value(node.outputs[carried + j], node.outputs[carried + k + j])
    for i, value in enumerate(captured):
        final = node.outputs[carried + i]
        final.name = _unique(f"{value.name}.after_{node.name}", taken)
        final.shape, final.type = value.shape, value.type


def _move_value(src: ir.Value, dst: ir.Value) -> None:
    """`dst` takes over `src`'s name, type, shape and uses (graph outputs included)."""
    name = src.name
    src.replace_all_uses_with(dst, replace_graph_outputs=True)
    dst.shape, dst.type = src.shape, src.type
    src.name, src.shape, src.type = None, None, None
    dst.name = name


def _copy_constants_into_branches(node: ir.Node, captured: list[ir.Value], taken: set[str]) -> None:
    computed = [v for v in captured if v.const_value is None]
    if computed:
        raise ModelError(f"its branches read '{computed[0].name}' from outside the If, and it is not a constant; an If "
                         "takes no inputs, so edgec cannot place it on its own", node=node.name,
                         hint="export the model with the condition folded, or as a Loop/Where instead of an If")
    for branch in _subgraphs(node):
        for value in captured:
            assert value.const_value is not None  # computed values were refused above
            copy = ir.Value(name=_unique(f"{value.name}.in_{node.name}", taken), shape=value.shape, type=value.type,
                            const_value=ir.Tensor(value.const_value.numpy(), name=None))
            branch.register_initializer(copy)
            _replace_inside([branch], value, copy)


# ---------------------------------------------------------------------------------------------
# shapes
# ---------------------------------------------------------------------------------------------

def _is_unknown_dim(dim: object) -> bool:
    """Symbolic, unnamed, or what exporters write for a dynamic dim (-1, 0)."""
    return not isinstance(dim, int) or dim <= 0


def fix_input_shapes(graph: ir.Graph, shapes: Mapping[str, Sequence[int]]) -> None:
    inputs = {str(v.name): v for v in graph.inputs}
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
                if not _is_unknown_dim(a) and a != b:
                    raise ModelError(f"input '{name}' dim {axis} is fixed to {a} in the model, got {b}")
        value.shape = ir.Shape(dims)


def _dims(shape: ir.Shape | None) -> str:
    if shape is None:
        return "unknown rank"
    return "[" + ", ".join(str(d) if isinstance(d, int) else (str(d) if d.value else "?") for d in shape) + "]"


def _is_static(value: ir.Value) -> bool:
    return (value.shape is not None and all(isinstance(d, int) and d >= 0 for d in value.shape)
            and value.dtype is not None)


def _check_inputs_static(graph: ir.Graph) -> None:
    for value in graph.inputs:
        if value.shape is None or any(_is_unknown_dim(d) for d in value.shape) or value.dtype is None:
            example = [1 if _is_unknown_dim(d) else int(d) for d in value.shape] if value.shape is not None else [1]
            raise ModelError(
                f"input '{value.name}' has unknown dimensions {_dims(value.shape)}",
                hint=f"fix them in the plan (input \"{value.name}\" {example}) "
                f"or with --input-shape '{value.name}={','.join(map(str, example))}' (unknown dims set to 1 here)",
            )


def drop_declared_shapes(graph: ir.Graph) -> None:
    """Forget the shape and type the file declares for every computed value (value_info, graph outputs):
    inference derives them again, and onnxruntime measures what inference cannot."""
    for node in graph:
        for value in node.outputs:
            value.shape = None
            value.type = None


def _constant_nodes(graph: ir.Graph) -> set[str]:
    """Nodes whose results are constants once the inputs' shapes are fixed: what folding may remove as a constant."""
    constant = {id(v) for v in graph.initializers.values()}
    names: set[str] = set()
    for node in graph:
        if node.domain not in _DEFAULT_DOMAINS or node.op_type in _NEVER_CONSTANT or _subgraphs(node):
            continue
        if node.op_type in ("Shape", "Size") or all(id(v) in constant for v in node.inputs if v is not None):
            names.add(str(node.name))
            constant.update(id(v) for v in node.outputs)
    return names


def _should_fold(node: ir.Node) -> bool | None:
    """Graph outputs stay computed by a node (some stage must produce each). ConstantOfShape folds too:
    onnxscript keeps it to keep files small, but its value is what lets NonZero/Range chains fold
    (opset 9 arange) and old zoo models' weights become weights."""
    if any(v.is_graph_output() for v in node.outputs):
        return False
    if node.op_type == "ConstantOfShape" and node.domain in _DEFAULT_DOMAINS:
        return True
    return None


def _unknown(graph: ir.Graph) -> list[ir.Value]:
    return [v for n in graph for v in n.outputs if not _is_static(v)]


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    """Silence the libraries' own warnings (a reference-evaluator failure it skips, inference it gives up):
    loading handles both, and without logging configured Python would print them to stderr."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def infer_and_fold(model: ir.Model, progress: Progress | None = None) -> None:
    """Fold and infer until nothing changes; ONNX whole-graph inference, then onnxruntime, for what stays unknown."""
    with _quiet("onnxscript.optimizer._constant_folding", "onnx_ir.passes.common.shape_inference"):
        _infer_and_fold(model, progress)


def _infer_and_fold(model: ir.Model, progress: Progress | None) -> None:
    _fold_until_fixed(model)
    if _unknown(model.graph) and common_passes.ShapeInferencePass(check_type=False, strict_mode=False,
                                                                   data_prop=True)(model).modified:
        _fold_until_fixed(model)
    unknown = _unknown(model.graph)
    if unknown:
        # where inference stopped: nodes whose inputs are all known but whose outputs are not
        first = [n for n in dict.fromkeys(v.producer() for v in unknown)
                 if n is not None and all(v is None or _is_static(v) for v in n.inputs)]
        ops = sorted({f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in first})
        measure_with_onnxruntime(model, unknown)
        (progress or (lambda _m: None))(
            f"onnxruntime measured the shapes of {len(unknown)} value(s) that ONNX shape inference leaves unknown "
            f"(it stops at {', '.join(ops) or 'the model inputs'})")
        _fold_until_fixed(model)


def _folder() -> ir.passes.InPlacePass:
    """onnxscript's constant folder (with node-level ONNX shape inference), except that it keeps every
    Dropout and every Identity of a computed value: removing those is the canonicalize pass's job,
    which runs after placement and keeps the names and placements plans gave them."""
    # imported here: onnxscript costs ~0.1 s that reading a model never needs
    from onnxscript.optimizer._constant_folding import FoldConstantsPass

    class KeepNoOps(FoldConstantsPass):
        def process_node(self, node: ir.Node, is_function: bool):  # type: ignore[override]
            if node.domain in _DEFAULT_DOMAINS and (
                    node.op_type == "Dropout"
                    or (node.op_type == "Identity" and node.inputs and node.inputs[0] is not None
                        and node.inputs[0].const_value is None)):
                _pass_through_shape(node)
                return None
            if node.op_type == "ConstantOfShape" and node.domain in _DEFAULT_DOMAINS:
                # a weight written as ConstantOfShape (old zoo models) becomes a weight whatever its size:
                # split-layer slices weights, and only initializers can be sliced
                limit, self.output_size_limit = self.output_size_limit, 2**62
                try:
                    return super().process_node(node, is_function)
                finally:
                    self.output_size_limit = limit
            return super().process_node(node, is_function)

    return KeepNoOps(shape_inference=True, input_size_limit=FOLD_LIMIT, output_size_limit=FOLD_LIMIT,
                     should_fold=_should_fold)


def _pass_through_shape(node: ir.Node) -> None:
    """Identity and Dropout outputs: the input's shape and type (Dropout's mask: its shape, bool)."""
    source = node.inputs[0] if node.inputs else None
    if source is None or source.shape is None or source.type is None:
        return
    node.outputs[0].shape, node.outputs[0].type = source.shape, source.type
    for mask in node.outputs[1:]:
        mask.shape, mask.dtype = source.shape, ir.DataType.BOOL


def _fold_until_fixed(model: ir.Model) -> None:
    for _ in range(_MAX_ROUNDS):
        existing = {id(n) for n in model.graph}
        origin = {v.name: n.name for n in model.graph for v in n.outputs if v.name and n.name}
        folded = _folder()(model).modified
        lifted = common_passes.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model).modified
        removed = common_passes.RemoveUnusedNodesPass()(model).modified
        _name_new_nodes(model.graph, existing, origin)
        if not (folded or lifted or removed):
            return


def _name_new_nodes(graph: ir.Graph, existing: set[int], origin: dict[str, str]) -> None:
    """A node the folder made (an Identity for a no-op Reshape that is a graph output, say) takes the
    name of the node whose output it produces, so plans naming that node still find it."""
    taken = {n.name for n in graph if id(n) in existing and n.name}
    for node in graph:
        if id(node) in existing:
            continue
        base = next((origin[v.name] for v in node.outputs if v.name in origin), None) or node.name or node.op_type
        node.name = _unique(base, taken)


def measure_with_onnxruntime(model: ir.Model, values: Sequence[ir.Value]) -> None:
    """Set the shape and dtype of `values` (top-level node outputs) from onnxruntime running the model.

    The model runs on a weight-free copy of its graph (initializers above `FEED_ELEMENTS` become inputs
    fed from their memory-mapped bytes), or with the weights copied in if onnxruntime refuses that;
    once on inputs of zeros and once on ones. A shape that differs between the runs depends on the
    data and is refused; a value that is not a tensor (a sequence, a map) too."""
    run = _onnxruntime_runner(model, values)
    first = run(0)
    try:
        second: list | None = run(1)
    except ModelError:  # ones may be invalid where zeros are not (an index, a divisor): check with one run only
        second = None
    for i, value in enumerate(values):
        node = value.producer()
        where = node.name if node is not None else None
        result = first[i]
        if not isinstance(result, np.ndarray):
            kind = "map" if isinstance(result, dict) else "sequence" if isinstance(result, list) else type(result).__name__
            raise ModelError(f"output '{value.name}' is a {kind}, not a tensor; edgec places and moves tensors only",
                             node=where)
        if second is not None and isinstance(second[i], np.ndarray) and second[i].shape != result.shape:
            raise ModelError(f"output '{value.name}' has a shape that depends on the input data "
                             f"({list(result.shape)} for inputs of zeros, {list(second[i].shape)} for ones); "
                             "edgec needs static shapes", node=where,
                             hint="export the model with that part computed from shapes only, or split it off")
        value.shape = ir.Shape(list(result.shape))
        value.dtype = ir.DataType.STRING if result.dtype.kind in "OUS" else ir.DataType.from_numpy(result.dtype)


def _onnxruntime_runner(model: ir.Model, values: Sequence[ir.Value]) -> Callable[[int], list]:
    """One onnxruntime session for the measurement; the returned function runs it on inputs filled with a value."""
    import onnxruntime as ort

    graph = model.graph
    weights = list(graph.initializers.values())
    fed = [(v, v.const_value) for v in weights if v.const_value is not None and v.const_value.size > FEED_ELEMENTS]
    fed_names = {v.name for v, _ in fed}
    outputs = list(graph.outputs) + [v for v in values if not v.is_graph_output()]
    view = ir.GraphView(inputs=list(graph.inputs) + [v for v, _ in fed], outputs=outputs, nodes=list(graph),
                        initializers=[v for v in weights if v.name not in fed_names],
                        opset_imports=graph.opset_imports, name=graph.name)
    proto = ir.to_proto(ir.Model(view, ir_version=max(model.ir_version, 4)))  # type: ignore[arg-type]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every value stays computed
    options.log_severity_level = 3
    weight_feeds: dict = {}
    try:
        session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        weight_feeds = {str(v.name): tensor.numpy() for v, tensor in fed}
    except Exception:  # an op that needs a weight to be an initializer: copy the weights in
        del proto.graph.input[len(graph.inputs):]
        proto.graph.initializer.extend(onnx.numpy_helper.from_array(np.asarray(tensor.numpy()), v.name)
                                       for v, tensor in fed)
        try:
            session = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise _unmeasured(values, exc) from None
    def run(fill: int) -> list:
        try:
            return session.run([v.name for v in values], {**{v.name: _filled(v, fill) for v in graph.inputs},
                                                          **weight_feeds})
        except Exception as exc:
            raise _unmeasured(values, exc) from None

    return run


def _unmeasured(values: Sequence[ir.Value], exc: BaseException) -> ModelError:
    value = values[0]
    node = value.producer()
    return ModelError(f"ONNX shape inference leaves the shape of {len(values)} value(s) unknown (first '{value.name}'), "
                      f"and onnxruntime cannot run the model to measure them: {first_line(exc)}",
                      node=node.name if node is not None else None,
                      hint="check that onnxruntime runs the model with the input shapes given")


def _filled(value: ir.Value, fill: int) -> np.ndarray:
    """An input of `fill`s (strings: empty) at its fixed shape (checked static before anything runs)."""
    assert value.dtype is not None and value.shape is not None
    dtype = np.dtype(object) if value.dtype == ir.DataType.STRING else value.dtype.numpy()
    shape = [d for d in value.shape if isinstance(d, int)]
    return np.full(shape, "" if dtype == np.dtype(object) else fill, dtype=dtype)


def check_static(graph: ir.Graph) -> None:
    """Every value must have a dtype and a fully static shape; say which input to fix if not."""
    _check_inputs_static(graph)
    for node in graph:
        for value in node.outputs:
            if not _is_static(value):
                raise ModelError(
                    f"output '{value.name}' has unknown shape {_dims(value.shape)} after shape inference",
                    node=node.name,
                    hint="edgec needs static shapes; check the model's reshape/shape logic",
                )
