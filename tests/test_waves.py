"""Waveforms people can open: a window of samples, and a GTKWave save file showing the signals worth seeing.

pysim traces only the samples of ``trace_samples`` (the simulation runs
untraced before and after, with bit-identical results); both backends write a
``.gtkw`` beside the waveform whose every signal exists in it, in the groups of
:data:`specbp_rtl.sim.waves.WAVES`.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
from test_trainer import random_set

from specbp_rtl.config import TrainConfig
from specbp_rtl.gateware.cycles import CycleModel
from specbp_rtl.gateware.layout import TrainerConfig
from specbp_rtl.sim.pysim import PERIOD_FS, PysimTrainer
from specbp_rtl.sim.waves import WAVES, gtkw_signals, vcd_variables
from specbp_rtl.steps import StepKind

LAYERS = (16, 8, 4)
LANES = 4
#: speculative, with hits and misses on these samples, an update every 2 samples
TRAIN = TrainConfig(layers=LAYERS, threshold=0.002, batch=2)
CFG = TrainerConfig(train=TRAIN, lanes=LANES)
X, Y = random_set(LAYERS[0], LAYERS[-1], 8)
#: two epochs of 8 samples: the window (5, 4) spans the epoch boundary
BATCHES = [(X, Y, False, True), (X, Y, False, True)]


def observed(hw: PysimTrainer) -> tuple:
    """Everything a run reports: step kinds, counters, weights after every batch."""
    snapshots = [[(w.tobytes(), b.tobytes()) for w, b in params] for params in hw.snapshots]
    return hw.kinds, hw.counters, hw.snapshot_counters, snapshots, hw.weights_sha256()


def timestamps(vcd: Path) -> list[int]:
    return [int(t) for t in re.findall(r"^#(\d+)$", vcd.read_text(), re.MULTILINE)]


def group_names(gtkw: Path) -> list[str]:
    """Names of the groups a save file opens (``-name`` after a ``@800200`` group-start flag)."""
    lines = gtkw.read_text().splitlines()
    return [lines[n + 1][1:] for n, line in enumerate(lines[:-1]) if line == "@800200"]


def check_gtkw_names_exist(gtkw: Path, vcd: Path) -> list[str]:
    """Every signal the save file shows is a variable of the VCD, with its width; returns the names."""
    declared = {".".join((*v.scope, v.name)): v.width for v in vcd_variables(vcd)}
    names = gtkw_signals(gtkw)
    assert names
    for name in names:
        m = re.fullmatch(r"(.*?)(?:\[(\d+):0\])?", name)
        assert m is not None
        base, top = m.group(1), m.group(2)
        assert base in declared, name
        assert declared[base] == (int(top) + 1 if top is not None else 1), name
    return names


@pytest.fixture(scope="module")
def untraced() -> tuple:
    hw = PysimTrainer(CFG)
    hw.run(BATCHES)
    assert hw.trace is None
    kinds = hw.kinds
    assert StepKind.HIT in kinds and StepKind.MISS in kinds, kinds  # the window sees every step kind's control path
    return observed(hw)


@pytest.fixture(scope="module")
def full(tmp_path_factory) -> PysimTrainer:
    """The whole run traced (the window covers every sample)."""
    hw = PysimTrainer(CFG, vcd=tmp_path_factory.mktemp("full") / "full.vcd", trace_samples=(0, 1000))
    hw.run(BATCHES)
    return hw


@pytest.fixture(scope="module")
def window(tmp_path_factory) -> PysimTrainer:
    hw = PysimTrainer(CFG, vcd=tmp_path_factory.mktemp("window") / "run.vcd", trace_samples=(5, 4))
    hw.run(BATCHES)
    return hw


def test_window_results_bit_identical(untraced: tuple, window: PysimTrainer, full: PysimTrainer) -> None:
    assert observed(window) == untraced
    assert observed(full) == untraced


def test_window_covers_only_its_samples(window: PysimTrainer, full: PysimTrainer) -> None:
    trace, whole = window.trace, full.trace
    assert trace is not None and whole is not None
    assert (trace.start, trace.samples) == (5, 4) and (whole.start, whole.samples) == (0, 16)
    assert trace.bytes == trace.vcd.stat().st_size
    # the window's cycles: from the start of sample 5 to the result of sample 8
    times = timestamps(trace.vcd)
    assert (times[-1] - times[0]) // PERIOD_FS == trace.cycles
    full_times = timestamps(whole.vcd)
    assert times[0] > full_times[0] and times[-1] < full_times[-1]
    # 4 of 16 samples: far less than the whole run (the header and the initial values come on top)
    assert trace.cycles < 0.4 * whole.cycles
    assert trace.bytes < 0.5 * whole.bytes
    # the first dump is the state at the start of sample 5: streaming its first pixel
    model = CycleModel(CFG)
    assert trace.cycles >= 4 * (min(model.hit_step, model.sequential_step) + 1)


def test_estimate_is_close(window: PysimTrainer, full: PysimTrainer) -> None:
    for hw in (window, full):
        trace = hw.trace
        assert trace is not None and trace.estimate is not None
        assert trace.estimate.samples == trace.samples
        assert 0.6 * trace.cycles <= trace.estimate.cycles <= 1.6 * trace.cycles
        assert 0.5 * trace.bytes <= trace.estimate.bytes <= 2 * trace.bytes
        assert trace.as_json()["estimated_bytes"] == trace.estimate.bytes


def test_pysim_gtkw_groups_and_names(window: PysimTrainer) -> None:
    trace = window.trace
    assert trace is not None and trace.gtkw == trace.vcd.with_suffix(".gtkw")
    assert group_names(trace.gtkw) == [group for group, _ in WAVES]
    names = check_gtkw_names_exist(trace.gtkw, trace.vcd)
    for signal_name in (
        "bench.top.sample__valid",
        "bench.top.sample__ready",
        "bench.top.result__valid",
        "bench.top.\\result__payload.kind",
        "bench.top.fsm_state",
        "bench.top.live",
        "bench.top.pending",
        "bench.top.fwd.busy",
        "bench.top.bwd.busy",
        "bench.top.ctr_hits[47:0]",
    ):
        assert signal_name in names, signal_name


def test_window_past_the_run_writes_nothing(tmp_path: Path, untraced: tuple) -> None:
    vcd = tmp_path / "none.vcd"
    hw = PysimTrainer(CFG, vcd=vcd, trace_samples=(100, 5))
    assert hw.estimate_trace(16).samples == 0 and hw.estimate_trace(16).bytes == 0
    hw.run(BATCHES)
    assert not vcd.exists()
    assert hw.trace is not None and hw.trace.samples == 0
    assert observed(hw) == untraced


def test_window_cut_short_by_ctrl_c(tmp_path: Path) -> None:
    """Ctrl-C inside the window: the run stops after the current sample, the VCD is complete up to there."""
    seen = []

    def progress(batch: int, total: int):
        def tick(n: int) -> None:
            seen.append(n)
            if len(seen) == 4:  # after sample 3, inside the window [2, 8)
                os.kill(os.getpid(), signal.SIGINT)

        return tick

    vcd = tmp_path / "cut.vcd"
    hw = PysimTrainer(CFG, vcd=vcd, trace_samples=(2, 6))
    hw.run(BATCHES, progress=progress)
    assert hw.interrupted and len(hw.kinds) == 4
    assert hw.trace is not None and (hw.trace.start, hw.trace.samples) == (2, 2)
    check_gtkw_names_exist(hw.trace.gtkw, vcd)
    assert vcd.read_text().rstrip().splitlines()[-1].startswith("#")  # closed at its final timestamp


def test_trace_samples_validated() -> None:
    with pytest.raises(ValueError, match="trace_samples"):
        PysimTrainer(CFG, vcd="x.vcd", trace_samples=(-1, 2))


def test_run_training_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``specbp train --backend pysim --vcd``: the estimate before the run, the file's size in the record."""
    from specbp_rtl.data import Dataset
    from specbp_rtl.sim.runner import run_training

    ds = Dataset("blobs", X, Y.astype(np.int64), X[:4], Y[:4].astype(np.int64))
    vcd = tmp_path / "rt.vcd"
    result = run_training("pysim", TRAIN, ds, 1, lanes=LANES, vcd=str(vcd), trace_samples=(1, 2))
    trace = result.as_json()["trace"]
    assert trace["samples"] == [1, 2] and trace["bytes"] == vcd.stat().st_size > 0
    assert trace["gtkw"] == str(vcd.with_suffix(".gtkw"))
    err = capsys.readouterr().err
    assert "samples 1..2 of 8" in err and "MB (estimate)" in err


@pytest.mark.slow
def test_rtl_gtkw_names_exist(tmp_path: Path) -> None:
    """The rtl backend's .gtkw (a Verilator build with tracing, ~30 s): every signal it shows is in the VCD."""
    from specbp_rtl.model.golden import FixedEngine
    from specbp_rtl.sim.verilator import VerilatorTrainer

    vcd = tmp_path / "rtl.vcd"
    with VerilatorTrainer(CFG, vcd=vcd, trace_samples=(1, 2), cache_dir=tmp_path / "cache") as hw:
        hw.load_weights(FixedEngine(TRAIN).params)
        hw.configure(TRAIN)
        hw.train(X, Y)
    gtkw = vcd.with_suffix(".gtkw")
    assert hw.trace_written and gtkw.is_file()
    assert group_names(gtkw) == [group for group, _ in WAVES]
    names = check_gtkw_names_exist(gtkw, vcd)
    for signal_name in (
        "trainer.trainer.sample__valid",
        "trainer.trainer.result__payload.kind[1:0]",
        "trainer.trainer.fsm_state[2:0]",
        "trainer.trainer.live",
        "trainer.trainer.fwd.busy",
        "trainer.trainer.bwd.busy",
        "trainer.trainer.ctr_hits[47:0]",
    ):
        assert signal_name in names, signal_name
    # the names an FST's save file gets (from the Amaranth design: an FST header is not read) are in the VCD too
    from amaranth.hdl import Fragment

    from specbp_rtl.gateware.trainer import Trainer
    from specbp_rtl.sim.verilator import canonical_config
    from specbp_rtl.sim.waves import RTL_SCOPE, design_variables, gtkw_traces

    from_design = [
        name
        for _, group in gtkw_traces(
            design_variables(Fragment.get(Trainer(canonical_config(CFG)), None).prepare()), RTL_SCOPE
        )
        for name, _ in group
    ]
    assert len(from_design) > 40 and set(from_design) <= set(names)
