"""Change control: each board's RTLIL equals the netlist of its last measured build.

The figures in the README's board table (fmax, resources) belong to those
netlists. A change that moves a digest must come with a fresh build of that
board and an update of ``boards/rtlil_digests.json`` (see
:mod:`specbp_rtl.boards.digest`).
"""

from __future__ import annotations

import pytest

from specbp_rtl.boards.digest import recorded_digests, rtlil_digest
from specbp_rtl.boards.top import BOARDS


@pytest.mark.parametrize("board", sorted(BOARDS))
def test_board_netlist_is_the_measured_one(board: str) -> None:
    assert rtlil_digest(board) == recorded_digests()[board], (
        f"{board}'s RTLIL changed: build it (specbp build --board {board}), update the README's figures, then "
        f"run python -m specbp_rtl.boards.digest --update"
    )
