"""The packed dataset image (boards/image.py) and programming it into a board's flash (boards/flash.py)."""

from __future__ import annotations

import os
import re
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from specbp_rtl.boards.build import BuildError, program_bitstream
from specbp_rtl.boards.flash import DATA_REGIONS, check_image_fits, load_data
from specbp_rtl.boards.image import (
    HEADER_SIZE,
    ImageError,
    pack_image,
    parse_image,
    read_image,
    write_image,
)
from specbp_rtl.boards.protocol import crc16
from specbp_rtl.boards.top import BOARDS
from specbp_rtl.data import Dataset, load_dataset


def random_dataset(inputs: int, classes: int, train: int = 50, test: int = 20, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    return Dataset(
        "random",
        rng.integers(0, 256, (train, inputs), dtype=np.uint8),
        rng.integers(0, classes, train, dtype=np.uint8),
        rng.integers(0, 256, (test, inputs), dtype=np.uint8),
        rng.integers(0, classes, test, dtype=np.uint8),
    )


def reseal(data: bytes | bytearray, header_crc: bool = True, payload_crc: bool = True) -> bytes:
    """Recompute the CRCs of an edited image, so that a test reaches the check behind them."""
    data = bytearray(data)
    if payload_crc:
        struct.pack_into("<I", data, 24, zlib.crc32(data[HEADER_SIZE:]))
    if header_crc:
        struct.pack_into("<H", data, 30, crc16(bytes(data[:30])))
    return bytes(data)


@pytest.fixture(scope="module")
def digits_image() -> bytes:
    return pack_image(load_dataset("digits"), 10)


def test_round_trip_digits(tmp_path, digits_image) -> None:
    ds = load_dataset("digits")
    path = tmp_path / "digits.sbds"
    info = write_image(path, ds, 10)
    assert path.read_bytes() == digits_image
    assert (info.train_count, info.test_count, info.inputs, info.classes, info.stride) == (1437, 360, 64, 10, 65)
    assert info.size == len(digits_image) == 32 + 1797 * 65
    assert info.test_offset == 32 + 1437 * 65 and info.train_offset == HEADER_SIZE
    again, back = read_image(path)
    assert again == info and back.name == "digits.sbds"
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert np.array_equal(getattr(back, name), getattr(ds, name)), name
        assert getattr(back, name).dtype == np.uint8
    assert not list(tmp_path.glob(".*.tmp"))  # written through a temporary file that is gone


def test_layout_is_the_documented_one(digits_image) -> None:
    """Field offsets as in the module docstring; records are label, then pixels, train split first."""
    ds = load_dataset("digits")
    magic, version, header_size, train, test, inputs, classes, flags, test_offset, pcrc, stride, hcrc = (
        struct.unpack_from("<4sHHIIHBBIIHH", digits_image)
    )
    assert (magic, version, header_size, train, test, inputs, classes, flags, stride) == (
        b"SBDS",
        1,
        32,
        1437,
        360,
        64,
        10,
        0,
        65,
    )
    assert pcrc == zlib.crc32(digits_image[32:]) and hcrc == crc16(digits_image[:30])
    assert digits_image[32] == ds.train_y[0] and digits_image[33:97] == ds.train_x[0].tobytes()
    assert digits_image[test_offset] == ds.test_y[0]
    assert digits_image[test_offset + 1 : test_offset + 65] == ds.test_x[0].tobytes()
    assert digits_image[-65:] == bytes([ds.test_y[-1]]) + ds.test_x[-1].tobytes()


def test_round_trip_784_inputs(tmp_path) -> None:
    ds = random_dataset(784, 10, train=300, test=70, seed=3)
    info, back = read_image(_written(tmp_path / "r.bin", ds, 10))
    assert (info.inputs, info.classes, info.records, info.size) == (784, 10, 370, 32 + 370 * 785)
    for name in ("train_x", "train_y", "test_x", "test_y"):
        assert np.array_equal(getattr(back, name), getattr(ds, name)), name


def test_empty_test_split_round_trips() -> None:
    ds = random_dataset(16, 2, train=5, test=0)
    info = parse_image(pack_image(ds, 2))
    assert (info.train_count, info.test_count, info.test_offset, info.size) == (5, 0, 32 + 5 * 17, 32 + 5 * 17)


def _written(path: Path, ds: Dataset, classes: int) -> Path:
    write_image(path, ds, classes)
    return path


def _corrupt(image: bytes, case: str) -> bytes:
    data = bytearray(image)
    if case == "magic":
        data[:4] = b"XXXX"
    elif case == "version":
        struct.pack_into("<H", data, 4, 2)
        return reseal(data, payload_crc=False)
    elif case == "truncated":
        return bytes(data[:-100])
    elif case == "short":
        return bytes(data[:20])
    elif case == "extra":
        return bytes(data) + b"\0"
    elif case == "payload":
        data[HEADER_SIZE + 1000] ^= 0x10
    elif case == "header":
        data[9] ^= 0x01  # train_count
    elif case == "label":
        data[HEADER_SIZE + 5 * 65] = 10  # sample 5's label, with both CRCs made good again
        return reseal(data)
    elif case == "flags":
        data[19] = 0x80
        return reseal(data, payload_crc=False)
    elif case == "stride":
        struct.pack_into("<H", data, 28, 66)
        return reseal(data, payload_crc=False)
    elif case == "test_offset":
        struct.pack_into("<I", data, 20, 32)
        return reseal(data, payload_crc=False)
    return bytes(data)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("magic", r"^dataset image x\.bin: bad magic b'XXXX' \(expected b'SBDS'\)$"),
        ("version", r"^dataset image x\.bin: format version 2 is not supported \(this reader knows version 1\)$"),
        ("short", r"^dataset image x\.bin: 20 bytes, shorter than the 32-byte header$"),
        (
            "truncated",
            rf"^dataset image x\.bin: {32 + 1797 * 65 - 100} bytes, the header announces {32 + 1797 * 65} "
            r"\(truncated\)$",
        ),
        (
            "extra",
            rf"^dataset image x\.bin: {32 + 1797 * 65 + 1} bytes, the header announces {32 + 1797 * 65} "
            r"\(extra bytes at the end\)$",
        ),
        (
            "payload",
            r"^dataset image x\.bin: payload CRC 0x[0-9a-f]{8} does not match 0x[0-9a-f]{8} "
            r"\(the samples are corrupt\)$",
        ),
        (
            "header",
            r"^dataset image x\.bin: header CRC 0x[0-9a-f]{4} does not match 0x[0-9a-f]{4} "
            r"\(the header is corrupt\)$",
        ),
        ("label", r"^dataset image x\.bin: training sample 5 has label 10, not below the 10 classes$"),
        ("flags", r"^dataset image x\.bin: unknown flags 0x80 \(version 1 defines none\)$"),
        ("stride", r"^dataset image x\.bin: record stride 66, expected 1 \+ 64 inputs = 65$"),
        ("test_offset", r"^dataset image x\.bin: test offset 32, expected 32 \+ 1437 x 65 = 93437$"),
    ],
)
def test_corrupt_images_are_refused(digits_image, case, message) -> None:
    bad = _corrupt(digits_image, case)
    assert bad != digits_image
    with pytest.raises(ImageError, match=message) as err:
        parse_image(bad, "x.bin")
    assert "\n" not in str(err.value)
    assert isinstance(err.value, ValueError)


def test_crc_messages_name_both_values(digits_image) -> None:
    data = bytearray(digits_image)
    data[-1] ^= 0xFF
    stored = struct.unpack_from("<I", data, 24)[0]
    with pytest.raises(ImageError) as err:
        parse_image(bytes(data), "x.bin")
    assert f"does not match 0x{stored:08x}" in str(err.value)
    assert f"payload CRC 0x{zlib.crc32(bytes(data[32:])):08x}" in str(err.value)


def test_test_split_label_is_located(digits_image) -> None:
    data = bytearray(digits_image)
    data[32 + (1437 + 2) * 65] = 200
    with pytest.raises(ImageError, match=r"test sample 2 has label 200, not below the 10 classes$"):
        parse_image(reseal(data))


def test_read_image_errors_name_the_file(tmp_path, digits_image) -> None:
    with pytest.raises(ImageError, match=r"^dataset image .*missing\.bin: cannot read it \(No such file"):
        read_image(tmp_path / "missing.bin")
    path = tmp_path / "bad.bin"
    path.write_bytes(b"SBDX" + digits_image[4:])
    with pytest.raises(ImageError, match=rf"^dataset image {re.escape(str(path))}: bad magic b'SBDX'"):
        read_image(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda ds: replace(ds, train_y=np.full_like(ds.train_y, 10)),
            r"training set: sample 0 has label 10, not below "
            r"the 10 classes$",
        ),
        (
            lambda ds: replace(ds, test_x=ds.test_x.astype(np.int16) + 300),
            r"test set: sample \d+ has pixel \d+, not 0\.\.255$",
        ),
        (lambda ds: replace(ds, test_x=ds.test_x[:, :10]), r"training samples have 64 inputs, test samples 10$"),
        (lambda ds: replace(ds, train_x=ds.train_x[:0], train_y=ds.train_y[:0]), r"the training set is empty$"),
        (
            lambda ds: replace(ds, train_y=ds.train_y[:-1]),
            r"training set: pixels of shape \(1437, 64\) and labels of "
            r"shape \(1436,\) do not pair up",
        ),
        (
            lambda ds: replace(ds, train_x=ds.train_x.astype(float)),
            r"training set: pixels must be integers, got float64$",
        ),
    ],
)
def test_pack_refuses_what_it_cannot_store(edit, message) -> None:
    with pytest.raises(ImageError, match=r"^dataset image of digits: " + message):
        pack_image(edit(load_dataset("digits")), 10)


@pytest.mark.parametrize("classes", [0, 256, 10.0])
def test_pack_refuses_bad_class_counts(classes) -> None:
    with pytest.raises(ImageError, match=r"^dataset image of digits: classes must be 1\.\.255"):
        pack_image(load_dataset("digits"), classes)


def test_failed_pack_writes_nothing(tmp_path) -> None:
    path = tmp_path / "img.bin"
    with pytest.raises(ImageError):
        write_image(path, load_dataset("digits"), 5)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------------------------
# flash layout and programming


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_data_region_never_overlaps_the_bitstream(board) -> None:
    region = DATA_REGIONS[board]
    block = 64 * 1024
    last_bitstream_block = (region.max_bitstream_bytes + block - 1) // block * block
    assert region.offset >= last_bitstream_block + block  # an untouched erase block between them at least
    assert region.offset % (64 * 1024) == 0 and region.size % (64 * 1024) == 0  # whole erase blocks
    assert region.end <= region.flash_bytes


def test_ulx3s_region_holds_mnist_t10k_and_icebreaker_measured_bitstream() -> None:
    mnist = parse_image(pack_image(random_dataset(784, 10, train=1, test=0), 10))
    assert mnist.header_size + 10_000 * mnist.stride <= DATA_REGIONS["ulx3s-85f"].size
    assert DATA_REGIONS["ulx3s-85f"].end <= 16 * 2**20 - 64 * 1024  # the last sector (multi-boot) stays free
    assert DATA_REGIONS["icebreaker"].offset == 0x100000 and DATA_REGIONS["ulx3s-85f"].offset == 0x400000


@pytest.mark.parametrize(
    ("board", "inputs", "classes"),
    [("icebreaker", 64, 2), ("icebreaker", 16, 10), ("ulx3s-85f", 64, 10), ("ulx3s-85f", 784, 2)],
)
def test_image_for_another_trainer_is_refused(board, inputs, classes) -> None:
    info = parse_image(pack_image(random_dataset(inputs, classes), classes), "x.bin")
    layers = BOARDS[board].layers
    with pytest.raises(
        ImageError,
        match=rf"^dataset image x\.bin: {inputs} inputs and {classes} classes, but the "
        rf"{board} trainer \({'-'.join(map(str, layers))}\) takes {layers[0]} "
        rf"inputs and {layers[-1]} classes$",
    ):
        check_image_fits(info, board)


def test_image_for_the_board_fits_and_other_layers_can_be_given() -> None:
    check_image_fits(parse_image(pack_image(random_dataset(16, 2), 2)), "icebreaker")
    check_image_fits(parse_image(pack_image(random_dataset(784, 10), 10)), "ulx3s-85f")
    digits = parse_image(pack_image(load_dataset("digits"), 10))
    check_image_fits(digits, "ulx3s-85f", layers=(64, 16, 10))
    with pytest.raises(ImageError, match=r"ulx3s-85f trainer \(784-16-16-10\)"):
        check_image_fits(digits, "ulx3s-85f")
    with pytest.raises(BuildError, match=r"^board: unknown board 'de10'"):
        check_image_fits(digits, "de10")


def test_image_larger_than_the_region_is_refused(tmp_path, monkeypatch) -> None:
    image = _written(tmp_path / "big.bin", random_dataset(16, 2, train=300, test=0), 2)  # 32 + 300 * 17 bytes
    monkeypatch.setitem(DATA_REGIONS, "icebreaker", replace(DATA_REGIONS["icebreaker"], size=4096))
    log = fake_tool(tmp_path / "bin", "iceprog")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ICEPROG", raising=False)
    with pytest.raises(
        ImageError,
        match=rf"^dataset image {re.escape(str(image))}: 5,132 bytes do not fit the "
        r"icebreaker's data region \(4,096 bytes at flash offset 0x100000\)$",
    ):
        load_data("icebreaker", image)
    assert not log.exists()  # refused before anything ran


def test_real_region_refuses_a_16_mib_image() -> None:
    """Without a patched region: an image one record larger than the iCEBreaker's 15 MiB."""
    info = parse_image(pack_image(random_dataset(16, 2, train=1, test=0), 2), "x.bin")
    records = (DATA_REGIONS["icebreaker"].size - HEADER_SIZE) // info.stride
    check_image_fits(replace(info, train_count=records), "icebreaker")
    with pytest.raises(ImageError, match=r"do not fit the icebreaker's data region \(15,728,640 bytes"):
        check_image_fits(replace(info, train_count=records + 1), "icebreaker")


def fake_tool(directory: Path, name: str, status: int = 0) -> Path:
    """A programmer on PATH that records its arguments, one a line, and exits with ``status``."""
    directory.mkdir(exist_ok=True)
    log = directory / f"{name}.args"
    script = directory / name
    script.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$@" > "{log}"\n'
        + (f'echo "error: no device found" >&2\nexit {status}\n' if status else "")
    )
    script.chmod(0o755)
    return log


@pytest.mark.parametrize(
    ("board", "inputs", "classes", "tool", "args"),
    [
        ("icebreaker", 16, 2, "iceprog", ["-o", "1048576"]),
        ("ulx3s-85f", 784, 10, "openFPGALoader", ["-b", "ulx3s", "-f", "--file-type", "bin", "-o", "4194304"]),
    ],
)
def test_load_data_with_fake_programmer(tmp_path, monkeypatch, board, inputs, classes, tool, args) -> None:
    image = _written(tmp_path / "data image.bin", random_dataset(inputs, classes), classes)  # a space survives
    log = fake_tool(tmp_path / "bin", tool)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ICEPROG", raising=False)
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    report = load_data(board, image, dry_run=True)
    assert report["command"] == [tool, *args, str(image)] and not report["programmed"] and not log.exists()
    report = load_data(board, image)
    assert log.read_text().splitlines() == [*args, str(image)]
    assert report["programmed"] and report["command"] == [tool, *args, str(image)]
    assert report["offset"] == DATA_REGIONS[board].offset == int(args[-1])
    assert (report["train"], report["test"], report["inputs"], report["classes"]) == (50, 20, inputs, classes)
    assert report["image_bytes"] == image.stat().st_size


def test_load_data_programmer_from_env_var(tmp_path, monkeypatch) -> None:
    image = _written(tmp_path / "d.bin", random_dataset(784, 10), 10)
    log = fake_tool(tmp_path / "bin", "my-ofl")
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "bin" / "my-ofl"))
    report = load_data("ulx3s-85f", image)
    assert report["command"][0] == str(tmp_path / "bin" / "my-ofl")
    assert log.read_text().splitlines()[-1] == str(image)


def test_load_data_missing_tool_is_the_bitstream_error(tmp_path, monkeypatch) -> None:
    image = _written(tmp_path / "d.bin", random_dataset(16, 2), 2)
    monkeypatch.setenv("PATH", str(tmp_path))  # no programmer
    monkeypatch.delenv("ICEPROG", raising=False)
    with pytest.raises(BuildError) as bitstream:
        program_bitstream("icebreaker", tmp_path / "top.bin")
    with pytest.raises(BuildError) as data:
        load_data("icebreaker", image)
    assert str(data.value) == str(bitstream.value) == "program: iceprog not found on PATH (install it, or set ICEPROG)"
    with pytest.raises(BuildError, match=r"^program: iceprog not found"):
        load_data("icebreaker", image, dry_run=True)


def test_load_data_failing_programmer_and_bad_arguments(tmp_path, monkeypatch) -> None:
    image = _written(tmp_path / "d.bin", random_dataset(16, 2), 2)
    fake_tool(tmp_path / "bin", "iceprog", status=2)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ICEPROG", raising=False)
    with pytest.raises(
        BuildError,
        match=rf"^program: iceprog -o 1048576 {re.escape(str(image))} failed "
        r"\(exit status 2\): error: no device found$",
    ):
        load_data("icebreaker", image)
    with pytest.raises(BuildError, match=r"^board: unknown board 'de10' \(choose from icebreaker, ulx3s-85f\)$"):
        load_data("de10", image)
    with pytest.raises(ImageError, match=r"takes 784 inputs and 10 classes$"):
        load_data("ulx3s-85f", image)
    with pytest.raises(ImageError, match=r"cannot read it"):
        load_data("icebreaker", tmp_path / "nope.bin")
