"""Model inputs, one set of rules for `edgec verify`, `edgec run` and the ranks (`edgec.runtime.inputs`).

Why: the three used to read and check inputs each in their own way (verify ignored unknown
arrays that run refused; only run allowed stacks of frames). Now a file that one accepts the
others read the same way, and a wrong one gets the same message naming the input and what it
must be. No MPI here: these are the checks that run before anything starts.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edgec import UsageError
from edgec.backends.manifest import GraphTensor, Manifest, ModelInfo, StageEntry
from edgec.cli import app
from edgec.compiler.platform import Platform
from edgec.runtime.inputs import (
    RUN_INPUTS, check_inputs, frames_of, load_inputs, random_inputs, rank_inputs, read_inputs, stack_feeds,
)
from edgec.runtime.verify import verify

IMAGE = GraphTensor("image", (1, 3), "float32", 0)
MASK = GraphTensor("mask", (2,), "bool", 1)
MANIFEST = Manifest(ModelInfo(None, None, (IMAGE, MASK), (GraphTensor("y", (1,), "float32", 1),)), None, Platform(),
                    tuple(StageEntry(r, "d", "cpu", None, 1, None, None, f"s{r}.onnx") for r in range(2)))
runner = CliRunner()


def frame(spec: GraphTensor, fill: float = 0) -> np.ndarray:
    return np.full(spec.shape, fill, spec.np_dtype)


def test_one_frame_or_a_stack_of_frames():
    assert frames_of(IMAGE, frame(IMAGE)).shape == (1, 1, 3)
    assert frames_of(IMAGE, np.zeros((5, 1, 3), np.float32)).shape == (5, 1, 3)
    with pytest.raises(UsageError, match=r"input 'image' must be float32\[1, 3\] \(or a stack of frames, "
                                         r"float32\[frames, 1, 3\]\), got float64\[1, 3\]"):
        frames_of(IMAGE, np.zeros((1, 3)))
    with pytest.raises(UsageError, match=r"must be float32\[1, 3\], got float32\[5, 1, 3\]"):
        frames_of(IMAGE, np.zeros((5, 1, 3), np.float32), stack=False)
    with pytest.raises(UsageError, match=r"must be float32\[frames, 1, 3\], got float32\[1, 3\]"):
        frames_of(IMAGE, frame(IMAGE), single=False)
    with pytest.raises(UsageError, match="input 'image' is a stack of no frames"):
        frames_of(IMAGE, np.zeros((0, 1, 3), np.float32))


def test_every_input_once_and_no_other():
    feeds = {"image": frame(IMAGE, 1), "mask": frame(MASK)}
    checked = check_inputs(MANIFEST, feeds)
    assert checked.keys() == feeds.keys() and checked["image"].shape == (1, 3) and checked["image"][0, 0] == 1
    with pytest.raises(UsageError, match=r"'other' is not an input of the model \(inputs: image, mask\)"):
        check_inputs(MANIFEST, {**feeds, "other": np.zeros(1)})
    with pytest.raises(UsageError, match="no data for model input 'mask'"):
        check_inputs(MANIFEST, {"image": feeds["image"]})
    stacks = stack_feeds(MANIFEST, {"image": np.zeros((4, 1, 3), np.float32), "mask": np.zeros((4, 2), bool)})
    assert {name: s.shape for name, s in stacks.items()} == {"image": (4, 1, 3), "mask": (4, 2)}
    with pytest.raises(UsageError, match="different numbers of frames: 'image' 4, 'mask' 1"):
        stack_feeds(MANIFEST, {"image": np.zeros((4, 1, 3), np.float32), "mask": frame(MASK)})


def test_files_are_npy_per_input_in_order_or_one_npz(tmp_path):
    image, mask = tmp_path / "image.npy", tmp_path / "mask.npy"
    np.save(image, frame(IMAGE, 2))
    np.save(mask, frame(MASK))
    assert load_inputs(MANIFEST, [image, mask])["image"][0, 0] == 2
    np.savez(tmp_path / "all.npz", image=frame(IMAGE, 3), mask=frame(MASK))
    assert load_inputs(MANIFEST, [tmp_path / "all.npz"])["image"][0, 0] == 3
    with pytest.raises(UsageError, match=r"the model has 2 input\(s\) but 1 --input file\(s\) were given"):
        read_inputs(MANIFEST, [image])
    with pytest.raises(UsageError, match="input file '.*missing.npy' does not exist"):
        read_inputs(MANIFEST, [image, tmp_path / "missing.npy"])
    (tmp_path / "bad.npy").write_text("not numpy")
    with pytest.raises(UsageError, match="cannot read '.*bad.npy' as a .npy array"):
        read_inputs(MANIFEST, [image, tmp_path / "bad.npy"])
    with pytest.raises(UsageError, match=r"cannot read '.*all.npz' as a .npy array: it holds several \(a .npz\)"):
        read_inputs(MANIFEST, [image, tmp_path / "all.npz"])
    np.save(tmp_path / "one.npz.npy", frame(IMAGE))
    (tmp_path / "one.npz.npy").rename(tmp_path / "one.npz")
    with pytest.raises(UsageError, match="cannot read '.*one.npz' as a .npz of numpy arrays: it holds one array"):
        read_inputs(MANIFEST, [tmp_path / "one.npz"])


def test_a_rank_reads_only_its_own_inputs(tmp_path):
    with pytest.raises(UsageError, match="is missing .the run directory must be shared by all hosts."):
        rank_inputs(MANIFEST, 1, tmp_path)
    np.savez(tmp_path / RUN_INPUTS, image=np.zeros((3, 1, 3), np.float32), mask=np.zeros((2,), bool))
    assert rank_inputs(MANIFEST, 0, tmp_path)["image"].shape == (3, 1, 3)
    with pytest.raises(UsageError, match=r"input 'mask' must be bool\[frames, 2\], got bool\[2\]"):
        rank_inputs(MANIFEST, 1, tmp_path)


def test_random_inputs_fit_the_manifest():
    feeds = random_inputs(MANIFEST, seed=1)
    assert check_inputs(MANIFEST, feeds).keys() == {"image", "mask"} and feeds["mask"].dtype == bool
    assert np.array_equal(feeds["image"], random_inputs(MANIFEST.to_json(), seed=1)["image"])


def test_verify_takes_arrays_files_or_nothing(tiny_out, tmp_path):
    feeds = random_inputs(json.loads((tiny_out / "manifest.json").read_text()), seed=5)
    np.save(tmp_path / "image.npy", feeds["image"])
    by_arrays, by_file = verify(tiny_out, feeds), verify(tiny_out, [tmp_path / "image.npy"])
    assert by_arrays == by_file and by_arrays.ok and by_arrays.stages == 4 and not by_arrays.mpi
    assert verify(tiny_out, seed=5) == by_arrays
    assert by_arrays.to_json()["outputs"][0]["name"] == "probs"
    with pytest.raises(UsageError, match="'label' is not an input of the model"):
        verify(tiny_out, {**feeds, "label": np.zeros(1)})
    with pytest.raises(UsageError, match="--tolerance must be a relative error of 0 or more"):
        verify(tiny_out, tolerance=-1)


def test_verify_and_run_refuse_the_same_file_alike(tiny_out, tmp_path):
    np.savez(tmp_path / "in.npz", image=np.zeros((1, 3, 32, 32), np.float32), label=np.zeros(1))
    for command in ("verify", "run"):
        result = runner.invoke(app, [command, str(tiny_out), "--input", str(tmp_path / "in.npz")])
        assert result.exit_code == 2 and "'label' is not an input of the model (inputs: image)" in result.output
