"""``pysim`` backend: the Trainer in Amaranth's own simulator.

:class:`PysimTrainer` elaborates a :class:`~specbp_rtl.gateware.trainer.Trainer`
and drives it with an async testbench: samples are streamed one pixel per
cycle, results are consumed as they come, weights are read back from the
weight memories, counters from the counter port. It is cycle-accurate and slow
(a few thousand cycles per second); use it for small topologies, short runs
and waveforms (``vcd=``), and the ``rtl`` (Verilator) backend for epochs.

Test accuracy is evaluated by the golden model's forward pass on the weights
read back from the hardware (bit-identical to the hardware forward pass, which
the tests check with the trainer's own inference mode on a few samples).
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from ..gateware.layout import TrainerConfig
from ..gateware.trainer import StepKind, Trainer
from ..model.golden import FixedEngine
from ..model.speculation import weights_sha256

__all__ = ["PysimTrainer", "host_read", "host_write"]


async def host_write(ctx, bus, addr: int, value: int) -> None:
    """One host-bus write (one cycle)."""
    ctx.set(bus.addr, addr)
    ctx.set(bus.wdata, value & 0xFFFF_FFFF)
    ctx.set(bus.we, 1)
    await ctx.tick()
    ctx.set(bus.we, 0)


async def host_read(ctx, bus, addr: int, signed: bool = False) -> int:
    """One host-bus read; returns the 32-bit word (sign-extended if ``signed``)."""
    ctx.set(bus.addr, addr)
    ctx.set(bus.re, 1)
    await ctx.tick()
    ctx.set(bus.re, 0)
    (value,) = await ctx.tick().sample(bus.rdata).until(bus.rvalid)
    value = int(value)
    return value - (1 << 32) if signed and value & (1 << 31) else value

KIND_NAMES = {
    StepKind.SEQUENTIAL.value: "sequential",
    StepKind.FIRST_SIGHTING.value: "first_sighting",
    StepKind.HIT.value: "hit",
    StepKind.MISS.value: "miss",
}


class PysimTrainer:
    """Run training and inference on the RTL in Amaranth's simulator."""

    def __init__(self, cfg: TrainerConfig, vcd: str | Path | None = None) -> None:
        self.cfg = cfg
        self.dut = Trainer(cfg)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-8)
        self.vcd = vcd
        self.kinds: list[str] = []
        self.predictions: list[int] = []
        self.counters: dict[str, int] = {}
        self.params: list[tuple[np.ndarray, np.ndarray]] = []
        #: weights after each batch of :meth:`run`
        self.snapshots: list[list[tuple[np.ndarray, np.ndarray]]] = []
        #: counters after each batch of :meth:`run`
        self.snapshot_counters: list[dict[str, int]] = []

    def run(self, batches: list[tuple[np.ndarray, np.ndarray, bool, bool]], progress=None) -> None:
        """Process ``(x, y, infer, epoch_start)`` batches, in order, in one simulation.

        ``epoch_start`` flags the first sample of the batch as the first of an
        epoch (the update rule's step index restarts there).
        """
        dut, cfg = self.dut, self.cfg

        async def testbench(ctx) -> None:
            ctx.set(dut.result.ready, 1)
            for number, (x, y, infer, epoch_start) in enumerate(batches):
                tick = progress(number, len(y)) if progress else None
                for n in range(len(y)):
                    label = int(y[n]) if not infer else 0
                    for j, px in enumerate(x[n]):
                        ctx.set(dut.sample.payload, {
                            "pixel": int(px), "label": label, "infer": int(infer),
                            "epoch_start": int(epoch_start and n == 0 and j == 0),
                        })
                        ctx.set(dut.sample.valid, 1)
                        await ctx.tick().until(dut.sample.ready)
                    ctx.set(dut.sample.valid, 0)
                    (result,) = await ctx.tick().sample(dut.result.payload).until(dut.result.valid)
                    if infer:
                        self.predictions.append(int(result.prediction))
                    else:
                        self.kinds.append(KIND_NAMES[result.kind.value])
                    if tick:
                        tick(1)
                while not ctx.get(dut.idle):  # let a pending update finish
                    await ctx.tick()
                params = []
                mem = dut.weight_memory
                for layer in range(cfg.n_layers):
                    base = cfg.w_base(layer)
                    words = np.array([[int(v) for v in ctx.get(mem.data[base + a])] for a in range(cfg.words(layer))],
                                     dtype=np.int64)
                    params.append(cfg.from_words(layer, words))
                self.snapshots.append(params)
                self.params = params
                self.counters = dut.peek_counters(ctx)
                self.snapshot_counters.append(self.counters)

        self.sim.add_testbench(testbench)
        ctx = self.sim.write_vcd(str(self.vcd), str(Path(self.vcd).with_suffix(".gtkw"))) if self.vcd else nullcontext()
        with ctx:
            self.sim.run()

    def weights_sha256(self) -> str:
        return weights_sha256(self.params, "<i8")

    def golden_with_weights(self, params: list | None = None) -> FixedEngine:
        """A golden engine holding weights read back from the RTL (for test accuracy)."""
        eng = FixedEngine(self.cfg.train, self.cfg.numerics)
        for (w, b), (hw, hb) in zip(eng.params, params or self.params):
            w[...] = hw
            b[...] = hb
        eng._refresh()
        return eng
