# amaranth: UnusedElaboratable=no
"""Activation RTL against golden.leaky_relu / golden.leaky_derivative, bit for bit."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.lib import data
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from specbp_rtl.config import TrainConfig
from specbp_rtl.fixed import SQ
from specbp_rtl.gateware.activation import Activation
from specbp_rtl.model import golden
from specbp_rtl.numerics import Numerics, Plan

PLAN = Numerics().plan(TrainConfig())


def pack(values: np.ndarray, width: int) -> int:
    """Lane values (lane 0 in the low bits) to one integer."""
    mask = (1 << width) - 1
    return sum((int(v) & mask) << (width * lane) for lane, v in enumerate(values))


def unpack(raw: int, width: int, lanes: int) -> list[int]:
    out = []
    for lane in range(lanes):
        v = (raw >> (width * lane)) & ((1 << width) - 1)
        out.append(v - (1 << width) if v >> (width - 1) else v)
    return out


def run(dut: Activation, z: np.ndarray, delta_in: np.ndarray, delta_z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply rows of ``(lanes,)`` vectors, one per cycle; returns ``(a, delta_out)`` (``dut.latency`` edges later)."""
    act_w, delta_w = dut.plan.numerics.act.width, dut.plan.numerics.delta.width
    a_rows, d_rows = [], []

    async def tb(ctx):
        for row in range(len(z)):
            ctx.set(dut.z.as_value(), pack(z[row], act_w))
            ctx.set(dut.delta_in.as_value(), pack(delta_in[row], delta_w))
            ctx.set(dut.delta_z.as_value(), pack(delta_z[row], act_w))
            if dut.latency:
                await ctx.tick()
            a_rows.append(unpack(ctx.get(dut.a.as_value()), act_w, dut.lanes))
            d_rows.append(unpack(ctx.get(dut.delta_out.as_value()), delta_w, dut.lanes))

    sim = Simulator(dut)
    if dut.latency:
        sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return np.array(a_rows, dtype=np.int64), np.array(d_rows, dtype=np.int64)


def full_range(fmt, rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(fmt.min, fmt.max, size=shape, endpoint=True)


def check(plan: Plan, lanes: int, z, delta_in, delta_z, latency: int = 0) -> tuple[np.ndarray, np.ndarray]:
    a, d = run(Activation(lanes, plan, latency), z, delta_in, delta_z)
    exp_a, exp_d = Activation.model(z, delta_in, delta_z, plan)
    np.testing.assert_array_equal(a, exp_a)
    np.testing.assert_array_equal(d, exp_d)
    return a, d


def test_signature():
    dut = Activation(4, PLAN)
    act, delta = PLAN.numerics.act.shape, PLAN.numerics.delta.shape
    assert dict(dut.signature.members) == {
        "z": In(data.ArrayLayout(act, 4)),
        "a": Out(data.ArrayLayout(act, 4)),
        "delta_in": In(data.ArrayLayout(delta, 4)),
        "delta_z": In(data.ArrayLayout(act, 4)),
        "delta_out": Out(data.ArrayLayout(delta, 4)),
    }
    assert dut.latency == 0 and Activation(4, PLAN, 1).latency == 1


@pytest.mark.parametrize(
    ("lanes", "plan", "message"),
    [
        (0, PLAN, "lanes: must be >= 1, got 0"),
        ("4", PLAN, "lanes: must be an integer"),
        (4, Numerics(), "plan: must be a numerics.Plan"),
    ],
)
def test_invalid_parameters(lanes, plan, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Activation(lanes, plan)


def test_invalid_latency():
    with pytest.raises(ValueError, match=re.escape("latency: must be 0 or 1, got 2")):
        Activation(4, PLAN, 2)


def test_model_is_golden():
    rng = np.random.default_rng(0)
    z = full_range(PLAN.numerics.act, rng, (50, 3))
    s = full_range(PLAN.numerics.delta, rng, (50, 3))
    a, d = Activation.model(z, s, z, PLAN)
    np.testing.assert_array_equal(a, golden.leaky_relu(z, PLAN))
    np.testing.assert_array_equal(d, golden.leaky_derivative(s, z, PLAN))


@pytest.mark.parametrize("latency", [0, 1])
def test_exhaustive_16_lanes(latency: int):
    """Every act value through leaky_relu, every delta value through the derivative (16 lanes)."""
    rng = np.random.default_rng(1)
    act, delta = PLAN.numerics.act, PLAN.numerics.delta
    z = np.arange(act.min, act.max + 1, dtype=np.int64).reshape(-1, 16)
    delta_in = rng.permutation(np.arange(delta.min, delta.max + 1, dtype=np.int64)).reshape(-1, 16)
    # derivative points: random signs, with 0, +1, -1, min and max frequent
    delta_z = full_range(act, rng, z.shape)
    corners = np.array([0, 1, -1, act.min, act.max])
    pick = rng.random(z.shape) < 0.3
    delta_z = np.where(pick, rng.choice(corners, size=z.shape), delta_z)
    a, d = check(PLAN, 16, z, delta_in, delta_z, latency)
    # spot checks of the rules themselves
    flat_z, flat_a = z.ravel(), a.ravel()
    assert flat_a[flat_z == act.max][0] == act.max
    assert flat_a[flat_z == 0][0] == 0
    assert flat_a[flat_z == act.min][0] == -328  # round(-32768 * 0.01) = -327.68 -> -328
    # slope_m / 2**21 = 0.0100002: -49 * slope = -0.49 rounds to 0, -50 * slope = -0.50001 to -1
    assert flat_a[flat_z == -49][0] == 0
    assert flat_a[flat_z == -50][0] == -1


@pytest.mark.parametrize(
    ("slope", "numerics"),
    [
        (0.01, Numerics()),
        (0.0, Numerics()),
        (0.3, Numerics()),
        (0.01, Numerics(act=SQ(3, 12), delta=SQ(2, 12), const_bits=11)),
    ],
    ids=["default", "slope0", "slope0.3", "other-formats"],
)
@pytest.mark.parametrize("latency", [0, 1])
def test_random_4_lanes(slope, numerics, latency):
    """600 random vectors (4 lanes) for several slopes and formats, corners included."""
    plan = numerics.plan(TrainConfig(slope=slope))
    rng = np.random.default_rng(2)
    act, delta = numerics.act, numerics.delta
    n = 600
    z = full_range(act, rng, (n, 4))
    delta_in = full_range(delta, rng, (n, 4))
    delta_z = full_range(act, rng, (n, 4))
    z[:3] = [[act.min, act.max, 0, -1], [1, act.min + 1, act.max - 1, -2], [0, 0, 0, 0]]
    delta_in[:3] = [[delta.min, delta.max, 0, -1], [delta.min, delta.min, delta.max, delta.max], [1, -1, 0, 7]]
    delta_z[:3] = [[act.min, act.min, act.min, act.min], [0, act.max, 0, 1], [-1, 1, 0, act.min]]
    a, d = check(plan, 4, z, delta_in, delta_z, latency)
    if slope == 0.0:
        assert (a[z <= 0] == 0).all() and (d[delta_z <= 0] == 0).all()


def test_verilog_convert_no_multiplier():
    dut = Activation(4, PLAN)
    assert "module activation" in verilog.convert(dut, name="activation")
    assert "$mul" not in rtlil.convert(Activation(4, PLAN), name="activation")
