"""Gateware helpers: :func:`~specbp_rtl.gateware.util.delay` in flip-flops and in a memory line."""

from __future__ import annotations

import random

import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from specbp_rtl.gateware.util import delay


@pytest.mark.parametrize("cycles", [2, 3, 7])
@pytest.mark.parametrize("ram_min", [0, 2])
@pytest.mark.parametrize("gated", [False, True])
def test_delay_matches_a_shift_register(cycles: int, ram_min: int, gated: bool) -> None:
    """Output = the input ``cycles`` (enabled) cycles before, flip-flops or memory line alike."""
    m = Module()
    value, en = Signal(8), Signal()
    out = delay(m, value, cycles, "x", ram_min=ram_min, en=en if gated else None)
    rng = random.Random(cycles * 10 + ram_min + gated)
    inputs = [(rng.randrange(256), (rng.random() < 0.7) if gated else True) for _ in range(60)]

    async def bench(ctx) -> None:
        line = [0] * cycles  # what a fresh shift register (or zero-filled line) holds
        for step, (v, e) in enumerate(inputs):
            ctx.set(value, v)
            ctx.set(en, e)
            if step >= cycles or not ram_min:  # a memory line's first words are undefined on a device
                assert ctx.get(out) == line[-1], step
            await ctx.tick()
            if e:
                line = [v] + line[:-1]

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize(("cycles", "ram_min", "memory"), [(7, 0, False), (7, 3, True), (2, 3, False), (3, 3, True)])
def test_delay_line_in_memory_only_when_long_enough(cycles: int, ram_min: int, memory: bool) -> None:
    m = Module()
    value = Signal(8)
    out = delay(m, value, cycles, "x", ram_min=ram_min)
    text = rtlil.convert(m, ports=[value, out])
    assert ("x_line" in text) == memory
