"""cocotb testbench: the small Trainer's Verilog against the golden model (run by ``run.py``).

Trains a few digits samples on the ``trainer`` module that
``amaranth.back.verilog`` generated from :class:`specbp_rtl.gateware.Trainer`
(:func:`common.trainer_config`: 64-16-10, 4 lanes, speculation on), one pixel
per beat with random ``valid`` gaps and random back-pressure on the result
stream, then reads every master weight and the step counters back over the
host bus. It checks, against :class:`specbp_rtl.model.SpeculativeTrainer`
driving :class:`specbp_rtl.model.FixedEngine` on the same samples:

* the step kind of every result beat (sequential, first sighting, hit, miss);
* every weight and bias, bit for bit (:func:`specbp_rtl.testing.assert_matches_model`
  names the first difference);
* the ``steps``, ``first_sightings``, ``hits`` and ``misses`` counters.
"""

from __future__ import annotations

import random

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge
from common import offer, trainer_config, trainer_samples, trainer_settings

from specbp_rtl.gateware import COUNTERS, result_layout, sample_layout, weight_address
from specbp_rtl.gateware.host import REG_COUNTERS
from specbp_rtl.model import FixedEngine, SpeculativeTrainer
from specbp_rtl.steps import StepKind
from specbp_rtl.testing import assert_matches_model


async def host_reads(dut, addresses: list[int]) -> list[int]:
    """Pipelined host-bus reads (one request per cycle, answers five cycles later, in order); 32-bit words."""
    answers: list[int] = []
    pending = list(addresses)
    while len(answers) < len(addresses):
        if pending:
            dut.host__addr.value = pending.pop(0)
            dut.host__re.value = 1
        else:
            dut.host__re.value = 0
        await ReadOnly()
        if int(dut.host__rvalid.value):
            answers.append(int(dut.host__rdata.value))
        await RisingEdge(dut.clk)
    dut.host__re.value = 0
    return answers


def signed32(value: int) -> int:
    return value - (1 << 32) if value & (1 << 31) else value


@cocotb.test()
async def trainer_matches_golden(dut) -> None:
    settings = trainer_settings()
    cfg = trainer_config(settings)
    x, y = trainer_samples(settings)
    s_layout, r_layout = sample_layout(cfg), result_layout(cfg)
    chance = random.Random(settings["seed"])

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for name in ("sample__valid", "result__ready", "host__re", "host__we", "host__addr", "host__wdata"):
        getattr(dut, name).value = 0
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await RisingEdge(dut.clk)

    kinds: list[StepKind] = []
    for n in range(len(y)):
        for j, pixel in enumerate(x[n]):
            beat = s_layout.const(
                {"pixel": int(pixel), "label": int(y[n]), "infer": 0, "epoch_start": int(n == 0 and j == 0)}
            ).as_bits()
            await offer(dut, dut.sample__valid, dut.sample__ready, dut.sample__payload, beat, chance, gap=0.1)
        dut.sample__valid.value = 0
        while True:  # the result beat, with random back-pressure
            dut.result__ready.value = int(chance.random() < 0.6)
            await ReadOnly()
            done = int(dut.result__valid.value) and int(dut.result__ready.value)
            beat = r_layout.from_bits(int(dut.result__payload.value)) if done else None
            await RisingEdge(dut.clk)
            if done:
                kinds.append(beat.kind)  # a StepKind
                break
        dut.result__ready.value = 0
    while True:  # a pending update runs after the last result
        await ReadOnly()
        idle = int(dut.idle.value)
        await RisingEdge(dut.clk)
        if idle:
            break

    lanes = cfg.lanes
    params = []
    for layer in range(cfg.n_layers):
        addresses = [
            weight_address(layer, word, lane, lanes) for word in range(cfg.words(layer)) for lane in range(lanes)
        ]
        words = np.array([signed32(v) for v in await host_reads(dut, addresses)], dtype=np.int64)
        params.append(cfg.from_words(layer, words.reshape(cfg.words(layer), lanes)))
    names = ("steps", "first_sightings", "hits", "misses")
    counters = dict(zip(names, await host_reads(dut, [REG_COUNTERS + 2 * COUNTERS.index(k) for k in names])))

    golden = SpeculativeTrainer(FixedEngine(cfg.train, cfg.numerics), log=[])
    golden.train_epoch(x, y)
    assert kinds == golden.log, f"step kinds: hardware {kinds}, golden {golden.log}"
    for layer, ((w, b), (gw, gb)) in enumerate(zip(params, golden.engine.params)):
        assert_matches_model(w, gw, what=f"layer {layer} weights")
        assert_matches_model(b, gb, what=f"layer {layer} biases")
    want = {k: getattr(golden.counters, k) for k in names}
    assert counters == want, f"counters: hardware {counters}, golden {want}"
    init = FixedEngine(cfg.train, cfg.numerics).params
    assert any((w != w0).any() for (w, _), (w0, _) in zip(params, init)), "the weights never changed"
    dut._log.info(
        "trained %d samples (%s): step kinds, %d weights and counters %s equal the golden model's",
        len(y),
        " ".join(k.label for k in kinds),
        sum(w.size + b.size for w, b in params),
        counters,
    )
