"""IDX reader and dataset loading (DESIGN §7)."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import fake_images, fake_labels, idx_bytes, write_idx, write_mnist_pair

from specbp_rtl.data import DataError, load_dataset
from specbp_rtl.data.idx import read_idx, read_images, read_labels


def assert_one_line_naming(exc: pytest.ExceptionInfo, *names: str) -> None:
    msg = str(exc.value)
    assert msg and "\n" not in msg, msg
    for name in names:
        assert name in msg, (name, msg)


# -- IDX reader: good files ------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_read_images_and_labels(idx_writer, gz: bool) -> None:
    images = fake_images(7, rows=4, cols=5)
    labels = fake_labels(7)
    ip = idx_writer("img" + (".gz" if gz else ""), images, gz=gz)
    lp = idx_writer("lab" + (".gz" if gz else ""), labels, gz=gz)
    x = read_images(ip)
    y = read_labels(str(lp))  # str paths too
    assert x.dtype == np.uint8 and x.shape == (7, 20)
    assert np.array_equal(x, images.reshape(7, 20))
    assert y.dtype == np.uint8 and y.tolist() == labels.tolist()


def test_gzip_detected_by_content_not_name(idx_writer) -> None:
    images = fake_images(3)
    a = read_images(idx_writer("compressed-but-no-suffix", images, gz=True))
    b = read_images(idx_writer("plain.gz", images, gz=False))
    assert np.array_equal(a, b)


def test_read_idx_generic(idx_writer) -> None:
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(idx_writer("a", arr), 3), arr)


def test_read_labels_custom_classes(idx_writer) -> None:
    p = idx_writer("lab", np.array([0, 1, 2, 3], dtype=np.uint8))
    assert read_labels(p, classes=4).tolist() == [0, 1, 2, 3]
    with pytest.raises(DataError) as exc:
        read_labels(p, classes=3)
    assert_one_line_naming(exc, str(p), "label 3", "index 3")


# -- IDX reader: every defect is a one-line DataError naming the file ---------------


def _gz(data: bytes) -> bytes:
    return gzip.compress(data)


GOOD_IMAGES = idx_bytes(fake_images(20))
GOOD_GZ = _gz(GOOD_IMAGES)

CORRUPT_IMAGE_FILES = {
    "bad_magic_type": b"\x00\x00\x0d\x03" + GOOD_IMAGES[4:],  # float elements
    "bad_magic_zero": b"\x01\x02\x08\x03" + GOOD_IMAGES[4:],
    "not_idx_at_all": b"P5\n2 3\n255\n" + bytes(6),
    "wrong_dims": idx_bytes(fake_labels(20)),
    "truncated_header": GOOD_IMAGES[:9],
    "empty_file": b"",
    "truncated_payload": GOOD_IMAGES[:-1],
    "trailing_bytes": GOOD_IMAGES + b"\x00",
    "gz_truncated": GOOD_GZ[:-20],
    "gz_bad_crc": GOOD_GZ[:-8] + bytes([GOOD_GZ[-8] ^ 0xFF]) + GOOD_GZ[-7:],
    "gz_bad_length": GOOD_GZ[:-1] + bytes([GOOD_GZ[-1] ^ 1]),
    "gz_corrupted_body": GOOD_GZ[:12] + bytes(b ^ 0x5A for b in GOOD_GZ[12:30]) + GOOD_GZ[30:],
    "gz_magic_only": b"\x1f\x8b" + b"junk" * 5,
    "gz_trailing_garbage": GOOD_GZ + b"garbage!",
    "gz_truncated_payload": _gz(GOOD_IMAGES[:-3]),
    "empty_images": struct.pack(">HBB3I", 0, 8, 3, 4, 0, 5),
}

EXPECTED_WORDS = {
    "bad_magic_type": "magic",
    "bad_magic_zero": "magic",
    "not_idx_at_all": "magic",
    "wrong_dims": "dimensions",
    "truncated_header": "truncated",
    "empty_file": "truncated",
    "truncated_payload": "truncated",
    "trailing_bytes": "trailing",
    "gz_truncated": "gzip",
    "gz_bad_crc": "gzip",
    "gz_bad_length": "gzip",
    "gz_corrupted_body": "gzip",
    "gz_magic_only": "gzip",
    "gz_trailing_garbage": "gzip",
    "gz_truncated_payload": "truncated",
    "empty_images": "empty",
}


@pytest.mark.parametrize("case", sorted(CORRUPT_IMAGE_FILES))
def test_corrupt_image_file(tmp_path: Path, case: str) -> None:
    p = tmp_path / f"{case}-images-idx3-ubyte"
    p.write_bytes(CORRUPT_IMAGE_FILES[case])
    with pytest.raises(DataError) as exc:
        read_images(p)
    assert_one_line_naming(exc, str(p), EXPECTED_WORDS[case])


def test_truncated_payload_message_has_sizes(tmp_path: Path) -> None:
    p = tmp_path / "short"
    p.write_bytes(GOOD_IMAGES[:-5])
    with pytest.raises(DataError) as exc:
        read_images(p)
    assert_one_line_naming(exc, str(p), "20x2x3 = 120 bytes", "payload is 115")


def test_wrong_dims_for_labels(idx_writer) -> None:
    p = idx_writer("images-as-labels", fake_images(4))
    with pytest.raises(DataError) as exc:
        read_labels(p)
    assert_one_line_naming(exc, str(p), "expected 1 dimensions", "has 3")


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_label_out_of_range(idx_writer, gz: bool) -> None:
    p = idx_writer("labels", np.array([1, 2, 9, 10, 3], dtype=np.uint8), gz=gz)
    with pytest.raises(DataError) as exc:
        read_labels(p)
    assert_one_line_naming(exc, str(p), "label 10", "index 3")


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope-images-idx3-ubyte"
    with pytest.raises(DataError) as exc:
        read_images(p)
    assert_one_line_naming(exc, str(p), "not found")


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        read_images(tmp_path)
    assert_one_line_naming(exc, str(tmp_path))


def test_sizes_overflowing_int64_are_a_data_error(tmp_path: Path) -> None:
    """2**21 * 2**21 * 2**22 = 2**64 wraps to 0 in int64: the header must not be taken to
    describe an empty payload (today numpy's reshape raises a bare ValueError)."""
    p = tmp_path / "huge"
    p.write_bytes(struct.pack(">HBB3I", 0, 8, 3, 1 << 21, 1 << 21, 1 << 22))
    with pytest.raises(DataError) as exc:
        read_images(p)
    assert_one_line_naming(exc, str(p))


def test_zero_images_is_not_a_bare_value_error(tmp_path: Path) -> None:
    """A valid IDX header with count 0: either an empty (0, rows*cols) array or a DataError
    naming the file; today ``reshape(0, -1)`` raises numpy's ValueError."""
    p = tmp_path / "zero-images"
    p.write_bytes(struct.pack(">HBB3I", 0, 8, 3, 0, 28, 28))
    try:
        x = read_images(p)
    except DataError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
    else:
        assert x.shape == (0, 784) and x.dtype == np.uint8


# -- t10k-only folder: the "t10k split" ------------------------------------------


def test_t10k_only_split_in_file_order(t10k_dir: Path) -> None:
    raw_x = read_images(t10k_dir / "t10k-images-idx3-ubyte.gz")
    raw_y = read_labels(t10k_dir / "t10k-labels-idx1-ubyte.gz")
    ds = load_dataset("mnist", t10k_dir, train=20, test=7)
    assert ds.name == "mnist" and ds.inputs == 6
    assert np.array_equal(ds.train_x, raw_x[:20]) and np.array_equal(ds.train_y, raw_y[:20])
    assert np.array_equal(ds.test_x, raw_x[20:27]) and np.array_equal(ds.test_y, raw_y[20:27])
    # the first pixel encodes the sample's position in the file
    assert ds.train_x[:, 0].tolist() == list(range(20))
    assert ds.test_x[:, 0].tolist() == list(range(20, 27))
    # test=None: everything after the training part
    ds = load_dataset("mnist", str(t10k_dir), train=25)
    assert ds.test_x[:, 0].tolist() == list(range(25, 30))
    assert ds.describe() == "mnist: 25 train, 5 test, 6 inputs"


def test_t10k_only_too_many_samples(t10k_dir: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", t10k_dir, train=25, test=6)
    assert_one_line_naming(exc, "t10k", "30")
    # default split is 8000/2000: far more than this folder holds
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", t10k_dir)
    assert_one_line_naming(exc, "t10k", "0..7999", "only 30")
    with pytest.raises(DataError):
        load_dataset("mnist", t10k_dir, train=31)


# -- full layout: train-* for training, t10k-* for testing ----------------------------


@pytest.mark.parametrize("variant", ["raw", "gz", "mixed", "dot-names"])
def test_full_layout(tmp_path: Path, variant: str) -> None:
    train_x, train_y = fake_images(12, offset=100), fake_labels(12, offset=1)
    test_x, test_y = fake_images(5, offset=200), fake_labels(5, offset=2)
    write_mnist_pair(
        tmp_path, "train", train_x, train_y, gz=variant in ("gz", "mixed"), sep="." if variant == "dot-names" else "-"
    )
    write_mnist_pair(tmp_path, "t10k", test_x, test_y, gz=variant == "gz")
    ds = load_dataset("mnist", tmp_path)
    assert np.array_equal(ds.train_x, train_x.reshape(12, -1)) and np.array_equal(ds.train_y, train_y)
    assert np.array_equal(ds.test_x, test_x.reshape(5, -1)) and np.array_equal(ds.test_y, test_y)
    # limits take the first samples of each file
    ds = load_dataset("mnist", tmp_path, train=4, test=3)
    assert ds.train_x[:, 0].tolist() == [100, 101, 102, 103]
    assert ds.test_x[:, 0].tolist() == [200, 201, 202]
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, train=13)
    assert_one_line_naming(exc, "train")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, test=6)
    assert_one_line_naming(exc, "t10k")


def test_half_a_pair_is_missing(tmp_path: Path) -> None:
    write_mnist_pair(tmp_path, "t10k", fake_images(5), fake_labels(5))
    write_idx(tmp_path / "train-images-idx3-ubyte", fake_images(5))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_naming(exc, "train-labels-idx1-ubyte", str(tmp_path))


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_idx(tmp_path / "t10k-images-idx3-ubyte", fake_images(10))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", fake_labels(9), gz=True)
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path, train=5, test=4)
    assert_one_line_naming(exc, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte.gz", "10", "9")


def test_train_test_pixel_mismatch(tmp_path: Path) -> None:
    write_mnist_pair(tmp_path, "train", fake_images(5, rows=2, cols=3), fake_labels(5))
    write_mnist_pair(tmp_path, "t10k", fake_images(5, rows=2, cols=4), fake_labels(5))
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)
    assert_one_line_naming(exc, "6", "8")


def test_corrupted_file_in_folder(t10k_dir: Path) -> None:
    p = t10k_dir / "t10k-images-idx3-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", t10k_dir, train=10, test=10)
    assert_one_line_naming(exc, str(p), "gzip")


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path)  # empty folder
    assert_one_line_naming(exc, str(tmp_path), "t10k-images-idx3-ubyte")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist", tmp_path / "absent")
    assert_one_line_naming(exc, str(tmp_path / "absent"), "not a directory")
    with pytest.raises(DataError) as exc:
        load_dataset("mnist")
    assert_one_line_naming(exc, "--data")
    with pytest.raises(DataError) as exc:
        load_dataset("cifar10")
    assert_one_line_naming(exc, "cifar10", "digits", "mnist")


# -- embedded digits ------------------------------------------------------------


def test_digits_default_split() -> None:
    ds = load_dataset("digits")
    assert ds.name == "digits"
    assert ds.train_x.shape == (1437, 64) and ds.test_x.shape == (360, 64)
    assert ds.train_x.dtype == np.uint8 and ds.train_y.shape == (1437,) and ds.test_y.shape == (360,)
    assert ds.inputs == 64
    both = np.concatenate([ds.train_y, ds.test_y])
    assert set(both.tolist()) == set(range(10))
    # pixels rescaled from 0..16 to 0..255 by round(v * 255 / 16)
    allowed = {int(np.floor(v * 255 / 16 + 0.5)) for v in range(17)}
    assert set(np.unique(np.concatenate([ds.train_x, ds.test_x])).tolist()) <= allowed
    assert ds.train_x.max() == 255 and ds.train_x.min() == 0


def test_digits_limits_in_file_order() -> None:
    full = load_dataset("digits")
    ds = load_dataset("digits", train=100, test=50)
    assert np.array_equal(ds.train_x, full.train_x[:100])
    # the test part starts right after the training part, in file order
    assert np.array_equal(ds.test_x[:10], full.train_x[100:110])
    ds = load_dataset("digits", train=1000)
    assert len(ds.test_y) == 797
    with pytest.raises(DataError) as exc:
        load_dataset("digits", train=1800)
    assert_one_line_naming(exc, "digits", "1797")
    with pytest.raises(DataError) as exc:
        load_dataset("digits", train=1437, test=361)
    assert_one_line_naming(exc, "digits")


# -- the real MNIST test set --------------------------------------------------------


@pytest.mark.slow
def test_real_mnist_t10k_split(mnist_dir: Path) -> None:
    raw_x = read_images(mnist_dir / "t10k-images-idx3-ubyte.gz")
    raw_y = read_labels(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert raw_x.shape == (10000, 784) and raw_y.shape == (10000,)
    # the decompressed MD5s published in the folder's README
    md5 = lambda p: hashlib.md5(gzip.decompress(p.read_bytes())).hexdigest()  # noqa: E731
    assert md5(mnist_dir / "t10k-images-idx3-ubyte.gz") == "2646ac647ad5339dbf082846283269ea"
    assert md5(mnist_dir / "t10k-labels-idx1-ubyte.gz") == "27ae3e4e09519cfbb04c329615203637"
    assert raw_y[:5].tolist() == [7, 2, 1, 0, 4]
    ds = load_dataset("mnist", mnist_dir, 8000, 2000)
    assert np.array_equal(ds.train_x, raw_x[:8000]) and np.array_equal(ds.train_y, raw_y[:8000])
    assert np.array_equal(ds.test_x, raw_x[8000:]) and np.array_equal(ds.test_y, raw_y[8000:])
    # defaults are the same 8000/2000 split
    dflt = load_dataset("mnist", mnist_dir)
    assert len(dflt.train_y) == 8000 and len(dflt.test_y) == 2000
    with pytest.raises(DataError):
        load_dataset("mnist", mnist_dir, 8000, 2001)
