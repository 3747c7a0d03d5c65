"""Async-testbench helpers for ``amaranth.lib.stream`` interfaces.

``put``/``get`` transfer one beat; ``gaps`` waits a random number of cycles so
that tests exercise valid-low and ready-low (back-pressure) cycles.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from amaranth.sim import Simulator


async def gaps(ctx, rng: np.random.Generator | None, most: int = 3) -> None:
    """Idle for 0..most cycles (never when ``rng`` is None)."""
    if rng is not None:
        for _ in range(int(rng.integers(0, most + 1))):
            await ctx.tick()


async def put(ctx, stream, payload, rng: np.random.Generator | None = None) -> None:
    """Send one beat on a stream the DUT consumes (``stream.ready`` from the DUT)."""
    await gaps(ctx, rng)
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def get(ctx, stream, rng: np.random.Generator | None = None):
    """Receive one beat from a stream the DUT produces; returns the payload."""
    await gaps(ctx, rng)
    ctx.set(stream.ready, 1)
    (payload,) = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return payload


async def isolated_latency(ctx, dut, beat, limit: int = 20) -> int:
    """Send one beat on ``dut.i`` with ``o.ready`` high; cycles from its accepting edge to ``o.valid``."""
    ctx.set(dut.o.ready, 1)
    ctx.set(dut.i.payload, beat)
    ctx.set(dut.i.valid, 1)
    assert ctx.get(dut.i.ready)
    await ctx.tick()  # accepting edge
    ctx.set(dut.i.valid, 0)
    cycles = 0
    while not ctx.get(dut.o.valid):
        await ctx.tick()
        cycles += 1
        assert cycles < limit
    return cycles


def run_stream(dut, beats: list, n_out: int, to_row: Callable[[Any], list[int]], seed: int | None = 0,
               tail: int = 8) -> np.ndarray:
    """Feed ``beats`` into ``dut.i`` and collect ``n_out`` rows from ``dut.o`` with random gaps on both sides.

    ``seed=None``: no gaps. A background monitor checks the stream rule
    (payload held while valid and not ready); afterwards ``o.valid`` must stay
    low for ``tail`` cycles. Returns the rows as an int64 array.
    """
    rng_in = np.random.default_rng(seed) if seed is not None else None
    rng_out = np.random.default_rng(seed + 1) if seed is not None else None
    results: list[list[int]] = []
    errors: list[str] = []  # checked after the run: an exception inside a testbench leaves the others dangling
    cycles = [0]

    async def producer(ctx):
        for beat in beats:
            await put(ctx, dut.i, beat, rng_in)

    async def consumer(ctx):
        for _ in range(n_out):
            payload = await get(ctx, dut.o, rng_out)
            results.append([int(v) for v in to_row(payload)])
        ctx.set(dut.o.ready, 1)
        for _ in range(tail):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                errors.append("extra output beat")

    async def monitor(ctx):
        held = None
        async for _, _, valid, ready, payload in ctx.tick().sample(dut.o.valid, dut.o.ready, dut.o.payload.as_value()):
            cycles[0] += 1
            if held is not None and not (valid and payload == held):
                errors.append("o.payload/o.valid changed while stalled")
            held = payload if valid and not ready else None

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(monitor, background=True)
    limit = 10 * (len(beats) + 10)  # every beat waits at most 3 + 3 gap cycles plus the latency
    while sim.advance():
        if cycles[0] > limit:
            raise AssertionError(f"timeout: {len(results)} output beats after {limit} cycles")
    assert not errors, errors[:3]
    return np.array(results, dtype=np.int64).reshape(-1, len(results[0]) if results else 0)
