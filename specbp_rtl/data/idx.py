"""Reader for the IDX files of MNIST (raw or gzip-compressed).

The IDX format: a 4-byte magic ``00 00 TT DD`` (``TT`` the element type, ``DD``
the number of dimensions), ``DD`` big-endian ``uint32`` sizes, then the
elements. MNIST uses type ``0x08`` (``uint8``): images are ``idx3`` (count,
rows, cols), labels ``idx1`` (count).

Every defect (missing file, bad gzip stream, wrong magic, truncated or
oversized payload, label out of range, image/label count mismatch) raises
:class:`DataError` with one line naming the file.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataError", "read_idx", "read_images", "read_labels"]


class DataError(Exception):
    """A malformed or missing data file; ``str()`` is one readable line."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{path}: corrupted gzip stream ({exc})") from None
    return raw


def read_idx(path: str | Path, dims: int) -> np.ndarray:
    """Read an IDX file of ``uint8`` elements with ``dims`` dimensions."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DataError(f"{path}: truncated header ({len(data)} bytes)")
    zero, dtype, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype != 0x08:
        raise DataError(f"{path}: bad magic number 0x{data[:4].hex()} (not an IDX uint8 file)")
    if ndim != dims:
        raise DataError(f"{path}: expected {dims} dimensions, file has {ndim}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{path}: truncated header ({len(data)} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape)
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: header says {'x'.join(map(str, shape))} = {expected} bytes, payload is {payload}"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def read_images(path: str | Path) -> np.ndarray:
    """Images as ``uint8`` of shape ``(count, rows * cols)``."""
    images = read_idx(path, 3)
    if images.shape[1] == 0 or images.shape[2] == 0:
        raise DataError(f"{path}: empty images ({images.shape[1]}x{images.shape[2]})")
    return images.reshape(images.shape[0], images.shape[1] * images.shape[2])


def read_labels(path: str | Path, classes: int = 10) -> np.ndarray:
    """Labels as ``uint8`` of shape ``(count,)``, each below ``classes``."""
    labels = read_idx(path, 1)
    if labels.size and labels.max() >= classes:
        bad = int(np.flatnonzero(labels >= classes)[0])
        raise DataError(f"{path}: label {labels[bad]} at index {bad} is not below {classes}")
    return labels
