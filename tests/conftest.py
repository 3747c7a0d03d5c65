"""Shared fixtures: the real MNIST folder and tiny IDX writers for error cases."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

#: The real MNIST test set (DESIGN §7), outside the repository: ../shared/data/mnist.
MNIST_DIR = (Path(__file__).parents[1] / "../shared/data/mnist").resolve()


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``."""
    if not (MNIST_DIR / "t10k-images-idx3-ubyte.gz").is_file():
        if os.environ.get("CI"):  # CI always has ../shared beside the clone: missing data is a failure there
            pytest.fail(f"real MNIST not found at {MNIST_DIR}")
        pytest.skip(f"real MNIST not found at {MNIST_DIR}")
    return MNIST_DIR


def idx_bytes(array: np.ndarray, *, dtype_code: int = 0x08) -> bytes:
    """Encode ``array`` (any shape, uint8 values) as an IDX file."""
    array = np.asarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, dtype_code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.tobytes()


def write_idx(path: Path, array: np.ndarray, *, gz: bool = False, **kw) -> Path:
    """Write ``array`` as an IDX file at ``path`` (gzip-compressed when ``gz``)."""
    data = idx_bytes(array, **kw)
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_images(count: int, rows: int = 2, cols: int = 3, offset: int = 0) -> np.ndarray:
    """``(count, rows, cols)`` uint8 images whose first pixel encodes the sample index."""
    images = np.zeros((count, rows, cols), dtype=np.uint8)
    idx = np.arange(count) + offset
    images[:, 0, 0] = idx % 256
    images[:, 0, 1] = idx // 256
    images[:, 1, :] = (idx[:, None] * 7 + np.arange(cols)) % 256
    return images


def fake_labels(count: int, offset: int = 0) -> np.ndarray:
    return ((np.arange(count) + offset) * 3 % 10).astype(np.uint8)


def write_mnist_pair(
    directory: Path, prefix: str, images: np.ndarray, labels: np.ndarray, *, gz: bool = False, sep: str = "-"
) -> None:
    """Write ``{prefix}-images-idx3-ubyte`` and ``{prefix}-labels-idx1-ubyte`` (``sep`` before ``idx``)."""
    suffix = ".gz" if gz else ""
    write_idx(directory / f"{prefix}-images{sep}idx3-ubyte{suffix}", images, gz=gz)
    write_idx(directory / f"{prefix}-labels{sep}idx1-ubyte{suffix}", labels, gz=gz)


@pytest.fixture
def idx_writer(tmp_path: Path):
    """``idx_writer(name, array, gz=False)`` writes an IDX file into ``tmp_path``."""

    def write(name: str, array: np.ndarray, **kw) -> Path:
        return write_idx(tmp_path / name, array, **kw)

    return write


@pytest.fixture
def t10k_dir(tmp_path: Path) -> Path:
    """A tiny MNIST folder with only the t10k files: 30 samples of 2x3 pixels, gzip-compressed."""
    d = tmp_path / "t10k_only"
    d.mkdir()
    write_mnist_pair(d, "t10k", fake_images(30), fake_labels(30), gz=True)
    return d
