"""The launcher side of `edgec run --rebalance`: watch the ranks' compute times, re-split, recompile, hand over.

Why in the launcher: it is outside MPI and already polls the ranks, it has the time to profile the
model and to run the explorer's model, and a compile (seconds) must not hold up any rank. A
thread (`Rebalancer`) polls the ranks' mapped compute files (`rebalance_rank.compute_file`) with
the run's poll period and, for the current plan, applies `rebalance.imbalanced` to the last
window of frames every rank has finished. When it holds, it asks the `Replanner` for a new
split; a plan predicted to beat the measured bottleneck by more than the margin is written to
`RUNDIR/rebalance/plan-<i>.edge` and compiled by `python -m edgec compile` in a subprocess;
once that output is there, and has its stages on the same devices in the same order, the
thread writes `ready-<i>`, which rank 0 picks up at its next decision point. One candidate at
a time; after a switch (rank 0's `adopted-<i>`) the next judgement waits for a window of frames
of the new plan (after the pipeline has refilled); a proposal whose predicted gain is below
the margin ends the rebalancing for the run. The model can be wrong about a plan it has not
seen run, so every plan's measured bottleneck is kept: when the plan just switched to measures
slower than an earlier one, the run switches back to the best measured plan (compiled already)
and stops rebalancing, so a run never ends on a plan worse than one it has measured.

The improved plan is written beside the output, `OUT.rebalanced.edge` (replaced only when edgec
wrote it, by its first line); the run directory, with the compiled candidates, is removed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..compiler.diagnostics import UsageError
from .launcher import (POLL_SECONDS, RunResult, check_run_options, launch_for_report, make_rundir, mpirun_prefix,
                       rank_count, read_outputs)
from .outputs import CompiledOutput
from .progress import Limits
from .rebalance import Proposal, Replanner, Stage, check_window_margin, imbalanced, load_for_rebalance, window_means
from .rebalance_rank import adopted_file, compute_file, finished_file, plan_dir, ready_file

HEADER = "edgec run --rebalance: the plan the running pipeline switched to"


@dataclass
class Candidate:
    index: int
    proposal: Proposal
    process: subprocess.Popen | None
    """The background compile; None for a return to an earlier plan, which is compiled already."""
    asked_at: float
    compiled_s: float | None = None
    ready: bool = False
    error: str | None = None


@dataclass
class Rebalancer:
    """The decision thread (see the module's docstring)."""

    replanner: Replanner
    stages: list[Stage]
    root: Path
    """The output run (plan 0)."""
    rundir: Path
    ranks: int
    total: int
    warmup: int
    window: int
    margin: float
    plans: list[dict] = field(default_factory=list)
    candidate: Candidate | None = None
    epoch_start: int = 0
    current: int = 0
    finished: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __post_init__(self) -> None:
        (self.rundir / "rebalance").mkdir(exist_ok=True)
        self.plans.append({"plan": 0, "stages": self._split(self.stages), "_stages": list(self.stages)})

    def _split(self, stages) -> list[dict]:
        names = self.replanner.names
        return [{"device": s.device, "first": names[s.first], "last": names[s.last], "nodes": s.last - s.first + 1}
                for s in stages]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="edgec-rebalance", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._finish()
        if self.candidate is not None and self.candidate.process is not None and self.candidate.process.poll() is None:
            self.candidate.process.kill()
            self.candidate.process.wait()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - a failed rebalance must not fail the run; it is reported
                self.finished = f"rebalancing stopped: {type(exc).__name__}: {exc}"
                self._finish()
                return
            if self.finished is not None:
                self._finish()
                return

    def _finish(self) -> None:
        path = finished_file(self.rundir)
        try:
            if not path.exists():
                path.write_text(self.finished or "")
        except OSError:
            pass  # the run directory is gone: the run has ended, and nobody is left to tell

    def _times(self) -> list[np.ndarray] | None:
        times = []
        for rank in range(self.ranks):
            path = compute_file(self.rundir, rank)
            if not path.is_file() or path.stat().st_size < 8 * self.total:
                return None
            times.append(np.array(np.memmap(path, np.float64, "r", shape=(self.total,))))
        return times

    def step(self) -> None:
        c = self.candidate
        if c is not None:
            self._follow(c)
            return
        times = self._times()
        if times is None:
            return
        start = max(self.epoch_start, self.warmup) + self.ranks
        means = window_means(times, start, self.window)
        if means is None:
            return
        entry = self.plans[self.current]
        if "measured_bottleneck_ms" not in entry:
            entry["measured_bottleneck_ms"] = round(1e3 * float(max(means[0])), 4)
            best = min(self.plans[:self.current + 1], key=lambda p: p.get("measured_bottleneck_ms", float("inf")))
            if best is not entry:
                self._return_to(best["plan"], means[1])
                return
        if not imbalanced(means[0], self.margin):
            return
        entry["_measured"] = list(means[0])
        earlier = [(p["_stages"], p["_measured"]) for p in self.plans[:self.current] if "_measured" in p]
        proposal = self.replanner.replan(self.stages, means[0], earlier)
        if proposal.gain <= self.margin:
            self.finished = (f"stopped at frame {means[1]}: the best re-split is predicted {100 * proposal.gain:.0f} % "
                             f"faster, not more than the margin ({100 * self.margin:.0f} %)")
            return
        index = len(self.plans)
        text = self.replanner.plan_text(proposal.stages, [HEADER, f"plan {index}, from the compute times measured "
                                                          f"over frames {means[1] - self.window}..{means[1] - 1}"])
        path = self.rundir / "rebalance" / f"plan-{index}.edge"
        path.write_text(text)
        model = str(self.replanner.loaded.model_path)
        cmd = [sys.executable, "-m", "edgec", "compile", model, "--plan", str(path),
               "-o", str(plan_dir(self.rundir, index))]
        log = open(self.rundir / "rebalance" / f"compile-{index}.log", "wb")
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        self.candidate = Candidate(index, proposal, process, time.monotonic())
        self.plans.append({"plan": index, "stages": self._split(proposal.stages), "_stages": list(proposal.stages),
                           "asked_at_frame": means[1],
                           "measured_ms": [round(1e3 * float(m), 4) for m in means[0]],
                           "speed_factors": [round(float(f), 4) for f in proposal.factors],
                           "bottleneck_ms": round(1e3 * proposal.current_s, 4),
                           "predicted_bottleneck_ms": round(1e3 * proposal.predicted_s, 4),
                           "predicted_gain": round(proposal.gain, 4), "text": text})

    def _return_to(self, plan: int, frame: int) -> None:
        """The plan just switched to measured slower than an earlier one (the cost model was wrong about it): go back
        to the best measured plan, compiled already (a new index naming its directory), and stop rebalancing."""
        index = len(self.plans)
        target = plan_dir(self.rundir, plan) if plan else self.root
        plan_dir(self.rundir, index).symlink_to(target.resolve(), target_is_directory=True)
        back = self.plans[plan]
        self.plans.append({"plan": index, "stages": back["stages"], "_stages": back["_stages"], "returns_to": plan,
                           "asked_at_frame": frame, "text": back.get("text")})
        self.candidate = Candidate(index, Proposal(tuple(back["_stages"]), 0.0, 0.0, ()), None, time.monotonic(),
                                   ready=True)
        ready_file(self.rundir, index).write_text("")
        self.finished = (f"returned to plan {plan}: plan {self.current} measured "
                         f"{self.plans[self.current]['measured_bottleneck_ms']:.2f} ms per frame at its slowest stage, "
                         f"plan {plan} {back['measured_bottleneck_ms']:.2f} ms")

    def _follow(self, c: Candidate) -> None:
        """A candidate in flight: compiled yet? adopted yet?"""
        entry = self.plans[c.index]
        if not c.ready:
            rc = c.process.poll()
            if rc is None:
                return
            c.compiled_s = time.monotonic() - c.asked_at
            entry["compile_s"] = round(c.compiled_s, 3)
            problem = self._check_compiled(c, rc)
            if problem is not None:
                entry["error"] = problem
                self.finished = f"rebalancing stopped: plan {c.index} {problem}"
                self.candidate = None
                return
            c.ready = True
            ready_file(self.rundir, c.index).write_text("")
            return
        adopted = adopted_file(self.rundir, c.index)
        if adopted.is_file():
            self.epoch_start = int(adopted.read_text())
            self.stages = list(c.proposal.stages)
            self.current = c.index
            self.candidate = None

    def _check_compiled(self, c: Candidate, rc: int) -> str | None:
        if rc != 0:
            log = (self.rundir / "rebalance" / f"compile-{c.index}.log").read_text(errors="replace").strip()
            return f"did not compile (exit {rc}): {log[-300:]}"
        compiled = CompiledOutput.open(plan_dir(self.rundir, c.index))
        devices = [s.device for s in compiled.stages]
        if devices != [s.device for s in self.stages]:
            return f"compiled to stages on {devices}, not on the running ranks' devices"
        return None

    def section(self, from_ranks: dict) -> dict:
        """The report's `rebalance` section: the ranks' switches joined with the plans they switched to."""
        by_plan = {p["plan"]: p for p in self.plans}
        switches = []
        previous = 0
        for s in from_ranks.get("switches", []):
            new = by_plan.get(s["plan"], {})
            switches.append({**s, "old_stages": by_plan[previous]["stages"], "new_stages": new.get("stages"),
                             **{k: new[k] for k in ("measured_ms", "speed_factors", "predicted_gain", "compile_s",
                                                    "asked_at_frame") if k in new}})
            previous = s["plan"]
        adopted = {s["plan"] for s in switches}
        pending = [p["plan"] for p in self.plans[1:] if p["plan"] not in adopted]
        return {"window": self.window, "margin": self.margin, "switches": switches,
                "plans": [{k: v for k, v in p.items() if not k.startswith("_") and k != "text"} for p in self.plans],
                "not_adopted": pending, "note": self.finished, "epochs": from_ranks.get("epochs", {}),
                "final_plan": previous}


def improved_plan_path(out: Path) -> Path:
    return out.resolve().parent / f"{out.resolve().name}.rebalanced.edge"


def check_improved_plan_path(out: Path) -> Path:
    """`OUT.rebalanced.edge`; refused (before the run) when a file is there that edgec did not write (by its first
    line)."""
    path = improved_plan_path(out)
    if path.exists() and (not path.is_file() or not path.read_text(errors="replace").startswith(f"# {HEADER}")):
        raise UsageError(f"'{path}' exists and edgec did not write it; --rebalance writes the improved plan there",
                         hint="move that file away")
    if not path.parent.is_dir() or not os.access(path.parent, os.W_OK):
        raise UsageError(f"cannot write the improved plan '{path}': its directory is not writable")
    return path


def write_improved_plan(out: Path, text: str) -> Path:
    path = check_improved_plan_path(out)
    path.write_text(text)
    return path


def run_rebalanced(out: str | Path, feeds: dict[str, np.ndarray], *, frames: int = 100, warmup: int = 2,
                   hosts: str | Path | None = None, timeout: float | None = None, keep_outputs: bool = False,
                   workdir: str | Path | None = None, startup_timeout: float | None = 600.0,
                   stall_timeout: float | None = 60.0, window: int = 32, margin: float = 0.2,
                   slow: tuple[str, ...] = (), profile: str | Path | None = None,
                   progress: Callable[[str], None] = lambda _m: None) -> RunResult:
    """`edgec run OUT --rebalance`: the run of `launcher.run` with plan switches; the report gains a `rebalance`
    section, and `rebalanced_plan` (the path of the improved plan, when the run switched)."""
    from .inputs import RUN_INPUTS, stack_feeds
    from .slow import slowdowns

    out = Path(out)
    compiled = CompiledOutput.open(out)
    check_run_options(frames, warmup, timeout, startup_timeout=startup_timeout, stall_timeout=stall_timeout)
    check_window_margin(window, margin)
    check_improved_plan_path(out)
    slow = tuple(f"{rank}:{factor!r}" for rank, factor in slowdowns(slow, rank_count(compiled)).items())
    replanner, stages = load_for_rebalance(compiled.manifest, Path(profile) if profile else None, progress)
    for rank in range(len(compiled.stages)):
        compiled.stage_model(rank)
    stacks = stack_feeds(compiled.manifest, feeds)
    rundir = make_rundir(workdir, "edgec-run-")
    rebalancer = Rebalancer(replanner, stages, compiled.root, rundir, len(compiled.stages), warmup + frames, warmup,
                            window, margin)
    try:
        cmd = mpirun_prefix(compiled, Path(hosts) if hosts else None)
        cmd += ["-x", "EDGEC_TEST_REBALANCE_HOLD"] if "EDGEC_TEST_REBALANCE_HOLD" in os.environ else []
        cmd += [sys.executable, "-m", "edgec.runtime.rebalance_rank", str(compiled.root.resolve()), str(rundir),
                "--frames", str(frames), "--warmup", str(warmup), "--window", str(window)]
        for spec in slow:
            cmd += ["--slow", spec]
        cmd += ["--keep-outputs"] if keep_outputs else []
        np.savez(rundir / RUN_INPUTS, **stacks)
        rebalancer.start()
        report = launch_for_report(compiled, cmd, rundir, Limits(timeout, startup_timeout, stall_timeout))
        rebalancer.stop()
        report["rebalance"] = rebalancer.section(report.get("rebalance", {}))
        final = report["rebalance"]["final_plan"]
        if final and rebalancer.plans[final].get("text"):
            path = write_improved_plan(out, rebalancer.plans[final]["text"])
            report["rebalanced_plan"] = str(path)
        return RunResult(report, read_outputs(rundir) if keep_outputs else {}, cmd)
    finally:
        rebalancer.stop()
        shutil.rmtree(rundir, ignore_errors=True)
