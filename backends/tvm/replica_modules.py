"""TVM modules for the further replicas of replicated stages (`replicate`): one per replica, for its own device.

Why per replica: a replica runs on another device, which may be another architecture or ISA
(`targets.py`), so the stage's own module may not load there. Each replica's module is written
next to its copy of the sub-model (`devices/<device>/stage<k>.so`), so a device's folder (and its
C++ package) holds every module its ranks run. Why not always compile: replicas on devices of one
target run the same module, so a module built for a target in this output (the stage's own, or an
earlier replica's) is copied, not built again; other targets go through the module cache
(`module_cache.py`, keyed by sub-model hash and target) and are compiled only when absent there.
The result is the tvm section's `replicas` list (`section.TvmReplica`).
"""

from __future__ import annotations

import json
from pathlib import Path

from ..backend import Progress
from ..manifest import Manifest, record_sha256
from .module_cache import ModuleCache, replace_file
from .section import TvmReplica, TvmStage
from .targets import TargetSpec, select_target


def _identity(spec: TargetSpec) -> str:
    """What makes two modules interchangeable: the TVM target, the linked architecture and the cross compiler."""
    return json.dumps([spec.target, spec.arch, spec.cross_compiler], sort_keys=True)


def _entry(rank: int, device: str, resource: str, module: str, spec: TargetSpec, info: dict,
           seconds: float) -> TvmStage:
    return TvmStage(rank, device, resource, module, spec.target, spec.arch, spec.cross_compiler, info["sha256"],
                    info["bytes"], seconds, info.get("device_kernels"),
                    tuple(info["device_code"]) if info.get("device_code") is not None else None)


def compile_replicas(manifest: Manifest, out_dir: Path, stages: tuple[TvmStage, ...], progress: Progress,
                     modules: ModuleCache | None) -> tuple[TvmReplica, ...]:
    """A module for every further replica of every replicated stage (none without `replicate`); `stages` are the
    stages' own modules, already built under `out_dir`, `modules` the module cache (None: no cache)."""
    from .compile import compile_stage

    if manifest.replicas is None:
        return ()
    built: dict[tuple[int, str], tuple[Path, dict]] = {}
    for own in stages:
        spec = select_target(manifest.device(own.device), own.resource or "cpu")
        built[own.rank, _identity(spec)] = (out_dir / own.module, own.to_json())
    replicas = []
    for entry in manifest.replicas.stages:
        for replica in entry.replicas[1:]:
            spec = select_target(manifest.device(replica.device), replica.resource or "cpu")
            model = out_dir / replica.model
            target = model.with_suffix(".so")
            identity = (entry.stage, _identity(spec))
            how, seconds = "copied (same target)", 0.0
            if identity in built:
                source, info = built[identity]
                if source.resolve() != target.resolve():
                    replace_file(source, target)
            else:
                key = modules.key(model, spec) if modules is not None else None
                info = modules.fetch(key, target) if key is not None else None
                how = "from the module cache"
                if info is None:
                    info = compile_stage(model, None, spec, target)
                    how, seconds = f"in {info['compile_seconds']:.1f} s", info["compile_seconds"]
                    if modules is not None and key is not None:
                        modules.store(key, target, info)
                built[identity] = (target, info)
            record_sha256(target, info["sha256"])
            progress(f"  stage {entry.stage} replica {replica.replica} (rank {replica.rank}): {spec.describe()} {how}")
            module = target.relative_to(out_dir).as_posix()
            replicas.append(TvmReplica(entry.stage, replica.replica, _entry(
                replica.rank, replica.device, replica.resource or "cpu", module, spec, info, seconds)))
    return tuple(replicas)

