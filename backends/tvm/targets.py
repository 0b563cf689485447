"""Which TVM target a stage is compiled for, derived from the device it is placed on.

Why JSON dicts: TVM 0.27 only accepts targets as dicts (`{"kind": "llvm", "mtriple": …}`);
the CLI strings plans may carry (`target "llvm -mcpu=skylake"`) are converted here, so a plan
written for older TVM keeps working and a bad one fails with the device's name.

Defaults by device: `x86_64` is assumed to be this build machine's CPU when it is one (LLVM
`mcpu` of the host, so AVX-512 is used where the host has it; give `target` for another x86);
`aarch64` and `armv7` are generic NEON CPUs, cross-linked with the Debian cross g++; a stage on
the `gpu` resource gets a CUDA target whose host code is compiled for the device's CPU.
"""

from __future__ import annotations

import json
import platform as host_platform
import shlex
import shutil
from dataclasses import dataclass, field

from ...compiler.diagnostics import UsageError
from ...compiler.platform import Device

DEFAULT_CUDA_ARCH = "sm_72"
LIST_KEYS = {"mattr", "libs", "keys", "device_features"}

_ARCH_TARGETS: dict[str, dict] = {
    "x86_64": {"kind": "llvm", "mtriple": "x86_64-linux-gnu"},
    "aarch64": {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": ["+neon"]},
    "armv7": {"kind": "llvm", "mtriple": "armv7a-linux-gnueabihf", "mattr": ["+neon", "+vfp4"]},
    "riscv64": {"kind": "llvm", "mtriple": "riscv64-linux-gnu", "mattr": ["+m", "+a", "+f", "+d", "+c"]},
}
_CROSS_COMPILERS = {
    "x86_64": ("x86_64-linux-gnu-g++", "g++-x86-64-linux-gnu"),
    "aarch64": ("aarch64-linux-gnu-g++", "g++-aarch64-linux-gnu"),
    "armv7": ("arm-linux-gnueabihf-g++", "g++-arm-linux-gnueabihf"),
    "riscv64": ("riscv64-linux-gnu-g++", "g++-riscv64-linux-gnu"),
}
_HOST_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64", "armv7l": "armv7"}


def host_arch() -> str:
    return _HOST_ARCH.get(host_platform.machine().lower(), host_platform.machine().lower())


@dataclass(frozen=True)
class TargetSpec:
    """A stage's target: the TVM target dict (with `host` for GPUs), the CPU architecture its
    module is linked for, and the cross compiler that links it (None: this machine's g++)."""

    target: dict
    arch: str
    cross_compiler: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def kind(self) -> str:
        return self.target["kind"]

    def describe(self) -> str:
        return json.dumps(self.target, sort_keys=True)

    def tvm_target(self):
        import tvm

        target = {k: v for k, v in self.target.items() if k != "host"}
        if "host" in self.target:
            return tvm.target.Target(target, host=self.target["host"])
        return tvm.target.Target(target)


def _value(key: str, text: str):
    if key in LIST_KEYS:
        return [v for v in text.split(",") if v]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        return text


def parse_target(text: str, *, device: str = "?") -> dict:
    """A JSON object, or a CLI-style string (`llvm -mcpu=skylake -mattr=+avx2,+fma`), as a target dict."""
    text = text.strip()
    if text.startswith("{"):
        try:
            target = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"device '{device}': target is not valid JSON: {exc.msg}") from None
    else:
        words = shlex.split(text)
        if not words or words[0].startswith("-"):
            raise UsageError(f"device '{device}': target '{text}' must start with a target kind (llvm, cuda, …)")
        target = {"kind": words[0]}
        for word in words[1:]:
            if not word.startswith("-"):
                raise UsageError(f"device '{device}': unexpected '{word}' in target '{text}'; options look like -key=value")
            key, eq, value = word.lstrip("-").partition("=")
            target[key] = _value(key, value) if eq else True
    if not isinstance(target, dict) or "kind" not in target:
        raise UsageError(f"device '{device}': target {text!r} has no 'kind'")
    return target


def _arch_of_triple(triple: str) -> str | None:
    head = triple.split("-")[0]
    if head.startswith("aarch64") or head == "arm64":
        return "aarch64"
    if head.startswith(("arm", "thumb")):
        return "armv7"
    return head if head in _ARCH_TARGETS else None


def _cpu_target(arch: str) -> dict:
    if arch not in _ARCH_TARGETS:
        raise UsageError(f"no TVM CPU target for architecture '{arch}' (known: {', '.join(_ARCH_TARGETS)})")
    target = json.loads(json.dumps(_ARCH_TARGETS[arch]))
    if arch == host_arch() == "x86_64":
        from tvm.target.codegen import llvm_get_system_cpu

        target["mcpu"] = llvm_get_system_cpu()
    return target


def cross_compiler(arch: str, *, device: str = "?") -> str | None:
    """The g++ that links modules for `arch` (None on a same-arch host); UsageError if missing."""
    if arch == host_arch():
        return None
    compiler, package = _CROSS_COMPILERS.get(arch, (f"{arch}-linux-gnu-g++", f"g++-{arch}-linux-gnu"))
    if shutil.which(compiler) is None:
        raise UsageError(f"device '{device}' is {arch}: linking its TVM module needs the cross compiler '{compiler}', "
                         f"which is not installed", hint=f"apt-get install {package}")
    return compiler


def validate(target: dict, *, device: str) -> None:
    import tvm

    try:
        host = target.get("host")
        tvm.target.Target({k: v for k, v in target.items() if k != "host"}, host=host)
    except Exception as exc:  # noqa: BLE001 - TVM raises ValueError/TVMError/InternalError alike
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"device '{device}': {json.dumps(target)} is not a valid TVM target: {reason}") from None


def select_target(device: Device, resource: str = "cpu") -> TargetSpec:
    """The target of a stage placed on `device.resource` (see the module docstring)."""
    if resource not in device.resources:
        raise UsageError(f"device '{device.name}' has no resource '{resource}' (it has {', '.join(device.resources)})")
    if resource not in ("cpu", "gpu"):
        raise UsageError(f"device '{device.name}': accelerator '{resource}' has no TVM target in apache-tvm 0.27 "
                         "(VTA was removed from TVM)", hint="place the stage on the device's cpu or gpu")
    if device.target:
        target = parse_target(device.target, device=device.name)
        host = target.get("host")
        host = parse_target(host, device=device.name) if isinstance(host, str) else host
        cpu = host if target["kind"] != "llvm" and host else target
        if target["kind"] == "llvm" and "mtriple" not in target and device.arch != host_arch():
            target["mtriple"] = _ARCH_TARGETS.get(device.arch, {}).get("mtriple", f"{device.arch}-linux-gnu")
        if target["kind"] != "llvm" and not host:
            target["host"] = cpu = _cpu_target(device.arch)
        arch = _arch_of_triple(str((cpu or {}).get("mtriple", ""))) or device.arch
    elif resource == "gpu":
        if device.gpu != "cuda":
            raise UsageError(f"device '{device.name}': gpu '{device.gpu}' has no TVM target in edgec (supported: cuda)",
                             hint="give the device an explicit `target`")
        arch = device.arch
        target = {"kind": "cuda", "arch": DEFAULT_CUDA_ARCH, "host": _cpu_target(arch)}
    else:
        arch = device.arch
        target = _cpu_target(arch)
    if resource == "gpu" and target["kind"] == "llvm":
        raise UsageError(f"device '{device.name}': its target is a CPU target but the stage is placed on its gpu")
    validate(target, device=device.name)
    return TargetSpec(target, arch, cross_compiler(arch, device=device.name))
