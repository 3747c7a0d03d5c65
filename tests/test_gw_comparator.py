# amaranth: UnusedElaboratable=no
"""Comparator vs :func:`specbp_rtl.model.golden.comparator`, bit for bit, in Amaranth's simulator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.sim import Simulator

from specbp_rtl.config import TrainConfig
from specbp_rtl.gateware.comparator import Comparator, Metric
from specbp_rtl.model import golden
from specbp_rtl.numerics import HW_METRICS, Numerics, Plan
from specbp_rtl.testing import gaps, get, put

NX = Numerics()
PROB = NX.prob
F = PROB.frac_bits


def plan_for(metric: str, threshold_int: int, n: int = 10) -> Plan:
    """A plan whose ``threshold_int`` is exactly ``threshold_int`` (``n`` classes; 2 when ``n == 1``)."""
    n = max(n, 2)  # the comparator's distance does not depend on the plan's class count, only the bound does
    scale = (n if metric == "mean-abs" else 1) << F
    plan = NX.plan(TrainConfig(layers=(4, 3, n), metric=metric, threshold=(threshold_int + 0.5) / scale))
    assert plan.threshold_int == threshold_int
    return plan


def run(
    dut: Comparator,
    stored: np.ndarray,
    current: np.ndarray,
    plans: list[Plan],
    rng: np.random.Generator | None,
    stall: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Stream the rows through ``dut`` (threshold and metric per row from ``plans``); return (hit, distance)."""
    out: list[tuple[int, int]] = []

    async def producer(ctx):
        for s_row, c_row, plan in zip(stored, current, plans):
            ctx.set(dut.threshold, plan.threshold_int)
            ctx.set(dut.metric, Metric.from_name(plan.config.metric))
            for s, c in zip(s_row, c_row):
                await put(ctx, dut.i, {"stored": int(s), "current": int(c)}, rng)

    async def consumer(ctx):
        for _ in range(len(stored)):
            if stall and rng is not None and rng.random() < 0.2:
                await gaps(ctx, rng, stall)
            beat = await get(ctx, dut.o, rng)
            out.append((beat.hit, beat.distance))

    async def watchdog(ctx):  # a wrong handshake must fail the test, not hang it
        for _ in range(stored.shape[0] * (12 * stored.shape[1] + 8 * stall) + 1000):
            await ctx.tick()
        raise AssertionError(f"timeout: {len(out)} results received")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(watchdog, background=True)
    sim.run()
    return np.array([h for h, _ in out], dtype=bool), np.array([d for _, d in out], dtype=np.int64)


def check(dut: Comparator, stored, current, plans, rng, stall: int = 0) -> np.ndarray:
    stored, current = np.asarray(stored, dtype=np.int64), np.asarray(current, dtype=np.int64)
    hit, dist = run(dut, stored, current, plans, rng, stall)
    want_hit = np.empty(len(stored), dtype=bool)
    want_dist = np.empty(len(stored), dtype=np.int64)
    for row, plan in enumerate(plans):
        h, d = Comparator.model(stored[row : row + 1], current[row : row + 1], plan)
        gh, gd = golden.comparator(stored[row : row + 1], current[row : row + 1], plan)
        assert (h, d) == (gh, gd)
        want_hit[row], want_dist[row] = h[0], d[0]
    np.testing.assert_array_equal(dist, want_dist)
    np.testing.assert_array_equal(hit, want_hit)
    return hit


def random_rows(rng: np.random.Generator, rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Softmax-like pairs (small distances), perturbed pairs, and uniform pairs over the whole range."""
    z = rng.normal(0, 4 << NX.act.frac_bits, size=(2 * rows, n)).round().clip(NX.act.min, NX.act.max)
    p = golden.softmax(z.astype(np.int64), NX)
    stored, current = p[:rows].copy(), p[rows:].copy()
    near = rng.random(rows) < 0.3
    current[near] = np.clip(stored[near] + rng.integers(-40, 41, size=(near.sum(), n)), 0, PROB.max)
    full = rng.random(rows) < 0.2
    stored[full] = rng.integers(0, PROB.max + 1, size=(full.sum(), n))
    current[full] = rng.integers(0, PROB.max + 1, size=(full.sum(), n))
    return stored, current


def random_plans(rng: np.random.Generator, stored: np.ndarray, current: np.ndarray) -> list[Plan]:
    """Per row: a random metric and a threshold near the row's distance (hits and misses) or anywhere."""
    n = stored.shape[1]
    plans = []
    for s, c in zip(stored, current):
        metric = str(rng.choice(HW_METRICS))
        diff = np.abs(s - c)
        dist = int(diff.max() if metric == "max-abs" else diff.sum())
        t = dist + int(rng.integers(-2, 3)) if rng.random() < 0.5 else int(rng.integers(0, 3 * dist + 2))
        plans.append(plan_for(metric, max(t, 0), n))
    return plans


def test_random_n10():
    """800 random comparisons of 10 classes, random metric and threshold, random gaps and ready-low cycles."""
    rng = np.random.default_rng(11)
    stored, current = random_rows(rng, 800, 10)
    hit = check(Comparator(10, NX), stored, current, random_plans(rng, stored, current), rng)
    assert 0.2 < hit.mean() < 0.8


@pytest.mark.parametrize("metric", HW_METRICS)
def test_corners(metric):
    rng = np.random.default_rng(12)
    n, top = 10, PROB.max
    rows: list[tuple[list[int], list[int], int]] = []
    same = [int(v) for v in rng.integers(0, top + 1, size=n)]
    rows += [(same, same, 0), (same, same, 5), ([0] * n, [0] * n, 0)]  # zero distance, zero threshold: hit
    widest = (4096 * (n if metric == "mean-abs" else 1) << F) - 1  # the largest bound a Plan allows
    rows += [([top] * n, [0] * n, t) for t in (0, top - 1, top, n * top - 1, n * top, widest)]  # maximal
    rows += [([0] * n, [top] * n, n * top)]
    s = [int(v) for v in rng.integers(0, top + 1, size=n)]
    c = [int(v) for v in rng.integers(0, top + 1, size=n)]
    diff = np.abs(np.array(s) - np.array(c))
    dist = int(diff.max() if metric == "max-abs" else diff.sum())
    rows += [(s, c, dist - 1), (s, c, dist), (s, c, dist + 1)]  # exactly at the threshold
    one = [0] * n
    one[n - 1] = 1
    rows += [([0] * n, one, 0), ([0] * n, one, 1), (one, [0] * n, 0)]  # distance 1, in the last class
    stored = [r[0] for r in rows]
    current = [r[1] for r in rows]
    plans = [plan_for(metric, t, n) for _, _, t in rows]
    hit = check(Comparator(n, NX), stored, current, plans, rng)
    assert hit[[0, 1, 2]].all() and not hit[3]
    assert hit[-6:].tolist() == [False, True, True, False, True, False]


@pytest.mark.parametrize("n", [1, 2, 3, 16])
def test_other_sizes(n):
    rng = np.random.default_rng(20 + n)
    stored, current = random_rows(rng, 40, n)
    check(Comparator(n, NX), stored, current, random_plans(rng, stored, current), rng)


@pytest.mark.parametrize("n", [1, 10])
def test_long_backpressure(n):
    """Results held in ``o`` for up to ``12 n + 30`` cycles: the next comparison stalls until it is taken."""
    rng = np.random.default_rng(30 + n)
    stored, current = random_rows(rng, 60, n)
    check(Comparator(n, NX), stored, current, random_plans(rng, stored, current), rng, stall=12 * n + 30)


def test_latency_and_throughput():
    """No gaps: one beat per cycle, ``o.valid`` ``latency`` cycles after the n-th beat."""
    n = 10
    dut = Comparator(n, NX)
    assert dut.latency == 3 and dut.period == n and dut.distance_width == 20
    rng = np.random.default_rng(40)
    stored, current = random_rows(rng, 6, n)
    plan = plan_for("l1", 1000, n)
    accepted: list[int] = []
    emitted: list[tuple[int, int, int]] = []
    total = stored.size

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.threshold, plan.threshold_int)
        ctx.set(dut.metric, Metric.L1)
        cycle = 0
        while len(emitted) < len(stored):
            pos = len(accepted)
            if pos < total:
                ctx.set(dut.i.payload, {"stored": int(stored.flat[pos]), "current": int(current.flat[pos])})
            ctx.set(dut.i.valid, pos < total)
            _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            if i_ready and pos < total:
                accepted.append(cycle)
            if o_valid:
                emitted.append((cycle, o_payload.hit, o_payload.distance))
            cycle += 1
            assert cycle < 200

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert accepted == list(range(total))  # 1 beat per cycle, never stalled
    assert [c for c, _, _ in emitted] == [accepted[r * n + n - 1] + dut.latency for r in range(len(stored))]
    hit, dist = Comparator.model(stored, current, plan)
    assert [d for _, _, d in emitted] == dist.tolist()
    assert [bool(h) for _, h, _ in emitted] == hit.tolist()


def test_metric_enum():
    assert [Metric.from_name(name) for name in HW_METRICS] == [Metric.MEAN_ABS, Metric.MAX_ABS, Metric.L1]
    assert [m.value for m in Metric] == [0, 1, 2]
    with pytest.raises(ValueError, match="^metric:"):
        Metric.from_name("cross-entropy")


def test_invalid_parameters():
    with pytest.raises(ValueError, match="^n:"):
        Comparator(0, NX)
    with pytest.raises(ValueError, match="^n:"):
        Comparator(True, NX)
    with pytest.raises(ValueError, match="^numerics:"):
        Comparator(10, "default")  # type: ignore[arg-type]


def test_verilog_convert_clean():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = verilog.convert(Comparator(10, NX), name="comparator")
    assert "module comparator" in text
