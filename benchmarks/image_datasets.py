"""Real image data sets that an installed package ships, loaded as numpy arrays, no downloads.

Why: the accuracy benchmarks (quantize, prune) need real images, and nothing may be fetched at
run time, so the data must come inside a Debian or PyPI package. (Not named `datasets.py`: that
would shadow Hugging Face's `datasets` wherever it is installed.)

- `fashion-mnist`: Zalando's Fashion-MNIST, 70 000 grey 28x28 images of 10 clothing classes,
  shipped whole (the original IDX files) by Debian's `dataset-fashion-mnist`
  (`apt-get install dataset-fashion-mnist`, into /usr/share/datasets/fashion-mnist). Harder than
  MNIST (a small CNN reaches ~90 %, not 99 %), so accuracy drops from int8 or pruning show.
- `digits`: scikit-learn's bundled UCI digits, 1 797 grey 8x8 images (`pip install scikit-learn`);
  the fallback when the Debian package is absent.

`load(name)` returns images as float32 [N, 1, H, W] in [0, 1] and labels as int64 [N], each
split as its source defines it ("train" and "test"; digits has no official split, so it is one
"train" set that the caller splits).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
NAMES = ("fashion-mnist", "digits")


class DatasetMissing(RuntimeError):
    """The package that ships the data set is not installed; the message says how to install it."""


@dataclass(frozen=True)
class Dataset:
    name: str
    source: str
    classes: tuple[str, ...]
    splits: dict[str, tuple[np.ndarray, np.ndarray]]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(next(iter(self.splits.values()))[0].shape[1:])


def _idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the MNIST format: magic, dims as big-endian int32, uint8 data)."""
    raw = gzip.decompress(path.read_bytes())
    dtype_code, ndim = raw[2], raw[3]
    if raw[0] != 0 or raw[1] != 0 or dtype_code != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = np.frombuffer(raw, dtype=">i4", count=ndim, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(tuple(int(d) for d in dims))


def fashion_mnist(root: Path = FASHION_DIR) -> Dataset:
    files = {s: (root / f"{p}-images-idx3-ubyte.gz", root / f"{p}-labels-idx1-ubyte.gz")
             for s, p in (("train", "train"), ("test", "t10k"))}
    if not all(f.exists() for pair in files.values() for f in pair):
        raise DatasetMissing(f"Fashion-MNIST not found in {root}: apt-get install dataset-fashion-mnist")
    splits = {}
    for split, (images, labels) in files.items():
        x = _idx(images).astype(np.float32)[:, None] / 255.0
        splits[split] = (x, _idx(labels).astype(np.int64))
    return Dataset("fashion-mnist", "Debian dataset-fashion-mnist", FASHION_CLASSES, splits)


def digits() -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetMissing("scikit-learn not installed: pip install scikit-learn") from exc
    bunch = load_digits()
    x = (bunch.images.astype(np.float32) / 16.0)[:, None]
    return Dataset("digits", "scikit-learn load_digits", tuple(str(c) for c in range(10)),
                   {"train": (x, bunch.target.astype(np.int64))})


def load(name: str = "auto") -> Dataset:
    """`auto` takes the largest one installed: Fashion-MNIST, else digits."""
    if name == "auto":
        try:
            return fashion_mnist()
        except DatasetMissing:
            return digits()
    if name == "fashion-mnist":
        return fashion_mnist()
    if name == "digits":
        return digits()
    raise ValueError(f"unknown data set {name!r}; known: {', '.join(NAMES)}")
