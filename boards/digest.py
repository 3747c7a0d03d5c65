"""Change control for the board netlists: a digest of each board top's RTLIL.

The ULX3S default meets its 80 MHz clock by about 1 % on its placement, and a
change that only renames wires has moved it by 9 MHz. So a change that alters
a board's netlist must be known, and then measured with a fresh build.
:func:`rtlil_digest` hashes the RTLIL of a board's default top-level (the one
``specbp build --board B`` synthesises) without its ``src`` attributes (file
and line numbers, which move with any edit); ``rtlil_digests.json`` beside
this module holds the digest of each board's last measured build, and a fast
test fails when the two differ.

After a change that alters a netlist on purpose: build the board, record the
figures, and update the file with ``python -m specbp_rtl.boards.digest
--update``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import warnings
from pathlib import Path

from ..files import write_atomic
from .top import BOARDS, BoardTop, trainer_config

__all__ = ["DIGEST_FILE", "board_rtlil", "recorded_digests", "rtlil_digest"]

#: the digests of the boards' measured builds
DIGEST_FILE = Path(__file__).with_name("rtlil_digests.json")


def board_rtlil(board: str) -> str:
    """The RTLIL that ``specbp build --board board`` (default lanes, layers and clock) gives Yosys."""
    spec = BOARDS[board]
    top = BoardTop(trainer_config(board), pll_mhz=spec.pll_mhz)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the platform's own deprecations are not this netlist's business
        plan = spec.make_platform().prepare(top, name="top")
    text = plan.files["top.il"]
    return text if isinstance(text, str) else text.decode()


def rtlil_digest(board: str) -> str:
    """SHA-256 of :func:`board_rtlil` without its ``src`` attribute lines."""
    lines = (line for line in board_rtlil(board).splitlines() if "attribute \\src" not in line)
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def recorded_digests() -> dict[str, str]:
    """Board -> digest of its last measured build (:data:`DIGEST_FILE`)."""
    return json.loads(DIGEST_FILE.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare (or --update) the boards' RTLIL digests.")
    parser.add_argument("--update", action="store_true", help="record the current digests")
    args = parser.parse_args()
    digests = {board: rtlil_digest(board) for board in BOARDS}
    if args.update:
        write_atomic(DIGEST_FILE, json.dumps(digests, indent=2) + "\n")
    recorded = recorded_digests()
    for board, digest in digests.items():
        state = "as measured" if recorded.get(board) == digest else "CHANGED: build it and update the file"
        print(f"{board}: {digest[:16]} {state}")


if __name__ == "__main__":
    main()
