"""The trainer's host bus and inference mode, in Amaranth's simulator."""

from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator

from specbp_rtl.config import TrainConfig
from specbp_rtl.gateware.host import (
    COUNTERS,
    REG_COUNTERS,
    REG_LANES,
    REG_METRIC,
    REG_SPEC_EN,
    REG_STATUS,
    REG_THRESHOLD,
    weight_address,
)
from specbp_rtl.gateware.layout import TrainerConfig
from specbp_rtl.gateware.microarch import Microarchitecture
from specbp_rtl.gateware.trainer import Trainer
from specbp_rtl.model.golden import FixedEngine
from specbp_rtl.sim.pysim import host_read, host_write


async def read_counters(ctx, bus) -> dict[str, int]:
    """Every performance counter over the host bus (low and high words)."""
    return {
        name: (await host_read(ctx, bus, REG_COUNTERS + 2 * n))
        | (await host_read(ctx, bus, REG_COUNTERS + 2 * n + 1)) << 32
        for n, name in enumerate(COUNTERS)
    }


def test_host_bus_weights_registers_counters_and_inference() -> None:
    train = TrainConfig(layers=(16, 8, 8, 4), batch=3, threshold=0.25)
    cfg = TrainerConfig(train=train, lanes=4)
    rng = np.random.default_rng(7)
    nx = cfg.numerics
    # random master weights over the whole format range (most negative and max included)
    new = []
    for layer in range(cfg.n_layers):
        w = rng.integers(nx.weight.min // 64, nx.weight.max // 64, size=(cfg.n_out(layer), cfg.n_in(layer)))
        b = rng.integers(nx.weight.min // 64, nx.weight.max // 64, size=cfg.n_out(layer))
        w[0, 0], b[-1] = nx.weight.min, nx.weight.max
        new.append((w, b))
    x = rng.integers(0, 256, size=(6, 16)).astype(np.uint8)
    dut = Trainer(cfg)
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen: dict = {}

    async def bench(ctx) -> None:
        bus = dut.host
        assert await host_read(ctx, bus, REG_LANES) == 4
        assert await host_read(ctx, bus, REG_STATUS) == 0
        assert await host_read(ctx, bus, REG_SPEC_EN) == 1
        for reg, value in ((REG_THRESHOLD, 1234), (REG_METRIC, 1), (REG_SPEC_EN, 0)):
            await host_write(ctx, bus, reg, value)
            assert await host_read(ctx, bus, reg) == value
        for layer, (w, b) in enumerate(new):
            words = cfg.to_words(layer, w, b)
            for word, row in enumerate(words):
                for lane, value in enumerate(row):
                    await host_write(ctx, bus, weight_address(layer, word, lane, cfg.lanes), int(value))
        for layer, (w, b) in enumerate(new):
            words = np.zeros((cfg.words(layer), cfg.lanes), dtype=np.int64)
            for word in range(cfg.words(layer)):
                for lane in range(cfg.lanes):
                    words[word, lane] = await host_read(
                        ctx, bus, weight_address(layer, word, lane, cfg.lanes), signed=True
                    )
            hw_w, hw_b = cfg.from_words(layer, words)
            assert np.array_equal(hw_w, w) and np.array_equal(hw_b, b)
        # inference on the loaded weights
        ctx.set(dut.result.ready, 1)
        predictions = []
        for row in x:
            for px in row:
                ctx.set(dut.sample.payload, {"pixel": int(px), "label": 0, "infer": 1, "epoch_start": 0})
                ctx.set(dut.sample.valid, 1)
                await ctx.tick().until(dut.sample.ready)
            ctx.set(dut.sample.valid, 0)
            (r,) = await ctx.tick().sample(dut.result.payload).until(dut.result.valid)
            predictions.append(int(r.prediction))
        seen["predictions"] = predictions
        seen["counters"] = await read_counters(ctx, bus)
        seen["port"] = {name: int(ctx.get(dut.counters[name])) for name in COUNTERS}

    sim.add_testbench(bench)
    sim.run()
    golden = FixedEngine(train)
    for (w, b), (nw, nb) in zip(golden.params, new):
        w[...] = nw
        b[...] = nb
    golden._refresh()
    assert seen["predictions"] == golden.predict(x).tolist()
    assert seen["counters"]["inferences"] == 6
    assert seen["counters"]["steps"] == 0
    for name in COUNTERS:
        if name != "cycles":
            assert seen["counters"][name] == seen["port"][name], name


def test_counters_in_a_memory_read_over_the_host_bus() -> None:
    """``counter_memory``: the event counters live in a CounterBank; host reads (which wait for the counter's
    visit) return the same counts as the simulator's peek, and the step counters match the golden model."""
    train = TrainConfig(layers=(16, 8, 4), batch=3, threshold=0.25)
    cfg = TrainerConfig(train=train, lanes=4, arch=Microarchitecture(counter_memory="block", counter_width=48))
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, size=(7, 16)).astype(np.uint8)
    y = rng.integers(0, 4, size=7)
    dut = Trainer(cfg)
    assert "counters" not in dut.signature.members
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    seen: dict = {}

    async def bench(ctx) -> None:
        bus = dut.host
        ctx.set(dut.result.ready, 1)
        for row, label in zip(x, y):
            for px in row:
                ctx.set(dut.sample.payload, {"pixel": int(px), "label": int(label), "infer": 0, "epoch_start": 0})
                ctx.set(dut.sample.valid, 1)
                await ctx.tick().until(dut.sample.ready)
            ctx.set(dut.sample.valid, 0)
            await ctx.tick().until(dut.result.valid)
        while not ctx.get(dut.idle):
            await ctx.tick()
        seen["peek"] = dut.peek_counters(ctx)
        seen["host"] = await read_counters(ctx, bus)
        assert await host_read(ctx, bus, REG_LANES) == 4  # the read pipeline still answers after bank reads
        latencies = []
        for n in range(2 * len(COUNTERS) + 3):  # every phase of the scan
            ctx.set(bus.addr, REG_COUNTERS + 2 * COUNTERS.index("steps"))
            ctx.set(bus.re, 1)
            await ctx.tick()
            ctx.set(bus.re, 0)
            cycles = 1
            while not ctx.get(bus.rvalid):
                await ctx.tick()
                cycles += 1
            assert ctx.get(bus.rdata) == 7
            latencies.append(cycles)
            await ctx.tick().repeat(1 + n)
        seen["latencies"] = latencies

    sim.add_testbench(bench)
    sim.run()
    assert seen["host"]["steps"] == 7 and seen["host"]["hits"] > 0
    assert seen["host"]["updates"] == 3
    for name in COUNTERS:
        if name != "cycles":
            assert seen["host"][name] == seen["peek"][name], name
    # HostBus: a bank counter's read is answered 4 to 2 * len(COUNTERS) + 3 cycles after the request
    assert min(seen["latencies"]) == 4 and max(seen["latencies"]) == 2 * len(COUNTERS) + 3
    assert seen["peek"]["cycles"] < seen["host"]["cycles"] < seen["peek"]["cycles"] + 40 * 2 * len(COUNTERS)
