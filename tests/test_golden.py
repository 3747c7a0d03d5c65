"""Bit-exact fixed-point golden model: per-block semantics, determinism, and
agreement with the float64 reference (DESIGN §4, §5 step 1)."""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np
import pytest

from specbp_rtl.config import ConfigError, TrainConfig
from specbp_rtl.data import load_dataset
from specbp_rtl.fixed import SQ
from specbp_rtl.model.golden import (
    FixedEngine,
    backprop_delta,
    comparator,
    layer_forward,
    leaky_derivative,
    leaky_relu,
    outer_accumulate,
    output_error,
    sgd_update,
    softmax,
    weight_operand,
)
from specbp_rtl.model.reference import FloatEngine, init_integers
from specbp_rtl.model.speculation import SpeculativeTrainer
from specbp_rtl.numerics import NUMERICS, Numerics, numerics_name, numerics_preset
from specbp_rtl.sim.runner import make_engine, run_training

NX = Numerics()
ONE = 1 << NX.prob.frac_bits  # probability 1.0 = 2**15


def half_up(x: Fraction) -> int:
    return math.floor(x + Fraction(1, 2))


def plan_for(**kw):
    return NX.plan(TrainConfig(**{"layers": (64, 16, 16, 10), **kw}))


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


# -- determinism ---------------------------------------------------------------


def _train_fixed(ds, seed: int, threshold: float = 0.001):
    cfg = TrainConfig(layers=(64, 16, 16, 10), seed=seed, threshold=threshold)
    x, y = ds.train_x[:300], ds.train_y[:300]
    engine = FixedEngine(cfg)
    trainer = SpeculativeTrainer(engine)
    for _ in range(2):
        trainer.train_epoch(x, y)
    return engine, trainer.counters


def test_same_seed_same_weights(digits) -> None:
    a, ca = _train_fixed(digits, seed=1)
    b, cb = _train_fixed(digits, seed=1)
    assert a.weights_sha256() == b.weights_sha256()
    assert ca.as_dict() == cb.as_dict()
    assert ca.hits > 0 and ca.misses > 0  # the run exercises both comparator outcomes


def test_different_seed_different_weights(digits) -> None:
    a, _ = _train_fixed(digits, seed=1)
    b, _ = _train_fixed(digits, seed=2)
    assert a.weights_sha256() != b.weights_sha256()


def test_run_training_is_deterministic(digits) -> None:
    cfg = TrainConfig(layers=(64, 16, 16, 10), seed=4, threshold=0.25)
    r1 = run_training("fixed", cfg, digits, 1)
    r2 = run_training("fixed", cfg, digits, 1)
    assert r1.weights_sha256 == r2.weights_sha256
    assert r1.accuracy_per_epoch == r2.accuracy_per_epoch
    assert r1.counters == r2.counters


def test_weights_sha256_layout() -> None:
    """int64 LE master weights, per layer W (out, in) row-major then b, no header."""
    engine = FixedEngine(TrainConfig(layers=(5, 4, 3), seed=9))
    h = hashlib.sha256()
    for w, b in engine.params:
        assert w.dtype == np.int64
        h.update(b"".join(int(v).to_bytes(8, "little", signed=True) for v in w.ravel(order="C")))
        h.update(b"".join(int(v).to_bytes(8, "little", signed=True) for v in b))
    assert engine.weights_sha256() == h.hexdigest()
    fl = FloatEngine(TrainConfig(layers=(5, 4, 3), seed=9))
    h = hashlib.sha256()
    for w, b in fl.params:
        h.update(w.astype("<f8").tobytes())
        h.update(b.astype("<f8").tobytes())
    assert fl.weights_sha256() == h.hexdigest()


def test_initial_weights_are_rounded_hundredths() -> None:
    cfg = TrainConfig(layers=(6, 4, 3), seed=5)
    engine = FixedEngine(cfg)
    f = NX.weight.frac_bits
    for (w, b), (wi, bi) in zip(engine.params, init_integers(cfg)):
        assert w.tolist() == [[half_up(Fraction(int(k) << f, 100)) for k in row] for row in wi]
        assert b.tolist() == [half_up(Fraction(int(k) << f, 100)) for k in bi]
    # 0.25 is exact in the weight format
    assert engine.plan.init_weights(np.array([25, -25, 0])).tolist() == [1 << (f - 2), -(1 << (f - 2)), 0]


# -- softmax -------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0, 31.0])
def test_softmax_sums_to_one_and_matches_float(scale: float) -> None:
    rng = np.random.default_rng(int(scale * 100))
    z = NX.act.from_float(rng.uniform(-scale, scale, size=(3000, 10)))
    p = softmax(z, NX)
    assert p.dtype == np.int64
    assert p.min() >= 0 and p.max() <= ONE
    # sum_k round(e_k * floor(2**30 / S) / 2**15): the floor reciprocal loses < S / 2**15 <= 10 LSB,
    # the ten roundings +-0.5 each. Measured here: -9..+2 LSB.
    s = p.sum(axis=1)
    assert s.min() >= ONE - 15 and s.max() <= ONE + 5
    zq = NX.act.to_float(z)
    e = np.exp(zq - zq.max(axis=1, keepdims=True))
    pf = e / e.sum(axis=1, keepdims=True)
    pq = NX.prob.to_float(p)
    # LUT step 2**-7 in the exponent: relative error ~ 2**-8; measured < 0.61 %
    assert np.abs(pq - pf).max() < 0.002
    big = pf > 0.01
    assert (np.abs(pq - pf)[big] / pf[big]).max() < 0.01


def test_softmax_corner_cases() -> None:
    # one dominant logit: exactly 1.0 (UQ(1,15) holds it), the others 0
    z = np.array([[NX.act.max] + [NX.act.min] * 9])
    assert softmax(z, NX).tolist() == [[ONE] + [0] * 9]
    # all equal: 2**30 // (10 * 2**15) = 3276 each
    assert softmax(np.zeros((1, 10), dtype=np.int64), NX).tolist() == [[3276] * 10]
    # shift invariance: the max is subtracted first
    rng = np.random.default_rng(3)
    z = rng.integers(-5000, 5000, size=(50, 10))
    assert np.array_equal(softmax(z, NX), softmax(z + 700, NX))
    # first-maximum ties are symmetric
    p = softmax(np.array([[1024, 1024, 0, 0, 0, 0, 0, 0, 0, 0]]), NX)
    assert p[0, 0] == p[0, 1] and p[0, 2] == p[0, 9]


# -- comparator ----------------------------------------------------------------


def _pair(diffs: list[int]) -> tuple[np.ndarray, np.ndarray]:
    stored = np.full((1, 10), 3000, dtype=np.int64)
    current = stored.copy()
    # alternate signs: the comparator uses absolute differences
    for k, d in enumerate(diffs):
        current[0, k] += d if k % 2 == 0 else -d
    return stored, current


@pytest.mark.parametrize(
    ("metric", "threshold", "bound"),
    [
        ("mean-abs", 0.0625, 20480),  # sum |dp| <= T * 10 * 2**15
        ("max-abs", 0.0625, 2048),  # max |dp| <= T * 2**15
        ("l1", 0.0625, 2048),  # sum |dp| <= T * 2**15
        ("mean-abs", 0.001, 327),  # 327.68 floored
        ("l1", 0.001, 32),  # 32.768 floored
    ],
)
def test_comparator_exactly_at_threshold(metric: str, threshold: float, bound: int) -> None:
    plan = plan_for(metric=metric, threshold=threshold)
    assert plan.threshold_int == bound
    if metric == "max-abs":
        at, over = [bound, bound, 1, 0, 5], [bound + 1, 0, 0]
    else:
        at, over = [bound - bound // 2, bound // 2], [bound - bound // 2, bound // 2 + 1]
    for diffs, hit in ((at, True), (over, False)):
        ps, pc = _pair(diffs)
        hits, dist = comparator(ps, pc, plan)
        assert hits.tolist() == [hit]
        expected = max(diffs) if metric == "max-abs" else sum(diffs)
        assert dist.tolist() == [expected]
        # the engine's comparator is the same function
        engine = FixedEngine(TrainConfig(layers=(2, 3, 10), metric=metric, threshold=threshold))
        assert engine.hits(ps, pc).tolist() == [hit]


def test_comparator_metrics_differ() -> None:
    ps, pc = _pair([2048, 2048])
    assert comparator(ps, pc, plan_for(metric="max-abs", threshold=0.0625))[0].tolist() == [True]
    assert comparator(ps, pc, plan_for(metric="l1", threshold=0.0625))[0].tolist() == [False]
    assert comparator(ps, pc, plan_for(metric="mean-abs", threshold=0.0625))[0].tolist() == [True]


def test_comparator_batched_rows() -> None:
    plan = plan_for(metric="l1", threshold=0.0625)
    ps = np.zeros((3, 10), dtype=np.int64)
    pc = np.zeros((3, 10), dtype=np.int64)
    pc[1, 3] = 2048
    pc[2, 3] = 2049
    hits, dist = comparator(ps, pc, plan)
    assert hits.tolist() == [True, True, False]
    assert dist.tolist() == [0, 2048, 2049]


def test_threshold_quarter_accepts_every_speculation() -> None:
    """DESIGN §2: sum |dp| of two softmax rows is at most 2, so mean-abs 0.25 always hits."""
    plan = plan_for(threshold=0.25)
    ps = np.array([[ONE] + [0] * 9])
    pc = np.array([[0] * 9 + [ONE]])
    hits, dist = comparator(ps, pc, plan)
    assert dist.tolist() == [2 * ONE] and hits.tolist() == [True]


def test_cross_entropy_has_no_fixed_comparator() -> None:
    cfg = TrainConfig(layers=(64, 16, 16, 10), metric="cross-entropy", threshold=0.1)
    with pytest.raises(ConfigError, match="metric"):
        FixedEngine(cfg)
    with pytest.raises(ConfigError, match="^metric:"):
        NX.plan(cfg)
    # without speculation the metric is irrelevant: accepted
    FixedEngine(TrainConfig(layers=(64, 16, 16, 10), metric="cross-entropy", threshold=0.0))
    # the float reference implements it
    FloatEngine(cfg)


# -- output error, activation, update --------------------------------------------


def test_output_error_saturates_plus_one() -> None:
    p = np.array([[ONE, 0, 0], [0, ONE, 0], [100, 200, ONE - 300]])
    d = output_error(p, np.array([1, 1, 2]), NX)
    # +1 does not fit SQ(0,15): it saturates to 1 - 2**-15; -1 fits exactly
    assert d.tolist() == [[ONE - 1, -ONE, 0], [0, 0, 0], [100, 200, -300]]
    assert d.min() >= NX.out_delta.min and d.max() <= NX.out_delta.max
    assert p.tolist()[0][0] == ONE  # the input is not modified


def test_leaky_relu_round_half_up_on_negatives() -> None:
    plan = plan_for(slope=0.25)  # exact: 2**14 * 2**-16
    assert (plan.slope_m, plan.slope_shift) == (1 << 14, 16)
    z = np.array([-6, -5, -3, -2, -1, 0, 1, 5, NX.act.max, NX.act.min])
    # -1.5 -> -1, -1.25 -> -1, -0.75 -> -1, -0.5 -> 0, -0.25 -> 0; positives pass through
    assert leaky_relu(z, plan).tolist() == [-1, -1, -1, 0, 0, 0, 1, 5, NX.act.max, NX.act.min // 4]


def test_leaky_relu_default_slope() -> None:
    plan = plan_for()
    z = np.arange(NX.act.min, NX.act.max + 1, 37)
    a = leaky_relu(z, plan)
    expected = [v if v > 0 else half_up(Fraction(int(v) * plan.slope_m, 1 << plan.slope_shift)) for v in z]
    assert a.tolist() == expected
    neg = z <= 0
    assert np.abs(a[neg] - z[neg] * 0.01).max() <= 0.5 + 1e-3  # slope mantissa error < 2**-15
    assert a[neg].min() == -328  # -32 * 0.01 = -0.32 -> -327.68 LSB


def test_leaky_derivative_uses_z_for_the_branch() -> None:
    plan = plan_for(slope=0.25)
    s = np.array([100, 100, 100, -6, -6])
    z = np.array([1, 0, -1, 5, -5])
    # z > 0: s; z <= 0 (zero included): round(s * slope)
    assert leaky_derivative(s, z, plan).tolist() == [100, 25, 25, -6, -1]


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_sgd_update_clips_and_rounds(layer: int) -> None:
    plan = plan_for()
    fmt = plan.grad[layer]
    c = plan.clip_int(layer)
    assert c == 5 << fmt.frac_bits
    shift = plan.update_shift(layer)
    step_max = half_up(Fraction(c * plan.lr_m, 1 << shift))
    # lr * clip = 0.05 in master-weight units, up to the lr mantissa's rounding
    assert abs(step_max / 2**NX.weight.frac_bits - 0.05) < 0.05 * 2.0**-14
    w = np.zeros(6, dtype=np.int64)
    g = np.array([10 * c, c, c - 1, 12345, -(10 * c), -12345])
    new = sgd_update(w, g, layer, plan)
    expected = [
        -step_max,
        -step_max,
        -half_up(Fraction((c - 1) * plan.lr_m, 1 << shift)),
        -half_up(Fraction(12345 * plan.lr_m, 1 << shift)),
        step_max,
        -half_up(Fraction(-12345 * plan.lr_m, 1 << shift)),
    ]
    assert new.tolist() == expected
    assert w.tolist() == [0] * 6  # returns the new weights, input untouched


def test_sgd_update_saturates() -> None:
    plan = plan_for()
    top, bottom = NX.weight.max, NX.weight.min
    w = np.array([top - 10, bottom + 10, top, bottom])
    c = plan.clip_int(0)
    g = np.array([-c, c, 0, 0])
    assert sgd_update(w, g, 0, plan).tolist() == [top, bottom, top, bottom]


def test_weight_operand_and_layer_forward() -> None:
    f = NX.weight.frac_bits
    w = np.array([[1 << (f - 1), -(1 << (f - 1)), (1 << 7) - 1, 1 << 7], [NX.weight.max, NX.weight.min, 64, -64]])
    op = weight_operand(w, NX)
    # 21 -> 13 fractional bits: shift by 8, half up; SQ(2,21) and SQ(2,13) have the same range
    assert op.tolist() == [[1 << 12, -(1 << 12), 0, 1], [NX.weight_operand.max, NX.weight_operand.min, 0, 0]]
    # z = x @ W^T + b: x = bytes / 256 (8 frac bits), w with 13, requantised to act (10)
    x = np.array([[128, 64]])  # (0.5, 0.25)
    w_op = np.array([[1 << 13, 1 << 13], [-(1 << 13), 1 << 12]])  # [[1, 1], [-1, 0.5]]
    b_op = np.array([1 << 11, 0])  # (0.25, 0)
    z = layer_forward(x, w_op, b_op, 8, NX)
    assert z.tolist() == [[1024, -384]]  # (1.0, -0.375) in SQ(5,10)
    # saturation of the logits
    big = layer_forward(np.array([[255] * 64]), np.full((1, 64), NX.weight_operand.max), np.zeros(1, int), 8, NX)
    assert big.tolist() == [[NX.act.max]]


def test_backprop_and_outer_accumulate_are_exact() -> None:
    plan = plan_for()
    rng = np.random.default_rng(5)
    delta = rng.integers(NX.out_delta.min, NX.out_delta.max + 1, size=(4, 10))
    x = rng.integers(-2000, 30000, size=(4, 16))
    g_w = np.zeros((10, 16), dtype=np.int64)
    g_b = np.zeros(10, dtype=np.int64)
    outer_accumulate(g_w, g_b, delta, x, 10)
    assert g_w.tolist() == [
        [sum(int(delta[n, j]) * int(x[n, k]) for n in range(4)) for k in range(16)] for j in range(10)
    ]
    assert g_b.tolist() == [sum(int(delta[n, j]) for n in range(4)) << 10 for j in range(10)]

    w_op = rng.integers(NX.weight_operand.min, NX.weight_operand.max + 1, size=(10, 16))
    z_prev = rng.integers(-3000, 3000, size=(4, 16))
    s = backprop_delta(delta, w_op, z_prev, NX.out_delta, plan)
    shift = NX.out_delta.frac_bits + NX.weight_operand_frac - NX.delta.frac_bits
    for n in range(4):
        for k in range(16):
            acc = sum(int(delta[n, j]) * int(w_op[j, k]) for j in range(10))
            r = min(max(half_up(Fraction(acc, 1 << shift)), NX.delta.min), NX.delta.max)
            if z_prev[n, k] <= 0:
                r = half_up(Fraction(r * plan.slope_m, 1 << plan.slope_shift))
            assert s[n, k] == r


def test_fixed_forward_close_to_float(digits) -> None:
    cfg = TrainConfig(layers=(64, 16, 16, 10), seed=1)
    fl = FloatEngine(cfg).forward(digits.train_x[:300])
    fx = FixedEngine(cfg).forward(digits.train_x[:300])
    for zf, zq in zip(fl.pre, fx.pre):
        assert np.abs(zf - NX.act.to_float(zq)).max() < 0.01
    assert np.abs(fl.p - NX.prob.to_float(fx.p)).max() < 0.002


# -- fixed vs float accuracy ------------------------------------------------------

# Measured on digits, 64-16-16-10, 10 epochs (float / fixed test accuracy, %):
#   threshold 0:    seed 1 80.56 / 81.39, seed 2 88.89 / 88.06, seed 3 82.50 / 81.11  (mean diff -0.46 pp)
#   threshold 0.25: seed 1 83.61 / 83.61, seed 2 85.83 / 89.17, seed 3 79.44 / 79.17  (mean diff +1.02 pp)
# The 360-sample test set makes one sample 0.28 pp; tolerances: 5 pp per seed, 2.5 pp on the mean.


@pytest.mark.parametrize("threshold", [0.0, 0.25])
def test_fixed_vs_float_accuracy_digits(digits, threshold: float) -> None:
    diffs = []
    for seed in (1, 2, 3):
        cfg = TrainConfig(layers=(64, 16, 16, 10), seed=seed, threshold=threshold)
        fl = run_training("float", cfg, digits, 10)
        fx = run_training("fixed", cfg, digits, 10)
        assert fl.accuracy >= 0.75 and fx.accuracy >= 0.75, (fl.accuracy, fx.accuracy)
        assert abs(fx.accuracy - fl.accuracy) <= 0.05, (seed, fl.accuracy, fx.accuracy)
        if threshold > 0:
            assert fl.hit_rate == fx.hit_rate == 1.0
        diffs.append(fx.accuracy - fl.accuracy)
    assert abs(float(np.mean(diffs))) <= 0.025, diffs


@pytest.mark.slow
def test_fixed_vs_float_accuracy_mnist(mnist_dir) -> None:
    # measured: float 92.60 %, fixed 92.15 % (about 4 s for both)
    ds = load_dataset("mnist", mnist_dir, 8000, 2000)
    cfg = TrainConfig(layers=(784, 16, 16, 10), seed=1, threshold=0.0)
    fl = run_training("float", cfg, ds, 10)
    fx = run_training("fixed", cfg, ds, 10)
    assert len(fl.accuracy_per_epoch) == len(fx.accuracy_per_epoch) == 10
    assert fl.accuracy >= 0.89, fl.accuracy_per_epoch
    assert abs(fx.accuracy - fl.accuracy) <= 0.02, (fl.accuracy, fx.accuracy)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_frac": 2}, "^act: pixels shifted to 10 fractional bits"),
        ({"act": SQ(0, 15)}, "^act: the bias beat's 1.0 needs 17 bits"),
    ],
)
def test_numerics_that_overflow_the_mac_operand_are_refused(kwargs: dict, message: str) -> None:
    """Formats whose activation operand (shifted pixels, the bias beat's 1.0) needs more than 16 bits."""
    with pytest.raises(ConfigError, match=message):
        Numerics(**kwargs)


def test_named_format_sets() -> None:
    assert numerics_preset("standard") == Numerics() and numerics_name(NUMERICS["compact"]) == "compact"
    assert numerics_name(numerics_preset("lean")) == "lean"
    with pytest.raises(
        ConfigError, match=r"^numerics: unknown format set 'tiny' \(choose from standard, compact, lean\)"
    ):
        numerics_preset("tiny")
    with pytest.raises(ConfigError, match="^numerics: not one of the named format sets"):
        numerics_name(Numerics(const_bits=12))
    with pytest.raises(ValueError, match="^numerics: the float backend"):
        make_engine("float", TrainConfig(), "compact")
