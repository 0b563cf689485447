"""Start a compiled output on Open MPI (a rank per stage and per further replica), wait, and read back the results.

Why a launcher process outside MPI: it checks inputs before anything starts, owns the time
limits, and is the one place that can always clean up. `mpirun` runs in a session of its own;
on a limit or interrupt every process of that session (mpirun, and the ranks, which Open MPI
puts in process groups of their own but not in sessions of their own) is terminated, then
killed, so a failed run never leaves ranks behind. Whatever happens, the caller gets either
the report or one `RuntimeFailure` naming the rank, its stage and the cause.

Time limits (`progress.Limits`, applied by `progress.RunWatch` while polling the ranks'
progress files): a start-up limit until every rank is ready, then a stall limit on the time
between finished frames, and an optional overall limit. A slow start is therefore never taken
for a hang, and a hang is caught `stall` seconds after it starts, however long the run. An
engine whose ranks report no progress (the C++ program) gets only the overall limit.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..compiler.diagnostics import UsageError
from .engines import checked_engine
from .fault_model import killed_failure, live_states, parse_kills, survived
from .faults import parse_straggler
from .ulfm_runtime import choose_mpi, ulfm_env
from .failure import RuntimeFailure, crashed_rank, rank_name, read_rank_errors, stopped, tail
from .inputs import RUN_INPUTS, stack_feeds
from .outputs import CompiledOutput
from .progress import DEFAULT_STALL_TIMEOUT, DEFAULT_STARTUP_TIMEOUT, Limits, RunWatch, Stop

DEFAULT_TIMEOUT = 300.0
"""The overall limit of engines whose ranks report no progress (the C++ program); the Python ranks
have start-up and stall limits instead and no overall limit unless one is asked for."""
POLL_SECONDS = 0.2
FORWARDED_ENV = ("PYTHONPATH", "EDGEC_TEST_CRASH_RANK", "EDGEC_TEST_CRASH_FRAME", "EDGEC_TEST_CRASH_HOW",
                 "EDGEC_TEST_SLOW_START")


@dataclass
class RunResult:
    """What a distributed run gives back, whatever the engine: the report (`report.summarize`'s figures and
    the mpirun `command`), the graph outputs of every measured frame (with keep_outputs), and the command."""

    report: dict
    outputs: dict[str, np.ndarray]
    command: list[str]


def _single_copy_works() -> bool:
    """Whether Open MPI's shared-memory single copy (CMA, process_vm_readv) is allowed here;
    containers often forbid it (seccomp, Yama ptrace scope >= 2), and then every large message fails."""
    try:
        if int(Path("/proc/sys/kernel/yama/ptrace_scope").read_text()) >= 2:
            return False
    except (OSError, ValueError):
        pass

    class IoVec(ctypes.Structure):
        """`struct iovec` of process_vm_readv(2)."""

        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        src, dst = ctypes.create_string_buffer(b"edgec", 8), ctypes.create_string_buffer(8)
        local, remote = IoVec(ctypes.addressof(dst), 8), IoVec(ctypes.addressof(src), 8)
        return libc.process_vm_readv(os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) == 8
    except (OSError, AttributeError):
        return False


def mpi_env() -> dict[str, str]:
    env = dict(os.environ)
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    if "OMPI_MCA_btl_vader_single_copy_mechanism" not in env and not _single_copy_works():
        env["OMPI_MCA_btl_vader_single_copy_mechanism"] = "none"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def rank_count(compiled: CompiledOutput) -> int:
    """How many MPI ranks the output runs as: one per stage, plus one per further replica (`replicate`)."""
    if compiled.manifest.replicas is None:
        return len(compiled.stages)
    from .replica_frames import rank_roles

    return len(rank_roles(compiled.root))


def mpirun_prefix(compiled: CompiledOutput, hosts: Path | None, forward: tuple[str, ...] = FORWARDED_ENV,
                  target: Any = None) -> list[str]:
    """`mpirun` with one rank per stage: oversubscribed locally, or the hostfile + rankfile, or inside an
    emulated cluster (`target`, a `cluster.mpi.ClusterTarget`: its namespaces, hostfile, rankfile and MCA
    parameters); shared by every engine (the Python ranks here, the C++ program in `cpp_engine`)."""
    mpirun = shutil.which("mpirun")
    if mpirun is None:
        raise UsageError("'mpirun' not found", hint="install Open MPI: apt-get install openmpi-bin libopenmpi-dev")
    cmd = [mpirun, "-np", str(rank_count(compiled))]
    if target is not None:
        cmd = target.mpirun(mpirun, compiled)
    elif hosts is None:
        cmd += ["--oversubscribe", "--bind-to", "none"]
    else:
        rankfile = compiled.root / "rankfile"
        for path in (hosts, rankfile):
            if not path.is_file():
                raise UsageError(f"'{path}' does not exist")
        cmd += ["--hostfile", str(hosts.resolve()), "--rankfile", str(rankfile.resolve())]
    for name in forward:
        if name in os.environ:
            cmd += ["-x", name]
    return cmd


def mpi_command(compiled: CompiledOutput, rundir: Path, *, frames: int, warmup: int, keep_outputs: bool,
                hosts: Path | None, engine: str = "onnxruntime", target: Any = None, cdc_wait_ms: float = 0.0,
                stragglers: tuple[str, ...] = (), rate: float = 0.0, slow: tuple[str, ...] = (),
                kills: tuple[str, ...] = (), ulfm: Path | None = None) -> list[str]:
    cmd = mpirun_prefix(compiled, hosts, target=target)
    if ulfm is not None:
        from .ulfm_runtime import mpiexec_prefix

        cmd[:1] = mpiexec_prefix(ulfm)
    if importlib.util.find_spec("mpi4py") is None:
        raise UsageError("the Python package mpi4py is not installed", hint="pip install mpi4py")
    cmd += [sys.executable, "-m", "edgec.runtime.mpi_rank", str(compiled.root.resolve()), str(rundir),
            "--frames", str(frames), "--warmup", str(warmup), "--engine", engine]
    if cdc_wait_ms > 0:
        cmd += ["--cdc-wait", repr(float(cdc_wait_ms))]
    for spec in stragglers:
        cmd += ["--straggler", spec]
    if rate > 0:
        cmd += ["--rate", repr(float(rate))]
    for spec in slow:
        cmd += ["--slow", spec]
    for spec in kills:
        cmd += ["--kill", spec]
    if ulfm is not None:
        cmd += ["--fault-tolerant"]
    return cmd + (["--keep-outputs"] if keep_outputs else [])


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[3]) == sid:
                pids.append(int(entry.name))
    return pids


def kill_session(sid: int, grace: float = 2.0) -> int:
    """Terminate, then kill, every process of the session `mpirun` leads; returns how many there were."""
    pids = _session_pids(sid)
    terminate(pids, grace)
    return len(pids)


def terminate(pids: list[int], grace: float = 2.0) -> None:
    """SIGTERM every process, wait up to `grace` seconds for them to go (zombies count as gone), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while sig == signal.SIGTERM and time.monotonic() < deadline and _alive(pids):
            time.sleep(0.05)


def _alive(pids: list[int]) -> bool:
    for pid in pids:
        try:
            if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                return True
        except (OSError, IndexError):
            continue
    return False


def _failure(compiled: CompiledOutput, rundir: Path, log: str, rc: int | Stop) -> RuntimeFailure:
    stages = compiled.stages
    errors = read_rank_errors(rundir, log)
    cause = errors[0].describe(stages) if errors else None
    if killed := killed_failure(compiled.manifest, rundir, lambda rank: rank_name(rank, stages), cause):
        limit = f"; the run was stopped at its {rc.reason} limit" if isinstance(rc, Stop) else ""
        return RuntimeFailure(killed + limit)
    if errors:
        first = errors[0]
        if isinstance(rc, Stop):
            return RuntimeFailure(f"{first.describe(stages)}; the run was stopped at its {rc.reason} limit")
        return RuntimeFailure(first.describe(stages))
    if isinstance(rc, Stop):
        failure = stopped(rc, stages)
        if rc.reason == "connect" and log.strip():
            return RuntimeFailure(f"{failure.message}:\n{tail(log)}", hint=failure.hint)
        return failure
    if crash := crashed_rank(log):
        rank, how = crash
        return RuntimeFailure(f"{rank_name(rank, stages)} {how}; mpirun stopped the other ranks")
    return RuntimeFailure(f"mpirun exited with code {rc}" + (f":\n{tail(log)}" if log.strip() else ""))


def run(out: str | Path, feeds: dict[str, np.ndarray], *, frames: int = 1, warmup: int = 0,
        hosts: str | Path | None = None, timeout: float | None = None, keep_outputs: bool = False,
        workdir: str | Path | None = None, engine: str = "onnxruntime",
        startup_timeout: float | None = DEFAULT_STARTUP_TIMEOUT,
        stall_timeout: float | None = DEFAULT_STALL_TIMEOUT, target: Any = None, cdc_wait_ms: float = 0.0,
        stragglers: tuple[str, ...] = (), rate: float = 0.0, slow: tuple[str, ...] = (), kills: tuple[str, ...] = (),
        mpi: str = "auto") -> RunResult:
    """Run OUT with one MPI rank per stage and return the report and (with keep_outputs) the graph
    outputs of every measured frame, stacked. `feeds` holds one frame per input, repeated, or a
    stack of frames per input, cycled. Limits in seconds (None: off): `startup_timeout` until every
    rank is ready, then `stall_timeout` between finished frames; `timeout` for the whole run. `target`:
    an emulated cluster to run in (`cluster.mpi.ClusterTarget`), instead of this machine's own network.
    `cdc_wait_ms`: how long a coded layer's merge waits for all its rows before decoding from the first k;
    `stragglers`: `faults` specs (RANK:DELAY[:PROB] or random:DELAY); `rate`: frames offered per second by the
    input ranks (0: as fast as the pipeline takes them); `slow`: `slow.py` specs (RANK:FACTOR, that rank computes FACTOR
    times slower); `kills`: `fault_model` specs (RANK@FRAME, that rank SIGKILLs itself); `mpi`: "auto" (the ULFM
    Open MPI where a loss can be survived, `ulfm_runtime.choose_mpi`), "default" or "ulfm"."""
    compiled = CompiledOutput.open(out)
    check_run_options(frames, warmup, timeout, startup_timeout=startup_timeout, stall_timeout=stall_timeout)
    if not cdc_wait_ms >= 0:
        raise UsageError("--cdc-wait must be at least 0 (milliseconds)")
    if not 0 <= rate < float("inf"):
        raise UsageError("--rate must be a finite number of frames per second (0: as fast as possible)")
    stragglers = tuple(parse_straggler(spec, compiled.manifest).spec for spec in stragglers)
    from .slow import slowdowns

    slow = tuple(f"{rank}:{factor!r}" for rank, factor in slowdowns(slow, rank_count(compiled)).items())
    checked_engine(compiled, engine, per_stage=True)
    from .replica_frames import check_replicated_run

    check_replicated_run(compiled.manifest, engine, emulated=target is not None)
    parsed_kills = parse_kills(kills, compiled.manifest, warmup + frames)
    kills = tuple(kill.spec for kill in parsed_kills)
    ulfm = choose_mpi(compiled.manifest, parsed_kills, mpi, local=target is None and not hosts)
    for rank in range(len(compiled.stages)):
        compiled.stage_model(rank)
    stacks = stack_feeds(compiled.manifest, feeds)
    rundir = make_rundir(workdir, "edgec-run-")
    try:
        cmd = mpi_command(compiled, rundir, frames=frames, warmup=warmup, keep_outputs=keep_outputs,
                          hosts=Path(hosts) if hosts else None, engine=engine, target=target,
                          cdc_wait_ms=cdc_wait_ms, stragglers=stragglers, rate=rate, slow=slow, kills=kills, ulfm=ulfm)
        np.savez(rundir / RUN_INPUTS, **stacks)
        if target is not None:
            target.prepare(compiled, rundir)
        report = launch_for_report(compiled, cmd, rundir, Limits(timeout, startup_timeout, stall_timeout),
                                   env=target.env(mpi_env()) if target is not None else
                                   ulfm_env(mpi_env(), ulfm) if ulfm is not None else None)
        return RunResult(report, read_outputs(rundir) if keep_outputs else {}, cmd)
    finally:
        shutil.rmtree(rundir, ignore_errors=True)


def read_outputs(rundir: Path) -> dict[str, np.ndarray]:
    """The graph outputs rank 0 wrote to RUNDIR/outputs.npz, by name."""
    with np.load(rundir / "outputs.npz", allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def check_run_options(frames: int, warmup: int, timeout: float | None, *, startup_timeout: float | None = None,
                      stall_timeout: float | None = None) -> None:
    if frames < 1 or warmup < 0:
        raise UsageError("--frames must be at least 1 and --warmup at least 0")
    for flag, value in (("--timeout", timeout), ("--startup-timeout", startup_timeout),
                        ("--stall-timeout", stall_timeout)):
        if value is not None and not value > 0:
            raise UsageError(f"{flag} must be positive")


def make_rundir(workdir: str | Path | None, prefix: str) -> Path:
    """A fresh directory for one run's inputs, progress, errors and report (in `workdir` if given)."""
    if workdir is not None and not Path(workdir).is_dir():
        raise UsageError(f"--workdir '{workdir}' is not a directory")
    return Path(tempfile.mkdtemp(prefix=prefix, dir=workdir)).resolve()


def launch_for_report(compiled: CompiledOutput, cmd: list[str], rundir: Path, limits: Limits | float | None,
                      env: dict[str, str] | None = None) -> dict:
    """Run `cmd` under its limits; the report its rank 0 wrote, or the failure it caused. A plain
    number is an overall limit alone, for ranks that report no progress."""
    if not isinstance(limits, Limits):
        limits = Limits(overall=limits, startup=None, stall=None)
    rc = _launch(cmd, rundir / "mpirun.log", limits, rundir, rank_count(compiled), env)
    log = (rundir / "mpirun.log").read_text(errors="replace")
    if (rc != 0 and not survived(rundir, rc)) or not (rundir / "report.json").is_file():
        raise _failure(compiled, rundir, log, rc)
    report = json.loads((rundir / "report.json").read_text())
    report["command"] = cmd
    return report


def _launch(cmd: list[str], log_path: Path, limits: Limits, rundir: Path, ranks: int,
            env: dict[str, str] | None = None) -> int | Stop:
    """Run mpirun in a new session; its exit code, or the `Stop` of the limit it was stopped at."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env if env is not None else mpi_env(), start_new_session=True)
        watch = RunWatch(limits, time.monotonic())
        try:
            while True:
                try:
                    return proc.wait(timeout=POLL_SECONDS)
                except subprocess.TimeoutExpired:
                    pass
                stop = watch.observe(time.monotonic(), live_states(rundir, ranks))
                if stop is not None:
                    return stop
        finally:
            kill_session(proc.pid)
            proc.wait()
