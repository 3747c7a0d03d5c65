#!/usr/bin/env python3
"""Elaborate a board's top-level (trainer + UART link + LEDs) to RTLIL, and its trainer to Verilog.

By default the script does what the first second of ``specbp build`` does,
without running the toolchain: it elaborates
:class:`~specbp_rtl.boards.BoardTop` for the board's platform (amaranth-boards;
the ULX3S's PLL included) into the build plan Yosys and nextpnr would run,
writes it to ``--out`` (``top.il``: RTLIL of the whole design with its
pins; the constraint file, ``.pcf`` or ``.lpf``; the build scripts), and
converts the board's :class:`~specbp_rtl.gateware.Trainer` alone to Verilog
(``trainer.v``, as ``specbp verilog --board`` does) for other tools. It checks
that the RTLIL holds the top module and the constraints the UART pins, and
exits with status 1 if not.

``--bitstream`` runs the real build instead (:func:`specbp_rtl.boards.build_board`,
YoWASP Yosys and nextpnr; several minutes: about 5 for the iCEBreaker, 14
for the ULX3S) and prints its report (fmax, utilisation, bitstream).

Run: ``python3 examples/build_board.py [--board icebreaker|ulx3s-85f] [--out DIR] [--bitstream]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from amaranth.back import verilog

from specbp_rtl.boards import BOARDS, BoardTop, BuildError, build_board, format_report, trainer_config
from specbp_rtl.config import parse_layers
from specbp_rtl.gateware import Trainer


def elaborate(board: str, lanes: int | None, layers: tuple[int, ...] | None, out: Path) -> int:
    """Write the board's build plan and trainer Verilog to ``out``; return the exit status."""
    spec = BOARDS[board]
    cfg = trainer_config(board, lanes, layers)
    platform = spec.make_platform()
    top = BoardTop(cfg, pll_mhz=spec.pll_mhz)
    plan = platform.build(top, name="top", do_build=False, **dict(spec.toolchain_opts))
    plan.extract(str(out))
    (out / "trainer.v").write_text(verilog.convert(Trainer(cfg), name="trainer"))

    rtlil_text = (out / "top.il").read_text()
    constraints = next((out / f"top.{ext}" for ext in ("pcf", "lpf") if (out / f"top.{ext}").exists()), None)
    problems = []
    if "module \\top" not in rtlil_text:
        problems.append("top.il has no module \\top")
    if constraints is None or "uart" not in constraints.read_text():
        problems.append("no constraint file naming the UART pins")
    if "module trainer" not in (out / "trainer.v").read_text():
        problems.append("trainer.v has no module trainer")
    if problems:
        print("MISMATCH: " + "; ".join(problems))
        return 1
    clock = f"{spec.pll_mhz:g} MHz from the PLL" if spec.pll_mhz else f"{spec.clock_mhz:g} MHz crystal"
    print(
        f"elaborated {board} top ({'-'.join(map(str, cfg.layers))}, {cfg.lanes} lanes per engine, "
        f"{spec.numerics} formats, {clock}) to {out}/top.il ({len(rtlil_text) // 1024} KiB RTLIL) "
        f"with {constraints.name}; trainer Verilog in {out}/trainer.v "
        f"({(out / 'trainer.v').stat().st_size // 1024} KiB)"
    )
    print("for the bitstream (Yosys, nextpnr: minutes), rerun with --bitstream")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--board", choices=sorted(BOARDS), default="icebreaker")
    parser.add_argument("--lanes", type=int, default=None, help="MAC lanes per engine (default: the board's)")
    parser.add_argument("--layers", type=parse_layers, default=None, help="e.g. 64,16,10 (default: the board's)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: build/example-BOARD)")
    parser.add_argument("--bitstream", action="store_true", help="run the full build (minutes) and report")
    args = parser.parse_args(argv)
    out = args.out or Path("build") / f"example-{args.board}"
    if not args.bitstream:
        return elaborate(args.board, args.lanes, args.layers, out)
    try:
        report = build_board(args.board, args.lanes, args.layers, out_dir=str(out))
    except BuildError as exc:
        print(f"build failed: {exc}")
        return 1
    print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
