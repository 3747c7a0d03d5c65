"""Float64 reference model (DESIGN §2) and the vectorised speculation control.

* A plain-Python, scalar restatement of DESIGN §2 (lists and loops only, no
  numpy arithmetic, no library math) trains a 2-3-2 network; the library's
  :class:`FloatEngine` driven by :class:`SpeculativeTrainer` must agree to 1e-12.
* :class:`SpeculativeTrainer` evaluates the steps between two updates as one
  vectorised group; a naive driver that walks one sample at a time through the
  engine's own ``forward``/``hits``/``accumulate``/``update`` must give the same
  weights, counters and step kinds, for both engines.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from specbp_rtl.config import ConfigError, TrainConfig
from specbp_rtl.data import load_dataset
from specbp_rtl.model.golden import FixedEngine
from specbp_rtl.model.reference import FloatEngine, distance, init_integers
from specbp_rtl.model.speculation import Counters, SpeculativeTrainer
from specbp_rtl.steps import StepKind

# ---------------------------------------------------------------------------
# Scalar restatement of DESIGN §2
# ---------------------------------------------------------------------------


class ScalarNet:
    """DESIGN §2 in plain Python floats: no numpy arithmetic, no library math.

    Only the initial integers come from :func:`init_integers` (the draw itself is
    the library's contract, checked separately).
    """

    def __init__(self, config: TrainConfig) -> None:
        self.cfg = config
        self.W: list[list[list[float]]] = []
        self.B: list[list[float]] = []
        for w, b in init_integers(config):
            self.W.append([[int(v) / 100 for v in row] for row in w.tolist()])
            self.B.append([int(v) / 100 for v in b.tolist()])
        self.GW = [[[0.0] * len(row) for row in w] for w in self.W]
        self.GB = [[0.0] * len(b) for b in self.B]
        self.slots: dict[int, tuple] = {}  # label -> (layer inputs, pre-activations, softmax)
        self.kinds: list[str] = []
        self.distances: list[float] = []
        self.clipped = 0  # how many gradient elements the clip touched
        self.negative_z = 0  # how many hidden pre-activations took the leaky branch

    def forward(self, pixels: list[int]) -> tuple[list, list, list]:
        a = [v / 255 for v in pixels]
        inputs, pre = [], []
        last = len(self.W) - 1
        for layer in range(len(self.W)):
            inputs.append(a)
            z = []
            for j in range(len(self.W[layer])):
                s = self.B[layer][j]
                for k in range(len(a)):
                    s += self.W[layer][j][k] * a[k]
                z.append(s)
            pre.append(z)
            if layer == last:
                a = z
            else:
                a = []
                for v in z:
                    if v > 0:
                        a.append(v)
                    else:
                        a.append(self.cfg.slope * v)
                        self.negative_z += 1
        m = max(a)
        e = [math.exp(v - m) for v in a]
        s = sum(e)
        return inputs, pre, [v / s for v in e]

    def backward(self, state: tuple, label: int) -> None:
        inputs, pre, p = state
        delta = [p[k] - (1.0 if k == label else 0.0) for k in range(len(p))]
        for layer in range(len(self.W) - 1, -1, -1):
            for j in range(len(delta)):
                for k in range(len(inputs[layer])):
                    self.GW[layer][j][k] += delta[j] * inputs[layer][k]
                self.GB[layer][j] += delta[j]
            if layer > 0:
                new = []
                for k in range(len(inputs[layer])):
                    s = 0.0
                    for j in range(len(delta)):
                        s += self.W[layer][j][k] * delta[j]  # the *current* weights
                    new.append(s * (1.0 if pre[layer - 1][k] > 0 else self.cfg.slope))
                delta = new

    def distance(self, ps: list[float], pc: list[float]) -> float:
        diff = [abs(a - b) for a, b in zip(ps, pc)]
        metric = self.cfg.metric
        if metric == "mean-abs":
            return sum(diff) / len(diff)
        if metric == "max-abs":
            return max(diff)
        if metric == "l1":
            return sum(diff)
        assert metric == "cross-entropy"
        return sum(a * (math.log(a) - math.log(b)) for a, b in zip(ps, pc))

    def clip(self, g: float) -> float:
        c = self.cfg.clip
        if g > c or g < -c:
            self.clipped += 1
        return min(max(g, -c), c)

    def update(self) -> None:
        lr = self.cfg.lr
        for layer in range(len(self.W)):
            for j in range(len(self.W[layer])):
                for k in range(len(self.W[layer][j])):
                    self.W[layer][j][k] -= lr * self.clip(self.GW[layer][j][k])
                    self.GW[layer][j][k] = 0.0
                self.B[layer][j] -= lr * self.clip(self.GB[layer][j])
                self.GB[layer][j] = 0.0

    def epoch(self, xs: list[list[int]], ys: list[int]) -> None:
        speculative = self.cfg.threshold > 0
        for i in range(len(ys)):
            label = ys[i]
            current = self.forward(xs[i])
            if not speculative:
                self.kinds.append(StepKind.SEQUENTIAL)
                self.backward(current, label)
            elif label not in self.slots:
                self.kinds.append(StepKind.FIRST_SIGHTING)
                self.backward(current, label)
            else:
                stored = self.slots[label]
                d = self.distance(stored[2], current[2])
                self.distances.append(d)
                if d <= self.cfg.threshold:
                    self.kinds.append(StepKind.HIT)
                    self.backward(stored, label)  # speculative gradient from the stored state
                else:
                    self.kinds.append(StepKind.MISS)
                    self.backward(current, label)
            self.slots[label] = current
            if i % self.cfg.batch == 0:
                self.update()


# Eight 2-pixel samples, labels 0/1. With batch 3, updates follow i = 0, 3, 6; the
# last step (i = 7) leaves its gradient in G, which carries into the next epoch and
# is applied together with the next epoch's step 0.
TINY_X = [[255, 0], [0, 255], [200, 30], [10, 240], [250, 5], [128, 128], [0, 20], [255, 255]]
TINY_Y = [0, 1, 0, 1, 0, 1, 1, 0]

# Thresholds per metric that split the speculated steps of this tiny run into
# hits and misses (the distances are printed by the assertion messages).
TINY_CASES = [
    ("mean-abs", 0.02),
    ("max-abs", 0.02),
    ("l1", 0.04),
    ("cross-entropy", 0.002),
]


def _tiny_config(metric: str, threshold: float) -> TrainConfig:
    # a large lr and a small clip so that three epochs move the weights visibly
    # and the clip is exercised
    return TrainConfig(
        layers=(2, 3, 2), batch=3, lr=0.5, clip=0.3, slope=0.01, threshold=threshold, metric=metric, seed=7
    )


def _float_params_as_lists(engine: FloatEngine) -> tuple[list, list]:
    return [w.tolist() for w, _ in engine.params], [b.tolist() for _, b in engine.params]


def _assert_close_nested(actual, expected, tol: float) -> None:
    if isinstance(expected, list):
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected):
            _assert_close_nested(a, e, tol)
    else:
        assert abs(actual - expected) <= tol, (actual, expected)


@pytest.mark.parametrize(("metric", "threshold"), TINY_CASES)
def test_float_engine_matches_scalar_restatement(metric: str, threshold: float) -> None:
    cfg = _tiny_config(metric, threshold)
    epochs = 3
    scalar = ScalarNet(cfg)
    for _ in range(epochs):
        scalar.epoch(TINY_X, TINY_Y)

    engine = FloatEngine(cfg)
    log: list[StepKind] = []
    trainer = SpeculativeTrainer(engine, log=log)
    x = np.array(TINY_X, dtype=np.uint8)
    y = np.array(TINY_Y, dtype=np.int64)
    for _ in range(epochs):
        trainer.train_epoch(x, y)

    # the case exercises every kind of step, the clip and the leaky branch
    kinds = set(scalar.kinds)
    assert {StepKind.FIRST_SIGHTING, StepKind.HIT, StepKind.MISS} <= kinds, (scalar.kinds, scalar.distances)
    assert scalar.clipped > 0
    assert scalar.negative_z > 0

    assert log == scalar.kinds
    c = trainer.counters
    assert c.steps == epochs * len(TINY_Y)
    assert c.first_sightings == 2  # one per label, never reset between epochs
    assert c.hits == scalar.kinds.count(StepKind.HIT)
    assert c.misses == scalar.kinds.count(StepKind.MISS)
    assert c.sequential == 0
    assert c.updates == epochs * 3  # after i = 0, 3, 6 in each epoch

    w, b = _float_params_as_lists(engine)
    _assert_close_nested(w, scalar.W, 1e-12)
    _assert_close_nested(b, scalar.B, 1e-12)
    # and the carried-over gradient of the last step (i = 7) is still pending
    gw = [g.tolist() for g, _ in engine.grads]
    _assert_close_nested(gw, scalar.GW, 1e-12)
    assert any(v != 0.0 for row in scalar.GW[-1] for v in row)


def test_float_engine_matches_scalar_restatement_sequential() -> None:
    cfg = _tiny_config("mean-abs", 0.0)
    scalar = ScalarNet(cfg)
    engine = FloatEngine(cfg)
    log: list[StepKind] = []
    trainer = SpeculativeTrainer(engine, log=log)
    for _ in range(2):
        scalar.epoch(TINY_X, TINY_Y)
        trainer.train_epoch(np.array(TINY_X, dtype=np.uint8), np.array(TINY_Y))
    assert log == [StepKind.SEQUENTIAL] * 16 == scalar.kinds
    assert trainer.counters.sequential == 16
    assert trainer.counters.hits == trainer.counters.misses == trainer.counters.first_sightings == 0
    w, b = _float_params_as_lists(engine)
    _assert_close_nested(w, scalar.W, 1e-12)
    _assert_close_nested(b, scalar.B, 1e-12)


def test_hand_computed_forward_and_output_error() -> None:
    """One forward pass worked out by hand.

    W1 = [[0.5, -0.25], [0.25, 0.5], [-0.5, 0.125]], b1 = [0.1, -0.1, 0]
    W2 = [[1, -1, 2], [0.5, 0.5, -1]],               b2 = [0, 0.25]
    x  = bytes (255, 0) / 255 = (1, 0)
    z1 = (0.5 + 0.1, 0.25 - 0.1, -0.5 + 0) = (0.6, 0.15, -0.5)
    a1 = (0.6, 0.15, 0.01 * -0.5) = (0.6, 0.15, -0.005)
    z2 = (0.6 - 0.15 - 0.01,  0.3 + 0.075 + 0.005 + 0.25) = (0.44, 0.63)
    p1 = 1 / (1 + exp(0.44 - 0.63)) = 1 / (1 + 0.8269591339...) = 0.5473576...
    label 1: output error = (p0, p1 - 1) = (0.4526423..., -0.4526423...)
    """
    engine = FloatEngine(TrainConfig(layers=(2, 3, 2)))
    engine.params = [
        (np.array([[0.5, -0.25], [0.25, 0.5], [-0.5, 0.125]]), np.array([0.1, -0.1, 0.0])),
        (np.array([[1.0, -1.0, 2.0], [0.5, 0.5, -1.0]]), np.array([0.0, 0.25])),
    ]
    state = engine.forward(np.array([[255, 0]], dtype=np.uint8))
    assert state.pre[0][0] == pytest.approx([0.6, 0.15, -0.5], abs=1e-15)
    assert state.inputs[1][0] == pytest.approx([0.6, 0.15, -0.005], abs=1e-15)
    assert state.pre[1][0] == pytest.approx([0.44, 0.63], abs=1e-15)
    assert state.p[0] == pytest.approx([0.4526423, 0.5473577], abs=1e-7)
    engine.accumulate(state, np.array([1]))
    # the output bias gradient is the output error itself
    assert engine.grads[1][1] == pytest.approx([0.4526423, -0.4526423], abs=1e-7)
    # the output weight gradient is delta (x) a1; e.g. row 1, column 0: -0.4526423 * 0.6
    assert engine.grads[1][0][1, 0] == pytest.approx(-0.27158538, abs=1e-7)
    assert engine.predict(np.array([[255, 0]], dtype=np.uint8)).tolist() == [1]


# ---------------------------------------------------------------------------
# Initialisation and the float comparator
# ---------------------------------------------------------------------------


def test_init_integers_is_the_papers_draw() -> None:
    cfg = TrainConfig(layers=(784, 16, 16, 10), seed=3)
    params = init_integers(cfg)
    assert [(w.shape, b.shape) for w, b in params] == [((16, 784), (16,)), ((16, 16), (16,)), ((10, 16), (10,))]
    values = np.concatenate([np.concatenate([w.ravel(), b]) for w, b in params])
    assert values.dtype == np.int64
    assert values.min() == -10 and values.max() == 10
    assert not (values == 0).any()
    # zeros became 1, so 1 is about twice as frequent as any other value
    counts = {v: int((values == v).sum()) for v in range(-10, 11) if v}
    others = [n for v, n in counts.items() if v != 1]
    assert counts[1] > 1.6 * max(others)
    # the draw is the documented one: default_rng(seed), W then b per layer, row-major
    rng = np.random.default_rng(3)
    w0 = rng.integers(-10, 11, size=(16, 784))
    w0[w0 == 0] = 1
    assert np.array_equal(params[0][0], w0)
    # deterministic per seed
    assert all(np.array_equal(a, b) for pa, pb in zip(params, init_integers(cfg)) for a, b in zip(pa, pb))
    other = init_integers(TrainConfig(seed=4))
    assert not np.array_equal(params[0][0], other[0][0])


def test_float_engine_starts_from_hundredths() -> None:
    cfg = TrainConfig(layers=(5, 4, 3), seed=11)
    engine = FloatEngine(cfg)
    for (w, b), (wi, bi) in zip(engine.params, init_integers(cfg)):
        assert np.array_equal(w, wi / 100.0) and np.array_equal(b, bi / 100.0)
    assert all(not g.any() for pair in engine.grads for g in pair)


@pytest.mark.parametrize(
    ("metric", "expected"),
    [
        ("mean-abs", 0.25),
        ("max-abs", 0.25),
        ("l1", 0.5),
        ("cross-entropy", 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)),
    ],
)
def test_float_distance(metric: str, expected: float) -> None:
    ps = np.array([[0.5, 0.5], [0.3, 0.7]])
    pc = np.array([[0.25, 0.75], [0.3, 0.7]])
    d = distance(metric, ps, pc)
    assert d[0] == pytest.approx(expected, abs=1e-15)
    assert d[1] == 0.0


def test_float_distance_unknown_metric() -> None:
    with pytest.raises(ValueError, match="metric"):
        distance("cosine", np.zeros((1, 2)), np.zeros((1, 2)))


@pytest.mark.parametrize(("metric", "exact"), [("mean-abs", 0.25), ("max-abs", 0.25), ("l1", 0.5)])
def test_float_comparator_hits_exactly_at_threshold(metric: str, exact: float) -> None:
    ps = np.array([[0.5, 0.5]])
    pc = np.array([[0.25, 0.75]])  # every |dp| is exactly 0.25 in binary floating point
    at = FloatEngine(TrainConfig(layers=(2, 3, 2), threshold=exact, metric=metric))
    below = FloatEngine(TrainConfig(layers=(2, 3, 2), threshold=math.nextafter(exact, 0), metric=metric))
    assert at.hits(ps, pc).tolist() == [True]
    assert below.hits(ps, pc).tolist() == [False]


def test_mean_abs_never_exceeds_point_two() -> None:
    """DESIGN §2: softmax rows sum to 1, so the mean-abs distance over 10 classes is at most 0.2."""
    rng = np.random.default_rng(0)
    z = rng.normal(scale=20, size=(2000, 10))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    d = distance("mean-abs", p[:1000], p[1000:])
    assert d.max() <= 0.2 + 1e-12
    assert d.max() > 0.19  # nearly one-hot rows with different winners get close


# ---------------------------------------------------------------------------
# Vectorised groups == naive per-sample loop (both engines)
# ---------------------------------------------------------------------------


def naive_train(engine, x: np.ndarray, y: np.ndarray, epochs: int) -> tuple[Counters, list[str]]:
    """DESIGN §2 one sample at a time through the engine's own primitives."""
    cfg = engine.config
    counters = Counters()
    kinds: list[str] = []
    slots: dict[int, object] = {}  # label -> single-row ForwardState
    for _ in range(epochs):
        for i in range(len(y)):
            label = int(y[i])
            current = engine.forward(x[i : i + 1])
            source = current
            if not cfg.speculative:
                kind = StepKind.SEQUENTIAL
                counters.sequential += 1
            elif label not in slots:
                kind = StepKind.FIRST_SIGHTING
                counters.first_sightings += 1
            elif engine.hits(slots[label].p, current.p)[0]:
                kind = StepKind.HIT
                counters.hits += 1
                source = slots[label]
            else:
                kind = StepKind.MISS
                counters.misses += 1
            engine.accumulate(source, y[i : i + 1])
            slots[label] = current
            kinds.append(kind)
            counters.steps += 1
            if i % cfg.batch == 0:
                engine.update()
                counters.updates += 1
    return counters, kinds


@pytest.fixture(scope="module")
def digits_200() -> tuple[np.ndarray, np.ndarray]:
    ds = load_dataset("digits")
    # 200 samples: the last group (i = 196..199) does not update, so G carries
    # over the epoch boundary into step 0 of the next epoch.
    return ds.train_x[:200], ds.train_y[:200]


@pytest.mark.parametrize("engine_cls", [FloatEngine, FixedEngine], ids=["float", "fixed"])
@pytest.mark.parametrize(
    ("metric", "threshold", "expect"),
    [
        ("mean-abs", 0.0, "sequential"),
        ("mean-abs", 0.0005, "mixed"),
        ("max-abs", 0.002, "mixed"),
        ("l1", 0.005, "mixed"),
        ("mean-abs", 0.25, "all-hits"),
    ],
)
def test_vectorised_groups_equal_naive_loop(engine_cls, metric, threshold, expect, digits_200) -> None:
    x, y = digits_200
    cfg = TrainConfig(layers=(64, 16, 16, 10), batch=15, threshold=threshold, metric=metric, seed=1)
    epochs = 2

    fast = engine_cls(cfg)
    log: list[StepKind] = []
    trainer = SpeculativeTrainer(fast, log=log)
    trainer.train_epoch(x, y)
    # the tail group (i = 196..199) left its gradient in G: it carries into epoch 2
    assert any(g.any() for pair in fast.grads for g in pair)
    trainer.train_epoch(x, y)

    slow = engine_cls(cfg)
    counters, kinds = naive_train(slow, x, y, epochs)

    assert trainer.counters.as_dict() == counters.as_dict()
    assert log == kinds
    assert counters.updates == epochs * 14  # i = 0, 15, ..., 195
    if engine_cls is FixedEngine:
        assert fast.weights_sha256() == slow.weights_sha256()
        for (wa, ba), (wb, bb) in zip(fast.grads, slow.grads):  # the carried-over G too
            assert np.array_equal(wa, wb) and np.array_equal(ba, bb)
    else:
        # float sums in a different order (one BLAS product per group vs one per
        # sample), so the last bits differ: compare to 1e-12
        for (wa, ba), (wb, bb) in zip(fast.params, slow.params):
            np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ba, bb, rtol=0, atol=1e-12)
        for (wa, ba), (wb, bb) in zip(fast.grads, slow.grads):
            np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-12)
            np.testing.assert_allclose(ba, bb, rtol=0, atol=1e-12)

    c = trainer.counters
    assert c.steps == epochs * len(y)
    if expect == "sequential":
        assert c.sequential == c.steps and c.hits == c.misses == c.first_sightings == 0
        assert c.hit_rate == 0.0
    else:
        assert c.sequential == 0
        assert c.first_sightings == 10  # one per label, over both epochs
        assert c.hits + c.misses == c.steps - 10
        if expect == "mixed":
            assert c.hits > 20 and c.misses > 20, c.as_dict()
            assert 0.0 < c.hit_rate < 1.0
        else:
            assert c.misses == 0 and c.hit_rate == 1.0


def test_group_with_speculation_source_inside_the_group() -> None:
    """Two same-label samples inside one group: the second speculates from the first."""
    cfg = TrainConfig(layers=(2, 3, 2), batch=4, threshold=0.25, seed=5)
    x = np.array([[10, 20], [30, 40], [50, 60], [70, 80], [90, 100]], dtype=np.uint8)
    y = np.array([0, 1, 1, 1, 0])
    log: list[StepKind] = []
    fast = FloatEngine(cfg)
    SpeculativeTrainer(fast, log=log).train_epoch(x, y)
    slow = FloatEngine(cfg)
    _, kinds = naive_train(slow, x, y, 1)
    assert log == kinds == [StepKind.FIRST_SIGHTING] * 2 + [StepKind.HIT] * 3
    for (wa, ba), (wb, bb) in zip(fast.params, slow.params):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-14)
        np.testing.assert_allclose(ba, bb, rtol=0, atol=1e-14)


def test_hit_uses_stored_state_not_current() -> None:
    """On a hit the gradient is the *previous* same-label sample's (delayed SGD)."""
    cfg = TrainConfig(layers=(2, 3, 2), batch=1, threshold=0.25, seed=2)
    a = np.array([[255, 0]], dtype=np.uint8)
    b = np.array([[0, 255]], dtype=np.uint8)
    spec = FloatEngine(cfg)
    trainer = SpeculativeTrainer(spec)
    trainer.train_epoch(np.concatenate([a, b]), np.array([1, 1]))  # first sighting, then a hit
    assert trainer.counters.hits == 1
    # by hand: step 0 trains on a, step 1 (hit) trains on a's stored state again
    ref = FloatEngine(cfg)
    s0 = ref.forward(a)
    ref.accumulate(s0, np.array([1]))
    ref.update()
    ref.accumulate(s0, np.array([1]))  # stored state, current weights
    ref.update()
    for (wa, ba), (wb, bb) in zip(spec.params, ref.params):
        np.testing.assert_allclose(wa, wb, rtol=0, atol=1e-15)
        np.testing.assert_allclose(ba, bb, rtol=0, atol=1e-15)


@pytest.mark.parametrize("batch", [1, 15])
def test_empty_epoch_is_a_no_op(batch: int) -> None:
    """No samples, no steps, no updates (with batch 1 an update is counted today)."""
    engine = FloatEngine(TrainConfig(layers=(2, 3, 2), batch=batch, threshold=0.1))
    before = engine.weights_sha256()
    trainer = SpeculativeTrainer(engine, log=[])
    trainer.train_epoch(np.zeros((0, 2), dtype=np.uint8), np.zeros(0, dtype=np.int64))
    assert engine.weights_sha256() == before
    assert trainer.log == []
    assert trainer.counters.as_dict() == Counters().as_dict()


@pytest.mark.parametrize(("batch", "epochs"), [(3, [8, 8]), (4, [9, 6, 1]), (1, [5]), (15, [40, 17])])
def test_pipelined_mode_is_sequential_with_overlap_counts(batch: int, epochs: list[int]) -> None:
    """Pipelined mode: the sequential weights and step kinds; overlapped steps from a per-step restatement."""
    results = []
    for pipeline in (False, True):
        cfg = TrainConfig(layers=(2, 3, 3, 2), batch=batch, pipeline=pipeline)
        engine, log = FloatEngine(cfg), []
        trainer = SpeculativeTrainer(engine, log=log)
        for n in epochs:
            trainer.train_epoch(np.array((TINY_X * 10)[:n], dtype=np.uint8), np.array((TINY_Y * 10)[:n]))
        results.append((engine.weights_sha256(), log, trainer.counters))
    (sha_seq, log_seq, c_seq), (sha_pipe, log_pipe, c_pipe) = results
    assert sha_pipe == sha_seq and log_pipe == log_seq
    assert c_pipe.sequential == c_seq.sequential and c_pipe.updates == c_seq.updates and c_seq.overlapped == 0
    # per step: overlapped when the previous step's backward pass is owed; owed unless an update followed it
    pending, overlapped = False, 0
    for n in epochs:
        for i in range(n):
            overlapped += pending
            pending = i % batch != 0
    assert c_pipe.overlapped == overlapped


def test_counters_hit_rate_and_as_dict() -> None:
    c = Counters(steps=10, first_sightings=2, hits=6, misses=2, updates=1)
    assert c.hit_rate == 0.75
    assert c.as_dict() == {
        "steps": 10,
        "sequential": 0,
        "first_sightings": 2,
        "hits": 6,
        "misses": 2,
        "updates": 1,
        "overlapped": 0,
    }
    assert Counters().hit_rate == 0.0


def test_trainconfig_validation_names_the_parameter() -> None:
    bad = [
        ({"layers": (2, 3)}, "layers"),
        ({"layers": (2, 0, 2)}, "layers"),
        ({"layers": (2, 3, 1)}, "layers"),
        ({"batch": 0}, "batch"),
        ({"lr": 0.0}, "lr"),
        ({"clip": -1.0}, "clip"),
        ({"slope": 1.0}, "slope"),
        ({"threshold": -0.1}, "threshold"),
        ({"threshold": float("nan")}, "threshold"),
        ({"metric": "cosine"}, "metric"),
        ({"seed": -1}, "seed"),
        ({"pipeline": 1}, "pipeline"),
        ({"pipeline": True, "threshold": 0.1}, "pipeline"),
    ]
    for kwargs, name in bad:
        with pytest.raises(ConfigError, match=f"^{name}:"):
            TrainConfig(**kwargs)
    assert TrainConfig(threshold=0.1).speculative and not TrainConfig().speculative
    assert TrainConfig(layers=[3, 4, 5]).layers == (3, 4, 5)
