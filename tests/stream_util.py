"""Async-testbench helpers for ``amaranth.lib.stream`` interfaces.

``put``/``get`` transfer one beat; ``gaps`` waits a random number of cycles so
that tests exercise valid-low and ready-low (back-pressure) cycles.
"""

from __future__ import annotations

import numpy as np


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
