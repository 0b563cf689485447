"""A quantized VTA stage read as integer layers: what the VTA code generator lowers, and their numpy reference.

Why a separate reading: the quantize pass leaves QDQ graphs (float Conv between DequantizeLinear
and QuantizeLinear) because that is what onnxruntime and TVM fuse. VTA has no float at all; its
program computes int8 × int8 → int32 accumulators, adds an int32 bias, shifts right and clips to
int8. With the power-of-two scales the pass gives VTA stages (passes/quantize/params.py), a QDQ
layer `Q_y(op(DQ_x(x_q), DQ_w(w_q)) + DQ_b(b_q))` is exactly that:

    acc_c = Σ x_q · w_q[c] + b_q[c]              (int32)
    y_q[c] = clip(round(acc_c · s_x · s_w[c] / s_y), -128, 127),   s_x·s_w[c]/s_y = 2^-shift[c]

so each layer is its int8 weights, int32 bias and a per-channel shift. `extract` finds those
layers in a stage (Conv, Gemm/MatMul with a constant weight, a Relu the quantize pass absorbed,
residual Add, MaxPool) and names every other node with the reason it stays on the CPU.

Rounding: onnxruntime's QuantizeLinear rounds half to even; VTA's shift rounds by adding
2^(shift-1) first (half up). They differ only on exact ties, by one LSB, which is the issue's
tolerance against onnxruntime. `reference` computes the VTA semantics exactly (int32 wrap-around
included) with `edgec.vta.reference`, the result the simulator must reproduce bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import onnx_ir as ir

from ...vta import reference as vta_reference

INT8 = (-128, 127)


@dataclass(frozen=True)
class QTensor:
    """An int8 activation between layers: its name (the float tensor it stands for) and power-of-two scale."""

    name: str
    exponent: int
    """scale = 2^exponent"""


@dataclass(frozen=True)
class IntConv:
    """An int8 convolution (groups 1, dilation 1) or, with 1x1 kernel on a 1x1 image, a fully connected layer."""

    name: str
    x: QTensor
    y: QTensor
    weight: np.ndarray = field(repr=False)
    """int8, (O, I, kh, kw)"""
    bias: np.ndarray = field(repr=False)
    """int32, (O,)"""
    shift: np.ndarray = field(repr=False)
    """int, (O,): right shift per output channel"""
    strides: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    """top, left, bottom, right"""
    relu: bool = False
    dense: bool = False
    """a Gemm/MatMul: x is (N, I) and y (N, O), computed as a 1x1 convolution"""

    @property
    def macs_per_sample(self) -> int:
        return int(np.prod(self.weight.shape))


@dataclass(frozen=True)
class IntAdd:
    """A residual Add of two int8 tensors: `y = clip(round((a << la) + (b << lb)) >> shift)` in int32."""

    name: str
    a: QTensor
    b: QTensor
    y: QTensor
    a_left: int
    b_left: int
    shift: int
    relu: bool = False


@dataclass(frozen=True)
class IntMaxPool:
    """Max-pooling on int8 values (the pool keeps its input's scale)."""

    name: str
    x: QTensor
    y: QTensor
    kernel: tuple[int, int]
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]


IntLayer = IntConv | IntAdd | IntMaxPool


@dataclass(frozen=True)
class Fallback:
    node: str
    op: str
    reason: str


@dataclass(frozen=True)
class Extraction:
    layers: tuple[IntLayer, ...]
    fallbacks: tuple[Fallback, ...]
    inputs: tuple[QTensor, ...]
    """The int8 tensors the layers read that no layer computes (the stage's quantized inputs)."""


def _const(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def _exponents(scale: np.ndarray) -> np.ndarray | None:
    """log2 of every scale, or None when one is not an exact power of two."""
    scale = np.asarray(scale, dtype=np.float64)
    if scale.size == 0 or np.any(scale <= 0):
        return None
    e = np.log2(scale)
    r = np.round(e)
    return r.astype(np.int64) if np.array_equal(e, r) else None


class _Reader:
    def __init__(self, graph: ir.Graph) -> None:
        self.graph = graph
        self.fallbacks: list[Fallback] = []

    def producer(self, value: ir.Value | None, op: str) -> ir.Node | None:
        node = value.producer() if value is not None else None
        return node if node is not None and node.op_type == op else None

    def dq_constant(self, value: ir.Value | None) -> tuple[np.ndarray, np.ndarray, int | None] | None:
        """(quantized constant, scale, axis) of a DequantizeLinear of a constant, zero point 0."""
        dq = self.producer(value, "DequantizeLinear")
        if dq is None:
            return None
        q, scale, zp = _const(dq.inputs[0]), _const(dq.inputs[1]), _const(dq.inputs[2]) if len(dq.inputs) > 2 else None
        if q is None or scale is None or (zp is not None and np.any(zp != 0)):
            return None
        return q, scale, dq.attributes.get_int("axis", 1)

    def dq_activation(self, value: ir.Value | None) -> tuple[QTensor, str] | str:
        """The int8 activation a DequantizeLinear reads, or why it is not one VTA can take."""
        dq = self.producer(value, "DequantizeLinear")
        if dq is None or dq.inputs[0].const_value is not None:
            return "its input is not a quantized activation"
        return self.activation(dq)

    def activation(self, qdq: ir.Node) -> tuple[QTensor, str] | str:
        scale, zp = _const(qdq.inputs[1]), _const(qdq.inputs[2]) if len(qdq.inputs) > 2 else None
        if scale is None or scale.size != 1:
            return "its activation scale is not one constant"
        if zp is None or zp.dtype != np.int8 or np.any(zp != 0):
            return "its activation is not symmetric int8 (zero point 0)"
        e = _exponents(scale)
        if e is None:
            return "its activation scale is not a power of two (quantize the stage for VTA)"
        name = qdq.inputs[0].name if qdq.op_type == "DequantizeLinear" else qdq.outputs[0].name
        return QTensor(name, int(e.reshape(-1)[0])), ""

    def output(self, node: ir.Node) -> tuple[ir.Node | None, QTensor, bool] | str:
        """(the Relu absorbed, the quantized output, relu?) of a layer whose result is quantized."""
        out = node.outputs[0]
        users = [u for u, _ in out.uses()]
        relu = None
        if len(users) == 1 and users[0].op_type == "Relu":
            relu = users[0]
            out = relu.outputs[0]
            users = [u for u, _ in out.uses()]
        if len(users) != 1 or users[0].op_type != "QuantizeLinear" or out in self.graph.outputs:
            return "its result is not quantized to int8 (the stage's float output, or read by float nodes)"
        found = self.activation(users[0])
        if isinstance(found, str):
            return found
        return relu, found[0], relu is not None


def extract(graph: ir.Graph) -> Extraction:
    """The integer layers of a quantized stage graph (see the module docstring), in graph order."""
    reader = _Reader(graph)
    layers: list[IntLayer] = []
    absorbed: set[str] = set()
    for node in graph:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.name in absorbed:
            continue
        found = _layer(reader, node)
        if isinstance(found, str):
            reader.fallbacks.append(Fallback(node.name, node.op_type, found))
            continue
        layer, relu = found
        if relu is not None:
            absorbed.add(relu.name)
        layers.append(layer)
    made = {layer.y.name for layer in layers}
    read: dict[str, QTensor] = {}
    for layer in layers:
        for t in (layer.a, layer.b) if isinstance(layer, IntAdd) else (layer.x,):
            if t.name not in made:
                read.setdefault(t.name, t)
    return Extraction(tuple(layers), tuple(reader.fallbacks), tuple(read.values()))


def _layer(reader: _Reader, node: ir.Node) -> tuple[IntLayer, ir.Node | None] | str:
    op = node.op_type
    if op == "Conv":
        return _conv(reader, node)
    if op in ("Gemm", "MatMul"):
        return _dense(reader, node)
    if op == "Add":
        return _add(reader, node)
    if op == "MaxPool":
        return _maxpool(reader, node)
    return f"VTA has no {op}"


def _conv(reader: _Reader, node: ir.Node) -> tuple[IntLayer, ir.Node | None] | str:
    attrs = node.attributes
    if attrs.get_int("group", 1) != 1:
        return "grouped convolution (VTA's GEMM core reads every input channel)"
    if any(d != 1 for d in (attrs.get_ints("dilations", [1, 1]) or [1, 1])):
        return "dilated convolution"
    if attrs.get_string("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        return "auto_pad SAME (the compiler writes explicit pads)"
    if len(node.inputs[0].shape or ()) != 4:
        return "not a 2-D convolution"
    common = _common(reader, node, weight_axis=0)
    if isinstance(common, str):
        return common
    x, w, b, shift, relu, y, on = common
    pads = tuple(attrs.get_ints("pads", [0, 0, 0, 0]) or [0, 0, 0, 0])
    top, left, bottom, right = pads[0], pads[1], pads[2], pads[3]
    return IntConv(node.name, x, y, w.astype(np.int8), b, shift, tuple(attrs.get_ints("strides", [1, 1]) or [1, 1]),
                   (top, left, bottom, right), on), relu


def _dense(reader: _Reader, node: ir.Node) -> tuple[IntLayer, ir.Node | None] | str:
    if node.op_type == "Gemm":
        a = node.attributes
        if a.get_int("transA", 0) or a.get_float("alpha", 1.0) != 1.0 or a.get_float("beta", 1.0) != 1.0:
            return "Gemm with transA, alpha or beta"
        trans_b = a.get_int("transB", 0)
    else:
        trans_b = 0
    if len(node.inputs[0].shape or ()) != 2:
        return "a matrix product on more than two dimensions"
    common = _common(reader, node, weight_axis=0 if trans_b else 1)
    if isinstance(common, str):
        return common
    x, w, b, shift, relu, y, on = common
    w = w if trans_b else w.T
    return IntConv(node.name, x, y, w.reshape(*w.shape, 1, 1).astype(np.int8), b, shift, relu=on, dense=True), relu


def _common(reader: _Reader, node: ir.Node, weight_axis: int):
    x = reader.dq_activation(node.inputs[0])
    if isinstance(x, str):
        return x
    x = x[0]
    found = reader.dq_constant(node.inputs[1])
    if found is None or found[0].dtype != np.int8:
        return "its weight is not a constant int8 DequantizeLinear"
    w, w_scale, axis = found
    out_channels = w.shape[weight_axis]
    w_e = _exponents(np.broadcast_to(w_scale.reshape(-1), (out_channels,)) if w_scale.size in (1, out_channels) else w_scale)
    if w_e is None or (w_scale.size != 1 and axis % w.ndim != weight_axis):
        return "its weight scales are not powers of two per output channel"
    bias = np.zeros(out_channels, np.int32)
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        found_b = reader.dq_constant(node.inputs[2])
        if found_b is None or found_b[0].dtype != np.int32:
            return "its bias is not a constant int32 DequantizeLinear"
        b_e = _exponents(np.broadcast_to(found_b[1].reshape(-1), (out_channels,)))
        if b_e is None or not np.array_equal(b_e, x.exponent + w_e):
            return "its bias scale is not the input scale times the weight scale"
        bias = found_b[0].astype(np.int32).reshape(-1)
    out = reader.output(node)
    if isinstance(out, str):
        return out
    relu, y, on = out
    shift = y.exponent - x.exponent - w_e
    return x, w, bias, shift.astype(np.int64), relu, y, on


def _add(reader: _Reader, node: ir.Node) -> tuple[IntLayer, ir.Node | None] | str:
    a, b = reader.dq_activation(node.inputs[0]), reader.dq_activation(node.inputs[1])
    if isinstance(a, str) or isinstance(b, str):
        return a if isinstance(a, str) else b
    if list(node.inputs[0].shape or ()) != list(node.inputs[1].shape or ()):
        return "an Add that broadcasts"
    out = reader.output(node)
    if isinstance(out, str):
        return out
    relu, y, on = out
    low = min(a[0].exponent, b[0].exponent)
    return IntAdd(node.name, a[0], b[0], y, a[0].exponent - low, b[0].exponent - low, y.exponent - low, on), relu


def _maxpool(reader: _Reader, node: ir.Node) -> tuple[IntLayer, ir.Node | None] | str:
    x = reader.dq_activation(node.inputs[0])
    if isinstance(x, str):
        return x
    attrs = node.attributes
    if any(d != 1 for d in (attrs.get_ints("dilations", [1, 1]) or [1, 1])) or attrs.get_int("ceil_mode", 0):
        return "MaxPool with dilations or ceil_mode"
    out = reader.output(node)
    if isinstance(out, str):
        return out
    relu, y, on = out
    if on or y.exponent != x[0].exponent:
        return "a MaxPool whose output scale differs from its input's"
    pads = tuple(attrs.get_ints("pads", [0, 0, 0, 0]) or [0, 0, 0, 0])
    kernel = tuple(attrs.get_ints("kernel_shape"))
    return IntMaxPool(node.name, x[0], y, kernel, tuple(attrs.get_ints("strides", [1, 1]) or [1, 1]),
                      (pads[0], pads[1], pads[2], pads[3])), None


def requantize(acc: np.ndarray, shift: np.ndarray | int, relu: bool) -> np.ndarray:
    """VTA's end of a layer (`edgec.vta.reference.requantize`): round half up, arithmetic shift, ReLU as the
    clip (0, 127), clip to int8."""
    return vta_reference.requantize(acc, shift, (0, INT8[1]) if relu else INT8)


def reference(extraction: Extraction, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every layer's int8 output by tensor name, from the int8 `feeds` of `extraction.inputs`."""
    values = {name: np.asarray(a, dtype=np.int8) for name, a in feeds.items()}
    for layer in extraction.layers:
        if isinstance(layer, IntConv):
            clip = (0, INT8[1]) if layer.relu else INT8
            x = values[layer.x.name]
            if layer.dense:
                values[layer.y.name] = vta_reference.gemm(x, layer.weight[:, :, 0, 0], layer.bias, shift=layer.shift,
                                                          clip=clip)
            else:
                values[layer.y.name] = vta_reference.conv2d(x, layer.weight, layer.bias, stride=layer.strides,
                                                            pads=layer.pads, shift=layer.shift, clip=clip)
        elif isinstance(layer, IntAdd):
            values[layer.y.name] = vta_reference.add(values[layer.a.name], values[layer.b.name], shift_a=layer.a_left,
                                                     shift_b=layer.b_left, shift=layer.shift,
                                                     clip=(0, INT8[1]) if layer.relu else INT8)
        else:
            x = values[layer.x.name].astype(np.int32)
            top, left, bottom, right = layer.pads
            x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=INT8[0])
            kh, kw = layer.kernel
            sh, sw = layer.strides
            windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
            values[layer.y.name] = windows.max(axis=(-1, -2)).astype(np.int8)
    return values
