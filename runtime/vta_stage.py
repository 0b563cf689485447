"""A VTA stage behind the onnxruntime-session interface: its VTA layers on the simulator, the rest on the CPU.

Why pieces: a VTA stage interleaves what VTA runs (the `vta` section's layers) with what its CPU
runs (the fallbacks and the QDQ boundaries), so the stage's sub-model is cut, in graph order, into
steps: a VTA layer, or a maximal run of CPU nodes extracted as its own ONNX model
(`onnx.utils.Extractor`) and run in onnxruntime. Steps hand each other tensors by name; between a
CPU piece and a VTA layer those are the int8 outputs of QuantizeLinear nodes, exactly what the
layer's program reads. A VTA layer's own nodes (the op, a Relu it absorbed, its QuantizeLinear)
and CPU nodes whose results only VTA layers read (the DequantizeLinear of weights and inputs) are
not run on the CPU. The programs run one sample at a time (BATCH=1 hardware), so a batch loops.

Every run adds to `stats`: simulated cycles (the cycle model's figure per layer and sample), the
time they take at the VTA clock, and the host's wall time in the simulator and in onnxruntime.
Stages not on a `vta` resource get a plain onnxruntime session (`for_stage`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort

from ..backends.vta.layer_programs import LoadedLayer
from ..backends.vta.section import VtaSection, VtaStage
from ..compiler.diagnostics import UsageError
from .tvm_stage import TensorArg, _args

if TYPE_CHECKING:
    from .outputs import CompiledOutput


@dataclass
class VtaStats:
    """What the stage's runs cost: simulated VTA cycles and host seconds (simulator, onnxruntime)."""

    clock_hz: float
    samples: int = 0
    cycles: int = 0
    sim_seconds: float = 0.0
    cpu_seconds: float = 0.0
    per_layer: dict[str, int] = field(default_factory=dict)

    @property
    def vta_seconds(self) -> float:
        return self.cycles / self.clock_hz

    def to_json(self) -> dict[str, Any]:
        return {"samples": self.samples, "cycles": self.cycles, "vta_seconds": self.vta_seconds,
                "clock_hz": self.clock_hz, "sim_seconds": self.sim_seconds, "cpu_seconds": self.cpu_seconds}


@dataclass
class _CpuPiece:
    session: ort.InferenceSession
    inputs: list[str]
    outputs: list[str]


def _pieces(model: onnx.ModelProto, stage: VtaStage) -> list[tuple[str, Any]]:
    """The stage's steps in graph order: ("vta", layer record) or ("cpu", (node indices, inputs, outputs))."""
    g = model.graph
    producer = {out: i for i, node in enumerate(g.node) for out in node.output}
    constants = {t.name for t in g.initializer}
    claimed: dict[int, Any] = {}
    at: dict[int, Any] = {}
    for layer in stage.layers:
        q = producer.get(layer.output)
        if q is None or g.node[q].op_type != "QuantizeLinear":
            raise UsageError(f"VTA layer {layer.name}: its output '{layer.output}' is not a QuantizeLinear result "
                             "in the stage's sub-model (recompile the output)")
        chain = [q]
        prev = producer.get(g.node[q].input[0])
        if prev is not None and g.node[prev].op_type == "Relu" and g.node[prev].name != layer.name:
            chain.append(prev)
            prev = producer.get(g.node[prev].input[0])
        if prev is None or g.node[prev].name != layer.name:
            raise UsageError(f"VTA layer {layer.name} is not the node computing '{layer.output}' in the sub-model")
        claimed.update({i: layer for i in chain + [prev]})
        at[prev] = layer
    needed = {o.name for o in g.output} | {name for layer in stage.layers for name in layer.inputs}
    live: set[int] = set()
    for i in range(len(g.node) - 1, -1, -1):
        if i in claimed:
            continue
        if any(o in needed for o in g.node[i].output):
            live.add(i)
            needed.update(x for x in g.node[i].input if x)
    steps: list[tuple[str, Any]] = []
    for i in range(len(g.node)):
        if i in at:
            steps.append(("vta", at[i]))
        elif i in live:
            if steps and steps[-1][0] == "cpu-nodes":
                steps[-1][1].append(i)
            else:
                steps.append(("cpu-nodes", [i]))
    out: list[tuple[str, Any]] = []
    for n, (kind, item) in enumerate(steps):
        if kind == "vta":
            out.append((kind, item))
            continue
        made = {o for i in item for o in g.node[i].output}
        reads = list(dict.fromkeys(x for i in item for x in g.node[i].input if x and x not in made and x not in constants))
        later = {o.name for o in g.output}
        for kind2, item2 in steps[n + 1:]:
            later.update(item2.inputs if kind2 == "vta" else (x for i in item2 for x in g.node[i].input))
        outputs = [o for i in item for o in g.node[i].output if o in later]
        if outputs:
            out.append(("cpu", (item, reads, outputs)))
    return out


class VtaSession:
    """An onnxruntime-session look-alike for one VTA stage (see the module docstring)."""

    def __init__(self, compiled: CompiledOutput, rank: int, stage: VtaStage, threads: int = 1, spin: bool = True) -> None:
        entry = compiled.manifest.stage(rank)
        if entry.signature is None:
            raise UsageError(f"'{compiled.root}': the manifest records no signature for stage {rank}",
                             hint="compile the output again with this edgec")
        self._inputs, self._outputs = _args(entry.signature.inputs), _args(entry.signature.outputs)
        path = compiled.stage_model(rank)
        model = onnx.load(str(path))
        inferred = onnx.shape_inference.infer_shapes(model)
        extractor = onnx.utils.Extractor(inferred)
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.log_severity_level = 3
        if not spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.steps: list[tuple[str, Any]] = []
        for kind, item in _pieces(model, stage):
            if kind == "vta":
                self.steps.append((kind, LoadedLayer.load(compiled.root, item)))
            else:
                _, reads, outputs = item
                try:
                    piece = extractor.extract_model(reads, outputs)
                except Exception as exc:  # noqa: BLE001 - a tensor shape inference could not type, say which
                    raise UsageError(f"stage {rank}: cannot cut the CPU part ({', '.join(outputs[:3])}) out of "
                                     f"'{path}': {type(exc).__name__}: {exc}") from None
                sess = ort.InferenceSession(piece.SerializeToString(), options, providers=["CPUExecutionProvider"])
                self.steps.append((kind, _CpuPiece(sess, [i.name for i in sess.get_inputs()], outputs)))
        self.stage = stage
        self.stats = VtaStats(stage.clock_hz)

    @classmethod
    def for_stage(cls, compiled: CompiledOutput, rank: int, threads: int | None = None, *, spin: bool = True) -> Any:
        section = compiled.manifest.section("vta")
        stage = section.stage(rank) if isinstance(section, VtaSection) else None
        if stage is None:
            return compiled.session(rank, threads, spin=spin)
        return cls(compiled, rank, stage, threads or compiled.manifest.stage(rank).threads or 1, spin)

    def get_inputs(self) -> list[TensorArg]:
        return list(self._inputs)

    def get_outputs(self) -> list[TensorArg]:
        return list(self._outputs)

    def run(self, output_names: list[str] | None, feeds: Mapping[str, np.ndarray], run_options=None) -> list[np.ndarray]:
        missing = [a.name for a in self._inputs if a.name not in feeds]
        if missing:
            raise UsageError(f"VTA stage: no value for input(s) {', '.join(missing)}")
        env = dict(feeds)
        batch = None
        for kind, step in self.steps:
            t0 = time.perf_counter()
            if kind == "cpu":
                env.update(zip(step.outputs, step.session.run(step.outputs, {n: env[n] for n in step.inputs})))
                self.stats.cpu_seconds += time.perf_counter() - t0
                continue
            xs = [np.asarray(env[name]) for name in step.record.inputs]
            if any(x.dtype != np.int8 for x in xs):
                raise UsageError(f"VTA layer {step.record.name} reads {[str(x.dtype) for x in xs]}, not int8")
            batch = xs[0].shape[0]
            env[step.record.output] = np.stack([step.run([x[n] for x in xs]) for n in range(batch)])
            self.stats.sim_seconds += time.perf_counter() - t0
            self.stats.cycles += step.record.cycles * batch
            name = step.record.name
            self.stats.per_layer[name] = self.stats.per_layer.get(name, 0) + step.record.cycles * batch
        if batch is not None:
            self.stats.samples += batch
        names = output_names or [o.name for o in self._outputs]
        return [env[name] for name in names]

    def trace(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run keeping every tensor the steps handed each other (the int8 inputs and outputs of the
        VTA layers among them), for checking the layers against the integer reference."""
        env = dict(feeds)
        for kind, step in self.steps:
            if kind == "cpu":
                env.update(zip(step.outputs, step.session.run(step.outputs, {n: env[n] for n in step.inputs})))
            else:
                xs = [np.asarray(env[name]) for name in step.record.inputs]
                env[step.record.output] = np.stack([step.run([x[n] for x in xs]) for n in range(xs[0].shape[0])])
        return env


class VtaKernel:
    """The frame loop's kernel over a VtaSession: outputs are copied into the loop's buffers."""

    def __init__(self, session: VtaSession) -> None:
        self.session = session
        self.input_names = [a.name for a in session.get_inputs()]
        self.output_names = [a.name for a in session.get_outputs()]
        self._bindings: dict[int, tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]] = {}

    def bind(self, parity: int, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        for name in self.input_names:
            if name not in inputs:
                raise UsageError(f"the sub-model reads '{name}', which this stage neither receives nor is fed")
        self._bindings[parity] = (inputs, outputs)

    def run(self, parity: int) -> None:
        inputs, outputs = self._bindings[parity]
        results = self.session.run(self.output_names, {n: inputs[n] for n in self.input_names})
        for name, value in zip(self.output_names, results):
            np.copyto(outputs[name], value)
