# amaranth: UnusedElaboratable=no
"""CounterBank: counts in a memory with one adder, against numpy running sums."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from specbp_rtl.gateware.counters import CounterBank


@pytest.mark.parametrize(("n", "width", "density"), [(15, 32, 0.5), (2, 8, 0.9), (5, 4, 1.0)])
def test_counts_and_reads_match_running_sums(n: int, width: int, density: float) -> None:
    """Random events on every counter (the last counter every cycle), from a memory of random words: the peeked
    counts equal the running sums (modulo 2**width) in every cycle, and each read's answer is a running sum from
    between its acceptance and its answer."""
    rng = np.random.default_rng(n)
    cycles = 40 * n + 300
    events = rng.random((cycles, n)) < density
    events[:, -1] = True
    dut = CounterBank(n, width)
    sums = np.cumsum(events, axis=0)  # sums[t]: events of cycles 0 .. t
    mask = (1 << width) - 1
    answers: list[tuple[int, int, int, int]] = []

    async def testbench(ctx) -> None:
        ctx.set(dut.value.ready, 1)
        want, accepted = None, None
        for k in range(n):  # the memory's contents before the first scan are not counts (an SPRAM's are random)
            ctx.set(dut._mem.data[k], int(rng.integers(0, 1 << width)))
        for t in range(cycles):
            ctx.set(dut.inc, int(sum(int(b) << k for k, b in enumerate(events[t]))))
            before = sums[t - 1] if t else np.zeros(n, np.int64)
            assert ctx.get(dut.value.valid) == 0 or want is not None
            if ctx.get(dut.value.valid):
                answers.append((want, accepted, t, ctx.get(dut.value.payload)))
                want = None
            assert dut.peek(ctx) == [int(v) & mask for v in before], t
            if want is None and ctx.get(dut.read.ready) and t % 3 == 0 and t < cycles - 2 * n - 4:
                want, accepted = int(rng.integers(0, n)), t
                ctx.set(dut.read.payload, want)
                ctx.set(dut.read.valid, 1)
            else:
                ctx.set(dut.read.valid, 0)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()
    assert len(answers) > 10
    for k, accepted, answered, value in answers:
        assert 2 <= answered - accepted <= 2 * n + 1
        low = int(sums[accepted - 1, k]) if accepted else 0
        candidates = {int(sums[t - 1, k]) & mask if t else 0 for t in range(accepted, answered)}
        assert value in candidates, (k, accepted, answered, value, low)


@pytest.mark.parametrize(
    ("kwargs", "name"), [({"n": 1, "width": 8}, "n"), ({"n": 4, "width": 0}, "width"), ({"n": 4, "width": 65}, "width")]
)
def test_invalid_parameters_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"^{name}:"):
        CounterBank(**kwargs)
