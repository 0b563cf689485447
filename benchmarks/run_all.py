"""Run every benchmark in `benchmarks/` and print their tables under one header (date, machine).

    python benchmarks/run_all.py [--quick] [--cache DIR] [--skip NAME ...]

Why one command: figures from different days or machines cannot be compared, so a full run
prints when and where it was measured once, then each script's tables. compile_time and
scaling always run (`--quick` makes them one run per point, under a minute);
the other scripts (large_model, runtime, the quantize, prune, explore, emulated-links, CDC,
replication, rebalancing, TVM and VTA benchmarks) run with their own defaults when they exist,
and are left out with `--quick`. A failing script is reported and the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from tables import machine

HERE = Path(__file__).resolve().parent
OURS = ("compile_time", "scaling")
OTHERS = ("large_model", "runtime", "trained_cnn", "quantize_accuracy", "quantize_speed", "wire_formats", "wire_runtime",
          "prune_accuracy", "prune_speed", "explore", "emulated_links", "cdc_stragglers", "cdc_kill", "replication_model",
          "replication_runtime", "rebalance", "tvm_stage_times", "tvm_int8", "vta_layers")


def run(name: str, extra: list[str]) -> bool:
    script = HERE / f"{name}.py"
    print(f"\n## {name}  (python benchmarks/{name}.py {' '.join(extra)})".rstrip() + "\n", flush=True)
    start = time.perf_counter()
    ok = subprocess.run([sys.executable, str(script), *extra]).returncode == 0
    print(f"\n({name}: {'done' if ok else 'FAILED'} in {time.perf_counter() - start:.0f} s)", flush=True)
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one run per point; other scripts left out")
    parser.add_argument("--cache", type=Path, help="where the zoo models are built (default ~/.cache/edgec-bench)")
    parser.add_argument("--skip", nargs="*", default=[], choices=OURS + OTHERS)
    args = parser.parse_args()
    print(f"# edgec benchmarks\n\n{machine()}", flush=True)
    start = time.perf_counter()
    ours = (["--quick"] if args.quick else []) + (["--cache", str(args.cache)] if args.cache else [])
    failed = [name for name in OURS if name not in args.skip and not run(name, ours)]
    for name in OTHERS:
        if name in args.skip:
            continue
        if not (HERE / f"{name}.py").exists():
            print(f"\n## {name}: benchmarks/{name}.py is absent, skipped")
        elif args.quick:
            print(f"\n## {name}: left out with --quick")
        elif not run(name, []):
            failed.append(name)
    print(f"\nall benchmarks: {time.perf_counter() - start:.0f} s" + (f", FAILED: {', '.join(failed)}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
