"""The `edgec` command line (typer + rich).

Exit codes: 0 success, 1 verification mismatch, 2 user error (bad model, plan, arguments or
files). Every `EdgecError` is printed as one located message, never a traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Callable, List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .compiler.diagnostics import EdgecError, UsageError
from .runtime.report import human_bytes

app = typer.Typer(
    help="edgec: compile an ONNX model and a partitioning plan (plan.edge) into per-device "
    "artifacts for distributed inference at the edge, then verify or inspect them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
import_app = typer.Typer(help="Convert other tools' partitioning specifications into plan files.", no_args_is_help=True)
app.add_typer(import_app, name="import")

out_console = Console()
err_console = Console(stderr=True, highlight=False)


def user_errors(fn: Callable) -> Callable:
    """Turn EdgecError into one message on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except EdgecError as exc:
            err_console.print(exc.format(), markup=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("interrupted", markup=False)
            raise typer.Exit(130) from None

    return wrapper


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


ENGINE_HELP = ("What runs each stage: onnxruntime (the ONNX sub-model), tvm (the module of --backend tvm) or cpp "
               "(the C++/MPI program of --backend cpp, built on first use).")
INPUT_SHAPE_HELP = "Fix an input's dims, e.g. 'images=1,3,640,640' (repeatable; overrides the plan's `input`)."


@app.command()
@user_errors
def compile(
    model: Optional[Path] = typer.Argument(None, help="The ONNX model (default: the plan's `model`)."),
    plan: Path = typer.Option(..., "--plan", "-p", help="The partitioning plan (plan.edge)."),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="Output directory (replaced atomically)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
    backend: Optional[List[str]] = typer.Option(None, "--backend", "-b", help="Backends to run (repeatable): onnx (always), tvm, cpp (C++/MPI program; implies tvm)."),
    print_after: Optional[List[str]] = typer.Option(None, "--print-after", help="Print the IR after PASS ('all' for every pass)."),
    dump_ir: Optional[Path] = typer.Option(None, "--dump-ir", help="Write the IR after each pass into DIR."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
) -> None:
    """Compile MODEL with a plan into OUT: sub-models per stage, manifest.json, rankfile, comm.json."""
    from . import api
    from .compiler.printer import format_program
    from .passes import PASSES

    wanted = set(print_after or [])
    unknown = wanted - set(PASSES) - {"all"}
    if unknown:
        raise UsageError(f"--print-after: unknown pass '{sorted(unknown)[0]}' (passes: {', '.join(PASSES)})")
    if dump_ir is not None:
        dump_ir.mkdir(parents=True, exist_ok=True)

    def hook(p, program, result) -> None:
        if "all" in wanted or p.name in wanted:
            out_console.print(f"// IR after {p.name}", markup=False)
            out_console.print(format_program(program), markup=False, highlight=False, soft_wrap=True)
        if dump_ir is not None:
            index = len(program.pass_log)
            (dump_ir / f"{index:02d}-{p.name}.txt").write_text(format_program(program))

    say = (lambda _m: None) if quiet else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    backends = ("onnx", *dict.fromkeys(b for b in backend or [] if b != "onnx"))
    result = api.compile(model, plan, out, input_shapes=parse_input_shapes(input_shape), hooks=[hook], progress=say,
                         backends=backends)
    if not quiet:
        program = result.program
        devices = len({s.device for s in program.stages})
        moved = sum(t.nbytes for t in program.transfers)
        out_console.print(
            f"compiled {len(program.stages)} stages on {devices} devices, {len(program.transfers)} transfers "
            f"({human_bytes(moved)} per frame) → {out}"
        )


@app.command()
@user_errors
def verify(
    out: Path = typer.Argument(..., help="An output directory of `edgec compile`."),
    input: Optional[List[Path]] = typer.Option(None, "--input", "-i", help="Input .npy (one per model input) or one .npz; default: random."),
    seed: int = typer.Option(0, help="Seed for random inputs."),
    tolerance: float = typer.Option(1e-4, help="Maximum relative error max|a-b|/max|ref| per output."),
    model: Optional[Path] = typer.Option(None, "--model", help="The unsplit model (default: the path in the manifest)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    mpi: bool = typer.Option(False, "--mpi", help="Run the real distributed program (mpirun, one rank per stage, 1 frame)."),
    engine: str = typer.Option("onnxruntime", "--engine", help=ENGINE_HELP),
) -> None:
    """Run the stages in one process and compare with the unsplit model in onnxruntime (exit 1 on mismatch)."""
    from .runtime.outputs import CompiledOutput, load_inputs, random_inputs
    from .runtime.verify import verify as run_verify

    compiled = CompiledOutput.open(out)
    feeds = load_inputs(compiled.manifest, list(input)) if input else random_inputs(compiled.manifest, seed)
    if mpi or engine == "cpp":
        from .runtime.verify import compare, run_reference

        run_mpi = _runner(engine)

        reference = compiled.reference_model(model)
        actual = {name: array[0] for name, array in run_mpi(out, feeds, keep_outputs=True, engine=engine).outputs.items()}
        report = compare(actual, run_reference(reference, feeds, list(actual)), tolerance)
    else:
        report = run_verify(out, feeds, tolerance=tolerance, model=model, engine=engine)
    if json_out:
        out_console.print_json(json.dumps({"ok": report.ok, "tolerance": tolerance,
                                           "outputs": [vars(o) for o in report.outputs]}))
    else:
        table = Table(title=f"edgec verify {out} ({len(compiled.stages)} stages{', mpirun' if mpi else ''})")
        for col in ("output", "max abs err", "max rel err", "result"):
            table.add_column(col)
        for o in report.outputs:
            table.add_row(o.name, f"{o.max_abs:.3g}", f"{o.max_rel:.3g}", "[green]ok[/]" if o.ok else "[red]MISMATCH[/]")
        out_console.print(table)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
@user_errors
def show(
    target: Path = typer.Argument(..., help="A model (.onnx) or an output directory."),
    graph: Optional[Path] = typer.Option(None, "--graph", help="Draw the partitioned graph to FILE (.png, .svg, .pdf or .dot)."),
    input_shape: Optional[List[str]] = typer.Option(None, "--input-shape", help=INPUT_SHAPE_HELP),
) -> None:
    """List a model's nodes (op, shapes, params, MACs) or an output's stages and transfers."""
    from .show import draw_output, show_model, show_output

    if target.is_dir():
        show_output(target, out_console)
        if graph is not None:
            draw_output(target, graph)
            out_console.print(f"wrote {graph}")
    else:
        if graph is not None:
            raise UsageError("--graph needs a compiled output directory, not a model")
        show_model(target, parse_input_shapes(input_shape), out_console)


def _runner(engine: str) -> Callable:
    """The distributed runner for an engine: the C++ program's, or the Python ranks'."""
    if engine not in ("onnxruntime", "tvm", "cpp"):
        raise UsageError(f"unknown engine '{engine}' (engines: onnxruntime, tvm, cpp)")
    if engine == "cpp":
        from .runtime.cpp_engine import run as run_cpp

        return run_cpp
    from .runtime.launcher import run as run_python

    return run_python


@app.command("build")
@user_errors
def build_cmd(
    out: Path = typer.Argument(..., help="An output compiled with --backend cpp."),
    cmake_arg: Optional[List[str]] = typer.Option(None, "--cmake-arg", help="Extra cmake configure argument (repeatable)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only print errors."),
) -> None:
    """Configure and build OUT/cpp with CMake into OUT/build/edgec_pipeline."""
    from .backends.cpp_mpi import build

    say = (lambda _m: None) if quiet else (lambda m: err_console.print(f"[dim]edgec:[/] {m}"))
    out_console.print(f"built {build(out, cmake_args=list(cmake_arg or []), progress=say)}")


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
    timeout: float = typer.Option(300.0, "--timeout", help="Stop everything and fail after this many seconds."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
    engine: str = typer.Option("onnxruntime", "--engine", help=ENGINE_HELP),
) -> None:
    """Run OUT on Open MPI, one process per stage, and report throughput, latency, per-stage times and bytes per link."""
    import numpy as np

    from .runtime.launcher import read_inputs
    from .runtime.outputs import CompiledOutput, random_inputs
    from .runtime.report import render

    if input and random:
        raise UsageError("give either --input or --random, not both")
    compiled = CompiledOutput.open(out)
    names = [spec["name"] for spec in compiled.manifest["model"]["outputs"]]
    if save_outputs is not None:
        if save_outputs.suffix not in (".npy", ".npz"):
            raise UsageError(f"--save-outputs '{save_outputs}' must end in .npy or .npz")
        if save_outputs.suffix == ".npy" and len(names) != 1:
            raise UsageError(f"the model has {len(names)} outputs; save them to a .npz")
        if not save_outputs.resolve().parent.is_dir():
            raise UsageError(f"cannot write '{save_outputs}': the parent directory does not exist")
    feeds = read_inputs(compiled.manifest, list(input)) if input else random_inputs(compiled.manifest, seed)
    result = _runner(engine)(out, feeds, frames=frames, warmup=warmup, hosts=hosts, timeout=timeout,
                     keep_outputs=save_outputs is not None, workdir=workdir, engine=engine)
    if save_outputs is not None:
        if save_outputs.suffix == ".npy":
            np.save(save_outputs, result.outputs[names[0]])
        else:
            np.savez(save_outputs, **result.outputs)
    if json_out:
        out_console.print_json(json.dumps(result.report))
    else:
        render(result.report, out_console, f"edgec run {out}")
        if save_outputs is not None:
            out_console.print(f"wrote {save_outputs} ({frames} frames)")


def main() -> None:
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
