"""The packed dataset image: a dataset as one flat, checked byte string for a board's SPI flash.

A board trains from samples stored in its SPI flash past the bitstream (see
:mod:`.flash` for where, and for programming it). This module defines the
bytes: :func:`pack_image` / :func:`write_image` make an image from a
:class:`~specbp_rtl.data.Dataset`, :func:`parse_image` / :func:`read_image`
check one and give it back.

Format, version 1 (all integers little endian)::

    offset  size  field         meaning
    ------  ----  ------------  ------------------------------------------------------------
         0     4  magic         b"SBDS" (SpecBP DataSet)
         4     2  version       1
         6     2  header_size   32: the first record's byte offset
         8     4  train_count   training records (at least 1)
        12     4  test_count    test records (may be 0)
        16     2  inputs        pixel bytes per record (at least 1)
        18     1  classes       labels are below this (1..255)
        19     1  flags         0 (no flags are defined; a reader refuses others)
        20     4  test_offset   byte offset of the first test record:
                                header_size + train_count * stride
        24     4  payload_crc   CRC-32 (ISO-HDLC, :func:`zlib.crc32`) of every byte after the header
        28     2  stride        bytes per record: 1 + inputs
        30     2  header_crc    CRC-16/CCITT-FALSE (:func:`.protocol.crc16`) of bytes 0..29
        32     -  records       train_count training records, then test_count test records;
                                each: label u8, then ``inputs`` pixel bytes (u8, 0..255) in
                                the dataset's order

The image is exactly ``header_size + (train_count + test_count) * stride``
bytes long. Every field is naturally aligned (u32 at multiples of 4, u16 at
even offsets), so gateware can pick them out of a byte stream with fixed
counters.

Records are not padded to a power-of-two stride. Gateware streams them: one
SPI read command at ``test_offset`` or ``header_size`` and the flash clocks
out record after record, so the next record's address is never computed, and
where it is (a restart at the test split) ``test_offset`` saves the multiply.
Padding would buy nothing for streaming and cost flash space and read time:
an MNIST record is 785 bytes, padded 1024 (30 % more), and at single-bit SPI
speeds (about 5 MB/s at 40 MHz, 157 us per MNIST record) reading samples may
well be the slower half of a training step. ``stride`` is stored anyway, so a
reader never derives it and a later version may pad without moving a field.

The two CRCs check different things: the header CRC that the counts and
offsets a reader is about to trust are what was written, before it reads
megabytes on their say-so; the payload CRC the samples. CRC-16/CCITT-FALSE is
already in the gateware (the link's frame check, :func:`.link.crc16_update`);
CRC-32 gives the multi-megabyte payload a 32-bit check.

Every problem raises :class:`ImageError` (a :class:`ValueError`) with a
one-line message that names the image and the problem.
"""

from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import Dataset
from ..files import write_atomic
from .protocol import crc16

__all__ = [
    "FORMAT_VERSION",
    "HEADER_SIZE",
    "IMAGE_MAGIC",
    "ImageError",
    "ImageInfo",
    "pack_image",
    "parse_image",
    "read_image",
    "write_image",
]

IMAGE_MAGIC = b"SBDS"
FORMAT_VERSION = 1
HEADER_SIZE = 32
#: header fields up to the header CRC (struct format, little endian)
_FIELDS = struct.Struct("<4sHHIIHBBIIH")
_HEADER_CRC = struct.Struct("<H")
assert _FIELDS.size + _HEADER_CRC.size == HEADER_SIZE


class ImageError(ValueError):
    """A dataset image that cannot be made, read or used (one line, naming the image)."""


@dataclass(frozen=True)
class ImageInfo:
    """The header of a checked dataset image.

    ``source`` names the image in messages (its path, or what the caller
    passed to :func:`parse_image`).
    """

    source: str
    version: int
    header_size: int
    train_count: int
    test_count: int
    inputs: int
    classes: int
    flags: int
    test_offset: int
    payload_crc: int
    stride: int
    header_crc: int

    @property
    def train_offset(self) -> int:
        """Byte offset of the first training record."""
        return self.header_size

    @property
    def records(self) -> int:
        """Training plus test records."""
        return self.train_count + self.test_count

    @property
    def size(self) -> int:
        """The image's length in bytes."""
        return self.header_size + self.records * self.stride

    def describe(self) -> str:
        """One line: counts, shape and size."""
        return (
            f"{self.source}: {self.train_count} train + {self.test_count} test records, {self.inputs} inputs, "
            f"{self.classes} classes, {self.size:,} bytes"
        )


def _split(x: np.ndarray, y: np.ndarray, what: str, name: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` of one split as uint8, checked."""
    x, y = np.asarray(x), np.asarray(y)
    prefix = f"dataset image of {name}: {what} set"
    if x.ndim != 2 or y.ndim != 1 or len(x) != len(y):
        raise ImageError(
            f"{prefix}: pixels of shape {x.shape} and labels of shape {y.shape} do not pair up "
            f"(expected (n, inputs) and (n,))"
        )
    for arr, kind, top in ((x, "pixel", 255), (y, "label", classes - 1)):
        if arr.size == 0:
            continue
        if not np.issubdtype(arr.dtype, np.integer):
            raise ImageError(f"{prefix}: {kind}s must be integers, got {arr.dtype}")
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high > top:
            bad = low if low < 0 else high
            where = int(np.argmax(arr == bad)) if arr.ndim == 1 else int(np.argmax((arr == bad).any(axis=1)))
            limit = "0..255" if kind == "pixel" else f"below the {classes} classes"
            raise ImageError(f"{prefix}: sample {where} has {kind} {bad}, not {limit}")
    return x.astype(np.uint8), y.astype(np.uint8)


def pack_image(dataset: Dataset, classes: int) -> bytes:
    """The image of ``dataset`` (training split, then test split) for a ``classes``-way classifier.

    ``classes`` is stored so that a reader can check the labels and a board
    can refuse an image for another trainer; it must be 1..255 and above
    every label.

    Raises
    ------
    ImageError
        When ``classes`` or the dataset cannot be stored: no training
        samples, splits of different input sizes, more than 65,535 inputs,
        more than 2**32 - 1 records or bytes, pixels outside 0..255, labels
        not below ``classes``.
    """
    name = dataset.name
    if not isinstance(classes, int) or not 1 <= classes <= 255:
        raise ImageError(f"dataset image of {name}: classes must be 1..255, got {classes!r}")
    trx, try_ = _split(dataset.train_x, dataset.train_y, "training", name, classes)
    tex, tey = _split(dataset.test_x, dataset.test_y, "test", name, classes)
    if len(try_) == 0:
        raise ImageError(f"dataset image of {name}: the training set is empty")
    inputs = trx.shape[1]
    if len(tey) and tex.shape[1] != inputs:
        raise ImageError(f"dataset image of {name}: training samples have {inputs} inputs, test samples {tex.shape[1]}")
    if not 1 <= inputs <= 0xFFFF:
        raise ImageError(f"dataset image of {name}: {inputs} inputs per sample, the format holds 1..65535")
    stride = 1 + inputs
    size = HEADER_SIZE + (len(try_) + len(tey)) * stride
    if size > 0xFFFF_FFFF:
        raise ImageError(f"dataset image of {name}: {size:,} bytes, the format holds at most 4 GiB")
    records = np.empty((len(try_) + len(tey), stride), dtype=np.uint8)
    records[:, 0] = np.concatenate([try_, tey])
    records[: len(try_), 1:] = trx
    records[len(try_) :, 1:] = tex.reshape(len(tey), inputs)
    payload = records.tobytes()
    fields = _FIELDS.pack(
        IMAGE_MAGIC,
        FORMAT_VERSION,
        HEADER_SIZE,
        len(try_),
        len(tey),
        inputs,
        classes,
        0,
        HEADER_SIZE + len(try_) * stride,
        zlib.crc32(payload),
        stride,
    )
    return fields + _HEADER_CRC.pack(crc16(fields)) + payload


def write_image(path: str | os.PathLike, dataset: Dataset, classes: int) -> ImageInfo:
    """Pack ``dataset`` (:func:`pack_image`) and write it to ``path`` atomically; return its header.

    Nothing is written when packing fails (:class:`ImageError`); a failed
    write raises :class:`OSError` and leaves the previous file, if any.
    """
    data = pack_image(dataset, classes)
    write_atomic(path, data)
    return parse_image(data, os.fspath(path))


def parse_image(data: bytes, source: str | os.PathLike = "<bytes>") -> ImageInfo:
    """Check an image completely and return its header.

    Checked, in this order: the magic, the length against the header, the
    format version and header size, the header CRC, the header's fields
    (flags, inputs, classes, stride, test offset), the length against the
    counts, the payload CRC and every label against ``classes``.

    Raises
    ------
    ImageError
        At the first problem, naming ``source``.
    """
    prefix = f"dataset image {os.fspath(source)}"
    data = memoryview(data).cast("B")
    if bytes(data[:4]) != IMAGE_MAGIC:
        raise ImageError(f"{prefix}: bad magic {bytes(data[:4])!r} (expected {IMAGE_MAGIC!r})")
    if len(data) < HEADER_SIZE:
        raise ImageError(f"{prefix}: {len(data)} bytes, shorter than the {HEADER_SIZE}-byte header")
    magic, version, header_size, train, test, inputs, classes, flags, test_offset, payload_crc, stride = (
        _FIELDS.unpack_from(data)
    )
    if version != FORMAT_VERSION:
        raise ImageError(
            f"{prefix}: format version {version} is not supported (this reader knows version {FORMAT_VERSION})"
        )
    if header_size != HEADER_SIZE:
        raise ImageError(f"{prefix}: header size {header_size}, version {FORMAT_VERSION} has {HEADER_SIZE}")
    (header_crc,) = _HEADER_CRC.unpack_from(data, _FIELDS.size)
    computed = crc16(data[: _FIELDS.size])
    if header_crc != computed:
        raise ImageError(
            f"{prefix}: header CRC 0x{computed:04x} does not match 0x{header_crc:04x} (the header is corrupt)"
        )
    if flags:
        raise ImageError(f"{prefix}: unknown flags 0x{flags:02x} (version {FORMAT_VERSION} defines none)")
    if inputs < 1 or classes < 1 or train < 1:
        raise ImageError(
            f"{prefix}: {train} training records of {inputs} inputs, {classes} classes (each must be at least 1)"
        )
    if stride != 1 + inputs:
        raise ImageError(f"{prefix}: record stride {stride}, expected 1 + {inputs} inputs = {1 + inputs}")
    if test_offset != header_size + train * stride:
        raise ImageError(
            f"{prefix}: test offset {test_offset}, expected {header_size} + {train} x {stride} = "
            f"{header_size + train * stride}"
        )
    expected = header_size + (train + test) * stride
    if len(data) != expected:
        raise ImageError(
            f"{prefix}: {len(data)} bytes, the header announces {expected} "
            f"({'truncated' if len(data) < expected else 'extra bytes at the end'})"
        )
    computed = zlib.crc32(data[header_size:])
    if computed != payload_crc:
        raise ImageError(
            f"{prefix}: payload CRC 0x{computed:08x} does not match 0x{payload_crc:08x} (the samples are corrupt)"
        )
    labels = np.frombuffer(data, dtype=np.uint8, offset=header_size).reshape(train + test, stride)[:, 0]
    bad = np.flatnonzero(labels >= classes)
    if bad.size:
        index = int(bad[0])
        split, number = ("training", index) if index < train else ("test", index - train)
        raise ImageError(
            f"{prefix}: {split} sample {number} has label {labels[index]}, not below the {classes} classes"
        )
    return ImageInfo(
        os.fspath(source),
        version,
        header_size,
        train,
        test,
        inputs,
        classes,
        flags,
        test_offset,
        payload_crc,
        stride,
        header_crc,
    )


def read_image(path: str | os.PathLike) -> tuple[ImageInfo, Dataset]:
    """Read and check (:func:`parse_image`) the image at ``path``; return its header and samples.

    The dataset is named after the file; pixels and labels are ``uint8``.
    Raises :class:`ImageError` when the file cannot be read or is not a good
    image.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"dataset image {os.fspath(path)}: cannot read it ({exc.strerror or exc})") from None
    info = parse_image(data, path)
    records = np.frombuffer(data, dtype=np.uint8, offset=info.header_size).reshape(info.records, info.stride)
    train, test = records[: info.train_count], records[info.train_count :]
    dataset = Dataset(Path(path).name, train[:, 1:].copy(), train[:, 0].copy(), test[:, 1:].copy(), test[:, 0].copy())
    return info, dataset
