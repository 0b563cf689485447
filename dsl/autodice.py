"""Import an AutoDiCE specification (mapping.json + platform.txt) as plan text.

AutoDiCE (github.com/parrotsky/AutoDiCE) maps ONNX node names to `<host>_<resource>` keys:
`lenovo_cpu0`, `nx01_arm012345`, `jetson_gpu`. For `cpu`/`arm` the digits are core indices, one
per digit (`arm0123` = 4 cores), so they become `threads`; `gpu` becomes the device's GPU. The
platform file lists one host per line, in any of the forms AutoDiCE's examples use:

    nx01                                          # hostname only (the MPI hostfile)
    tx01:192.168.178.66                           # hostname:address
    nx01, arm, slots=0-5, gpu=NVIDIAVolta (CUDA)  # hostname, arch, core range, GPU

Each host becomes one `device` (with `host`, and `arch`/`cores`/`gpu cuda` where known) and
each key one `place`. When a host carries two keys of the same kind (AutoDiCE's tutorial runs
`lenovo_cpu0` and `lenovo_cpu1` as two ranks on one machine), each key becomes its own device
named after the key, with the same `host`, so the ranks stay separate. The text is produced,
not an AST, so what the user gets is exactly what `edgec` will parse.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from edgec.compiler.diagnostics import PlanError, SourceSpan, UsageError, closest
from edgec.dsl.ast import format_name, quote
from edgec.dsl.parser import parse_plan

_RESOURCE = re.compile(r"(cpu|arm|gpu)(\d*)")
_ARCHES = {
    "arm": "aarch64", "arm64": "aarch64", "aarch64": "aarch64", "armv8": "aarch64",
    "armv7": "armv7", "armhf": "armv7", "x86": "x86_64", "x86_64": "x86_64", "amd64": "x86_64",
    "riscv64": "riscv64",
}
_LINE_WIDTH = 96


@dataclass
class PlatformHost:
    name: str
    address: str | None = None
    arch: str | None = None
    cores: int | None = None
    gpu: bool = False


@dataclass(frozen=True)
class _Key:
    key: str
    host: str
    kind: str  # "cpu" or "gpu"
    threads: int | None
    nodes: list[str]


def autodice_to_plan(mapping: dict, platform_text: str, *, model: str | None = None) -> str:
    """Plan text equivalent to an AutoDiCE mapping (already loaded JSON) and platform file text."""
    return _convert(mapping, platform_text, model, "<mapping>", None, "<platform>")


def load_autodice(mapping_path: str | Path, platform_path: str | Path, model: str | None = None) -> str:
    """`autodice_to_plan` on files; unreadable files are `UsageError`s, bad content `PlanError`s."""
    mapping_text, platform_text = _read(mapping_path), _read(platform_path)
    try:
        mapping = json.loads(mapping_text)
    except json.JSONDecodeError as e:
        span = _span(str(mapping_path), mapping_text, e.lineno, e.colno)
        raise PlanError(f"malformed JSON in '{mapping_path}': {e.msg}", span) from None
    return _convert(mapping, platform_text, model, str(mapping_path), mapping_text, str(platform_path))


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read '{path}': {getattr(e, 'strerror', None) or e}") from None


def _span(filename: str, text: str, line: int, column: int, width: int = 1) -> SourceSpan:
    lines = text.split("\n")
    source_line = lines[line - 1] if 0 < line <= len(lines) else ""
    return SourceSpan(filename, line, column, column + max(width, 1), source_line)


def _key_span(filename: str, text: str | None, key: str) -> SourceSpan | None:
    """Where `"key"` first appears in the mapping file, when we have its text."""
    if text is None:
        return None
    at = text.find(json.dumps(key))
    if at < 0:
        return None
    line = text.count("\n", 0, at) + 1
    column = at - (text.rfind("\n", 0, at) + 1) + 1
    return _span(filename, text, line, column, len(json.dumps(key)))


def parse_platform(text: str, filename: str = "<platform>") -> dict[str, PlatformHost]:
    """Hosts of an AutoDiCE platform file by name; an unrecognized field is a located `PlanError`."""
    hosts: dict[str, PlatformHost] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [f.strip() for f in line.split(",")] if "," in line else line.split()
        name, _, address = fields[0].partition(":")
        host = PlatformHost(name.strip(), address.strip() or None)

        def where(field: str) -> SourceSpan:
            return _span(filename, text, number, raw.find(field) + 1, len(field))

        if not host.name or host.name in hosts:
            message = "empty host name" if not host.name else f"host '{host.name}' is listed twice"
            raise PlanError(f"{message} in platform file", where(fields[0]))
        for field in fields[1:]:
            _read_field(host, field, where(field))
        hosts[host.name] = host
    return hosts


def _read_field(host: PlatformHost, field: str, span: SourceSpan) -> None:
    key, eq, value = (part.strip() for part in field.partition("="))
    if not eq and key.lower() in _ARCHES:
        host.arch = _ARCHES[key.lower()]
    elif key.lower() == "gpu":
        host.gpu = True
    elif key in ("slots", "cores") and (count := re.fullmatch(r"(\d+)(?:-(\d+))?", value)):
        first, last = count.groups()
        host.cores = int(last) - int(first) + 1 if last else int(first)
        if host.cores < 1:
            raise PlanError(f"'{field}' gives no cores", span)
    else:
        raise PlanError(
            f"unrecognized field '{field}' for host '{host.name}' "
            "(expected an arch, slots=N or slots=A-B, cores=N, or gpu=…)",
            span,
        )


def _keys(mapping: object, hosts: dict[str, PlatformHost], filename: str, text: str | None) -> list[_Key]:
    if not isinstance(mapping, dict):
        raise PlanError(f"'{filename}' must hold a JSON object of \"<host>_<resource>\": [node names]")
    keys, owner = [], {}
    for key, nodes in mapping.items():
        span = _key_span(filename, text, key)
        host, _, resource = key.rpartition("_")
        match = _RESOURCE.fullmatch(resource)
        if not host or not match:
            raise PlanError(
                f"mapping key '{key}' is not '<host>_<resource>' with resource cpuN, armN or gpu",
                span, suggestion=closest(resource, ("cpu", "gpu", "arm")),
            )
        if host not in hosts:
            raise PlanError(f"host '{host}' of mapping key '{key}' is not in the platform file", span,
                            suggestion=closest(host, hosts))
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise PlanError(f"mapping key '{key}' must list node names as strings", span)
        for node in nodes:
            if node in owner:
                raise PlanError(f"node '{node}' is mapped to both '{owner[node]}' and '{key}'", span)
            owner[node] = key
        kind, digits = ("gpu" if match.group(1) == "gpu" else "cpu"), match.group(2)
        keys.append(_Key(key, host, kind, len(digits) if kind == "cpu" and digits else None, nodes))
    return keys


def _identifier(text: str, taken: set[str]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", text).rstrip("-")
    if not re.match(r"[A-Za-z_]", name):
        name = "h" + name
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _device_line(name: str, host: PlatformHost, cores: int | None, gpu: bool) -> str:
    props = [f"host {quote(host.address or host.name)}"]
    if host.arch:
        props.append(f"arch {host.arch}")
    if cores:
        props.append(f"cores {cores}")
    if gpu:
        props.append("gpu cuda")
    return f"device {name} {{ {' '.join(props)} }}"


def _place_lines(nodes: list[str], target: str, threads: int | None) -> list[str]:
    tail = f" on {target}" + (f" threads {threads}" if threads else "")
    items = [format_name(n) for n in nodes]
    if len("place [") + sum(len(i) + 2 for i in items) + len(tail) <= _LINE_WIDTH:
        return [f"place [{', '.join(items)}]{tail}"]
    lines, current = ["place ["], "   "
    for item in items:
        if len(current) + len(item) + 2 > _LINE_WIDTH:
            lines.append(current.rstrip())
            current = "   "
        current += f" {item},"
    return lines + [current.rstrip(), f"]{tail}"]


def _convert(
    mapping: object, platform_text: str, model: str | None, mapping_file: str, mapping_text: str | None,
    platform_file: str,
) -> str:
    hosts = parse_platform(platform_text, platform_file)
    keys = _keys(mapping, hosts, mapping_file, mapping_text)
    out = [f"# imported from AutoDiCE: {mapping_file} + {platform_file}"]
    if model is not None:
        out.append(f"model {quote(model)}")
    devices, target_of, taken = [], {}, set()
    for host in hosts.values():
        mine = [k for k in keys if k.host == host.name]
        kinds = [k.kind for k in mine]
        if len(set(kinds)) == len(kinds):
            name = _identifier(host.name, taken)
            threads = [k.threads for k in mine if k.threads]
            cores = host.cores or (max(threads) if threads else None)
            devices.append(_device_line(name, host, cores, host.gpu or "gpu" in kinds))
            target_of.update({k.key: f"{name}.{k.kind}" for k in mine})
            continue
        for k in mine:
            name = _identifier(k.key, taken)
            devices.append(_device_line(name, host, k.threads or host.cores, host.gpu or k.kind == "gpu"))
            target_of[k.key] = f"{name}.{k.kind}"
    places = [_place_lines(k.nodes, target_of[k.key], k.threads) for k in keys if k.nodes]
    text = "\n".join(out + devices + [line for block in places for line in block]) + "\n"
    parse_plan(text, "<autodice import>")
    return text
