"""A stage's sub-model as a frame-loop kernel: onnxruntime bound to the loop's buffers.

Why I/O binding: the loop owns preallocated receive and send buffers; binding them once per
buffer set lets onnxruntime read received tensors and write produced tensors in place, so a
frame costs no allocation and no copy between MPI and the session.

Why sessions may not spin (`CompiledOutput.session(spin=False)`): onnxruntime's worker threads spin after each run by default. When
the ranks on a host ask for more threads than it has cores, those spinning threads take the
cores the other stages need (the 4-stage example on 2 cores ran 10x slower), so such ranks get
sessions that sleep instead.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import onnxruntime as ort

from ..compiler.diagnostics import UsageError
from ..compiler.tensor_types import ort_numpy_name
from .engines import kernel_for
from .pipeline import Link, TensorSpec

__all__ = ["OrtKernel", "kernel_for", "links", "output_specs"]


class OrtKernel:
    """A stage's onnxruntime session as the frame loop's `Kernel`: one I/O binding per buffer set, made once,
    so a frame runs with no allocation and no copy (see the module's docstring)."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.output_names = [o.name for o in session.get_outputs()]
        self._bindings: dict[int, ort.IOBinding] = {}

    def bind(self, parity: int, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]) -> None:
        binding = self.session.io_binding()
        for name in self.input_names:
            if name not in inputs:
                raise UsageError(f"the sub-model reads '{name}', which this stage neither receives nor is fed")
            _bind(binding.bind_input, name, inputs[name])
        for name in self.output_names:
            _bind(binding.bind_output, name, outputs[name])
        self._bindings[parity] = binding

    def run(self, parity: int) -> None:
        self.session.run_with_iobinding(self._bindings[parity])


def _bind(method, name: str, array: np.ndarray) -> None:
    if not array.flags.c_contiguous:
        raise ValueError(f"buffer for '{name}' is not contiguous")
    method(name, "cpu", 0, array.dtype, list(array.shape), array.ctypes.data)


def output_specs(session: ort.InferenceSession, known: Mapping[str, TensorSpec]) -> dict[str, TensorSpec]:
    """Shape and dtype of every session output: from the manifest where it is a boundary or graph
    output, else from the sub-model's inferred shapes (all static after compilation)."""
    specs = {}
    for out in session.get_outputs():
        if out.name in known:
            specs[out.name] = known[out.name]
            continue
        if not all(isinstance(d, int) for d in out.shape):
            raise UsageError(f"sub-model output '{out.name}' has a symbolic shape {out.shape}; recompile with fixed input shapes")
        dtype = ort_numpy_name(out.type)
        if dtype is None:
            raise UsageError(f"sub-model output '{out.name}' is a {out.type}, not a tensor the frame loop can hold")
        specs[out.name] = TensorSpec(tuple(out.shape), np.dtype(dtype))
    return specs


def links(entries: list[dict]) -> list[Link]:
    """`comm.json` recvs or sends of one rank as loop links (with the frames each carries, under replicas)."""
    return [Link(e["tensor"], e["peer"], e["tag"], TensorSpec(tuple(e["shape"]), np.dtype(e["dtype"])),
                 e.get("every", 1), e.get("offset", 0)) for e in entries]
