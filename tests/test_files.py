"""Output paths checked before work, and atomic writes (specbp_rtl/files.py)."""

from __future__ import annotations

import os

import pytest

import specbp_rtl.files as files
from specbp_rtl.files import OutputError, check_output_dir, check_output_file, write_atomic


def test_output_checks_name_the_option_and_the_problem(tmp_path) -> None:
    (tmp_path / "f").write_text("x")
    assert check_output_file("--json", tmp_path / "new.json") == tmp_path / "new.json"
    assert check_output_file("--json", None) is None
    for path, message in (
        (tmp_path, "is a directory"),
        (tmp_path / "no" / "x.json", "does not exist"),
        ("", "empty file name"),
        ("/proc/x.json", "cannot write in /proc"),
    ):
        with pytest.raises(OutputError, match=f"^--json .*{message}|^--json: {message}"):
            check_output_file("--json", path)
    assert check_output_dir("--out", tmp_path / "a" / "b") == tmp_path / "a" / "b"
    with pytest.raises(OutputError, match="is a file, expected a directory"):
        check_output_dir("--out", tmp_path / "f")
    with pytest.raises(OutputError, match="is a file, cannot create a directory under it"):
        check_output_dir("--out", tmp_path / "f" / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]  # the probes leave nothing behind


def test_write_atomic_replaces_whole_files_only(tmp_path, monkeypatch) -> None:
    target = tmp_path / "r.json"
    write_atomic(target, "one\n")
    assert target.read_text() == "one\n" and (target.stat().st_mode & 0o777) == 0o666 & ~_umask()
    target.chmod(0o640)
    write_atomic(target, b"two\n")
    assert target.read_bytes() == b"two\n" and (target.stat().st_mode & 0o777) == 0o640  # keeps its mode

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_atomic(target, "three\n")
    assert target.read_bytes() == b"two\n" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_write_atomic_through_a_symlink_and_into_a_device(tmp_path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / "rec.json").write_text("old\n")
    link = tmp_path / "rec.json"
    link.symlink_to(real / "rec.json")
    assert check_output_file("--json", link) == link
    write_atomic(link, "new\n")
    assert link.is_symlink() and (real / "rec.json").read_text() == "new\n"  # the file it points to, replaced
    assert check_output_file("--json", "/dev/null") is not None  # a device: written in place
    write_atomic("/dev/null", "discarded\n")
