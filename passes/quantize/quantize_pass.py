"""The quantize pass: the plan's `quantize` statements as calibrated QDQ int8 in the IR.

requires placed; provides quantized; invalidates comm; runs after canonicalize, split-layer,
split and fold-batchnorm when they are in the pipeline (each part of a split layer is quantized
with its own parameters; stages decide where each Q and DQ runs). Runs once.

With no `quantize` statement the pass changes nothing. Otherwise, in order:
1. the model is upgraded to opset 13 when older (`opset.py`), BatchNorms are folded
   (fold-batchnorm's rewrite; weights are quantized after folding), and with `equalize` the
   depthwise-separable pairs are equalized (`equalization.py`);
2. the selected nodes — a device's nodes, or a selector's — are walked by the rule table
   (`selection.py`), and each stage gets its activation type from its engine
   (`activation_type.py`);
3. ranges are collected streaming over the calibration folder (`ranges.py`) by the statement's
   method, and turned into scales and zero points (`params.py`);
4. weights become per-channel int8 DequantizeLinear constants, activations get Q/DQ pairs
   (`qdq.py`); with `correct_bias` each layer's bias absorbs the mean shift quantization causes
   (`bias_correction.py`); biases become int32 at scale_x · scale_w;
5. `quantize wire` quantizes every float tensor still crossing stages (`wire.py`).
`program.quantization` gets one record per quantized stage, `program.wire_quantization` one per
boundary tensor that travels quantized.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ...compiler.annotations import QUANTIZE_REQUESTS, TARGET_BACKENDS, QuantizeRequest, placement_of, stage_of
from ...compiler.diagnostics import UsageError
from ...compiler.facts import Fact
from ...compiler.pass_manager import Pass, PassResult
from ...compiler.program import Program, StageQuantization
from . import activation_type, bias_correction, equalization, opset, params, ranges, wire
from ..calibration_data import for_program
from .qdq import dequantized_constant, insert_pair
from .selection import Selection, requests_by_node, select

ENGINES = ("auto", "onnxruntime", "tvm")


@dataclass(frozen=True)
class Quantize(Pass):
    """Static post-training quantization of the plan's `quantize` statements (see the module docstring).

    `engine`: the engine the stages are quantized for (`auto`: VTA for a vta resource, TVM when the
    compile writes TVM modules, else onnxruntime). `samples`: use at most this many calibration
    samples (0: all).
    """

    engine: str = "auto"
    samples: int = 0

    name = "quantize"
    requires = frozenset({Fact.PLACED})
    provides = frozenset({Fact.QUANTIZED})
    invalidates = frozenset({Fact.COMM})
    after = frozenset({Fact.CANONICAL, Fact.LAYERS_SPLIT, Fact.STAGED, Fact.BATCHNORM_FOLDED})
    repeatable = False

    def precondition(self, program: Program) -> None:
        if self.engine not in ENGINES:
            raise UsageError(f"quantize: unknown engine '{self.engine}' (engines: {', '.join(ENGINES)})")
        requests = program.model.meta.get(QUANTIZE_REQUESTS) or []
        if any(r.wire for r in requests) and Fact.STAGED not in program.facts:
            raise self.fail("`quantize wire` needs stages: run 'split' before 'quantize'")

    def call(self, program: Program) -> PassResult:
        requests: list[QuantizeRequest] = list(program.model.meta.get(QUANTIZE_REQUESTS) or [])
        if not requests:
            return PassResult(False, "no quantize statement")
        details: dict = {}
        old = opset.upgrade(program)
        if old is not None:
            details["opset"] = f"{old} -> {opset.QDQ_OPSET} (onnx.version_converter)"
        if any(n.op_type == "BatchNormalization" for n in program.nodes()):
            from ..fold_batchnorm import FoldBatchNorm

            FoldBatchNorm()(program)
            details["batchnorm"] = "folded"
        selected = requests_by_node(program, requests)
        if any(r.equalize for r in selected.values()):
            details["equalized pairs"] = equalization.equalize(program, selected)
        sel = select(program, selected)
        choices = self._choices(program, sel)
        wire_request = next((r for r in requests if r.wire), None)
        crossing = wire.crossing_tensors(program) if wire_request is not None else []
        found = self._ranges(program, sel, wire_request, crossing)
        order = {n: i for i, n in enumerate(program.nodes())}
        tensor_params = self._tensor_params(program, sel, choices, found)
        float_means = bias_correction.float_means(program, sel) if any(r.correct_bias for r in selected.values()) else {}
        weight_scales = self._quantize_weights(program, sel, choices)
        for name, p in tensor_params.items():
            readers, output = sel.consumers.get(name, []), sel.quantized_output(name)
            if readers or output:
                insert_pair(program, sel.values[name], p, readers, order, output=output)
                order = {n: i for i, n in enumerate(program.nodes())}
        if float_means:
            details["bias-corrected layers"] = bias_correction.correct(program, sel, float_means)
        self._quantize_biases(program, sel, tensor_params, weight_scales)
        if wire_request is not None:
            details["wire tensors"] = wire.quantize_wire(program, wire_request, found)
        program.quantization = self._records(program, sel, choices)
        program.wire_quantization = wire.records(program)
        summary = (f"{len(sel.nodes)} nodes quantized in {len(program.quantization)} stage(s), "
                   f"{len(sel.weights)} weights, {len(tensor_params)} activation tensors")
        if old is not None:
            summary += f"; opset {old} upgraded to {opset.QDQ_OPSET} (onnx.version_converter)"
        if program.wire_quantization:
            summary += f"; {len(program.wire_quantization)} boundary tensors travel quantized"
        modified = bool(sel.nodes) or bool(program.wire_quantization) or old is not None or "batchnorm" in details
        return PassResult(modified, summary, details)

    def _choices(self, program: Program, sel: Selection) -> dict[int | None, activation_type.ActivationChoice]:
        backends = tuple(program.model.meta.get(TARGET_BACKENDS) or ())
        choices = {}
        for node in sel.nodes:
            stage = stage_of(node)
            if stage not in choices:
                placement = placement_of(node)
                request = sel.requests[node.name]
                choices[stage] = activation_type.choose(request, program.platform, placement.device, placement.resource,
                                                        backends, self.engine)
        return choices

    def _ranges(self, program: Program, sel: Selection, wire_request: QuantizeRequest | None,
                crossing: list[str]) -> dict[str, tuple[float, float] | params.Histogram]:
        """Every needed tensor's range, one collection per (calibration folder, method)."""
        groups: dict[tuple[str, str], list[str]] = {}
        for name, request in sel.tensors.items():
            if name not in sel.shared:
                groups.setdefault((request.calibrate, request.method), []).append(name)
        if wire_request is not None and wire_request.calibrate is not None:
            for name in crossing:
                groups.setdefault((wire_request.calibrate, wire_request.method), []).append(name)
        found: dict[str, tuple[float, float] | params.Histogram] = {}
        for (folder, method), names in groups.items():
            names = list(dict.fromkeys(names))
            data = for_program(program, folder, self.samples or None)
            if method in ranges.ORT_METHODS:
                found.update(ranges.collect_with_onnxruntime(program, names, data, method))
                continue
            minmax = ranges.collect_minmax(program, names, data)
            found.update(ranges.collect_histograms(program, names, data, minmax) if method == "mse" else minmax)
        return found

    def _tensor_params(self, program: Program, sel: Selection, choices: dict, found: dict) -> dict[str, params.TensorParams]:
        out: dict[str, params.TensorParams] = {}
        for name in sel.tensors:
            if name in sel.shared:
                continue
            value = sel.values[name]
            producer = value.producer()
            anchor = producer if producer is not None and producer in sel.nodes else (sel.consumers.get(name) or [producer])[0]
            choice = choices.get(stage_of(anchor)) if anchor is not None else None
            choice = choice or next(iter(choices.values()))
            out[name] = params.params_for(found[name], choice.dtype, choice.symmetric, choice.power_of_two)
        for name, source in sel.shared.items():
            root = source
            while root in sel.shared:
                root = sel.shared[root]
            out[name] = out[root]
        return out

    def _quantize_weights(self, program: Program, sel: Selection, choices: dict) -> dict[str, np.ndarray]:
        scales = {}
        for use in sel.weights:
            w = use.node.inputs[use.index].const_value.numpy()
            choice = choices.get(stage_of(use.node))
            s = params.weight_scales(w, use.axis, power_of_two=choice is not None and choice.power_of_two)
            dequantized_constant(program, use.node, use.index, params.quantize_weight(w, s, use.axis), s, use.axis, "weight")
            scales[use.node.name] = s
        return scales

    def _quantize_biases(self, program: Program, sel: Selection, tensor_params: dict, weight_scales: dict) -> None:
        for node, index, x_name in sel.biases:
            if x_name not in tensor_params or node.name not in weight_scales:
                continue
            b = node.inputs[index].const_value.numpy()
            q, s = params.quantize_bias(b, tensor_params[x_name].scale, weight_scales[node.name])
            dequantized_constant(program, node, index, q, s, 0, "bias")

    def _records(self, program: Program, sel: Selection, choices: dict) -> list[StageQuantization]:
        records = []
        by_stage: dict[int | None, list[ir.Node]] = {}
        for node in sel.nodes:
            by_stage.setdefault(stage_of(node), []).append(node)
        for stage, nodes in by_stage.items():
            choice = choices[stage]
            request = sel.requests[nodes[0].name]
            records.append(StageQuantization(
                stage=-1 if stage is None else stage, device=placement_of(nodes[0]).device, engine=choice.engine,
                activation_dtype=choice.dtype, weight_dtype="int8", granularity=request.granularity,
                method=request.method, nodes=tuple(n.name for n in nodes), reason=choice.reason,
                bias_correction=request.correct_bias, equalization=request.equalize))
        return sorted(records, key=lambda r: r.stage)

