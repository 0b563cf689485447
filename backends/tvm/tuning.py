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


def drop_records(model: Path, spec: TargetSpec) -> None:
    """Make later compiles ignore a stage's tuned kernels (its tuned stage was not faster): the
    records go, `kernels.json` stays as the account of what was tried."""
    folder = database_dir(model, spec)
    for name in ("database_tuning_record.json", "database_workload.json"):
        (folder / name).unlink(missing_ok=True)


def _as_task(func):
    from tvm import IRModule

    return IRModule({"main": func.with_attr("global_symbol", "main").with_attr("tirx.noalias", True)})


def replace_unscheduled(mod, schedule_for) -> int:
    """Replace, in place, every unscheduled PrimFunc of `mod` for which `schedule_for(func)` gives
    a schedule (of `_as_task(func)`) by that schedule, marked scheduled; returns how many."""
    from tvm import tirx

    replaced = 0
    for gvar, func in list(mod.functions_items()):
        if not isinstance(func, tirx.PrimFunc) or func.attrs.get("tirx.is_scheduled", False):
            continue
        sch = schedule_for(func)
        if sch is not None:
            mod[gvar] = sch.mod["main"].without_attr("global_symbol").with_attr("tirx.is_scheduled", True)
            replaced += 1
    return replaced


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
        self.applied += replace_unscheduled(mod, lambda func: self.database.query_schedule(
            _as_task(func), self.target, "main"))
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
    source: str | None = None
    """Where the committed schedule came from: "template" (edgec's conv tiles) or "meta-schedule"."""

    def to_json(self) -> dict:
        return {"name": self.name, "flops": self.flops, "hand_seconds": self.hand_seconds,
                "tuned_seconds": self.tuned_seconds, "trials": self.trials, "committed": self.committed,
                "source": self.source}


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


def _time(rt_mod, arg_infos, device, repeat: int = 15) -> float:
    """Median seconds of one call of `rt_mod`'s entry, with every argument but the first flushed
    from the caches before each call. Why flush: inside a stage a kernel's input was just written
    by the kernel before it, but its weights come from DRAM (a ResNet-50 stage holds 10-60 MB of
    them); timed alone with everything hot, weight-heavy convs ran 1.45x faster than in the
    stage, so tuning chose schedules by the wrong cost."""
    evaluator = rt_mod.time_evaluator(rt_mod.entry_name, device, number=1, repeat=repeat,
                                      f_preproc="cache_flush_cpu_non_first_arg")
    return float(np.median(evaluator(*_random_args(arg_infos, device)).results))


def _build(mod, target):
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm.tirx.build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def _builder_and_runner(workdir: Path):
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir import meta_schedule as ms

    state = {"slow": False}

    @derived_object
    class InProcessBuilder(ms.builder.PyBuilder):
        def build(self, build_inputs):
            results = []
            for inp in build_inputs:
                if state["slow"]:
                    results.append(ms.builder.BuilderResult(None, "skipped: an earlier candidate built too slowly"))
                    continue
                try:
                    started = time.monotonic()
                    path = str(Path(tempfile.mkdtemp(dir=workdir, prefix="build-")) / "kernel.so")
                    _build(inp.mod, inp.target).export_library(path)
                    state["slow"] = time.monotonic() - started > SLOW_BUILD_SECONDS
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

    return InProcessBuilder(), InProcessRunner(), state


def hand_seconds(func, target) -> float:
    """Time of `func` with edgec's hand schedule (or none, when no rule matches)."""
    import tvm
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from .schedules import apply_cpu_schedules

    mod = apply_cpu_schedules(_as_task(func), target)
    rt_mod = _build(mod, target)
    infos = [a.as_json() for a in ArgInfo.from_prim_func(func)]
    return _time(rt_mod, infos, tvm.cpu())


SLOW_BUILD_SECONDS = 30.0
"""A kernel's search stops after a candidate that took longer than this to build."""
UNROLL_STEPS = [0, 16, 64]
"""Meta-schedule's CPU default also tries explicit unrolls of 512 steps; LLVM took over 10 minutes
to compile one such candidate of an Inception pooling kernel, and an in-process build cannot be
interrupted, so the search stops at 64."""


def _space():
    from tvm.s_tir import meta_schedule as ms

    rules = [ms.schedule_rule.ParallelizeVectorizeUnroll(max_jobs_per_core=16, max_vectorize_extent=64,
                                                         unroll_max_steps=UNROLL_STEPS, unroll_explicit=True)
             if isinstance(rule, ms.schedule_rule.ParallelizeVectorizeUnroll) else rule
             for rule in ms.ScheduleRule.create("llvm")]
    return ms.space_generator.PostOrderApply(sch_rules=rules, postprocs="llvm", mutator_probs="llvm")


def tune_kernel(name: str, func, target, workdir: Path, trials: int, deadline: float, *,
                chunk: int = 16, seed: int = 0) -> tuple[float | None, int, object]:
    """Search `trials` schedules of `func` (in chunks, stopping at `deadline`); returns the best
    time found, the trials run and the search's database."""
    from tvm.s_tir import meta_schedule as ms

    builder, runner, state = _builder_and_runner(workdir)
    database = ms.database.MemoryDatabase()
    done = 0
    task = _as_task(func)
    while done < trials and time.monotonic() < deadline and not state["slow"]:
        step = min(chunk, trials - done)
        context = ms.TuneContext(mod=task, target=target, space_generator=_space(),
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


def _conv_template(fused, target, kernels):
    """(candidates, defaults, names) for the hot kernels edgec's conv template covers, by hash."""
    import tvm_ffi
    from tvm import s_tir, tirx

    from .schedules import _conv_parts, _extent, conv_tiles, default_conv_tile

    candidates, defaults = {}, {}
    for _, func, _ in kernels:
        sch = s_tir.Schedule(_as_task(func))
        parts = _conv_parts(sch)
        if parts is None:
            continue
        default = default_conv_tile(sch, parts[0], target)
        _, _, width, channels, _, _, cin = (_extent(sch, loop) for loop in sch.get_loops(parts[0]))
        if default is None or None in (width, channels, cin):
            continue
        key = tvm_ffi.structural_hash(func)
        defaults[key] = default
        candidates[key] = [t for t in conv_tiles(target, channels, width, cin) if t != default]
    names = {gvar.name_hint: tvm_ffi.structural_hash(func) for gvar, func in fused.functions_items()
             if isinstance(func, tirx.PrimFunc) and tvm_ffi.structural_hash(func) in candidates}
    return candidates, defaults, names


TEMPLATE_SHARE = 0.75
"""Of a stage's budget, what the in-stage template rounds may use; the rest goes to meta-schedule
for the hot kernels the template does not cover (matmuls, pools)."""


def tune_stage(model: Path, spec: TargetSpec, *, threads: int, trials: int, deadline: float,
               progress: Callable[[str], None] = lambda _m: None) -> list[KernelResult]:
    """Tune the hot kernels of one stage's sub-model for `spec` until `deadline` (time.monotonic)
    and commit the winners to the stage's database (replacing what it held): conv kernels by
    edgec's template measured inside the stage (`in_stage.py`), the other hot kernels by
    meta-schedule's search timed kernel by kernel."""
    import logging

    import tvm
    import tvm_ffi
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from ...runtime.tvm_stage import _init_tvm_threads, _set_threads
    from .frontend import import_onnx
    from .in_stage import choose_tiles_in_worker
    from .lowering import fused_module
    from .schedules import schedule_conv_tile

    _init_tvm_threads()
    _set_threads(threads)
    logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
    target = tvm.target.Target({**{k: v for k, v in spec.target.items() if k != "host"}, "num-cores": threads})
    fused = fused_module(import_onnx(model, None, spec.describe()), target)
    kernels = hot_kernels(fused)
    candidates, defaults, names = _conv_template(fused, target, kernels)
    folder = database_dir(model, spec)
    tmp_root = folder.parent
    tmp_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=tmp_root, prefix=".tmp-"))
    committed = ms.database.JSONDatabase(str(staging / "database_workload.json"),
                                         str(staging / "database_tuning_record.json"))
    start = time.monotonic()
    results = []
    try:
        choices = {}
        if candidates:
            progress(f"    {len(candidates)} conv kernel(s): up to {max(len(c) for c in candidates.values())} "
                     "tiles each, measured in the stage")
            choices = choose_tiles_in_worker(model, spec, candidates, defaults, names, threads=threads,
                                             deadline=start + (deadline - start) * TEMPLATE_SHARE, progress=progress)
        others = [name for name, func, _ in kernels if tvm_ffi.structural_hash(func) not in candidates]
        flops_of = {name: flops for name, _, flops in kernels}
        total = sum(flops_of[name] for name in others) or 1.0
        others_start = time.monotonic()
        for index, (name, func, flops) in enumerate(kernels):
            task = _as_task(func)
            choice = choices.get(tvm_ffi.structural_hash(func))
            if choice is not None:
                win = choice.best_seconds < choice.default_seconds * WIN_MARGIN
                if win:
                    sch = s_tir.Schedule(task)
                    schedule_conv_tile(sch, target, choice.best)
                    committed.commit_tuning_record(ms.database.TuningRecord(
                        sch.trace, committed.commit_workload(task), [choice.best_seconds], target,
                        ArgInfo.from_prim_func(func)))
                results.append(KernelResult(name, flops, choice.default_seconds, choice.best_seconds, choice.tried,
                                            win, "template" if win else None))
                progress(f"    kernel {name}: default tile {choice.default_seconds * 1e3:.3f} ms in the stage, best "
                         f"{choice.best_seconds * 1e3:.3f} ms ({choice.tried} tiles){' → tuned' if win else ''}")
                continue
            if time.monotonic() >= deadline:
                continue
            done_flops = sum(flops_of[n] for n in others[: others.index(name) + 1])
            share = others_start + (deadline - others_start) * done_flops / total
            kernel_deadline = min(deadline, max(share, time.monotonic() + 1))
            hand = hand_seconds(func, target)
            best, done, found = tune_kernel(name, func, target, staging, trials, kernel_deadline)
            win = best is not None and best < hand * WIN_MARGIN
            if win:
                record = found.get_top_k(found.commit_workload(task), 1)[0]
                committed.commit_tuning_record(ms.database.TuningRecord(
                    record.trace, committed.commit_workload(task), record.run_secs, target, record.args_info))
            results.append(KernelResult(name, flops, hand, best, done, win, "meta-schedule" if win else None))
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
