"""cocotb testbench: the Comparator's Verilog against ``Comparator.model`` (run by ``run.py``).

Streams random probability pairs (all three hardware metrics, several
thresholds) into the ``comparator`` module that ``amaranth.back.verilog``
generated, with random ``valid`` gaps and ``ready``-low back-pressure, and
checks every ``(hit, distance)`` result against
:meth:`specbp_rtl.gateware.Comparator.model`, the bit-exact model the
project's Amaranth-simulator tests use.

Settings from the environment: ``SPECBP_TB_ROWS`` (default 60),
``SPECBP_TB_SEED`` (default 1).
"""

from __future__ import annotations

import os
import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from common import offer

from specbp_rtl.config import TrainConfig
from specbp_rtl.gateware import Comparator, Metric
from specbp_rtl.numerics import HW_METRICS, Numerics

CLASSES = 10


def vectors(rng: np.random.Generator, rows: int, prob_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Stored and current probability rows: half of them close to each other, half unrelated."""
    stored = rng.integers(0, prob_max + 1, size=(rows, CLASSES))
    near = np.clip(stored + rng.integers(-40, 41, size=(rows, CLASSES)), 0, prob_max)
    far = rng.integers(0, prob_max + 1, size=(rows, CLASSES))
    current = np.where(rng.random((rows, 1)) < 0.5, near, far)
    return stored.astype(np.int64), current.astype(np.int64)


@cocotb.test()
async def comparator_matches_model(dut) -> None:
    rows = int(os.environ.get("SPECBP_TB_ROWS", "60"))
    seed = int(os.environ.get("SPECBP_TB_SEED", "1"))
    nx = Numerics()
    model_dut = Comparator(CLASSES, nx)  # not simulated: its layouts pack and unpack the Verilog ports
    rng = np.random.default_rng(seed)
    chance = random.Random(seed)
    stored, current = vectors(rng, rows, nx.prob.max)
    thresholds = rng.choice([0.0, 0.0005, 0.002, 0.01, 0.05], size=rows)
    plans = [
        nx.plan(
            TrainConfig(layers=(4, 3, CLASSES), metric=HW_METRICS[r % len(HW_METRICS)], threshold=float(thresholds[r]))
        )
        for r in range(rows)
    ]

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 0
    dut.threshold.value = 0
    dut.metric.value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    got: list[tuple[int, int]] = []

    # Both sides write their inputs right after a clock edge, look at the settled values in ReadOnly and so
    # know whether a beat transfers on the next edge.
    async def consume() -> None:
        while len(got) < rows:
            dut.o__ready.value = int(chance.random() < 0.7)  # back-pressure
            await ReadOnly()
            if int(dut.o__valid.value) and int(dut.o__ready.value):
                beat = model_dut.out_layout.from_bits(int(dut.o__payload.value))
                got.append((int(beat.hit), int(beat.distance)))
            await RisingEdge(dut.clk)

    consumer = cocotb.start_soon(consume())
    for r in range(rows):
        # the threshold is sampled with a comparison's last beat, the metric with every beat
        dut.threshold.value = plans[r].threshold_int
        dut.metric.value = Metric.from_name(plans[r].config.metric).value
        for k in range(CLASSES):
            beat = model_dut.in_layout.const({"stored": int(stored[r, k]), "current": int(current[r, k])}).as_bits()
            await offer(dut, dut.i__valid, dut.i__ready, dut.i__payload, beat, chance, gap=0.3)
        dut.i__valid.value = 0
    await consumer

    assert len(got) == rows
    for r, (hit, distance) in enumerate(got):
        want_hit, want_distance = Comparator.model(stored[r : r + 1], current[r : r + 1], plans[r])
        want = (int(want_hit[0]), int(want_distance[0]))
        assert (hit, distance) == want, (
            f"row {r} ({plans[r].config.metric}, threshold {plans[r].threshold_int}): "
            f"got (hit, distance) {(hit, distance)}, model {want}"
        )
    hits = sum(h for h, _ in got)
    assert 0 < hits < rows, f"{hits} hits in {rows} rows: the vectors do not exercise both outcomes"
    dut._log.info("checked %d comparisons (%d hits) against Comparator.model", rows, hits)
