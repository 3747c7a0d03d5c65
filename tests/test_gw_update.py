# amaranth: UnusedElaboratable=no
"""UpdateUnit RTL against golden.sgd_update, bit for bit."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import Fragment
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from specbp_rtl.config import TrainConfig
from specbp_rtl.fixed import SQ, UQ
from specbp_rtl.gateware.update import UpdateUnit
from specbp_rtl.model import golden
from specbp_rtl.numerics import Numerics
from specbp_rtl.testing import get, isolated_latency, put
from specbp_rtl.testing import run_stream as stream_run

PLAN = Numerics().plan(TrainConfig())
WEIGHT = PLAN.numerics.weight


def run_stream(dut: UpdateUnit, w: np.ndarray, g: np.ndarray, seed: int | None = 0, tail: int = 6) -> np.ndarray:
    """Stream rows of ``w``/``g`` through the unit with random gaps (``seed=None``: none); returns new ``w``."""
    beats = [{"w": [int(v) for v in w[row]], "g": [int(v) for v in g[row]]} for row in range(len(w))]
    return stream_run(dut, beats, len(w), lambda p: [p.w[lane] for lane in range(dut.lanes)], seed, tail)


def random_operands(rng: np.random.Generator, n: int, lanes: int, grad, clip_int: int, weight=WEIGHT):
    """Weights and gradients mixing full-range values, values near the clip bound and small ones."""
    w = rng.integers(weight.min, weight.max, (n, lanes), endpoint=True)
    w_near = np.where(rng.random((n, lanes)) < 0.5, weight.max, weight.min) - rng.integers(-50, 50, (n, lanes))
    w = np.where(rng.random((n, lanes)) < 0.2, np.clip(w_near, weight.min, weight.max), w)
    g_full = rng.integers(grad.min, grad.max, (n, lanes), endpoint=True)
    g_clip = rng.choice([-1, 1], (n, lanes)) * clip_int + rng.integers(-3, 4, (n, lanes))
    g_small = rng.integers(-(1 << 20), 1 << 20, (n, lanes))
    pick = rng.random((n, lanes))
    g = np.where(pick < 0.3, g_full, np.where(pick < 0.6, g_clip, g_small))
    return w, np.clip(g, grad.min, grad.max)


def corner_operands(grad, clip_int: int, lanes: int = 4, weight=WEIGHT):
    """Saturation both ways, zero, clip bounds, the most negative and largest values."""
    c, gmin, gmax, wmin, wmax = clip_int, grad.min, grad.max, weight.min, weight.max
    rows = [
        ([wmax, wmax, wmin, wmin], [gmin, -c, gmax, c]),  # saturate up / down
        ([wmax - 1, wmin + 1, 0, 0], [-c - 1, c + 1, gmin, gmax]),
        ([0, 0, 0, 0], [0, 0, 0, 0]),
        ([wmin, wmax, wmin, wmax], [0, 0, -1, 1]),
        ([0, 0, 0, 0], [c, -c, c - 1, -c + 1]),
        ([1, -1, wmax, wmin], [1, -1, -1, 1]),
    ]
    w = np.array([r[0] for r in rows], dtype=np.int64)[:, :lanes]
    g = np.clip(np.array([r[1] for r in rows], dtype=np.int64), gmin, gmax)[:, :lanes]
    return w, g


def test_signature():
    dut = UpdateUnit.for_layer(4, PLAN, 1)
    w_array = data.ArrayLayout(WEIGHT.shape, 4)
    g_array = data.ArrayLayout(PLAN.grad[1].shape, 4)
    assert dict(dut.signature.members) == {
        "i": In(stream.Signature(data.StructLayout({"w": w_array, "g": g_array}))),
        "o": Out(stream.Signature(data.StructLayout({"w": w_array}))),
    }
    assert (dut.weight, dut.grad, dut.clip_int, dut.lr_m, dut.shift) == (
        WEIGHT,
        PLAN.grad[1],
        PLAN.clip_int(1),
        PLAN.lr_m,
        PLAN.update_shift(1),
    )
    Fragment.get(dut, None)  # elaborates (for_layer's instances are created in update.py)


GOOD = {"weight": SQ(2, 21), "grad": SQ(5, 22), "clip_int": 100, "lr_m": 5, "shift": 3}


@pytest.mark.parametrize(
    ("lanes", "changes", "message"),
    [
        (0, {}, "lanes: must be >= 1, got 0"),
        (1.5, {}, "lanes: must be an integer"),
        (2, {"weight": UQ(2, 21)}, "weight: must be a signed fixed.Q format"),
        (2, {"grad": 28}, "grad: must be a signed fixed.Q format"),
        (2, {"clip_int": -1}, "clip_int: must be >= 0, got -1"),
        (2, {"lr_m": 0}, "lr_m: must be >= 1, got 0"),
        (2, {"shift": 2.0}, "shift: must be an integer"),
    ],
)
def test_invalid_parameters(lanes, changes, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        UpdateUnit(lanes, **{**GOOD, **changes})


def test_for_layer_invalid():
    with pytest.raises(ValueError, match=re.escape("layer: must be in 0..2, got 3")):
        UpdateUnit.for_layer(4, PLAN, 3)
    with pytest.raises(ValueError, match=re.escape("plan: must be a numerics.Plan")):
        UpdateUnit.for_layer(4, Numerics(), 0)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_apply_equals_golden(layer: int):
    rng = np.random.default_rng(layer)
    dut = UpdateUnit.for_layer(3, PLAN, layer)
    w, g = random_operands(rng, 2000, 3, PLAN.grad[layer], PLAN.clip_int(layer))
    expected = golden.sgd_update(w, g, layer, PLAN)
    np.testing.assert_array_equal(UpdateUnit.model(w, g, layer, PLAN), expected)
    np.testing.assert_array_equal(dut.apply(w, g), expected)
    Fragment.get(dut, None)  # elaborates (for_layer's instances are created in update.py)


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_random_and_corners(layer: int):
    """500 random words (4 lanes) plus the corner words, per layer, with random gaps both sides."""
    rng = np.random.default_rng(10 + layer)
    grad, clip_int = PLAN.grad[layer], PLAN.clip_int(layer)
    dut = UpdateUnit.for_layer(4, PLAN, layer)
    w, g = random_operands(rng, 500, 4, grad, clip_int)
    cw, cg = corner_operands(grad, clip_int)
    w, g = np.concatenate([cw, w]), np.concatenate([cg, g])
    got = run_stream(dut, w, g, seed=layer)
    np.testing.assert_array_equal(got, UpdateUnit.model(w, g, layer, PLAN))
    # saturation happened in both directions, and the clip bound was exercised
    assert (got == WEIGHT.max).any() and (got == WEIGHT.min).any()
    assert (np.abs(g) > clip_int).any()


@pytest.mark.parametrize(
    "params",
    [
        {"weight": SQ(1, 6), "grad": SQ(3, 4), "clip_int": 1000, "lr_m": 7, "shift": -2},  # clip above grad.max
        {"weight": SQ(3, 4), "grad": SQ(6, 2), "clip_int": 0, "lr_m": 1, "shift": 0},  # everything clipped to 0
        {"weight": SQ(4, 8), "grad": SQ(8, 8), "clip_int": 777, "lr_m": 43, "shift": 9},
    ],
    ids=["left-shift", "clip0", "odd"],
)
def test_other_parameters(params):
    """Unusual constants: left shifts, clip bound outside the format, zero clip."""
    rng = np.random.default_rng(20)
    dut = UpdateUnit(4, **params)
    weight, grad = params["weight"], params["grad"]
    w = rng.integers(weight.min, weight.max, (300, 4), endpoint=True)
    g = rng.integers(grad.min, grad.max, (300, 4), endpoint=True)
    cw, cg = corner_operands(grad, min(params["clip_int"], grad.max), weight=weight)
    w, g = np.concatenate([cw, w]), np.concatenate([cg, g])
    got = run_stream(dut, w, g, seed=21)
    np.testing.assert_array_equal(got, dut.apply(w, g))


@pytest.mark.parametrize("delay_ram_min", [0, 3])
def test_shared_unit_all_layers(delay_ram_min: int):
    """One unit for every layer (the trainer's): beats of the layers interleaved at random, each bit-exact
    under random back-pressure; the old weights in registers or in a memory line (the iCEBreaker's)."""
    rng = np.random.default_rng(40)
    dut = UpdateUnit.for_plan(4, PLAN, delay_ram_min)
    assert dut.grads == tuple(PLAN.grad) and dut.shifts == tuple(PLAN.update_shift(k) for k in range(3))
    rows, layers = [], rng.integers(0, 3, 600)
    for k, layer in enumerate(layers):
        if k < 18:  # corners of every layer first
            layer = layers[k] = k // 6
            w, g = corner_operands(PLAN.grad[layer], PLAN.clip_int(layer))
            w, g = w[k % 6 : k % 6 + 1], g[k % 6 : k % 6 + 1]
        else:
            w, g = random_operands(rng, 1, 4, PLAN.grad[layer], PLAN.clip_int(layer))
        rows.append((w[0], g[0]))
    beats = [
        {"w": [int(v) for v in w], "g": [int(v) for v in g], "layer": int(layer)} for (w, g), layer in zip(rows, layers)
    ]
    got = stream_run(dut, beats, len(beats), lambda p: [p.w[lane] for lane in range(4)], seed=41)
    for layer in range(3):
        sel = layers == layer
        w = np.array([r[0] for r in rows])[sel]
        g = np.array([r[1] for r in rows])[sel]
        np.testing.assert_array_equal(got[sel], UpdateUnit.model(w, g, layer, PLAN))
        np.testing.assert_array_equal(got[sel], dut.apply(w, g, layer))
    assert (got == WEIGHT.max).any() and (got == WEIGHT.min).any()


def test_shared_unit_invalid():
    with pytest.raises(ValueError, match=re.escape("shift: needs one value per layer (2), got 1")):
        UpdateUnit(2, weight=SQ(2, 21), grad=[SQ(5, 22), SQ(5, 20)], clip_int=[1, 2], lr_m=3, shift=[1])
    with pytest.raises(ValueError, match=re.escape("clip_int: must be >= 0, got -2")):
        UpdateUnit(2, weight=SQ(2, 21), grad=[SQ(5, 22), SQ(5, 20)], clip_int=[1, -2], lr_m=3, shift=[1, 2])
    with pytest.raises(ValueError, match=re.escape("plan: must be a numerics.Plan")):
        UpdateUnit.for_plan(4, Numerics())
    with pytest.raises(ValueError, match=re.escape("delay_ram_min: must be 0 or an integer >= 2, got -3")):
        UpdateUnit(2, weight=SQ(2, 21), grad=SQ(5, 22), clip_int=1, lr_m=3, shift=1, delay_ram_min=-3)


def test_latency_and_throughput():
    lanes, n = 2, 10
    dut = UpdateUnit.for_layer(lanes, PLAN, 0)
    rng = np.random.default_rng(30)
    w, g = random_operands(rng, n, lanes, PLAN.grad[0], PLAN.clip_int(0))
    expected = UpdateUnit.model(w, g, 0, PLAN)
    beats = [{"w": [int(v) for v in w[k]], "g": [int(v) for v in g[k]]} for k in range(n)]
    record: dict = {}

    async def tb(ctx):
        record["latency"] = await isolated_latency(ctx, dut, beats[0])
        assert [ctx.get(dut.o.payload).w[lane] for lane in range(lanes)] == expected[0].tolist()
        await ctx.tick()
        outputs, valid_cycles = [], []
        for cycle in range(n + UpdateUnit.LATENCY + 3):
            ctx.set(dut.i.valid, cycle < n)
            if cycle < n:
                ctx.set(dut.i.payload, beats[cycle])
            _, _, ready, valid, payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            assert ready
            if valid:
                valid_cycles.append(cycle)
                outputs.append([payload.w[lane] for lane in range(lanes)])
        record["valid_cycles"], record["outputs"] = valid_cycles, outputs

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert record["latency"] == UpdateUnit.LATENCY == 5
    assert record["valid_cycles"] == list(range(UpdateUnit.LATENCY + 1, UpdateUnit.LATENCY + 1 + n))
    np.testing.assert_array_equal(np.array(record["outputs"]), expected)


def test_stall_holds_everything():
    lanes, n = 2, 9
    dut = UpdateUnit.for_layer(lanes, PLAN, 2)
    rng = np.random.default_rng(31)
    w, g = random_operands(rng, n, lanes, PLAN.grad[2], PLAN.clip_int(2))
    beats = [{"w": [int(v) for v in w[k]], "g": [int(v) for v in g[k]]} for k in range(n)]
    got = []

    async def tb(ctx):
        accepted = 0
        for _ in range(10):  # o.ready low throughout
            ctx.set(dut.i.payload, beats[accepted])
            ctx.set(dut.i.valid, 1)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            accepted += ready
        assert accepted == UpdateUnit.LATENCY + 1
        assert not ctx.get(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(accepted):
            got.append(await get(ctx, dut.o))
        for k in range(accepted, n):
            await put(ctx, dut.i, beats[k])
            got.append(await get(ctx, dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    rows = [[p.w[lane] for lane in range(lanes)] for p in got]
    np.testing.assert_array_equal(np.array(rows), UpdateUnit.model(w, g, 2, PLAN))


def test_sixteen_lane_smoke():
    rng = np.random.default_rng(40)
    grad, clip_int = PLAN.grad[1], PLAN.clip_int(1)
    dut = UpdateUnit.for_layer(16, PLAN, 1)
    w, g = random_operands(rng, 40, 16, grad, clip_int)
    got = run_stream(dut, w, g, seed=41)
    np.testing.assert_array_equal(got, UpdateUnit.model(w, g, 1, PLAN))


@pytest.mark.parametrize("layer", [0, 1, 2])
def test_verilog_convert_no_multiplier(layer: int):
    assert "module update" in verilog.convert(UpdateUnit.for_layer(2, PLAN, layer), name="update")
    assert "$mul" not in rtlil.convert(UpdateUnit.for_layer(2, PLAN, layer), name="update")
