"""Reading the user's `.npy`/`.npz` files (calibration folders) with one clear error for a bad file.

numpy raises ValueError, OSError, EOFError or zipfile errors for a truncated, pickled or foreign
file; each becomes a `UsageError` that names the file, so a bad calibration file is exit 2 with
a message, never an internal error. Pickled arrays are refused (`allow_pickle=False`): loading
them would run code from the file.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .diagnostics import UsageError

_BAD_FILE = (ValueError, OSError, EOFError, zipfile.BadZipFile)


def read_npy(path: str | Path, what: str = "calibration data") -> np.ndarray:
    """The array in `path`, memory-mapped."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except _BAD_FILE as exc:
        raise UsageError(f"cannot read {what} '{path}': not a numpy .npy array ({exc})") from None


def read_npz(path: str | Path, what: str = "calibration data") -> dict[str, np.ndarray]:
    """Every array of the archive `path`, by name."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {name: data[name] for name in data.files}
    except _BAD_FILE as exc:
        raise UsageError(f"cannot read {what} '{path}': not a numpy .npz archive ({exc})") from None
