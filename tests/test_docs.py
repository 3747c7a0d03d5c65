"""The API reference (``docs/``) builds with ``sphinx-build -W``: every docstring is valid reStructuredText."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_builds_without_warnings(tmp_path: Path) -> None:
    assert importlib.util.find_spec("sphinx"), "sphinx is in the test extras (pip install -e '.[test]')"
    command = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",  # a warning is an error (a docstring's broken markup, an ambiguous cross-reference, ...)
        "-q",
        "-E",  # read every page afresh: nothing is cached between runs
        "-b",
        "html",
        "-d",
        str(tmp_path / "doctrees"),
        str(ROOT / "docs"),
        str(tmp_path / "html"),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"sphinx-build failed ({result.returncode}):\n{result.stderr}{result.stdout}"
    assert (tmp_path / "html" / "api" / "gateware.html").is_file()
