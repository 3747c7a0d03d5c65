"""The ``rtl`` backend: the Trainer's Verilog in Verilator vs the golden model and vs Amaranth's simulator.

Weights (``weights_sha256``), the step kind of every training sample, the step
counters and the hardware's own inference must equal
:class:`~specbp_rtl.model.golden.FixedEngine` driven by
:class:`~specbp_rtl.model.speculation.SpeculativeTrainer`; every cycle counter
must equal :class:`~specbp_rtl.sim.pysim.PysimTrainer`'s on the same samples,
and the training cycles :class:`~specbp_rtl.gateware.cycles.CycleModel`'s formula.

Each design is built once per module into a temporary cache (the fixtures);
the threshold, metric and seed are run-time registers, so one build serves
every parametrisation.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np
import pytest
from test_trainer import random_set

import specbp_rtl.sim.verilator as rtl
from specbp_rtl.config import TrainConfig
from specbp_rtl.data import Dataset, load_dataset
from specbp_rtl.gateware.cycles import CycleModel
from specbp_rtl.gateware.layout import TrainerConfig
from specbp_rtl.gateware.microarch import Microarchitecture
from specbp_rtl.model.golden import FixedEngine
from specbp_rtl.model.speculation import STEP_COUNTERS, SpeculativeTrainer
from specbp_rtl.sim.runner import run_training
from specbp_rtl.sim.verilator import BuildInfo, ToolError, VerilatorTrainer, build_library, run_rtl
from specbp_rtl.steps import StepKind

MNIST = (784, 16, 16, 10)
DIGITS = (64, 16, 16, 10)
TINY = (16, 8, 8, 4)


def golden(train: TrainConfig, epochs: list[tuple[np.ndarray, np.ndarray]]):
    eng = FixedEngine(train)
    tr = SpeculativeTrainer(eng, log=[])
    for x, y in epochs:
        tr.train_epoch(x, y)
    return eng, tr


def hardware(train: TrainConfig, cache: Path, lanes: int = 16, **kw) -> VerilatorTrainer:
    """A built model with the seed's weights and the registers of ``train`` programmed."""
    hw = VerilatorTrainer(TrainerConfig(train=train, lanes=lanes), cache_dir=cache, **kw).build()
    hw.load_weights(FixedEngine(train).params)
    hw.configure(train)
    return hw


def check(
    train: TrainConfig, cache: Path, epochs: list[tuple[np.ndarray, np.ndarray]], test_x: np.ndarray, lanes: int = 16
) -> VerilatorTrainer:
    """Train on the hardware and the golden model; everything observable must be identical."""
    eng, tr = golden(train, epochs)
    hw = hardware(train, cache, lanes)
    for x, y in epochs:
        hw.train(x, y)
    assert hw.kinds == tr.log
    c = hw.counters()
    g = tr.counters
    assert {k: c[k] for k in STEP_COUNTERS} == g.as_dict()
    assert hw.weights_sha256() == eng.weights_sha256()
    # the training streams took exactly the cycles of the trainer's closed-form schedule
    model = CycleModel(hw.cfg)
    assert hw.train_cycles == model.run_total(g.as_dict(), train.pipeline)
    np.testing.assert_array_equal(hw.infer(test_x), eng.predict(test_x))
    assert hw.counters()["inferences"] == len(test_x)
    return hw


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One build cache for the whole module."""
    return tmp_path_factory.mktemp("verilator-cache")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def digits_build(cache: Path) -> BuildInfo:
    """64-16-16-10, 16 lanes, built once."""
    return build_library(TrainerConfig(train=TrainConfig(layers=DIGITS), lanes=16), cache_dir=cache)


@pytest.fixture(scope="module")
def mnist_build(cache: Path) -> BuildInfo:
    """784-16-16-10, 16 lanes, built once."""
    return build_library(TrainerConfig(train=TrainConfig(layers=MNIST), lanes=16), cache_dir=cache)


# -- bit-exact against the golden model -------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("threshold", "metric"),
    [
        (0.0, "mean-abs"),  # baseline: every step sequential
        (0.25, "mean-abs"),  # the paper's threshold: every step after a first sighting hits
        (0.0005, "mean-abs"),  # hits and misses
        (0.002, "max-abs"),  # hits and misses
        (0.005, "l1"),  # hits and misses
    ],
)
def test_digits_matches_golden(
    digits_build: BuildInfo, cache: Path, digits: Dataset, threshold: float, metric: str
) -> None:
    """64-16-16-10 over two epochs (60 then 25 samples): weights, kinds, counters and inference identical."""
    x, y = digits.train_x[:60], digits.train_y[:60]
    train = TrainConfig(layers=DIGITS, threshold=threshold, metric=metric, seed=3)
    hw = check(train, cache, [(x, y), (x[:25], y[:25])], digits.test_x[:100])
    assert hw.cache_hit and hw.info is not None and hw.info.library == digits_build.library
    if threshold not in (0.0, 0.25):
        assert hw.counters()["hits"] > 0 and hw.counters()["misses"] > 0


@pytest.mark.slow
def test_digits_pipelined_matches_golden(digits_build: BuildInfo, cache: Path, digits: Dataset) -> None:
    """The pipelined equal-multiplier baseline on the same build: the sequential weights, its own cycle model."""
    x, y = digits.train_x[:60], digits.train_y[:60]
    epochs = [(x, y), (x[:25], y[:25])]
    train = TrainConfig(layers=DIGITS, seed=3, pipeline=True)
    hw = check(train, cache, epochs, digits.test_x[:100])
    assert hw.cache_hit
    sequential, _ = golden(dataclasses.replace(train, pipeline=False), epochs)
    assert hw.weights_sha256() == sequential.weights_sha256()
    c = hw.counters()
    assert c["overlapped"] > 0 and c["sequential"] == 85


@pytest.mark.slow
@pytest.mark.parametrize("threshold", [0.0, 0.25])
def test_mnist_matches_golden(mnist_build: BuildInfo, cache: Path, mnist_dir: Path, threshold: float) -> None:
    """784-16-16-10, 16 lanes, 1,000 MNIST samples then a 200-sample second epoch; 200 inferences."""
    ds = load_dataset("mnist", mnist_dir, 8000, 2000)
    x, y = ds.train_x, ds.train_y
    hw = check(
        TrainConfig(layers=MNIST, threshold=threshold),
        cache,
        [(x[:1000], y[:1000]), (x[:200], y[:200])],
        ds.test_x[:200],
    )
    c = hw.counters()
    if threshold:
        assert c["hits"] > 1000 and c["first_sightings"] == 10
    else:
        assert c["sequential"] == 1200


@pytest.mark.slow
def test_cycle_counts_match_pysim(digits_build: BuildInfo, cache: Path, digits: Dataset) -> None:
    """Every performance counter, cycles included, equals the Amaranth simulator's on 20 samples."""
    from specbp_rtl.sim.pysim import PysimTrainer

    x, y = digits.train_x[:20], digits.train_y[:20]
    train = TrainConfig(layers=DIGITS, threshold=0.0005)
    sim = PysimTrainer(TrainerConfig(train=train, lanes=16))
    sim.run([(x, y, False, True)])
    hw = hardware(train, cache)
    hw.train(x, y)
    assert StepKind.HIT in hw.kinds and StepKind.MISS in hw.kinds
    assert hw.kinds == sim.kinds
    assert {**hw.counters(), "cycles": hw.train_cycles} == sim.counters
    assert hw.weights_sha256() == sim.weights_sha256()


# -- the backend record ------------------------------------------------------------------


@pytest.mark.slow
def test_run_rtl_record(digits_build: BuildInfo, cache: Path, digits: Dataset) -> None:
    """run_rtl's record agrees with the fixed backend's; per-epoch accuracy comes from hardware inference."""
    ds = Dataset("digits", digits.train_x[:60], digits.train_y[:60], digits.test_x[:120], digits.test_y[:120])
    train = TrainConfig(layers=DIGITS, threshold=0.0005, seed=2)
    calls: list[tuple[int, int]] = []
    ticks: list[int] = []

    def progress(epoch: int, total: int):
        calls.append((epoch, total))
        return ticks.append

    r = run_rtl(train, ds, 2, progress=progress, cache_dir=str(cache)).as_json()
    f = run_training("fixed", train, ds, 2).as_json()
    for name in (
        "accuracy_per_epoch",
        "steps",
        "first_sightings",
        "hits",
        "misses",
        "updates",
        "hit_rate",
        "weights_sha256",
        "samples_trained",
    ):
        assert r[name] == f[name], name
    assert r["backend"] == "rtl" and r["lanes"] == 16 and r["cache_hit"] is True
    assert r["hits"] > 0 and r["misses"] > 0
    assert r["sim_cycles_per_second"] > 0 and r["build_seconds"] >= 0
    assert r["cycles"] == r["counters"]["cycles"] and r["cycles_per_sample"] > 0
    assert r["cycles_per_step"]["hit"] and r["cycles_per_step"]["miss"] and r["update_cycles"] > 0
    assert calls == [(0, 60), (1, 60)] and sum(ticks) == 120
    eng, _ = golden(train, [(ds.train_x, ds.train_y)])
    assert r["weights_sha256_per_epoch"][0] == eng.weights_sha256()
    assert r["weights_sha256_per_epoch"][1] == r["weights_sha256"]


@pytest.mark.slow
def test_run_rtl_compact_numerics(cache: Path, digits: Dataset) -> None:
    """``numerics="compact"`` (the iCEBreaker's formats) in Verilator: the fixed model's weights in the same formats."""
    ds = Dataset("digits", digits.train_x[:40], digits.train_y[:40], digits.test_x[:60], digits.test_y[:60])
    train = TrainConfig(layers=(64, 16, 10), threshold=0.002)
    r = run_rtl(train, ds, 1, lanes=4, cache_dir=str(cache), numerics="compact").as_json()
    f = run_training("fixed", train, ds, 1, numerics="compact").as_json()
    for name in ("accuracy_per_epoch", "steps", "first_sightings", "hits", "misses", "weights_sha256", "numerics"):
        assert r[name] == f[name], name
    assert r["numerics"] == "compact" and r["hits"] > 0 and r["misses"] > 0
    assert f["weights_sha256"] != run_training("fixed", train, ds, 1).as_json()["weights_sha256"]


def test_run_rtl_rejects_mismatched_dataset(digits: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="layers: the first layer has 784 inputs"):
        run_rtl(TrainConfig(layers=MNIST), digits, 1, cache_dir=str(tmp_path))


# -- cache -------------------------------------------------------------------------------


@pytest.mark.slow
def test_cache_hit_on_second_build(digits_build: BuildInfo, cache: Path) -> None:
    """Same design, other threshold/metric/seed: the cached library, no elaboration, no build."""
    again = build_library(
        TrainerConfig(train=TrainConfig(layers=DIGITS, threshold=0.1, metric="max-abs", seed=9), lanes=16),
        cache_dir=cache,
    )
    assert again.cache_hit and again.key == digits_build.key and again.library == digits_build.library
    assert again.seconds < 5
    build_dir = again.library.parent
    assert build_dir == cache / again.key
    assert {p.name for p in build_dir.iterdir()} >= {"libspecbp_trainer.so", "build.log", "meta.json", "trainer.v"}
    assert not [p for p in cache.iterdir() if p.name.startswith(".build-")]


def test_canonical_config_ignores_runtime_registers() -> None:
    a = TrainerConfig(train=TrainConfig(layers=DIGITS, threshold=0.25, metric="l1", seed=5), lanes=8)
    b = TrainerConfig(train=TrainConfig(layers=DIGITS), lanes=8)
    assert rtl.canonical_config(a) == rtl.canonical_config(b)
    assert rtl.canonical_config(a).train.seed == 0 and rtl.canonical_config(a).train.threshold == 0
    c = TrainerConfig(train=TrainConfig(layers=DIGITS, batch=10), lanes=8)
    assert rtl.canonical_config(c) != rtl.canonical_config(b)
    # elaboration options are kept (the iCEBreaker's memory delay lines and counter width)
    arch = Microarchitecture(delay_ram_min=3, counter_width=32)
    d = TrainerConfig(train=TrainConfig(layers=DIGITS), lanes=8, arch=arch)
    assert rtl.canonical_config(d).arch == arch


def test_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPECBP_CACHE", str(tmp_path / "env"))
    assert rtl.cache_root() == tmp_path / "env"
    assert rtl.cache_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("SPECBP_CACHE")
    assert rtl.cache_root() == Path.home() / ".cache" / "specbp" / "verilator"


# -- waveforms ------------------------------------------------------------------------------


@pytest.mark.slow
def test_vcd_trace_window(cache: Path, tmp_path: Path) -> None:
    """16-8-8-4 on 4 lanes (two passes per hidden layer), traced build (a separate cache entry):
    the VCD covers samples [2, 5) and the run stays bit-exact, with hits and misses."""
    x, y = random_set(16, 4, 40)
    train = TrainConfig(layers=TINY, threshold=0.002, batch=5)
    vcd = tmp_path / "wave.vcd"
    hw = hardware(train, cache, lanes=4, vcd=vcd, trace_samples=(2, 3))
    assert hw.info is not None and hw.info.trace == "vcd"
    hw.train(x[:2], y[:2])
    first = hw.cycles
    hw.train(x[2:], y[2:], epoch_start=False)
    last = hw.cycles
    eng, tr = golden(train, [(x, y)])
    assert hw.kinds == tr.log and StepKind.HIT in tr.log and StepKind.MISS in tr.log
    assert hw.weights_sha256() == eng.weights_sha256()
    hw.close()
    text = vcd.read_text()
    assert "$timescale 1ns $end" in text and "sample__valid" in text
    times = [int(t) for t in re.findall(r"^#(\d+)$", text, re.MULTILINE)]
    assert times[0] == 10 * first
    assert 10 * first < times[-1] < 10 * last


def test_trace_arguments() -> None:
    cfg = TrainerConfig(train=TrainConfig(layers=TINY), lanes=4)
    with pytest.raises(ValueError, match="vcd or fst"):
        VerilatorTrainer(cfg, vcd="a.vcd", fst="a.fst")
    with pytest.raises(ValueError, match="trace_samples"):
        VerilatorTrainer(cfg, vcd="a.vcd", trace_samples=(-1, 2))


# -- tool errors ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory) -> Path:
    """A cache where the tiny design is elaborated but never built."""
    path = tmp_path_factory.mktemp("no-build-cache")
    rtl.elaborate(TrainerConfig(train=TrainConfig(layers=TINY), lanes=4), path)
    return path


TOOLS = ("perl", "make", "g++")


@pytest.mark.parametrize("missing", TOOLS)
def test_missing_tool_is_one_line(
    missing: str, tiny_cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PATH holds every build tool but one: a one-line ToolError naming it, before anything runs."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = rtl.shutil.which(tool)
        if tool != missing and found:
            os.symlink(found, bin_dir / tool)
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(ToolError) as info:
        build_library(TrainerConfig(train=TrainConfig(layers=TINY), lanes=4), cache_dir=tiny_cache)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{missing} not found on PATH")
    assert not [p for p in tiny_cache.iterdir() if p.name.startswith(".build-")]


def test_fst_without_lz4_is_one_line(tiny_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rtl, "_has_header", lambda cxx, header: False)
    with pytest.raises(ToolError, match=r"FST tracing needs the lz4 development files") as info:
        build_library(TrainerConfig(train=TrainConfig(layers=TINY), lanes=4), trace="fst", cache_dir=tiny_cache)
    assert "\n" not in str(info.value)


def test_failed_build_names_its_log(tiny_cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Verilator failure (here: an unknown option) is one line with the path of the kept log."""
    for tool in TOOLS:
        if rtl.shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    monkeypatch.setattr(rtl, "VERILATOR_FLAGS", (*rtl.VERILATOR_FLAGS, "--no-such-option"))
    with pytest.raises(ToolError) as info:
        build_library(TrainerConfig(train=TrainConfig(layers=TINY), lanes=4), cache_dir=tiny_cache)
    message = str(info.value)
    assert "\n" not in message and message.startswith("Verilator build failed (verilator exit status")
    log = Path(message.rsplit("log: ", 1)[1])
    assert log.is_file() and "no-such-option" in log.read_text()
    assert not [p for p in tiny_cache.iterdir() if p.name.startswith(".build-")]
