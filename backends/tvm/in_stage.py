"""Kernel times measured inside their stage, for choosing each conv's tile from edgec's template.

Why inside the stage: a kernel timed alone runs with its weights and inputs hot in the caches;
inside a stage its input was just written by the kernel before, and its weights (10-60 MB per
ResNet-50 stage) come from far away. On this machine weight-heavy convs took 1.45x longer in
the stage than alone, and flushing the caches before each call did not predict the stage
either (a reduction-chunk tile 8-12 % faster when flushed made two stages 3-24 % slower). So
`edgec tune` measures where the kernels really run.

How, cheaply: round r compiles the whole stage with the r-th tile of *every* conv kernel's
candidate list at once (kernels whose list is shorter keep their default tile), runs it with
TVM's VM instrument hooks, which time each kernel call, and reads every kernel's time from that
one run. Rounds cost one stage compile each (1-3 s for a ResNet-50 quarter), so a few dozen
candidates per kernel fit in a minute per stage. Round 0 and the last round are the default
tiles, the untuned baseline; with budget left the rounds are swept again (up to `PASSES`).
Tiles only change loop nests, never a kernel's inputs or outputs, so a kernel's neighbours see
the same tensors in every round.

Why a worker process per stage (`choose_tiles_in_worker`): every round loads a new module, and
a process does not give that memory back (a ResNet-50 tune grew to 9 GB); the worker's memory
goes when the stage is done.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .schedules import ConvTile

RUNS = 9
PASSES = 3
"""Sweeps over the rounds while the budget lasts; a tile's time is its minimum over sweeps, which
evens out a round that a noisy neighbour slowed down."""


@dataclass
class TileAssignment:
    """Given to `cpu_build_pipeline` as its `tuned`: schedules each conv (by structural hash)
    with its assigned tile; the other kernels get the hand schedules as always."""

    target: object
    tiles: dict[int, ConvTile]
    applied: int = 0

    def apply(self, mod):
        import tvm_ffi
        from tvm import s_tir

        from .schedules import schedule_conv_tile
        from .tuning import _as_task, replace_unscheduled

        def schedule_for(func):
            tile = self.tiles.get(tvm_ffi.structural_hash(func))
            return None if tile is None else schedule_conv_tile(s_tir.Schedule(_as_task(func)), self.target, tile)

        self.applied += replace_unscheduled(mod, schedule_for)
        return mod


def stage_kernel_times(model: Path, target, assignment: TileAssignment, names: dict[str, int], *,
                       threads: int, runs: int = RUNS) -> dict[int, float]:
    """Compile `model` with `assignment` and run it `runs` times; per kernel hash (`names` maps a
    kernel's symbol to its hash) the median over runs of its summed call time in one run."""
    import onnx
    import tvm
    from tvm import relax

    from ...runtime.tvm_stage import _init_tvm_threads, _set_threads
    from .frontend import import_onnx, input_specs
    from .lowering import cpu_build_pipeline

    _init_tvm_threads()
    _set_threads(threads)
    specs = input_specs(onnx.load(str(model), load_external_data=False))
    executable = tvm.compile(import_onnx(model, None, str(target)), target,
                             relax_pipeline=cpu_build_pipeline(target, assignment))
    with tempfile.TemporaryDirectory(prefix="edgec-in-stage-") as tmp:
        path = Path(tmp) / "stage.so"
        executable.export_library(str(path))
        vm = relax.VirtualMachine(tvm.runtime.load_module(str(path)), tvm.cpu())
        rng = np.random.default_rng(0)
        args = [tvm.runtime.tensor(rng.standard_normal(shape).astype(dtype)) for shape, dtype in specs.values()]
        for _ in range(3):
            vm["main"](*args)
        started: dict[str, float] = {}
        per_run: dict[str, float] = defaultdict(float)

        def instrument(_func, name, before, _ret, *_args):
            if name in names:
                if before:
                    started[name] = time.perf_counter()
                else:
                    per_run[name] += time.perf_counter() - started.pop(name)
            return 0

        vm.set_instrument(instrument)
        samples: dict[int, list[float]] = defaultdict(list)
        for _ in range(runs):
            per_run.clear()
            vm["main"](*args)
            by_hash: dict[int, float] = defaultdict(float)
            for name, seconds in per_run.items():
                by_hash[names[name]] += seconds
            for key, seconds in by_hash.items():
                samples[key].append(seconds)
        del vm, args
    del executable
    gc.collect()
    return {key: float(np.median(values)) for key, values in samples.items()}


@dataclass
class TileChoice:
    """A conv kernel's outcome: its default tile's in-stage time, the best tile and its time."""

    default_seconds: float
    best: ConvTile
    best_seconds: float
    tried: int


def choose_tiles(model: Path, target, candidates: dict[int, list[ConvTile]], defaults: dict[int, ConvTile],
                 names: dict[str, int], *, threads: int, deadline: float,
                 progress: Callable[[str], None] = lambda _m: None) -> dict[int, TileChoice]:
    """Rounds (see the module docstring) until every candidate was tried or `deadline` passed."""
    rounds = max((len(c) for c in candidates.values()), default=0)
    baseline = stage_kernel_times(model, target, TileAssignment(target, dict(defaults)), names, threads=threads)
    times: dict[int, dict[ConvTile, float]] = {k: {defaults[k]: baseline.get(k, float("inf"))} for k in candidates}
    for done in range(PASSES * rounds):
        sweep, index = divmod(done, rounds)
        if time.monotonic() >= deadline:
            if sweep == 0:
                progress(f"    in-stage rounds: stopped by the budget after {index} of {rounds}")
            break
        tiles = {k: (c[index] if index < len(c) else defaults[k]) for k, c in candidates.items()}
        measured = stage_kernel_times(model, target, TileAssignment(target, tiles), names, threads=threads)
        for key, tile in tiles.items():
            if key in measured:
                times[key][tile] = min(times[key].get(tile, float("inf")), measured[key])
        progress(f"    in-stage round {index + 1}/{rounds}{f' (pass {sweep + 1})' if sweep else ''}")
    again = stage_kernel_times(model, target, TileAssignment(target, dict(defaults)), names, threads=threads)
    choices = {}
    for key, found in times.items():
        default = min(found[defaults[key]], again.get(key, float("inf")))
        found[defaults[key]] = default
        best = min(found, key=found.get)
        choices[key] = TileChoice(default, best, found[best], len(found))
    return choices


def _worker(queue, model, spec, candidates, defaults, names, threads, deadline) -> dict[int, TileChoice]:
    return choose_tiles(model, spec.tvm_target(), candidates, defaults, names, threads=threads, deadline=deadline,
                        progress=queue.put)


def choose_tiles_in_worker(model: Path, spec, candidates: dict[int, list[ConvTile]], defaults: dict[int, ConvTile],
                           names: dict[str, int], *, threads: int, deadline: float,
                           progress: Callable[[str], None] = lambda _m: None) -> dict[int, TileChoice]:
    """`choose_tiles` in a spawned process (see the module docstring), its progress relayed here.
    `deadline` is `time.monotonic()` time, which the worker shares (one system-wide clock)."""
    import concurrent.futures as cf
    import multiprocessing
    import queue as queues

    context = multiprocessing.get_context("spawn")
    messages = context.Manager().Queue()
    with cf.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        future = pool.submit(_worker, messages, model, spec, candidates, defaults, names, threads, deadline)
        while True:
            try:
                progress(messages.get(timeout=0.2))
            except queues.Empty:
                if future.done():
                    break
        while not messages.empty():
            progress(messages.get())
        return future.result()
