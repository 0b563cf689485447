"""The wheel ships every subpackage: built from this checkout, unpacked alone, every module imports.

A folder missing from pyproject's package list would still work in the editable install
(which reads the checkout) and break only for users of the wheel; this catches it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("compiler", "passes", "backends", "dsl", "runtime")


def _source_modules() -> list[str]:
    modules = ["edgec." + p.stem for p in (ROOT / "edgec").glob("*.py") if p.stem not in ("__init__", "__main__")]
    for top in SOURCES:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(("edgec", *parts[:-1])) if parts[-1] == "__init__" else ".".join(("edgec", *parts)))
    return sorted(set(modules))


@pytest.mark.slow
def test_the_wheel_holds_and_imports_every_module(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, cwd=tmp_path)
    wheel = next(tmp_path.glob("edgec-*.whl"))
    unpacked = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(unpacked)
    modules = _source_modules()
    missing = [m for m in modules if f"{m.replace('.', '/')}.py" not in names and f"{m.replace('.', '/')}/__init__.py" not in names]
    assert not missing, f"not in the wheel: {missing}"
    for data in ("edgec/dsl/grammar.lark", "edgec/backends/tvm/runner.cc"):
        assert data in names
    script = ("import importlib, sys, edgec\n"
              f"assert edgec.__file__.startswith({str(unpacked)!r}), edgec.__file__\n"
              f"for name in {modules!r}:\n    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path,
                          env={"PYTHONPATH": str(unpacked), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
