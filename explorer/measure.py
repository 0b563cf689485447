"""The second level: compile candidate plans and run a few frames with the real runtime.

Each plan is compiled with `edgec.compile` into a temporary directory and run by `edgec run
--json` in a child process (the runtime launches `mpirun`, one rank per stage, on this
machine); the measured throughput and latency replace the analytic ones in the measured front,
and the analytic model's relative error per plan is reported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from ..compiler.diagnostics import UsageError


def measure_plan(model: str | Path, plan_text: str, *, frames: int = 20, warmup: int = 3, timeout: float = 300.0) -> dict:
    from .. import api

    with tempfile.TemporaryDirectory(prefix="edgec-explore-run-") as tmp:
        out = Path(tmp) / "out"
        api.compile(model, plan_text, out)
        cmd = [sys.executable, "-m", "edgec", "run", str(out), "--frames", str(frames), "--warmup", str(warmup),
               "--json"]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        try:
            report = json.loads(done.stdout)
        except ValueError:
            report = {}
        if done.returncode != 0 or not report.get("ok"):
            message = (report.get("error") or {}).get("message") or done.stderr.strip()[-300:]
            raise UsageError(f"measuring a plan failed: {message}")
        return {"measured_fps": float(report["throughput_fps"]),
                "measured_latency_ms": float(report["latency_ms"]["p50"]), "frames": frames}
