"""Checkpoints of the model backends (:mod:`specbp_rtl.checkpoint`).

* Resume is exact: E1 epochs, save, load, E2 more equals E1 + E2 uninterrupted
  (complete state, weights hash and counters), on the fixed and the float
  engine, speculation off / on (mean-abs, max-abs) / pipelined, two topologies.
* So is a resume from the middle of an epoch: a Ctrl-C stops training after a
  group (position ``1 + 3 * batch``, not a multiple of the batch), also a real
  SIGINT inside a group under ``deferred_interrupts``.
* A checkpoint that does not fit is refused with one line naming the field;
  corrupt files are refused; writes are atomic; ``--init`` takes only weights.
"""

from __future__ import annotations

import json
import os
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest

from specbp_rtl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from specbp_rtl.config import TrainConfig
from specbp_rtl.data import Dataset, load_dataset
from specbp_rtl.model.golden import FixedEngine
from specbp_rtl.model.reference import FloatEngine
from specbp_rtl.model.speculation import SpeculativeTrainer
from specbp_rtl.numerics import numerics_preset

ENGINES = {"fixed": lambda cfg: FixedEngine(cfg, numerics_preset("standard")), "float": FloatEngine}
NUMERICS = {"fixed": "standard", "float": None}
MODES = {
    "sequential": {},
    "mean-abs": {"threshold": 0.1, "metric": "mean-abs"},
    "max-abs": {"threshold": 0.1, "metric": "max-abs"},
    "pipeline": {"pipeline": True},
}
LAYERS = [(64, 16, 16, 10), (64, 16, 10)]


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def make(backend: str, **cfg) -> SpeculativeTrainer:
    return SpeculativeTrainer(ENGINES[backend](TrainConfig(**cfg)))


def train(trainer: SpeculativeTrainer, ds: Dataset, epochs: int, progress=None) -> None:
    """What run_training does: whole epochs, the first one continuing from the trainer's position."""
    for _ in range(epochs):
        trainer.train_epoch(ds.train_x, ds.train_y, progress, start=trainer.position)


def save(path: Path, trainer: SpeculativeTrainer, backend: str, ds: Dataset, **kw) -> None:
    save_checkpoint(path, trainer, backend=backend, numerics=NUMERICS[backend], dataset=ds, **kw)


def assert_same_state(a: SpeculativeTrainer, b: SpeculativeTrainer) -> None:
    sa, sb = a.state(), b.state()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert np.array_equal(sa[key], sb[key]), key
    assert a.engine.weights_sha256() == b.engine.weights_sha256()
    assert a.counters.as_dict() == b.counters.as_dict()


class Interrupt:
    """A progress callback that raises KeyboardInterrupt once ``after`` samples are done (a Ctrl-C)."""

    def __init__(self, after: int) -> None:
        self.after, self.done = after, 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.done >= self.after:
            raise KeyboardInterrupt


@pytest.mark.parametrize("layers", LAYERS, ids=lambda lay: ",".join(map(str, lay)))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ENGINES)
def test_resume_after_whole_epochs_is_exact(backend, mode, layers, digits, tmp_path) -> None:
    cfg = {"layers": layers, **MODES[mode]}
    whole = make(backend, **cfg)
    train(whole, digits, 3)

    first = make(backend, **cfg)
    train(first, digits, 1)
    # the epoch ends between updates (1437 samples, batch 15): gradients and, pipelined, a backward pass carry over
    st = first.state()
    assert any(st[k].any() for k in st if k.startswith("engine.g"))
    assert bool(st["pending"]) == (mode == "pipeline")
    path = tmp_path / "a.npz"
    save(path, first, backend, digits)
    ck = load_checkpoint(path)
    assert (ck.epochs_done, ck.position, ck.backend, ck.numerics) == (1, 0, backend, NUMERICS[backend])
    assert ck.counters == first.counters.as_dict()
    assert ck.weights_sha256 == first.engine.weights_sha256()
    assert ck.dataset == {"name": "digits", "train_samples": 1437, "test_samples": 360, "inputs": 64}

    resumed = make(backend, **cfg)
    ck.restore(resumed, digits)
    assert_same_state(resumed, first)
    train(resumed, digits, 2)
    assert_same_state(resumed, whole)
    assert resumed.epochs_done == whole.epochs_done == 3
    if mode != "sequential":
        expect = {"mean-abs": "hits", "max-abs": "hits", "pipeline": "overlapped"}[mode]
        assert whole.counters.as_dict()[expect] > 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("backend", ENGINES)
def test_resume_from_the_middle_of_an_epoch_is_exact(backend, mode, digits, tmp_path) -> None:
    cfg = {"layers": (64, 16, 16, 10), "batch": 15, **MODES[mode]}
    whole = make(backend, **cfg)
    train(whole, digits, 2)

    cut = make(backend, **cfg)
    train(cut, digits, 1)
    with pytest.raises(KeyboardInterrupt):
        train(cut, digits, 1, Interrupt(after=40))
    # interrupted after the group that ends with step 45: the position is where that group ends
    assert cut.position == 46 and cut.position % 15 != 0 and cut.epochs_done == 1
    path = tmp_path / "mid.npz"
    save(path, cut, backend, digits)
    ck = load_checkpoint(path)
    assert (ck.epochs_done, ck.position) == (1, 46)
    resumed = make(backend, **cfg)
    ck.restore(resumed, digits)
    assert resumed.position == 46
    train(resumed, digits, 1)  # the rest of the interrupted epoch
    assert_same_state(resumed, whole)


def test_start_inside_a_group_continues_the_step_index(digits) -> None:
    """``start`` that is not a group boundary: the fixed model (exact integers) does not notice the split."""
    cfg = {"layers": (64, 16, 10), "batch": 15, "threshold": 0.1}
    whole = make("fixed", **cfg)
    whole.train_epoch(digits.train_x, digits.train_y)
    split = make("fixed", **cfg)
    split.train_epoch(digits.train_x[:37], digits.train_y[:37])
    split.train_epoch(digits.train_x, digits.train_y, start=37)
    assert split.engine.weights_sha256() == whole.engine.weights_sha256()
    assert split.counters.as_dict() == whole.counters.as_dict()
    # numbering the continued steps from 0 instead would move the updates
    renumbered = make("fixed", **cfg)
    renumbered.train_epoch(digits.train_x[:37], digits.train_y[:37])
    renumbered.train_epoch(digits.train_x[37:], digits.train_y[37:])
    assert renumbered.engine.weights_sha256() != whole.engine.weights_sha256()


def test_position_counts_completed_samples(digits) -> None:
    trainer = make("fixed", layers=(64, 16, 10), batch=15)
    seen = []
    trainer.train_epoch(digits.train_x[:100], digits.train_y[:100], lambda n: seen.append(trainer.position))
    assert seen[:4] == [1, 16, 31, 46] and seen[-1] == 0  # 0 again: the epoch is complete
    assert trainer.epochs_done == 1 and trainer.position == 0
    with pytest.raises(ValueError, match="start: must be in 0..99"):
        trainer.train_epoch(digits.train_x[:100], digits.train_y[:100], start=100)


@pytest.mark.parametrize("backend", ENGINES)
def test_sigint_inside_a_group_is_held_until_the_group_is_done(backend, digits, tmp_path, monkeypatch) -> None:
    cfg = {"layers": (64, 16, 16, 10), "threshold": 0.1}
    whole = make(backend, **cfg)
    train(whole, digits, 1)

    cut = make(backend, **cfg)
    accumulate = cut.engine.accumulate
    calls = []

    def ctrl_c_in_accumulate(state, labels):
        calls.append(len(labels))
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGINT)  # Python runs the handler right here, inside the group
        accumulate(state, labels)

    monkeypatch.setattr(cut.engine, "accumulate", ctrl_c_in_accumulate)
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), cut.deferred_interrupts():
        train(cut, digits, 1)
    assert signal.getsignal(signal.SIGINT) is before
    assert cut.position == 61 and len(calls) == 5  # groups end at 1, 16, 31, 46, 61: the fifth completed
    path = tmp_path / "c.npz"
    save(path, cut, backend, digits)
    resumed = make(backend, **cfg)
    load_checkpoint(path).restore(resumed, digits)
    train(resumed, digits, 1)
    assert_same_state(resumed, whole)


def test_an_interrupt_inside_a_group_without_deferral_cannot_be_saved(digits, tmp_path, monkeypatch) -> None:
    trainer = make("fixed", layers=(64, 16, 10))

    def interrupted(state, labels):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.engine, "accumulate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train(trainer, digits, 1)
    path = tmp_path / "x.npz"
    with pytest.raises(CheckpointError, match=r"^cannot save checkpoint .*x\.npz: training was interrupted inside"):
        save(path, trainer, "fixed", digits)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def saved(digits, tmp_path_factory) -> dict[str, Path]:
    """One small checkpoint per backend: layers 64,16,10, batch 15, threshold 0.1, mid-epoch."""
    out = {}
    for backend in ENGINES:
        trainer = make(backend, layers=(64, 16, 10), threshold=0.1)
        with pytest.raises(KeyboardInterrupt):
            train(trainer, digits, 1, Interrupt(after=100))
        path = tmp_path_factory.mktemp(backend) / "a.npz"
        save(path, trainer, backend, digits, extra={"note": "test"})
        out[backend] = path
    return out


BASE = {"layers": (64, 16, 10), "threshold": 0.1}


@pytest.mark.parametrize(
    ("change", "field", "mine", "theirs"),
    [
        ({"layers": (64, 16, 16, 10)}, "layers", "64,16,10", "64,16,16,10"),
        ({"batch": 10}, "batch", "15", "10"),
        ({"lr": 0.02}, "lr", "0.01", "0.02"),
        ({"clip": 4.0}, "clip", "5.0", "4.0"),
        ({"slope": 0.02}, "slope", "0.01", "0.02"),
        ({"threshold": 0.2}, "threshold", "0.1", "0.2"),
        ({"metric": "max-abs"}, "metric", "mean-abs", "max-abs"),
        ({"seed": 2}, "seed", "1", "2"),
        ({"threshold": 0.0, "pipeline": True}, "threshold", "0.1", "0.0"),
    ],
)
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_field(change, field, mine, theirs, saved) -> None:
    ck = load_checkpoint(saved["fixed"])
    cfg = TrainConfig(**(BASE | change))
    with pytest.raises(CheckpointError) as err:
        ck.check_fits(cfg, "standard", "fixed", resume=True)
    message = str(err.value)
    assert (
        message == f"checkpoint {saved['fixed']}: {field} {mine} {'do' if field == 'layers' else 'does'} "
        f"not match the run's {theirs}"
    )
    if field == "layers":
        with pytest.raises(CheckpointError, match="layers 64,16,10 do not match"):
            ck.check_fits(cfg, "standard", "fixed", resume=False)
    else:
        ck.check_fits(cfg, "standard", "fixed", resume=False)  # --init: only the weights must fit


def test_pipeline_is_a_resume_setting(digits, tmp_path) -> None:
    trainer = make("fixed", layers=(64, 16, 10))
    train(trainer, digits, 1)
    save(tmp_path / "s.npz", trainer, "fixed", digits)
    with pytest.raises(CheckpointError, match=r"s\.npz: pipeline false does not match the run's true$"):
        load_checkpoint(tmp_path / "s.npz").check_fits(
            TrainConfig(layers=(64, 16, 10), pipeline=True), "standard", "fixed", resume=True
        )


def test_numerics_backend_and_dataset_mismatches(saved, digits) -> None:
    fixed, flt = load_checkpoint(saved["fixed"]), load_checkpoint(saved["float"])
    cfg = TrainConfig(**BASE)
    with pytest.raises(CheckpointError, match=r"a\.npz: numerics standard does not match the run's lean$"):
        fixed.check_fits(cfg, "lean", "fixed", resume=False)
    with pytest.raises(CheckpointError, match="a float checkpoint resumes only the float backend, not fixed$"):
        flt.check_fits(cfg, "standard", "fixed", resume=True)
    with pytest.raises(
        CheckpointError,
        match=r"a fixed-point checkpoint \(fixed\) initialises only the fixed-point "
        r"backends \(fixed, pysim, rtl, board\), not float$",
    ):
        fixed.check_fits(cfg, None, "float", resume=False)
    with pytest.raises(CheckpointError, match="numerics none does not match the run's standard"):
        flt.check_fits(cfg, "standard", "float", resume=True)
    for hw in ("fixed", "pysim", "rtl", "board"):  # their numbers agree: any of them resumes a fixed checkpoint
        fixed.check_fits(cfg, "standard", hw, resume=True, dataset=digits)
    flt.check_fits(cfg, None, "float", resume=True, dataset=digits)
    fewer = Dataset("digits", digits.train_x[:1000], digits.train_y[:1000], digits.test_x, digits.test_y)
    with pytest.raises(
        CheckpointError, match="dataset digits with 1437 training samples does not match the run's digits with 1000$"
    ):
        fixed.check_fits(cfg, "standard", "fixed", resume=True, dataset=fewer)
    fixed.check_fits(cfg, "standard", "fixed", resume=False, dataset=fewer)


def test_changed_formats_are_noticed(saved, tmp_path) -> None:
    arrays = dict(np.load(saved["fixed"], allow_pickle=False))
    meta = json.loads(str(arrays.pop("meta")))
    meta["numerics_formats"]["act"] = "SQ(4,11)"
    path = tmp_path / "f.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **arrays)
    with pytest.raises(
        CheckpointError,
        match=r"the formats of numerics standard changed since it was written "
        r"\(act: SQ\(4,11\) then, SQ\(5,10\) now\)$",
    ):
        load_checkpoint(path).check_fits(TrainConfig(**BASE), "standard", "fixed", resume=False)


def test_restore_refuses_a_trainer_that_does_not_fit_and_leaves_it_alone(saved, digits) -> None:
    trainer = make("fixed", layers=(64, 16, 10), threshold=0.1, batch=10)
    before = trainer.state()
    with pytest.raises(CheckpointError, match="batch 15 does not match the run's 10"):
        load_checkpoint(saved["fixed"]).restore(trainer, digits)
    after = trainer.state()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_load_state_checks_everything_before_it_changes_anything(digits) -> None:
    trainer = make("fixed", layers=(64, 16, 10), threshold=0.1)
    train(trainer, digits, 1)
    good = trainer.state()
    other = make("fixed", layers=(64, 16, 10), threshold=0.1)
    fresh = other.state()
    for bad, message in [
        (good | {"engine.w1": good["engine.w1"][:, :3]}, "engine state: w1 has shape"),
        (good | {"engine.w0": good["engine.w0"].astype(np.float64)}, "engine state: w0 has dtype float64"),
        (good | {"engine.b0": good["engine.b0"] + (1 << 40)}, "engine state: b0 holds values outside"),
        ({k: v for k, v in good.items() if k != "seen"}, "trainer state: seen is missing"),
        (good | {"bank": np.zeros(3)}, "trainer state: unexpected entry bank"),
        (good | {"counters.hits": np.array(-1)}, "trainer state: counters.hits must be a non-negative integer"),
        (good | {"slots.p": good["slots.p"][:5]}, "trainer state: slots.p is int64"),
    ]:
        with pytest.raises(ValueError, match=message):
            other.load_state(bad)
        now = other.state()
        assert all(np.array_equal(fresh[k], now[k]) for k in fresh)


def test_state_is_a_copy(digits) -> None:
    trainer = make("float", layers=(64, 16, 10))
    st = trainer.state()
    train(trainer, digits, 1)
    assert not np.array_equal(st["engine.w0"], trainer.state()["engine.w0"])


@pytest.mark.parametrize("backend", ENGINES)
def test_init_takes_the_weights_with_fresh_state(backend, saved, digits) -> None:
    ck = load_checkpoint(saved[backend])
    assert ck.extra == {"note": "test"} and ck.position == 106 and ck.epochs_done == 0
    weights = ck.weights
    assert [w.shape for w, _ in weights] == [(16, 64), (10, 16)] and [b.shape for _, b in weights] == [(16,), (10,)]
    assert all(a.dtype == (np.int64 if backend == "fixed" else np.float64) for pair in weights for a in pair)
    # --init may change what does not touch the weights' layout
    engine = ENGINES[backend](TrainConfig(layers=(64, 16, 10), batch=7, threshold=0.0, seed=5))
    ck.init_weights(engine)
    assert engine.weights_sha256() == ck.weights_sha256
    assert all(not g.any() for pair in engine.grads for g in pair)
    trainer = SpeculativeTrainer(engine)
    assert trainer.counters.as_dict() == dict.fromkeys(trainer.counters.as_dict(), 0)
    assert not trainer.seen.any() and trainer.position == 0 and trainer.epochs_done == 0
    # inference on the checkpoint's weights: the same predictions as the restored trainer
    resumed = make(backend, **BASE)
    ck.restore(resumed, digits)
    assert np.array_equal(engine.predict(digits.test_x), resumed.engine.predict(digits.test_x))
    # fresh state is not the saved one: continuing differs from resuming
    init = make(backend, **BASE)
    ck.init_weights(init.engine)
    train(init, digits, 1)
    train(resumed, digits, 1)
    assert init.engine.weights_sha256() != resumed.engine.weights_sha256()
    with pytest.raises(CheckpointError, match="layers 64,16,10 do not match the run's 64,16,16,10"):
        ck.init_weights(ENGINES[backend](TrainConfig(layers=(64, 16, 16, 10))))


def _one_line_error(path: Path) -> str:
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"checkpoint {path}: ")
    return message


def test_corrupt_and_foreign_files_are_refused(saved, tmp_path) -> None:
    good = saved["fixed"].read_bytes()
    assert "no such file" in _one_line_error(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint at all\n" * 10)
    assert "not a readable specbp checkpoint" in _one_line_error(tmp_path / "junk.npz")
    (tmp_path / "short.npz").write_bytes(good[: len(good) // 2])
    assert "not a readable specbp checkpoint" in _one_line_error(tmp_path / "short.npz")
    # one flipped bit inside the first weight matrix's data: the zip CRC notices
    w0 = load_checkpoint(saved["fixed"]).state["engine.w0"]
    at = good.index(w0.tobytes()) + 100
    (tmp_path / "flip.npz").write_bytes(good[:at] + bytes([good[at] ^ 1]) + good[at + 1 :])
    assert "CRC" in _one_line_error(tmp_path / "flip.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    assert "a single .npy array" in _one_line_error(tmp_path / "plain.npy")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    assert "no meta entry" in _one_line_error(tmp_path / "other.npz")

    arrays = dict(np.load(saved["fixed"], allow_pickle=False))
    meta = json.loads(str(arrays.pop("meta")))

    def variant(name: str, meta: dict, **changes: np.ndarray) -> Path:
        path = tmp_path / name
        np.savez(path, meta=np.array(json.dumps(meta)), **(arrays | changes))
        return path

    assert "format version 2 is not the one this specbp reads (1)" in _one_line_error(
        variant("v2.npz", meta | {"format_version": 2})
    )
    assert "wrong kind" in _one_line_error(variant("kind.npz", meta | {"kind": "other"}))
    assert "invalid configuration (batch: must be a positive integer" in _one_line_error(
        variant("cfg.npz", meta | {"config": meta["config"] | {"batch": 0}})
    )
    assert "corrupt meta entry (KeyError" in _one_line_error(
        variant("nometa.npz", {k: v for k, v in meta.items() if k != "counters"})
    )
    # weights changed consistently with their CRC (rewritten): the recorded hash notices
    tampered = arrays["engine.w0"].copy()
    tampered[0, 0] += 1
    assert "do not match their recorded weights_sha256" in _one_line_error(
        variant("hash.npz", meta, **{"engine.w0": tampered})
    )
    assert "corrupt: engine.b1 is int64[3]" in _one_line_error(
        variant("shape.npz", meta, **{"engine.b1": arrays["engine.b1"][:3]})
    )
    path = tmp_path / "no-w.npz"
    np.savez(path, meta=np.array(json.dumps(meta)), **{k: v for k, v in arrays.items() if k != "engine.w1"})
    assert "corrupt: engine.w1 is missing" in _one_line_error(path)
    with zipfile.ZipFile(saved["fixed"]) as z:  # a sanity check of the layout the module docstring documents
        assert "meta.npy" in z.namelist() and "engine.w0.npy" in z.namelist()


def test_writes_are_atomic(digits, tmp_path, monkeypatch) -> None:
    trainer = make("fixed", layers=(64, 16, 10))
    missing_dir = tmp_path / "no" / "such" / "dir"
    with pytest.raises(CheckpointError, match=r"^cannot save checkpoint .*a\.npz: No such file or directory$"):
        save(missing_dir / "a.npz", trainer, "fixed", digits)
    assert list(tmp_path.iterdir()) == []

    path = tmp_path / "a.npz"
    save(path, trainer, "fixed", digits)
    old = path.read_bytes()
    train(trainer, digits, 1)

    import specbp_rtl.files as files

    def failing_fsync(fd: int) -> None:  # the disk fills up half-way through the temporary file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", failing_fsync)
    with pytest.raises(CheckpointError, match="a.npz: No space left on device$"):
        save(path, trainer, "fixed", digits)
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]

    def interrupted_fsync(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", interrupted_fsync)
    with pytest.raises(KeyboardInterrupt):
        save(path, trainer, "fixed", digits)
    assert path.read_bytes() == old and sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]
    monkeypatch.undo()
    save(path, trainer, "fixed", digits)  # replacing an existing checkpoint
    assert load_checkpoint(path).epochs_done == 1 and sorted(p.name for p in tmp_path.iterdir()) == ["a.npz"]


def test_save_refuses_numerics_that_are_not_the_engines(digits, tmp_path) -> None:
    trainer = make("fixed", layers=(64, 16, 10))
    with pytest.raises(CheckpointError, match=r"numerics lean is not the engine's \(standard\)$"):
        save_checkpoint(tmp_path / "n.npz", trainer, backend="fixed", numerics="lean", dataset=digits)
    with pytest.raises(CheckpointError, match=r"backend float does not match the engine \(FixedEngine\)$"):
        save_checkpoint(tmp_path / "n.npz", trainer, backend="float", numerics="standard", dataset=digits)
    with pytest.raises(CheckpointError, match="extra is not JSON-serialisable"):
        save(tmp_path / "n.npz", trainer, "fixed", digits, extra={"x": object()})
    assert list(tmp_path.iterdir()) == []
