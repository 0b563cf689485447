"""`edgec tune OUT`: meta-schedule tuning of every TVM CPU stage of a compiled output, then a
recompile that uses the tuned kernels, and a report of each stage's time before and after.

Why on the compiled output: its manifest already names each stage's sub-model and device, so
the tuned database is keyed exactly like the stage a later `edgec compile --backend tvm`
builds (sub-model sha256 + target, `backends/tvm/tuning.py`), which picks the records up by
itself. Times are measured on this machine, so only stages whose device has this machine's
architecture are tuned (others are skipped and said so), and a tuned module must agree with
onnxruntime within 1e-4 (relative to the output's largest magnitude) or the command fails.
A quantized stage is held to its untuned module instead (same bound): its integer kernels may
differ from onnxruntime's by one quantization step where a float rounding ties, which is
`edgec verify`'s business; a tuned schedule must not change the stage's result.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .compiler.diagnostics import ModelError, UsageError

TOLERANCE = 1e-4
RUNS = 5
KEEP_BELOW = 0.98
"""A stage keeps its tuned kernels only when its tuned time is under 98 % of the untuned one."""
REPORT = "tune.json"


@dataclass
class StageTuning:
    rank: int
    device: str
    target: str
    kernels: int
    tuned_kernels: int
    trials: int
    before_min: float
    before_median: float
    after_min: float
    after_median: float
    max_rel_err: float
    kept: bool = True
    """Whether the tuned kernels stay: the whole tuned stage must beat the untuned one (`KEEP_BELOW`)."""


def _times(session, feeds: dict, runs: int) -> tuple[float, float]:
    session.run(None, feeds)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feeds)
        samples.append(time.perf_counter() - start)
    return min(samples), float(np.median(samples))


def _measure(out: Path, stages, found, untuned, feeds, expected, runs: int) -> list[StageTuning]:
    """Each tuned stage against its untuned module, measured in alternating blocks in this process
    (the stage's kernels were chosen one by one; only the whole stage says whether they help)."""
    from .runtime.outputs import CompiledOutput
    from .runtime.tvm_stage import TvmSession

    compiled = CompiledOutput.open(out)
    report = []
    for stage, spec in stages:
        session = TvmSession.for_stage(compiled, stage.rank)
        err = _rel_err(session.run(None, feeds[stage.rank]), expected[stage.rank])
        before, after = [], []
        for _ in range(2):
            before.append(_times(untuned[stage.rank], feeds[stage.rank], runs))
            after.append(_times(session, feeds[stage.rank], runs))
        before_t = (min(b[0] for b in before), float(np.median([b[1] for b in before])))
        after_t = (min(a[0] for a in after), float(np.median([a[1] for a in after])))
        kernels = found[stage.rank]
        tuned = sum(k.committed for k in kernels)
        report.append(StageTuning(stage.rank, stage.device, spec.describe(), len(kernels), tuned,
                                  sum(k.trials for k in kernels), *before_t, *after_t, err,
                                  kept=tuned > 0 and after_t[0] < before_t[0] * KEEP_BELOW))
    return report


def _rel_err(got: list, want: list) -> float:
    worst = 0.0
    for g, w in zip(got, want):
        scale = float(np.max(np.abs(w))) or 1.0
        worst = max(worst, float(np.max(np.abs(g.astype(np.float64) - w))) / scale)
    return worst


def tune_output(out: str | Path, *, trials: int = 64, budget: float = 600.0, runs: int = RUNS,
                progress: Callable[[str], None] = lambda _m: None) -> list[StageTuning]:
    """Tune, recompile and report (see the module docstring); writes `OUT/tune.json`."""
    from .backends.tvm import compile_directory
    from .backends.tvm.section import TvmSection
    from .backends.tvm.targets import host_arch, select_target
    from .backends.tvm.tuning import drop_records, load_search_rules, tune_stage
    from .runtime.inputs import random_inputs
    from .runtime.outputs import CompiledOutput
    from .runtime.tvm_stage import TvmSession

    if trials < 1:
        raise UsageError(f"--trials must be at least 1 (got {trials})")
    if not budget > 0:
        raise UsageError(f"--budget must be a positive number of seconds (got {budget})")
    out = Path(out)
    compiled = CompiledOutput.open(out)
    if not isinstance(compiled.manifest.section("tvm"), TvmSection):
        raise UsageError(f"'{out}' has no TVM modules to tune", hint="compile it with --backend tvm first")
    stages = []
    for stage in compiled.stages:
        spec = select_target(compiled.manifest.device(stage.device), stage.resource or "cpu")
        if spec.kind != "llvm" or spec.arch != host_arch():
            progress(f"stage {stage.rank}: {spec.describe()} is not this machine's CPU ({host_arch()}); not tuned")
            continue
        stages.append((stage, spec))
    if not stages:
        raise UsageError(f"'{out}' has no stage on a {host_arch()} CPU, the only kind this machine can measure")
    tensors = dict(random_inputs(compiled.manifest, seed=0))
    feeds, expected, untuned = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="edgec-tune-") as tmp:
        for stage in compiled.stages:
            ort = compiled.session(stage.rank)
            feeds[stage.rank] = {i.name: tensors[i.name] for i in ort.get_inputs()}
            expected[stage.rank] = ort.run(None, feeds[stage.rank])
            tensors.update(zip((o.name for o in ort.get_outputs()), expected[stage.rank]))
        section = compiled.manifest.section("tvm")
        quantized = compiled.manifest.quantization
        for stage, _ in stages:
            copy = Path(tmp) / f"before{stage.rank}.so"
            shutil.copyfile(out / section.stage(stage.rank).module, copy)
            untuned[stage.rank] = TvmSession(copy, stage.signature.inputs, stage.signature.outputs,
                                             threads=stage.threads or 1)
            if quantized is not None and quantized.stage(stage.rank) is not None:
                expected[stage.rank] = untuned[stage.rank].run(None, feeds[stage.rank])
        progress("loading TVM's search rules")
        load_search_rules()
        start = time.monotonic()
        found = {}
        for index, (stage, spec) in enumerate(stages):
            deadline = start + budget * (index + 1) / len(stages)
            progress(f"stage {stage.rank} ({stage.device}, {spec.describe()}): tuning, {trials} trials per kernel, "
                     f"{max(0.0, deadline - time.monotonic()):.0f} s")
            found[stage.rank] = tune_stage(compiled.stage_model(stage.rank), spec, threads=stage.threads or 1,
                                           trials=trials, deadline=deadline, progress=progress)
        progress("recompiling the tuned stages")
        compile_directory(out, progress)
        report = _measure(out, stages, found, untuned, feeds, expected, runs)
        rejected = [r for r in report if r.tuned_kernels and not r.kept]
        for r in rejected:
            stage, spec = next((s, t) for s, t in stages if s.rank == r.rank)
            progress(f"stage {r.rank}: tuned {r.after_min * 1e3:.2f} ms is not faster than untuned "
                     f"{r.before_min * 1e3:.2f} ms; its tuned kernels are dropped")
            drop_records(compiled.stage_model(stage.rank), spec)
        if rejected:
            progress("recompiling the stages whose tuning was dropped")
            compile_directory(out, progress)
    (out / REPORT).write_text(json.dumps([asdict(r) for r in report], indent=1) + "\n")
    bad = [r for r in report if not r.max_rel_err <= TOLERANCE]
    if bad:
        raise ModelError(f"tuned stage(s) {', '.join(str(r.rank) for r in bad)} differ from onnxruntime by up to "
                         f"{max(r.max_rel_err for r in bad):.1e} (tolerance {TOLERANCE:g})",
                         hint="clear the stage's database under ~/.cache/edgec/tvm-tuning and report the model")
    return report


def render(report: list[StageTuning]) -> str:
    rows = ["| stage | device | kernels tuned | trials | before min / median | after min / median | after/before | kept | max rel err |",
            "|---|---|---|---|---|---|---|---|---|"]
    for r in report:
        rows.append(f"| {r.rank} | {r.device} | {r.tuned_kernels} of {r.kernels} | {r.trials} | "
                    f"{r.before_min * 1e3:.2f} / {r.before_median * 1e3:.2f} ms | "
                    f"{r.after_min * 1e3:.2f} / {r.after_median * 1e3:.2f} ms | "
                    f"{r.after_min / r.before_min:.2f}x | {'yes' if r.kept else 'no'} | {r.max_rel_err:.1e} |")
    return "\n".join(rows)
