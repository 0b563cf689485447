"""A compiled output's model inputs: read from `.npy`/`.npz` files or made up, and checked against the manifest.

Why one module: `edgec verify`, `edgec run`, the C++ engine and every MPI rank take inputs, and
they must agree on what a valid input is and say the same thing about one that is not. An
input is checked before anything starts (a wrong file is a usage error, not a failed rank),
and again by the rank that owns it, since a run directory can be written by other tools.

Shapes: `verify` takes one frame of each input (exactly the manifest's shape); `run` takes one
frame (repeated) or a stack of frames `[frames, *shape]` (cycled), and hands the ranks stacks
in `inputs.npz` of the run directory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..backends.manifest import GraphTensor, Manifest, as_manifest
from ..compiler.diagnostics import UsageError, first_line

ManifestLike = Manifest | Mapping[str, Any]
"""A Manifest or its JSON form (`as_manifest`)."""
Paths = Sequence[str | os.PathLike]

RUN_INPUTS = "inputs.npz"
"""The file of a run directory that holds every input as a stack of frames, for the ranks."""


def _load(path: str | os.PathLike, what: str) -> np.ndarray | dict[str, np.ndarray]:
    """The array of a .npy file, or the arrays of a .npz by name, read in full."""
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            return data
        with data:
            return {name: data[name] for name in data.files}
    except (ValueError, EOFError, OSError) as exc:
        raise UsageError(f"cannot read '{path}' as {what}: {first_line(exc)}") from None


def _wrong_kind(path: str | os.PathLike, what: str, holds: str) -> UsageError:
    return UsageError(f"cannot read '{path}' as {what}: it holds {holds}",
                      hint="give one .npy per model input, in order, or one .npz keyed by input name")


def read_inputs(manifest: ManifestLike, paths: Paths) -> dict[str, np.ndarray]:
    """Arrays by input name from `.npy` files (one per model input, in the manifest's order) or one `.npz`
    keyed by input name, unchecked (see `check_inputs`)."""
    specs = as_manifest(manifest).model.inputs
    for path in paths:
        if not Path(path).is_file():
            raise UsageError(f"input file '{path}' does not exist")
    if len(paths) == 1 and str(paths[0]).endswith(".npz"):
        arrays = _load(paths[0], "a .npz of numpy arrays")
        if not isinstance(arrays, dict):
            raise _wrong_kind(paths[0], "a .npz of numpy arrays", "one array")
        return arrays
    if len(paths) != len(specs):
        raise UsageError(f"the model has {len(specs)} input(s) but {len(paths)} --input file(s) were given")
    feeds = {}
    for spec, path in zip(specs, paths):
        array = _load(path, "a .npy array")
        if isinstance(array, dict):
            raise _wrong_kind(path, "a .npy array", "several (a .npz)")
        feeds[spec.name] = array
    return feeds


def _shape(spec: GraphTensor, frames: bool = False) -> str:
    return f"{spec.dtype}[{', '.join(['frames'] * frames + [str(d) for d in spec.shape])}]"


def frames_of(spec: GraphTensor, array: np.ndarray, *, single: bool = True, stack: bool = True) -> np.ndarray:
    """`array` as a contiguous stack of frames of input `spec`; it may be one frame (`single`) or a stack of
    frames (`stack`), and anything else is a UsageError that says what was expected."""
    if array.dtype == spec.np_dtype:
        if single and tuple(array.shape) == spec.shape:
            return np.ascontiguousarray(array[None])
        if stack and array.ndim == len(spec.shape) + 1 and tuple(array.shape[1:]) == spec.shape:
            if len(array) == 0:
                raise UsageError(f"input '{spec.name}' is a stack of no frames")
            return np.ascontiguousarray(array)
    wanted = (f"{_shape(spec)} (or a stack of frames, {_shape(spec, True)})" if single and stack
              else _shape(spec, frames=not single))
    raise UsageError(f"input '{spec.name}' must be {wanted}, got {array.dtype}{list(array.shape)}")


def check_inputs(manifest: ManifestLike, feeds: Mapping[str, np.ndarray], *,
                 stacks: bool = False) -> dict[str, np.ndarray]:
    """`feeds` checked against the model's inputs: each one there, no other, each one frame (or, with `stacks`,
    one frame or a stack of frames, all inputs with as many). Returns one frame per input, or with `stacks`
    every input as a stack of frames `[frames, *shape]`."""
    specs = {spec.name: spec for spec in as_manifest(manifest).model.inputs}
    for name in feeds:
        if name not in specs:
            raise UsageError(f"'{name}' is not an input of the model (inputs: {', '.join(specs)})")
    checked = {}
    for name, spec in specs.items():
        if name not in feeds:
            raise UsageError(f"no data for model input '{name}'")
        checked[name] = frames_of(spec, np.asarray(feeds[name]), stack=stacks)
    if len({len(stack) for stack in checked.values()}) > 1:
        raise UsageError("the inputs hold different numbers of frames: " +
                         ", ".join(f"'{n}' {len(s)}" for n, s in checked.items()))
    return checked if stacks else {name: stack[0] for name, stack in checked.items()}


def load_inputs(manifest: ManifestLike, paths: Paths) -> dict[str, np.ndarray]:
    """`read_inputs`, then `check_inputs`: one frame of every input, as `edgec verify` takes them (`edgec run`
    reads its files with `read_inputs` and checks them with `stack_feeds`, which allows stacks)."""
    return check_inputs(manifest, read_inputs(manifest, paths))


def stack_feeds(manifest: ManifestLike, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each input as a stack of frames `[frames, *shape]`, refusing any that does not match the manifest
    before a process starts. An input may be one frame or a stack of frames."""
    return check_inputs(manifest, feeds, stacks=True)


def rank_inputs(manifest: Manifest, rank: int, rundir: Path) -> dict[str, np.ndarray]:
    """The graph inputs stage `rank` reads, as stacks of frames from the run directory's `inputs.npz`,
    checked against the manifest."""
    owned = [spec for _, spec in manifest.stage_inputs(rank)]
    if not owned:
        return {}
    path = rundir / RUN_INPUTS
    if not path.is_file():
        raise UsageError(f"input file '{path}' is missing (the run directory must be shared by all hosts)")
    feeds = {}
    with np.load(path, allow_pickle=False) as data:
        for spec in owned:
            if spec.name not in data.files:
                raise UsageError(f"no data for model input '{spec.name}'")
            feeds[spec.name] = frames_of(spec, data[spec.name], single=False)
    return feeds


def random_inputs(manifest: ManifestLike, seed: int = 0) -> dict[str, np.ndarray]:
    """One frame of every model input, seeded: standard normal floats, booleans, integers in [0, 10)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in as_manifest(manifest).model.inputs:
        shape, dtype = list(spec.shape), spec.np_dtype
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        else:
            feeds[spec.name] = rng.integers(0, 10, shape).astype(dtype)
    return feeds
