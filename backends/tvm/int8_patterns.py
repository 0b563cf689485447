"""Finding a QDQ stage's quantized layers in its Relax function (what int8_lowering.py rewrites).

A layer is `conv2d` (NCHW/OIHW, groups 1) or a 2-D `matmul` of a dequantized activation (per-tensor
scale and zero point, int8 or uint8) and a dequantized constant int8 weight (zero point 0, scale
per output channel or per tensor), with an optional constant bias add (float, or an int32
`dequantize` as the quantize pass writes it), an optional Relu and a per-tensor `quantize` of
the result (int8 out); without the `quantize` the layer's float result is the root (float out).
Every value inside a layer must have no other use: a float value that something else reads stays
float (the layer keeps the float path).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tvm
from tvm import relax

QRANGE = {"int8": (-128, 127), "uint8": (0, 255)}


def _const(expr) -> np.ndarray | None:
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.GenericConst) else None


def _scalar(expr) -> float | int | None:
    value = _const(expr)
    return value.reshape(-1)[0].item() if value is not None and value.size == 1 else None


def op_name(expr) -> str:
    """The Relax op name of a call (empty for anything else)."""
    return getattr(expr.op, "name", "") if isinstance(expr, relax.Call) else ""


@dataclass
class Int8Layer:
    """One matched quantized layer, in the terms `int8_conv` takes (weights OIHW, int8)."""

    x_q: relax.Expr
    x_scale: float
    x_zero: int
    weight: np.ndarray
    w_scale: np.ndarray
    bias: np.ndarray | None
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    dense: bool
    relu: bool = False
    out_scale: float | None = None
    out_zero: int = 0
    out_dtype: str = "float32"


class _Matcher:
    """Walks one Relax function's bindings: var → value and var → number of uses."""

    def __init__(self, func: relax.Function) -> None:
        self.values = relax.analysis.get_var2val(func)
        self.trail: list = []
        self.uses: dict = {}
        for value in self.values.values():
            for var in _free_vars(value):
                self.uses[var] = self.uses.get(var, 0) + 1
        for var in _free_vars(func.body.body if isinstance(func.body, relax.SeqExpr) else func.body):
            self.uses[var] = self.uses.get(var, 0) + 1

    def value(self, expr, *, single_use: bool = True):
        """The bound value of `expr` (a var used once, when `single_use`), else None."""
        if not isinstance(expr, relax.Var) or expr not in self.values:
            return None
        if single_use and self.uses.get(expr, 0) != 1:
            return None
        if single_use:
            self.trail.append(expr)
        return self.values[expr]

    def dequantized_activation(self, expr):
        dq = self.value(expr, single_use=False)
        if op_name(dq) != "relax.dequantize" or str(dq.args[0].ty.dtype) not in QRANGE:
            return None
        scale, zero = _scalar(dq.args[1]), _scalar(dq.args[2])
        if scale is None or zero is None:
            return None
        return dq.args[0], float(scale), int(zero)

    def dequantized_weight(self, expr, axis: int):
        dq = self.value(expr, single_use=False)
        if op_name(dq) != "relax.dequantize":
            return None
        q, scale, zero = (_const(a) for a in dq.args[:3])
        if q is None or scale is None or zero is None or q.dtype != np.int8 or np.any(zero != 0):
            return None
        if scale.size > 1 and int(dq.attrs.axis) % q.ndim != axis:
            return None
        return q, np.broadcast_to(scale.astype(np.float32).reshape(-1), (q.shape[axis],)).copy()

    def constant(self, expr) -> np.ndarray | None:
        """A constant, or the float value of a dequantized constant (an int32 bias)."""
        if (value := _const(expr)) is not None:
            return value.astype(np.float64)
        dq = self.value(expr, single_use=False)
        if op_name(dq) == "relax.reshape":
            return self.constant(dq.args[0])
        if op_name(dq) != "relax.dequantize":
            return None
        q, scale, zero = (_const(a) for a in dq.args[:3])
        if q is None or scale is None or zero is None or q.ndim > 1:
            return None
        return (q.astype(np.float64) - zero.astype(np.float64)) * scale.astype(np.float64)

    def core(self, call) -> Int8Layer | None:
        """`call` is conv2d/matmul of a dequantized activation and weight, or its bias add."""
        bias = None
        if op_name(call) == "relax.add":
            for a, b in ((0, 1), (1, 0)):
                inner = self.value(call.args[a])
                if op_name(inner) in ("relax.nn.conv2d", "relax.matmul"):
                    bias = self.constant(call.args[b])
                    call = inner if bias is not None else None
                    break
            else:
                return None
        if op_name(call) == "relax.nn.conv2d":
            layer = self._conv(call)
        elif op_name(call) == "relax.matmul":
            layer = self._dense(call)
        else:
            return None
        if layer is None:
            return None
        if bias is not None:
            channels = layer.weight.shape[0]
            if bias.size not in (1, channels) or (bias.ndim > 1 and bias.shape[-1 if layer.dense else 1] != bias.size):
                return None
            layer.bias = np.broadcast_to(bias.reshape(-1), (channels,)).astype(np.float64)
        return layer

    def _conv(self, call) -> Int8Layer | None:
        attrs = call.attrs
        if (attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout not in ("NCHW", "")
                or int(attrs.groups) != 1 or str(attrs.out_dtype) not in ("", "float32", "void", "None")):
            return None
        x, w = self.dequantized_activation(call.args[0]), self.dequantized_weight(call.args[1], 0)
        if x is None or w is None:
            return None
        return Int8Layer(x[0], x[1], x[2], w[0], w[1], None, tuple(int(s) for s in attrs.strides),
                         tuple(int(p) for p in attrs.padding), tuple(int(d) for d in attrs.dilation), False)

    def _dense(self, call) -> Int8Layer | None:
        if len(call.args[0].ty.shape.values) != 2:
            return None
        x = self.dequantized_activation(call.args[0])
        b = self.value(call.args[1], single_use=False)
        if x is None:
            return None
        if op_name(b) == "relax.permute_dims" and b.attrs.axes is not None and [int(a) for a in b.attrs.axes] == [1, 0]:
            w = self.dequantized_weight(b.args[0], 0)
            weight = None if w is None else w[0]
        else:
            w = self.dequantized_weight(call.args[1], 1)
            weight = None if w is None else np.ascontiguousarray(w[0].T)
        if w is None or weight.ndim != 2:
            return None
        return Int8Layer(x[0], x[1], x[2], weight[:, :, None, None], w[1], None, (1, 1), (0, 0, 0, 0), (1, 1), True)

    def quantized(self, call) -> Int8Layer | None:
        """`call` is quantize([relu](core)) with per-tensor output parameters."""
        scale, zero, dtype = _scalar(call.args[1]), _scalar(call.args[2]), str(call.ty.dtype)
        if scale is None or zero is None or dtype not in QRANGE:
            return None
        inner, relu = call.args[0], False
        if op_name(relu_call := self.value(inner)) == "relax.nn.relu":
            inner, relu = relu_call.args[0], True
        layer = self.core(self.value(inner))
        if layer is None:
            return None
        layer.relu, layer.out_scale, layer.out_zero, layer.out_dtype = relu, float(scale), int(zero), dtype
        return layer


def _free_vars(expr) -> list:
    return list(relax.analysis.free_vars(expr)) if isinstance(expr, relax.Expr) else []


def find_layers(func: relax.Function) -> dict:
    """Root call → `Int8Layer` of every quantized layer of `func`: quantize roots first (int8 out),
    then float-output layers (conv/matmul, with its bias add) that no quantize root took."""
    matcher = _Matcher(func)
    layers, interior = {}, set()
    for value in matcher.values.values():
        matcher.trail = []
        if op_name(value) == "relax.quantize" and (layer := matcher.quantized(value)) is not None:
            layers[value] = layer
            interior.update(matcher.trail)
    users: dict = {}
    for var, value in matcher.values.items():
        for used in _free_vars(value):
            users.setdefault(used, []).append(value)
    for var, value in matcher.values.items():
        if var in interior or op_name(value) not in ("relax.add", "relax.nn.conv2d", "relax.matmul"):
            continue
        if str(value.ty.dtype) != "float32" or value in layers:
            continue
        if op_name(value) != "relax.add" and any(op_name(u) == "relax.add" and matcher.core(u) is not None
                                             for u in users.get(var, [])):
            continue
        matcher.trail = []
        if (layer := matcher.core(value)) is not None:
            layers[value] = layer
            interior.update(matcher.trail)
    return layers
