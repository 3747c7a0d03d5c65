"""Datasets: MNIST from IDX files, and the embedded 8x8 digits default.

:func:`load_dataset` returns a :class:`Dataset` of raw ``uint8`` pixels (the
models scale them: ``/255`` in float, ``/256`` in fixed point) and labels, split
into a training part and a test part in file order.

* ``mnist``: ``DIR`` holds the standard file names (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
  ``t10k-labels-idx1-ubyte``, each optionally ``.gz``). With the train files
  present, training uses them and testing uses t10k. With only the t10k files,
  the first ``train`` samples train and the ``test`` samples after them test
  (the project's "t10k split 8000/2000").
* ``digits``: the 1,797 8x8 digits of the UCI "Optical Recognition of
  Handwritten Digits" set (as bundled with scikit-learn, CC BY 4.0), shipped in
  this package as ``digits.npz`` with pixels rescaled from 0..16 to 0..255
  (``round(v * 255 / 16)``). Default split: the first 1,437 train, the last 360
  test. Needs no download.

The IDX readers (:func:`read_idx`, :func:`read_images`, :func:`read_labels`,
from :mod:`.idx`) are exported too; every malformed input raises
:class:`DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .idx import DataError, read_idx, read_images, read_labels

__all__ = ["DATASETS", "DIGITS_TRAIN", "DataError", "Dataset", "load_dataset", "read_idx", "read_images", "read_labels"]

DATASETS = ("digits", "mnist")
DIGITS_TRAIN = 1437


@dataclass
class Dataset:
    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def inputs(self) -> int:
        return self.train_x.shape[1]

    def describe(self) -> str:
        return f"{self.name}: {len(self.train_y)} train, {len(self.test_y)} test, {self.inputs} inputs"


def _find(directory: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    # MNIST mirrors sometimes use a dot instead of a dash before "idx".
    alt = stem.replace("-idx", ".idx")
    for name in (alt, alt + ".gz"):
        if (directory / name).is_file():
            return directory / name
    return None


def _pair(directory: Path, prefix: str) -> tuple[np.ndarray, np.ndarray] | None:
    img = _find(directory, f"{prefix}-images-idx3-ubyte")
    lab = _find(directory, f"{prefix}-labels-idx1-ubyte")
    if img is None and lab is None:
        return None
    if img is None or lab is None:
        missing = f"{prefix}-images-idx3-ubyte" if img is None else f"{prefix}-labels-idx1-ubyte"
        raise DataError(f"{directory}: {missing}[.gz] is missing")
    x, y = read_images(img), read_labels(lab)
    if len(x) != len(y):
        raise DataError(f"{img.name} has {len(x)} images but {lab.name} has {len(y)} labels")
    return x, y


def _take(x: np.ndarray, y: np.ndarray, start: int, count: int | None, what: str, name: str):
    if count is None:
        return x[start:], y[start:]
    if start + count > len(y):
        raise DataError(f"{name}: asked for {what} samples {start}..{start + count - 1}, only {len(y)} available")
    return x[start : start + count], y[start : start + count]


def _checked(ds: Dataset) -> Dataset:
    if len(ds.train_y) == 0:
        raise DataError(f"{ds.name}: the training set is empty")
    if len(ds.test_y) == 0:
        raise DataError(f"{ds.name}: no test samples left after {len(ds.train_y)} training samples (see --test)")
    return ds


def load_dataset(
    name: str = "digits",
    directory: str | Path | None = None,
    train: int | None = None,
    test: int | None = None,
) -> Dataset:
    """Load a dataset; ``train``/``test`` limit (or, for a t10k-only MNIST, split) the sets."""
    if name == "digits":
        with resources.files(__package__).joinpath("digits.npz").open("rb") as f:
            npz = np.load(f)
            x, y = npz["images"], npz["labels"]
        tr = DIGITS_TRAIN if train is None else train
        trx, try_ = _take(x, y, 0, tr, "train", "digits")
        tex, tey = _take(x, y, tr, test, "test", "digits")
        return _checked(Dataset("digits", trx, try_, tex, tey))
    if name != "mnist":
        raise DataError(f"dataset: unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    if directory is None:
        raise DataError("dataset mnist needs --data DIR (a folder with the MNIST IDX files)")
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    train_set = _pair(directory, "train")
    test_set = _pair(directory, "t10k")
    if test_set is None:
        raise DataError(f"{directory}: no t10k-images-idx3-ubyte[.gz] / t10k-labels-idx1-ubyte[.gz] found")
    if train_set is not None:
        trx, try_ = _take(*train_set, 0, train, "train", "train set")
        tex, tey = _take(*test_set, 0, test, "test", "t10k set")
    else:
        tr = 8000 if train is None else train
        trx, try_ = _take(*test_set, 0, tr, "train", "t10k set")
        tex, tey = _take(*test_set, tr, test, "test", "t10k set")
    if trx.shape[1] != tex.shape[1]:
        raise DataError(f"{directory}: train images have {trx.shape[1]} pixels, test images {tex.shape[1]}")
    return _checked(Dataset("mnist", trx, try_, tex, tey))
