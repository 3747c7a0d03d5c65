# amaranth: UnusedElaboratable=no
"""Softmax unit vs :func:`specbp_rtl.model.golden.softmax`, bit for bit, in Amaranth's simulator."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.sim import Simulator

from specbp_rtl.fixed import SQ, UQ
from specbp_rtl.gateware.softmax import Softmax
from specbp_rtl.model import golden
from specbp_rtl.numerics import NUMERICS, Numerics
from specbp_rtl.testing import gaps, get, put

NX = Numerics()
ACT = NX.act


def run(dut: Softmax, vectors: np.ndarray, rng: np.random.Generator | None, stall: int = 0) -> np.ndarray:
    """Stream ``vectors`` (rows of ``n`` logits) through ``dut`` with random gaps; return the outputs.

    ``stall > 0`` adds occasional long ready-low stretches (up to ``stall`` cycles) on the output.
    """
    out: list[int] = []

    async def producer(ctx):
        for row in vectors:
            for z in row:
                await put(ctx, dut.i, int(z), rng)

    async def consumer(ctx):
        for _ in range(vectors.size):
            if stall and rng is not None and rng.random() < 0.1:
                await gaps(ctx, rng, stall)
            out.append(await get(ctx, dut.o, rng))

    async def watchdog(ctx):  # a wrong handshake must fail the test, not hang it
        for _ in range(vectors.shape[0] * (dut.period + 12 * vectors.shape[1] + 8 * stall) + 1000):
            await ctx.tick()
        raise AssertionError(f"timeout: {len(out)} results received")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(watchdog, background=True)
    sim.run()
    return np.array(out, dtype=np.int64).reshape(vectors.shape)


def check(
    dut: Softmax, vectors: np.ndarray, rng: np.random.Generator | None, numerics: Numerics = NX, stall: int = 0
) -> None:
    got = run(dut, vectors, rng, stall)
    want = Softmax.model(vectors, numerics)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(want, golden.softmax(vectors, numerics))


def random_logits(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """A mix of distributions: uniform over the whole range, realistic spreads, and near-ties."""
    kind = rng.integers(0, 4, size=rows)
    full = rng.integers(ACT.min, ACT.max + 1, size=(rows, n))
    scale = (1 << ACT.frac_bits) * rng.choice([0.5, 2.0, 6.0, 12.0], size=(rows, 1))
    realistic = np.clip(np.round(rng.normal(0, 1, size=(rows, n)) * scale), ACT.min, ACT.max)
    base = rng.integers(ACT.min + 64, ACT.max - 64, size=(rows, 1))
    near = base + rng.integers(-64, 65, size=(rows, n))
    near_lut_edge = np.clip(base + rng.integers(-(12 << ACT.frac_bits) - 64, 1, size=(rows, n)), ACT.min, ACT.max)
    return np.choose(kind[:, None], [full, realistic, near, near_lut_edge]).astype(np.int64)


def test_random_n10():
    """1000 random logit vectors of 10 classes, random valid gaps and ready-low cycles."""
    rng = np.random.default_rng(1)
    check(Softmax(10, NX), random_logits(rng, 1000, 10), rng)


def test_corners():
    lo, hi, one = ACT.min, ACT.max, 1 << ACT.frac_bits
    shift = ACT.frac_bits - NX.exp_lut_frac
    lut_end = (NX.exp_lut_size - 1) << shift  # the smallest d that reaches the last LUT entry
    half = 1 << (shift - 1)
    rows = [
        [0] * 10,  # all equal
        [hi] * 10,  # all most positive
        [lo] * 10,  # all most negative
        [hi] + [lo] * 9,  # one huge logit, d = 65535: others saturate to 0
        [lo] * 9 + [hi],
        [5 * one] + [-20 * one] * 9,  # d beyond the LUT range
        [
            0,
            -lut_end,
            -lut_end + half,
            -lut_end + half - 1,
            -lut_end - 1,
            -lut_end - half,
            -half,
            -half + 1,
            -half - 1,
            -1,
        ],  # LUT end and round-half-up boundaries
        [hi, hi - 1, hi - half, hi - half + 1, hi - lut_end, hi - lut_end - 1, lo, lo + 1, 0, -1],
        [3, 3, 3, 2, 1, 0, -1, -2, -3, 3],  # ties at the max
        list(range(-5 * one, 5 * one, one)),
    ]
    for d in range(0, 12 * one, one // 2):  # walk d across the LUT, 2 samples per unit
        rows.append([0] + [-d - j for j in range(9)])
    vectors = np.array(rows, dtype=np.int64)
    assert vectors.min() >= lo and vectors.max() <= hi
    check(Softmax(10, NX), vectors, np.random.default_rng(2))


@pytest.mark.parametrize("n", [1, 2, 3, 16])
def test_other_sizes(n):
    rng = np.random.default_rng(n)
    check(Softmax(n, NX), random_logits(rng, 25, n), rng)


@pytest.mark.parametrize("serial", [False, True])
@pytest.mark.parametrize("n", [1, 2, 10])
def test_long_backpressure(n, serial):
    """Output held off for up to 60 cycles while the next vector loads (the last logit must wait)."""
    rng = np.random.default_rng(100 + n)
    check(Softmax(n, NX, serial_multiplier=serial), random_logits(rng, 30, n), rng, stall=60)


@pytest.mark.parametrize(
    "nx",
    [
        # no rounding shift (exp_lut_frac == act.frac_bits); a short LUT whose last entries are not 0
        Numerics(act=SQ(3, 6), exp_lut_frac=6, exp_range=4, prob=UQ(1, 12), out_delta=SQ(0, 12)),
        # shift by 3, two integer bits in prob
        Numerics(act=SQ(4, 8), exp_lut_frac=5, exp_range=3, prob=UQ(2, 10), out_delta=SQ(0, 10)),
        # the board presets (with lut_top_in_logic, their LUTs store every entry but 1.0 a bit narrower)
        NUMERICS["compact"],
        NUMERICS["lean"],
    ],
    ids=["shift0", "shift3", "compact", "lean"],
)
@pytest.mark.parametrize(("lut_top_in_logic", "serial"), [(False, False), (True, False), (True, True)])
def test_other_numerics(nx, lut_top_in_logic, serial):
    """Other formats, where the LUT clamp (d beyond the LUT) changes results; the LUT's 1.0 in logic or not, the
    serial multiplier."""
    rng = np.random.default_rng(5)
    vectors = rng.integers(nx.act.min, nx.act.max + 1, size=(40, 6))
    vectors[:20] = np.clip(np.round(rng.normal(0, 2 << nx.act.frac_bits, size=(20, 6))), nx.act.min, nx.act.max)
    vectors[20] = [nx.act.max] + [nx.act.min] * 5
    vectors[21] = nx.act.min
    check(Softmax(6, nx, lut_top_in_logic=lut_top_in_logic, serial_multiplier=serial), vectors, rng, nx, stall=4)


@pytest.mark.parametrize("serial", [False, True])
def test_latency_and_throughput(serial: bool):
    """No gaps: o.valid ``latency`` cycles after the last logit, one softmax every ``period`` cycles, the
    probabilities ``interval`` cycles apart (``serial_multiplier``: one multiplier bit per cycle)."""
    for n in (1, 2, 10):
        dut = Softmax(n, NX, serial_multiplier=serial)
        if n == 10:  # the documented figures for the default numerics
            assert (dut.latency, dut.period, dut.interval) == ((46, 174, 16) if serial else (31, 47, 1))
        rng = np.random.default_rng(7)
        vectors = random_logits(rng, 4, n)
        flat = [int(v) for v in vectors.ravel()]
        accepted: list[int] = []
        emitted: list[tuple[int, int]] = []

        async def bench(ctx, dut=dut, flat=flat, accepted=accepted, emitted=emitted):
            ctx.set(dut.o.ready, 1)
            cycle = 0
            while len(emitted) < len(flat):
                pos = len(accepted)
                ctx.set(dut.i.valid, pos < len(flat))
                ctx.set(dut.i.payload, flat[pos] if pos < len(flat) else 0)
                _, _, i_ready, o_valid, o_payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
                if i_ready and pos < len(flat):
                    accepted.append(cycle)
                if o_valid:
                    emitted.append((cycle, o_payload))
                cycle += 1
                assert cycle < 1000

        sim = Simulator(dut)
        sim.add_clock(1e-6)
        sim.add_testbench(bench)
        sim.run()
        np.testing.assert_array_equal(
            np.array([p for _, p in emitted]).reshape(vectors.shape), Softmax.model(vectors, NX)
        )
        lasts = accepted[n - 1 :: n]
        assert np.diff(lasts).tolist() == [dut.period] * (len(lasts) - 1)
        out_cycles = [c for c, _ in emitted]
        for v in range(len(vectors)):
            assert out_cycles[v * n] - accepted[v * n + n - 1] == dut.latency
            assert np.diff(out_cycles[v * n : (v + 1) * n]).tolist() == [dut.interval] * (n - 1)


def test_no_multiplier_cell():
    """The normaliser is shift-add logic: no ``$mul`` reaches synthesis, so no DSP block is used."""
    text = rtlil.convert(Softmax(10, NX), name="top")
    assert "cell $mul " not in text and "$add" in text


def test_invalid_parameters():
    with pytest.raises(ValueError, match="^n:"):
        Softmax(0, NX)
    with pytest.raises(ValueError, match="^n:"):
        Softmax(2.0, NX)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^numerics:"):
        Softmax(10, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^lut_top_in_logic:"):
        Softmax(10, NX, lut_top_in_logic=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^serial_multiplier:"):
        Softmax(10, NX, serial_multiplier="yes")  # type: ignore[arg-type]


def test_verilog_convert_clean():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = verilog.convert(Softmax(10, NX), name="softmax")
    assert "module softmax" in text
