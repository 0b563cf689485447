"""Meta-schedule tuning of a stage's hot kernels, and the database later compiles read it from.

Why keep only winners: TVM's meta-schedule searches schedules for each fused PrimFunc, but
with the trials an edge workflow can afford (minutes, on the 2-core build machine), many of
its best finds are slower than edgec's hand schedules (`schedules.py`). Each kernel is
therefore timed with its hand schedule and with the search's best, under the same
measurement (in-process, same thread count), and only a schedule that wins is committed to
the stage's database; a compile then uses the tuned schedule for those kernels and the hand
schedules for the rest, so tuning never makes a stage slower.

Why in-process builds and measurements: TVM's `LocalBuilder`/`LocalRunner` start worker
processes that import TVM per batch; on this shared 2-core machine every build of a batch
ran into their 30 s timeout (8 of 8 samples failed, 4 minutes for nothing), while building
one candidate in-process takes about 0.1 s.

Where: one database per (sub-model sha256, target, TVM version) under
`$EDGEC_CACHE/tvm-tuning/<key>/` (`database_workload.json`, `database_tuning_record.json`,
TVM's JSON database format, and `kernels.json`: per kernel the hand and tuned times).
`EDGEC_TVM_TUNING=off` makes compiles ignore every database.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..cache_dir import cache_root
from ..manifest import sha256_file
from .targets import TargetSpec

WIN_MARGIN = 0.97
"""A tuned schedule replaces the hand one only when it takes under 97% of its time."""
MIN_KERNEL_FLOPS = 1e6


def load_search_rules() -> None:
    """Register TVM's tensor intrinsics, which the search's rules need: a one-time 25 s import
    (on this machine), done before the tuning clock starts so it does not eat a stage's budget."""
    import tvm.s_tir.tensor_intrin  # noqa: F401


def tuning_enabled() -> bool:
    return os.environ.get("EDGEC_TVM_TUNING", "on").strip().lower() not in ("0", "off", "no", "false")


def database_key(model: Path, spec: TargetSpec) -> str:
    import tvm

    data = model.with_name(model.name + ".data")
    described = {"model": sha256_file(model), "data": sha256_file(data) if data.is_file() else None,
                 "target": spec.target, "arch": spec.arch, "tvm": tvm.__version__}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:40]


def database_dir(model: Path, spec: TargetSpec) -> Path:
    return cache_root() / "tvm-tuning" / database_key(model, spec)


def database_digest(model: Path, spec: TargetSpec) -> str | None:
    """What a module cache key must include: the stage's committed records (None when untuned)."""
    records = database_dir(model, spec) / "database_tuning_record.json"
    if not tuning_enabled() or not records.is_file():
        return None
    return sha256_file(records)


def _as_task(func):
    from tvm import IRModule

    return IRModule({"main": func.with_attr("global_symbol", "main").with_attr("tirx.noalias", True)})


class TunedSchedules:
    """The committed records of one stage's database; `apply` swaps them into a fused module."""

    def __init__(self, folder: Path) -> None:
        from tvm.s_tir import meta_schedule as ms

        self.folder = folder
        self.database = ms.database.JSONDatabase(str(folder / "database_workload.json"),
                                                 str(folder / "database_tuning_record.json"), allow_missing=False)
        self.target = _target_of(folder)
        if "tensorize" in (folder / "database_tuning_record.json").read_text():
            load_search_rules()
        self.applied = 0

    @classmethod
    def for_stage(cls, model: Path, spec: TargetSpec) -> TunedSchedules | None:
        folder = database_dir(model, spec)
        if not tuning_enabled() or not (folder / "database_tuning_record.json").is_file():
            return None
        return cls(folder)

    def apply(self, mod):
        """`mod` with every unscheduled PrimFunc that has a record replaced by its tuned schedule."""
        from tvm import tirx

        for gvar, func in list(mod.functions_items()):
            if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
                continue
            sch = self.database.query_schedule(_as_task(func), self.target, "main")
            if sch is not None:
                tuned = sch.mod["main"].without_attr("global_symbol").with_attr("tirx.is_scheduled", True)
                mod[gvar] = tuned
                self.applied += 1
        return mod


def _target_of(folder: Path):
    import tvm

    return tvm.target.Target(json.loads((folder / "target.json").read_text()))


@dataclass
class KernelResult:
    name: str
    flops: float
    hand_seconds: float
    tuned_seconds: float | None
    trials: int
    committed: bool

    def to_json(self) -> dict:
        return {"name": self.name, "flops": self.flops, "hand_seconds": self.hand_seconds,
                "tuned_seconds": self.tuned_seconds, "trials": self.trials, "committed": self.committed}


def hot_kernels(mod, limit: int | None = None) -> list[tuple[str, object, float]]:
    """(name, PrimFunc, flops) of the fused kernels that hold a reduction (convs, matmuls, pools),
    the costliest first, each distinct kernel once."""
    import tvm_ffi
    from tvm import tirx
    from tvm.s_tir.analysis import estimate_tir_flops

    found, seen = [], set()
    for gvar, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
            continue
        key = tvm_ffi.structural_hash(func)
        if key in seen:
            continue
        seen.add(key)
        try:
            flops = float(estimate_tir_flops(_as_task(func)))
        except Exception:  # noqa: BLE001 - TVM cannot count some kernels: they are not hot ones
            continue
        if flops >= MIN_KERNEL_FLOPS:
            found.append((gvar.name_hint, func, flops))
    found.sort(key=lambda k: -k[2])
    return found[:limit] if limit else found


def _random_args(arg_infos, device) -> list:
    import tvm

    rng = np.random.default_rng(0)
    args = []
    for info in arg_infos:
        kind, dtype, shape = info
        array = rng.standard_normal([int(d) for d in shape]).astype(dtype) if kind == "TENSOR" else None
        args.append(tvm.runtime.tensor(array, device))
    return args


def _time(rt_mod, arg_infos, device, repeat: int = 3) -> float:
    """Median seconds of one call of `rt_mod`'s entry (each sample at least 20 ms of calls)."""
    evaluator = rt_mod.time_evaluator(rt_mod.entry_name, device, number=1, repeat=repeat, min_repeat_ms=20)
    return float(np.median(evaluator(*_random_args(arg_infos, device)).results))


def _build(mod, target):
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm.tirx.build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _builder_and_runner(workdir: Path):
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                try:
                    path = str(Path(tempfile.mkdtemp(dir=workdir, prefix="build-")) / "kernel.so")
                    _build(inp.mod, inp.target).export_library(path)
                    results.append(ms.builder.BuilderResult(path, None))
                except Exception as exc:  # noqa: BLE001 - a candidate that does not build is just skipped
                    results.append(ms.builder.BuilderResult(None, str(exc).strip().splitlines()[-1][:500]))
            return results

    @derived_object
    class InProcessRunner(ms.runner.PyRunner):
        def run(self, runner_inputs):
            futures = []
            device = tvm.cpu()
            for inp in runner_inputs:
                try:
                    rt_mod = tvm.runtime.load_module(inp.artifact_path)
                    cost = _time(rt_mod, [a.as_json() for a in inp.args_info], device)
                    futures.append(ms.runner.LocalRunnerFuture([cost], None))
                except Exception as exc:  # noqa: BLE001
                    futures.append(ms.runner.LocalRunnerFuture(None, str(exc).strip().splitlines()[-1][:500]))
            return futures

    return InProcessBuilder(), InProcessRunner()


def hand_seconds(func, target) -> float:
    """Time of `func` with edgec's hand schedule (or none, when no rule matches)."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from .schedules import apply_cpu_schedules

    mod = apply_cpu_schedules(_as_task(func), target)
    rt_mod = _build(mod, target)
    infos = [a.as_json() for a in ArgInfo.from_prim_func(func)]
    return _time(rt_mod, infos, tvm.cpu())


def tune_kernel(name: str, func, target, workdir: Path, trials: int, deadline: float, *,
                chunk: int = 16, seed: int = 0) -> tuple[float | None, int, object]:
    """Search `trials` schedules of `func` (in chunks, stopping at `deadline`); returns the best
    time found, the trials run and the search's database."""
    from tvm.s_tir import meta_schedule as ms

    builder, runner = _builder_and_runner(workdir)
    database = ms.database.MemoryDatabase()
    done = 0
    task = _as_task(func)
    while done < trials and time.monotonic() < deadline:
        step = min(chunk, trials - done)
        context = ms.TuneContext(mod=task, target=target, space_generator="post-order-apply",
                                 search_strategy="replay-trace", task_name=name, rand_state=seed + done,
                                 num_threads=int(target.attrs.get("num-cores", 1)),
                                 logger=ms.logging.get_logger(f"edgec.tune.{name}")).clone()
        ms.tune_tasks(tasks=[context], task_weights=[1.0], work_dir=str(workdir), max_trials_global=step,
                      num_trials_per_iter=step, builder=builder, runner=runner, database=database,
                      cost_model="random", measure_callbacks="default", task_scheduler="round-robin")
        done += step
    records = database.get_top_k(database.commit_workload(task), 1)
    best = float(np.mean([float(s) for s in records[0].run_secs])) if records else None
    return best, done, database


def tune_stage(model: Path, spec: TargetSpec, *, threads: int, trials: int, deadline: float,
               progress: Callable[[str], None] = lambda _m: None) -> list[KernelResult]:
    """Tune the hot kernels of one stage's sub-model for `spec` until `deadline` (time.monotonic)
    and commit the winners to the stage's database (replacing what it held)."""
    import logging

    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ...runtime.tvm_stage import _init_tvm_threads, _set_threads
    from .frontend import import_onnx
    from .lowering import fused_module

    _init_tvm_threads()
    _set_threads(threads)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    target = tvm.target.Target({**{k: v for k, v in spec.target.items() if k != "host"}, "num-cores": threads})
    kernels = hot_kernels(fused_module(import_onnx(model, None, spec.describe()), target))
    folder = database_dir(model, spec)
    tmp_root = folder.parent
    tmp_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=tmp_root, prefix=".tmp-"))
    committed = ms.database.JSONDatabase(str(staging / "database_workload.json"),
                                         str(staging / "database_tuning_record.json"))
    results, total = [], sum(f for *_, f in kernels) or 1.0
    start = time.monotonic()
    try:
        for index, (name, func, flops) in enumerate(kernels):
            share = start + (deadline - start) * sum(f for *_, f in kernels[: index + 1]) / total
            hand = hand_seconds(func, target)
            best, done, found = tune_kernel(name, func, target, staging, trials, min(deadline, max(share, time.monotonic() + 1)))
            win = best is not None and best < hand * WIN_MARGIN
            if win:
                task = _as_task(func)
                record = found.get_top_k(found.commit_workload(task), 1)[0]
                workload = committed.commit_workload(task)
                committed.commit_tuning_record(ms.database.TuningRecord(
                    record.trace, workload, record.run_secs, target, record.args_info))
            results.append(KernelResult(name, flops, hand, best, done, win))
            tuned = f"{best * 1e3:.3f} ms" if best is not None else "no valid schedule"
            progress(f"    kernel {index + 1}/{len(kernels)} {name}: hand {hand * 1e3:.3f} ms, tuned {tuned} "
                     f"({done} trials){' → tuned' if win else ''}")
        (staging / "target.json").write_text(json.dumps({k: v for k, v in spec.target.items() if k != "host"}))
        (staging / "kernels.json").write_text(json.dumps([r.to_json() for r in results], indent=1) + "\n")
        for leftover in staging.glob("build-*"):
            shutil.rmtree(leftover, ignore_errors=True)
        shutil.rmtree(staging / "logs", ignore_errors=True)
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return results
