"""Output files: checked before any work starts, written atomically.

Every command that writes a file (a JSON record, a waveform, Verilog, a
checkpoint, a sweep's run files) checks the path with :func:`check_output_file`
or :func:`check_output_dir` before it trains or builds anything, so that a
mistake in a path costs nothing, and writes with :func:`write_atomic`: the
data goes to a temporary file in the same directory, which is then renamed
over the target. A reader never sees half a file, and a failure (a full disk,
Ctrl-C) leaves the previous file, or none, in place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["OutputError", "check_output_dir", "check_output_file", "write_atomic"]


class OutputError(ValueError):
    """An output path that cannot be written (one line, naming the option and the path)."""


def check_output_file(option: str, path: str | os.PathLike | None) -> Path | None:
    """Check that ``path`` can be created or replaced as a file; ``None`` passes.

    Raises :class:`OutputError` naming ``option`` when the path is empty, is a
    directory, its directory does not exist, or that directory is not
    writable (a file is written next to its target, then renamed).
    """
    if path is None:
        return None
    text = os.fspath(path)
    if not text.strip():
        raise OutputError(f"{option}: empty file name")
    p = Path(text)
    if p.is_dir():
        raise OutputError(f"{option} {text}: is a directory, expected a file name")
    if p.exists() and not p.is_file():  # a device or a pipe (/dev/stdout): written in place
        if not os.access(p, os.W_OK):
            raise OutputError(f"{option} {text}: not writable")
        return p
    parent = p.resolve().parent
    if not parent.is_dir():
        raise OutputError(f"{option} {text}: directory {parent} does not exist")
    _probe(option, text, parent)
    return p


def check_output_dir(option: str, path: str | os.PathLike) -> Path:
    """Check that ``path`` is a writable directory or can be created as one.

    Raises :class:`OutputError` naming ``option`` when the path is empty, is
    an existing file, or neither it nor its nearest existing ancestor is a
    writable directory.
    """
    text = os.fspath(path)
    if not text.strip():
        raise OutputError(f"{option}: empty directory name")
    p = Path(text)
    if p.exists() and not p.is_dir():
        raise OutputError(f"{option} {text}: is a file, expected a directory")
    probe = p.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{option} {text}: {probe} is a file, cannot create a directory under it")
    _probe(option, text, probe)
    return p


def _probe(option: str, text: str, directory: Path) -> None:
    """Create and remove a file in ``directory`` (permission bits do not tell root, or a read-only mount)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".specbp-probe.")
    except OSError as exc:
        raise OutputError(f"{option} {text}: cannot write in {directory} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(tmp)


def write_atomic(path: str | os.PathLike, data: str | bytes) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file and a rename.

    Raises :class:`OSError` as the file system does; the target then keeps
    its previous contents (or does not exist) and no temporary file is left.
    """
    raw = data.encode() if isinstance(data, str) else data
    if Path(path).exists() and not Path(path).is_file():  # a device or a pipe (/dev/stdout): in place
        with open(path, "wb") as f:
            f.write(raw)
        return
    target = Path(path).resolve()  # through a symlink: the file it points to is replaced, not the link
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, _new_file_mode(target))
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _new_file_mode(target: Path) -> int:
    """The target's mode if it exists, else what ``open()`` would give (``0o666`` less the umask)."""
    try:
        return target.stat().st_mode & 0o7777
    except OSError:
        mask = os.umask(0)
        os.umask(mask)
        return 0o666 & ~mask
