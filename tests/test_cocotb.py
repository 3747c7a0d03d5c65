# amaranth: UnusedElaboratable=no
"""The generated Verilog in other simulators: cocotb (Icarus, Verilator) and plain Icarus in both language modes.

* ``examples/cocotb/run.py`` as a subprocess: the Comparator on Icarus and
  Verilator, the small Trainer on Icarus (the Trainer in Verilator is the
  ``rtl`` backend's business, tests/test_rtl_backend.py; ``run.py`` runs it
  too, with a 1-minute build);
* ``iverilog`` (default mode, Verilog 2005) and ``iverilog -g2012`` on the
  Verilog of the Comparator and of the small Trainer with a generated Verilog
  testbench, run by ``vvp``, its output checked against the models. Under
  ``-g2012`` the Verilog goes through :func:`specbp_rtl.testing.icarus_g2012_compatible`
  (without it the Trainer never produces a result there).

The tools are required, not optional: CI installs iverilog (``.ci/run``), and
a missing tool fails these tests.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog

from specbp_rtl.config import TrainConfig
from specbp_rtl.gateware import Comparator, Metric, Trainer, result_layout, sample_layout
from specbp_rtl.model import FixedEngine, SpeculativeTrainer
from specbp_rtl.numerics import HW_METRICS, Numerics
from specbp_rtl.steps import StepKind
from specbp_rtl.testing import icarus_g2012_compatible

ROOT = Path(__file__).resolve().parents[1]
COCOTB_DIR = ROOT / "examples" / "cocotb"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found on PATH (Debian: apt-get install iverilog; .ci/run installs it)")
    return path


@pytest.mark.slow
def test_cocotb_runner(tmp_path: Path) -> None:
    """cocotb 2 (Python runner): Comparator on Icarus and Verilator, the small Trainer on Icarus."""
    need("iverilog")
    import cocotb_tools.runner  # noqa: F401  (a test extra: pip install -e '.[test]'; missing, this test fails)

    for args in (
        ["--design", "comparator", "--sim", "icarus", "verilator"],
        ["--design", "trainer", "--sim", "icarus"],
    ):
        out = subprocess.run(
            [sys.executable, str(COCOTB_DIR / "run.py"), *args, "--build", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        for sim in args[args.index("--sim") + 1 :]:
            assert re.search(rf"^{args[1]} on {sim}: PASS \(1/1 tests", out.stdout, re.M), out.stdout


# -- plain Icarus, both modes -----------------------------------------------------------------------------------


def run_icarus(tmp_path: Path, design_v: str, top: str, testbench: str, mode: str) -> str:
    """Compile the design and a testbench with ``iverilog`` in ``mode`` and run ``vvp``; return its output."""
    flags = ["-g2012"] if mode == "g2012" else []
    if mode == "g2012":
        design_v = icarus_g2012_compatible(design_v)
    (tmp_path / f"{top}.v").write_text(design_v)
    (tmp_path / "tb.v").write_text(testbench)
    compiled = subprocess.run(
        [
            need("iverilog"),
            *flags,
            "-o",
            str(tmp_path / "sim.vvp"),
            "-s",
            "tb",
            str(tmp_path / f"{top}.v"),
            str(tmp_path / "tb.v"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert compiled.returncode == 0, compiled.stderr
    ran = subprocess.run([need("vvp"), "-n", str(tmp_path / "sim.vvp")], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "TIMEOUT" not in ran.stdout, ran.stdout
    return ran.stdout


def verilog_lines(name: str, values: list[int], width: int) -> str:
    return "\n".join(f"    {name}[{i}] = {width}'d{v};" for i, v in enumerate(values))


@pytest.mark.parametrize("mode", ["default", "g2012"])
def test_icarus_comparator(tmp_path: Path, mode: str) -> None:
    nx, n, rows = Numerics(), 10, 24
    dut = Comparator(n, nx)
    rng = np.random.default_rng(3)
    stored = rng.integers(0, nx.prob.max + 1, size=(rows, n))
    current = np.where(
        rng.random((rows, 1)) < 0.5,
        np.clip(stored + rng.integers(-30, 31, size=(rows, n)), 0, nx.prob.max),
        rng.integers(0, nx.prob.max + 1, (rows, n)),
    )
    plans = [
        nx.plan(TrainConfig(layers=(4, 3, n), metric=HW_METRICS[r % 3], threshold=[0.0005, 0.005, 0.05][r % 3]))
        for r in range(rows)
    ]
    beats = [
        dut.in_layout.const({"stored": int(stored[r, k]), "current": int(current[r, k])}).as_bits()
        for r in range(rows)
        for k in range(n)
    ]
    iw, ow = dut.in_layout.size, dut.out_layout.size
    testbench = f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, ivalid = 0, oready = 1;
  reg [{iw - 1}:0] ipayload = 0; reg [31:0] threshold = 0; reg [1:0] metric = 0;
  wire iready, ovalid; wire [{ow - 1}:0] opayload;
  reg [{iw - 1}:0] beats [0:{len(beats) - 1}]; reg [31:0] thr [0:{rows - 1}]; reg [1:0] met [0:{rows - 1}];
  integer r, k, got = 0;
  comparator dut(.clk(clk), .rst(rst), .threshold(threshold), .metric(metric), .i__valid(ivalid),
                 .i__payload(ipayload), .i__ready(iready), .o__valid(ovalid), .o__payload(opayload), .o__ready(oready));
  always #5 clk = ~clk;
  always @(posedge clk) if (ovalid && oready) begin $display("result %0d %0d", got, opayload); got = got + 1; end
  initial begin
{verilog_lines("beats", beats, iw)}
{verilog_lines("thr", [p.threshold_int for p in plans], 32)}
{verilog_lines("met", [Metric.from_name(p.config.metric).value for p in plans], 2)}
    #25 rst = 0;
    for (r = 0; r < {rows}; r = r + 1) for (k = 0; k < {n}; k = k + 1) begin
      @(negedge clk); threshold = thr[r]; metric = met[r]; ivalid = 1; ipayload = beats[r * {n} + k];
      @(posedge clk); while (!iready) @(posedge clk);
    end
    @(negedge clk); ivalid = 0;
    while (got < {rows}) @(posedge clk);
    $finish;
  end
  initial begin #100000 $display("TIMEOUT"); $finish; end
endmodule
"""
    text = run_icarus(tmp_path, verilog.convert(dut, name="comparator"), "comparator", testbench, mode)
    results = [int(v) for v in re.findall(r"^result \d+ (\d+)$", text, re.M)]
    assert len(results) == rows, text
    for r, word in enumerate(results):
        beat = dut.out_layout.from_bits(word)
        hit, dist = Comparator.model(stored[r : r + 1], current[r : r + 1], plans[r])
        assert (int(beat.hit), int(beat.distance)) == (int(hit[0]), int(dist[0])), f"row {r}"
    assert 0 < sum(dut.out_layout.from_bits(w).hit for w in results) < rows


@pytest.mark.parametrize("mode", ["default", "g2012"])
def test_icarus_trainer(tmp_path: Path, mode: str) -> None:
    sys.path.insert(0, str(COCOTB_DIR))
    try:
        from common import trainer_config, trainer_samples, trainer_settings
    finally:
        sys.path.remove(str(COCOTB_DIR))
    settings = trainer_settings()
    cfg = trainer_config(settings)
    x, y = trainer_samples(settings)
    s_layout, r_layout = sample_layout(cfg), result_layout(cfg)
    beats = [
        s_layout.const(
            {"pixel": int(p), "label": int(y[n]), "infer": 0, "epoch_start": int(n == 0 and j == 0)}
        ).as_bits()
        for n in range(len(y))
        for j, p in enumerate(x[n])
    ]
    pixels, sw, rw = x.shape[1], s_layout.size, r_layout.size
    testbench = f"""`timescale 1ns/1ps
module tb;
  reg clk = 0, rst = 1, svalid = 0, rready = 0;
  reg [{sw - 1}:0] spayload = 0;
  wire sready, rvalid, busy, idle, hrvalid; wire [{rw - 1}:0] rpayload; wire [31:0] hrdata;
  reg [{sw - 1}:0] beats [0:{len(beats) - 1}];
  integer n, j;
  trainer dut(.clk(clk), .rst(rst), .sample__valid(svalid), .sample__payload(spayload), .sample__ready(sready),
              .result__ready(rready), .result__valid(rvalid), .result__payload(rpayload), .busy(busy), .idle(idle),
              .host__addr(24'd0), .host__wdata(32'd0), .host__we(1'b0), .host__re(1'b0), .host__rdata(hrdata),
              .host__rvalid(hrvalid));
  always #5 clk = ~clk;
  initial begin
{verilog_lines("beats", beats, sw)}
    #25 rst = 0;
    for (n = 0; n < {len(y)}; n = n + 1) begin
      for (j = 0; j < {pixels}; j = j + 1) begin
        @(negedge clk); svalid = 1; spayload = beats[n * {pixels} + j];
        @(posedge clk); while (!sready) @(posedge clk);
      end
      @(negedge clk); svalid = 0; rready = 1;
      @(posedge clk); while (!rvalid) @(posedge clk);
      $display("result %0d %0d", n, rpayload);
      @(negedge clk); rready = 0;
    end
    $finish;
  end
  initial begin #500000 $display("TIMEOUT"); $finish; end
endmodule
"""
    text = run_icarus(tmp_path, verilog.convert(Trainer(cfg), name="trainer"), "trainer", testbench, mode)
    kinds = [r_layout.from_bits(int(v)).kind for v in re.findall(r"^result \d+ (\d+)$", text, re.M)]
    golden = SpeculativeTrainer(FixedEngine(cfg.train, cfg.numerics), log=[])
    golden.train_epoch(x, y)
    assert kinds == golden.log, text
    assert {StepKind.HIT, StepKind.MISS, StepKind.FIRST_SIGHTING} <= set(kinds)
