# amaranth: UnusedElaboratable=no
"""The examples/ scripts run as a user runs them, and the public API they rely on.

Each example runs as a subprocess and must exit 0 and print its check line.
The rest of this file tests what the examples stand on: the package import
surface (every exported name resolves, in any import order) and the
:mod:`specbp_rtl.testing` helpers (they must be able to fail).
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from specbp_rtl.gateware import Softmax
from specbp_rtl.numerics import Numerics
from specbp_rtl.testing import (
    StreamSink,
    assert_matches_model,
    first_difference,
    icarus_g2012_compatible,
    run_stream,
    stream_monitor,
    stream_source,
    watchdog,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(script: str, *args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or ROOT,
    )


# -- the examples ---------------------------------------------------------------------------------------------------


def test_mac_softmax_in_my_design() -> None:
    out = run_example("mac_softmax_in_my_design.py", "--samples", "12")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(
        r"checked 12 samples x 10 classes .* match MacArray\.model \+ Softmax\.model bit for bit", out.stdout
    ), out.stdout


def test_mac_softmax_example_fails_on_a_mismatch() -> None:
    out = run_example("mac_softmax_in_my_design.py", "--samples", "4", "--inject-error")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "MISMATCH: probabilities: 1 of 40 values differ from the model; first at index (2, 3)" in out.stdout


def test_train_from_python() -> None:
    out = run_example("train_from_python.py", "--epochs", "2", "--check-rtl", "16")
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"^epoch 2: accuracy \d+\.\d\d %$", out.stdout, re.M), out.stdout
    assert re.search(r"^weights_sha256 [0-9a-f]{64}$", out.stdout, re.M), out.stdout
    assert "checked: run_training's weights equal the golden model's, driven directly" in out.stdout
    assert "checked: the Trainer RTL (pysim, 4 lanes) trained 16 samples to the fixed model's weights" in out.stdout


def test_train_from_python_fails_below_the_accuracy_floor() -> None:
    out = run_example("train_from_python.py", "--epochs", "1", "--min-accuracy", "1.01")
    assert out.returncode == 1, out.stdout + out.stderr
    assert "MISMATCH: final accuracy" in out.stdout


def test_build_board_elaborates(tmp_path: Path) -> None:
    out = run_example("build_board.py", "--board", "icebreaker", "--out", str(tmp_path / "ice"), cwd=tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "elaborated icebreaker top (16-4-2, 4 lanes per engine, lean formats, 12 MHz crystal)" in out.stdout
    assert "module \\top" in (tmp_path / "ice" / "top.il").read_text()
    assert "uart" in (tmp_path / "ice" / "top.pcf").read_text()
    assert (tmp_path / "ice" / "trainer.v").read_text().count("module trainer(") == 1


# -- the import surface ---------------------------------------------------------------------------------------------

PACKAGES = ["specbp_rtl.gateware", "specbp_rtl.model", "specbp_rtl.data", "specbp_rtl.sim", "specbp_rtl.boards"]


@pytest.mark.parametrize(
    "first",
    [*PACKAGES, "specbp_rtl.boards.link", "specbp_rtl.sim.pysim", "specbp_rtl.gateware.util", "specbp_rtl.testing"],
)
def test_exports_resolve_in_any_import_order(first: str) -> None:
    """A fresh interpreter imports ``first``, then resolves every exported name of every package."""
    code = (
        "import importlib\n"
        f"importlib.import_module({first!r})\n"
        f"for pkg in {PACKAGES!r}:\n"
        "    module = importlib.import_module(pkg)\n"
        "    missing = [n for n in module.__all__ if getattr(module, n, None) is None]\n"
        "    assert not missing, (pkg, missing)\n"
        "from specbp_rtl.gateware import MacArray, Softmax, Comparator, Trainer\n"
    )
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_lazy_packages_import_nothing_heavy() -> None:
    code = (
        "import sys, specbp_rtl.sim, specbp_rtl.boards\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('specbp_rtl.', 'amaranth', 'serial')))\n"
        "assert loaded == ['specbp_rtl.boards', 'specbp_rtl.lazy', 'specbp_rtl.sim'], loaded\n"
        "from specbp_rtl.boards import BoardTrainer\n"
        "assert 'specbp_rtl.boards.host' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("package", ["specbp_rtl.sim", "specbp_rtl.boards"])
def test_lazy_package_unknown_name(package: str) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match="has no attribute 'nonexistent'"):
        module.nonexistent  # noqa: B018
    assert set(module.__all__) <= set(dir(module))


# -- specbp_rtl.testing ---------------------------------------------------------------------------------------------


def test_assert_matches_model_names_the_first_difference() -> None:
    assert_matches_model([[1, 2], [3, 4]], np.array([[1, 2], [3, 4]]))
    with pytest.raises(
        AssertionError,
        match=re.escape("logits: 2 of 4 values differ from the model; first at index (0, 1): got 5, model 2"),
    ):
        assert_matches_model([[1, 5], [3, 0]], [[1, 2], [3, 4]], what="logits")
    with pytest.raises(
        AssertionError, match=re.escape("p: 1 of 3 values differ from the model; first at index 2: got 9, model 3")
    ):
        assert_matches_model([1, 2, 9], [1, 2, 3], what="p")
    with pytest.raises(AssertionError, match=re.escape("output: got shape (2,), model (3,)")):
        assert_matches_model([1, 2], [1, 2, 3])
    assert first_difference([1, 2, 3], [1, 2, 3]) is None
    assert first_difference([[0, 0], [0, 1]], [[0, 0], [0, 0]]) == (1, 1)


class _Stuck(wiring.Component):
    """Accepts every beat and never produces one."""

    def __init__(self) -> None:
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform) -> Module:
        m = Module()
        beats = Signal(8)  # counts, so that the design has a sync domain for the testbenches' clock
        m.d.comb += self.i.ready.eq(1)
        with m.If(self.i.valid):
            m.d.sync += beats.eq(beats + 1)
        return m


class _Glitchy(wiring.Component):
    """An output stream that drops ``valid`` while stalled (breaks the stream rule)."""

    def __init__(self) -> None:
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform) -> Module:
        m = Module()
        toggle = Signal()
        m.d.sync += toggle.eq(~toggle)
        m.d.comb += [self.i.ready.eq(1), self.o.valid.eq(toggle), self.o.payload.eq(7)]
        return m


def test_watchdog_fails_with_progress() -> None:
    dut = _Stuck()
    sink = StreamSink(dut.o, count=3, seed=None)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(dut.i, [1, 2, 3], seed=4))
    sim.add_testbench(sink.testbench)
    sim.add_testbench(watchdog(50, "the stuck unit", sink.progress), background=True)
    with pytest.raises(
        AssertionError, match=re.escape("watchdog: the stuck unit not finished after 50 cycles (0 of 3 beats received)")
    ):
        sim.run()


def test_run_stream_times_out() -> None:
    with pytest.raises(AssertionError, match=r"timeout: 0 of 2 output beats after \d+ cycles"):
        run_stream(_Stuck(), [1, 2], 2, lambda p: [p])


def test_stream_monitor_catches_a_dropped_valid() -> None:
    dut = _Glitchy()
    errors: list[str] = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_monitor(dut.o, errors, "o"), background=True)

    async def idle(ctx) -> None:  # o.ready stays low: every valid beat is stalled
        for _ in range(10):
            await ctx.tick()

    sim.add_testbench(idle)
    sim.run()
    assert errors and errors[0].startswith("o: payload/valid changed while stalled")


def test_source_and_sink_with_gaps_match_the_model() -> None:
    """The docstring example of :mod:`specbp_rtl.testing`, with gaps and back-pressure on both sides."""
    nx = Numerics()
    dut = Softmax(10, nx)
    logits = np.random.default_rng(5).integers(-3000, 3000, size=(4, 10))
    sink = StreamSink(dut.o, count=logits.size, seed=2, most=6)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(dut.i, [int(z) for z in logits.reshape(-1)], seed=1, most=6))
    sim.add_testbench(sink.testbench)
    sim.add_testbench(watchdog(4000, "softmax", sink.progress), background=True)
    sim.run()
    assert_matches_model(sink.rows().reshape(logits.shape), Softmax.model(logits, nx), what="probabilities")


def test_icarus_g2012_compatible_moves_only_the_trigger_initialiser() -> None:
    text = (
        "module m(a);\n  reg \\$auto$verilog_backend.cc:2355:dump_module$1  = 0;\n  reg r = 0;\n"
        "  always @* begin\n    if (\\$auto$verilog_backend.cc:2355:dump_module$1 ) begin end\n  end\nendmodule\n"
    )
    fixed = icarus_g2012_compatible(text)
    assert "  reg \\$auto$verilog_backend.cc:2355:dump_module$1 ;\n" in fixed
    assert "  initial #0 \\$auto$verilog_backend.cc:2355:dump_module$1  = 1'h0;\n" in fixed
    assert "  reg r = 0;\n" in fixed  # other initialisers are the design's: untouched
    assert (
        fixed.replace("  initial #0 \\$auto$verilog_backend.cc:2355:dump_module$1  = 1'h0;\n", "").replace(
            "dump_module$1 ;", "dump_module$1  = 0;"
        )
        == text
    )
