"""Tiny coded programs: a plan with `split` + `cdc` lowered onto a one-layer model, split and encoded in-process,
and a run of every part and parity tensor in onnxruntime."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import onnx
import onnx_ir as ir

import edgec
from edgec.compiler.annotations import CDC_LAYERS
from edgec.passes import CdcEncode, SplitLayer
from graphs import Net
from split_helpers import run

DEVICES = "".join(f"device d{i} {{ arch x86_64 cores 1 }}\n" for i in range(8))


def fc_model(n=10, kdim=6, op="Gemm", follower=None, trans_b=1) -> onnx.ModelProto:
    net = Net({"x": [2, kdim]})
    if op == "Gemm":
        w = net.weight("w", n, kdim) if trans_b else net.weight("w", kdim, n)
        net.op("Gemm", "fc", ["x", w, net.weight("b", n)], transB=trans_b)
    else:
        net.op("MatMul", "fc", ["x", net.weight("w", kdim, n)])
    if follower:
        net.op(follower, "act", ["fc"])
    return net.model(["act" if follower else "fc"])


def conv_model(cout=7, follower=None) -> onnx.ModelProto:
    net = Net({"x": [1, 3, 6, 5]})
    net.op("Conv", "fc", ["x", net.weight("w", cout, 3, 3, 3), net.weight("b", cout)], pads=[1] * 4)
    if follower:
        net.op(follower, "act", ["fc"])
    return net.model(["act" if follower else "fc"])


def plan(k: int, parity: int, kind="output", targets="d7", extra="") -> str:
    parts = ", ".join(f"d{i}" for i in range(k))
    return (f"{DEVICES}place * on d0\nsplit fc by {kind} into {k} on {parts}\ncdc fc parity {parity} on {targets}\n"
            + extra)


def coded(model: onnx.ModelProto, text: str) -> edgec.Program:
    program = edgec.load_program(model, text)
    SplitLayer()(program)
    CdcEncode()(program)
    return program


def run_rows(program: edgec.Program, feeds: dict[str, np.ndarray]) -> tuple[list[np.ndarray], dict[int, np.ndarray]]:
    """(graph outputs, every part and parity tensor by row) of the coded program."""
    (layer,) = program.model.meta[CDC_LAYERS]
    model = ir.from_proto(ir.to_proto(program.model))
    values = {v.name: v for n in model.graph for v in n.outputs}
    names = [*layer.parts, *layer.parities]
    outputs = list(model.graph.outputs)
    model.graph.outputs.extend(values[n] for n in names if values[n] not in outputs)
    results = run(model, feeds)
    by_name = dict(zip([v.name for v in model.graph.outputs], results))
    return results[:len(outputs)], {i: by_name[n] for i, n in enumerate(names)}


def check_every_loss(entry, rows: dict[int, np.ndarray], most: int) -> None:
    """Every loss of 1 … `most` of the layer's rows (`rows` by index, parts then parities): the frame loop's
    decoder (`recover_into`, float32, only the missing parts) rebuilds exactly the lost parts, equal to the float64
    reference solve (`recover`) and, norm-wise within 1e-4, to the parts themselves."""
    from edgec.runtime.cdc_decode import Decoder

    names = [*entry.parts, *entry.parities]
    decoder = Decoder(entry)
    for lost in [c for n in range(1, most + 1) for c in combinations(names, n)]:
        arrived = {name: rows[i] for i, name in enumerate(names) if name not in lost}
        out = {name: np.full_like(rows[i], np.nan) for i, name in enumerate(entry.parts)}
        rebuilt = decoder.recover_into(arrived, out)
        reference, expected = decoder.recover(arrived)
        assert rebuilt == expected and set(rebuilt) == set(lost) & set(entry.parts), lost
        for name in rebuilt:
            truth = rows[names.index(name)]
            np.testing.assert_allclose(out[name], reference[name], rtol=1e-5, atol=1e-5 * max(np.abs(truth).max(), 1))
            assert np.abs(out[name] - truth).max() <= 1e-4 * max(np.abs(truth).max(), 1e-6), (lost, name)
