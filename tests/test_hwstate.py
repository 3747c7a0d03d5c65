"""The hardware's training state over the host bus, and checkpoints of the rtl backend.

The state regions are tested bit for bit (random state in, the same state out) on a small topology whose
layers take several passes, then the checkpoints end to end: resumed runs of ``rtl`` give the weights and
step counters of one uninterrupted run, also across backends (``fixed`` to ``rtl`` and back), in the
sequential, speculative and pipelined modes, and after a Ctrl-C in the middle of an epoch.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

from specbp_rtl.checkpoint import load_checkpoint
from specbp_rtl.config import TrainConfig
from specbp_rtl.data import Dataset, load_dataset
from specbp_rtl.gateware.host import (
    REGION_GRAD,
    REGION_GRAD_HIGH,
    REGION_SX,
    REGION_SZ,
    StateMap,
    access_error,
    state_address,
)
from specbp_rtl.gateware.layout import TrainerConfig
from specbp_rtl.gateware.microarch import PRESETS
from specbp_rtl.hwstate import HardwareState, group_ends, read_state, write_state
from specbp_rtl.model.speculation import STEP_COUNTERS
from specbp_rtl.sim.runner import run_training
from specbp_rtl.sim.verilator import VerilatorTrainer

pytestmark = pytest.mark.slow

MODES = {
    "sequential": {},
    "speculative": {"threshold": 0.02},
    "pipeline": {"pipeline": True},
}


def config(mode: str) -> TrainConfig:
    return TrainConfig(layers=(64, 16, 16, 10), **MODES[mode])


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verilator-cache")


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def random_state(cfg: TrainerConfig, rng: np.random.Generator) -> HardwareState:
    """Any values the formats hold (the gradients across the full width, past 32 bits)."""
    plan, nx = cfg.plan, cfg.numerics
    g_bits = max(fmt.width for fmt in plan.grad)
    grad = rng.integers(-(1 << (g_bits - 1)), 1 << (g_bits - 1), (cfg.total_words, cfg.lanes))
    act = nx.act
    pre = [
        rng.integers(act.min, act.max + 1, (cfg.classes, cfg.passes(layer) * cfg.lanes))
        for layer in range(cfg.n_layers - 1)
    ]
    return HardwareState(
        grad=grad,
        inputs=rng.integers(0, 256, (cfg.classes, cfg.n_in(0))),
        pre=pre,
        p=rng.integers(0, 1 << nx.prob.width, (cfg.classes, cfg.classes)),
        seen=int(rng.integers(0, 1 << cfg.classes)),
        cur=int(rng.integers(0, 1 << cfg.classes)),
        phase=int(rng.integers(0, cfg.train.batch)),
        pending=True,
        p_slot=5,
        p_label=2,
    )


def test_state_regions_read_back_what_was_written(cache) -> None:
    """Random state through every region (two passes per layer, gradients wider than the bus) comes back bit
    for bit, on either ping-pong slot of each label."""
    cfg = TrainerConfig(train=TrainConfig(layers=(16, 8, 4), batch=4), lanes=4)
    assert max(fmt.width for fmt in cfg.plan.grad) > 32 and cfg.passes(0) == 2
    hw = VerilatorTrainer(cfg, cache_dir=cache).build()
    try:
        for seed in range(2):
            state = random_state(cfg, np.random.default_rng(seed))
            write_state(hw, state)
            got = read_state(hw)
            for name in ("grad", "inputs", "p"):
                np.testing.assert_array_equal(getattr(got, name), getattr(state, name), err_msg=name)
            np.testing.assert_array_equal(got.pre[0], state.pre[0])
            assert (got.seen, got.cur, got.phase, got.pending, got.p_slot, got.p_label) == (
                state.seen,
                state.cur,
                state.phase,
                state.pending,
                state.p_slot,
                state.p_label,
            )
    finally:
        hw.close()


def rtl(ds: Dataset, epochs: int, cache: Path, mode: str, **kw):
    from specbp_rtl.sim.verilator import run_rtl

    return run_rtl(config(mode), ds, epochs, cache_dir=str(cache), **kw)


def steps(result) -> dict[str, int]:
    return {name: result.counters[name] for name in STEP_COUNTERS}


@pytest.mark.parametrize("mode", MODES)
def test_rtl_resume_is_exact_and_crosses_backends(mode, digits, cache, tmp_path) -> None:
    """rtl 1 + 2 epochs = rtl 3 epochs = fixed 3 epochs; a fixed checkpoint resumes on rtl and an rtl one on
    fixed with the same weights and step counters (pipelined: the owed backward pass carried over)."""
    whole = run_training("fixed", config(mode), digits, 3)
    rtl_ck, fixed_ck = tmp_path / "rtl.npz", tmp_path / "fixed.npz"
    rtl(digits, 1, cache, mode, save=str(rtl_ck))
    run_training("fixed", config(mode), digits, 1, save=str(fixed_ck))
    if mode == "pipeline":
        assert bool(load_checkpoint(rtl_ck).state["pending"]) and bool(load_checkpoint(fixed_ck).state["pending"])
    for resumed in (
        rtl(digits, 2, cache, mode, resume=str(rtl_ck)),
        rtl(digits, 2, cache, mode, resume=str(fixed_ck)),
        run_training("fixed", config(mode), digits, 2, resume=str(rtl_ck)),
    ):
        assert resumed.weights_sha256 == whole.weights_sha256
        assert steps(resumed) == steps(whole)
        assert resumed.accuracy_per_epoch == whole.accuracy_per_epoch


def test_rtl_ctrl_c_saves_where_it_stopped(digits, cache, tmp_path) -> None:
    """A Ctrl-C in the middle of an epoch stops at the next group boundary; the checkpoint resumes exactly."""
    mode = "speculative"
    whole = rtl(digits, 2, cache, mode)
    done, sent = [], []

    def progress(epoch, total):
        def tick(n):
            done.append(n)
            if sum(done) >= 500 and not sent:
                sent.append(True)
                os.kill(os.getpid(), signal.SIGINT)  # the handler sets the stop flag between two pieces

        return tick

    path = tmp_path / "cut.npz"
    cut = rtl(digits, 2, cache, mode, save=str(path), progress=progress)
    assert cut.interrupted
    ck = load_checkpoint(path)
    assert ck.epochs_done == 0 and 500 <= ck.position < len(digits.train_y)
    assert ck.position in group_ends(0, len(digits.train_y), 15)
    resumed = rtl(digits, 2, cache, mode, resume=str(path))
    assert resumed.weights_sha256 == whole.weights_sha256 and steps(resumed) == steps(whole)


def test_rtl_init_starts_fresh_from_the_weights(digits, cache, tmp_path) -> None:
    path = tmp_path / "a.npz"
    run_training("fixed", config("sequential"), digits, 1, save=str(path))
    a = rtl(digits, 1, cache, "sequential", init=str(path))
    b = run_training("fixed", config("sequential"), digits, 1, init=str(path))
    assert a.weights_sha256 == b.weights_sha256 and a.counters["steps"] == len(digits.train_y)


def test_state_regions_are_in_the_address_map_only_with_state_access() -> None:
    """``access_error`` knows the state regions of a :class:`StateMap`; the board presets have none."""
    words, lanes = (65, 17, 17), 16
    state = StateMap(grad_words=99, sx=20 * 64, sp=21 * 10, sz=(21,))
    grad = state_address(REGION_GRAD, 98, 15, lanes)
    assert access_error(words, lanes, grad, 1, False, state) is None
    assert access_error(words, lanes, state_address(REGION_GRAD_HIGH, 98, 15, lanes), 1, True, state) is None
    assert "no layer" in access_error(words, lanes, grad, 1, False)
    assert "past" in access_error(words, lanes, state_address(REGION_GRAD, 99, 0, lanes), 1, False, state)
    assert "past" in access_error(words, lanes, state_address(REGION_SX, 20 * 64, 0, lanes), 1, True, state)
    assert access_error(words, lanes, state_address(REGION_SZ, 20, 15, lanes), 1, True, state) is None
    assert "there is no layer" in access_error(words, lanes, state_address(REGION_SZ + 1, 0, 0, lanes), 1, True, state)
    assert access_error(words, lanes, 0x8, 1, True, state) is None and access_error(words, lanes, 0x8, 1, True)
    for name in ("ecp5-80mhz", "ice40-up5k"):
        assert TrainerConfig(arch=PRESETS[name]).state_map is None
