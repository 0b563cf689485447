"""The activation type of each stage, chosen from the engine that will run it.

The rule (measured with onnxruntime 1.32 on an AVX-512 VNNI Xeon by `benchmarks/quantize_speed.py`;
README "Activation types"):
- onnxruntime on x86-64: uint8 activations with int8 weights (u8s8). Its QDQ fusion covers more of a
  graph with uint8: on the corpus MobileNetV3, uint8 turns 52 of 52 convolutions into QLinearConv
  and 7 of 7 residual Adds into QLinearAdd, int8 only 41 convolutions and no Add (the rest run in
  float between DQ and Q, with 28 extra layout Transposes), 0.26 vs 0.36 ms. On a plain 3x3 conv
  stack both fuse fully and run alike. MLAS's x86 integer GEMM is built around u8s8 (VPDPBUSD takes
  an unsigned operand), which is also why u8s8 is never the slower one there.
- onnxruntime on aarch64: int8 (its ARM kernels use signed dot products, SDOT); not measured here.
- TVM (`--backend tvm` or `cpp`): int8; its QNN lowering of qnn.conv2d is scheduled for int8×int8.
- VTA (a stage on a `vta` resource): int8, symmetric (zero point 0), power-of-two scales: VTA's GEMM
  core multiplies int8 by int8 and has no zero-point correction, and its ALU requantizes by an
  arithmetic shift only (params.py).
A plan that says `uint8` gets uint8 on any engine but VTA (which refuses it with a located error).
"""

from __future__ import annotations

from dataclasses import dataclass

from ...compiler.annotations import QuantizeRequest
from ...compiler.diagnostics import PlanError
from ...compiler.platform import Platform

TVM_BACKENDS = frozenset({"tvm", "cpp"})


@dataclass(frozen=True)
class ActivationChoice:
    dtype: str
    engine: str
    symmetric: bool
    reason: str
    power_of_two: bool = False


def engine_for(resource: str, backends: tuple[str, ...], engine: str) -> str:
    """The engine a stage runs in: the pass option when set, VTA for a `vta` resource, TVM when the
    compile writes TVM modules, else onnxruntime."""
    if resource == "vta":
        return "vta"
    if engine != "auto":
        return engine
    return "tvm" if TVM_BACKENDS & set(backends) else "onnxruntime"


def choose(request: QuantizeRequest, platform: Platform, device: str, resource: str, backends: tuple[str, ...],
           engine: str = "auto") -> ActivationChoice:
    runs_on = engine_for(resource, backends, engine)
    arch = platform.devices[device].arch if device in platform.devices else "x86_64"
    if runs_on == "vta":
        if request.dtype == "uint8":
            raise PlanError(f"device '{device}' runs on VTA, whose GEMM core takes int8 only; write int8",
                            request.span)
        return ActivationChoice("int8", "vta", True, "VTA: int8 × int8 GEMM with no zero point, requantized by "
                                "shifts, so every scale is a power of two", power_of_two=True)
    if request.dtype == "uint8":
        return ActivationChoice("uint8", runs_on, False, "the plan asks for uint8 activations")
    if runs_on == "tvm":
        return ActivationChoice("int8", "tvm", False, "TVM's QNN kernels are int8 × int8")
    if runs_on == "onnxruntime" and arch == "x86_64":
        return ActivationChoice("uint8", "onnxruntime", False, "onnxruntime/x86 fuses every QDQ Conv and Add into "
                                "integer kernels only with uint8")
    return ActivationChoice("int8", runs_on, False, f"onnxruntime on {arch}: signed dot products (s8s8)")
