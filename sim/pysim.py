"""``pysim`` backend: the Trainer in Amaranth's own simulator.

:class:`PysimTrainer` elaborates a :class:`~specbp_rtl.gateware.trainer.Trainer`
and drives it with an async testbench: samples are streamed one pixel per
cycle, results are consumed as they come, weights are read back from the
weight memories, counters from the counter port. It is cycle-accurate and slow
(a few thousand cycles per second); use it for small topologies, short runs
and waveforms (``vcd=``, a window of ``trace_samples``, with a GTKWave save
file of :data:`~.waves.WAVES`), and the ``rtl`` (Verilator) backend for epochs.

Test accuracy is evaluated by the golden model's forward pass on the weights
read back from the hardware (bit-identical to the hardware forward pass, which
the tests check with the trainer's own inference mode on a few samples).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from ..gateware.layout import TrainerConfig
from ..gateware.trainer import Trainer
from ..interrupts import interrupt_flag
from ..model.golden import FixedEngine
from ..model.speculation import weights_sha256
from ..steps import StepKind
from .waves import PYSIM_SCOPE, TraceEstimate, estimate_trace, gtkw_path, gtkw_traces, vcd_variables, write_gtkw

__all__ = ["PysimTrainer", "TraceWindow", "host_read", "host_write"]

#: Clock period of the simulation (100 MHz), in seconds, and in the VCD's femtoseconds.
PERIOD = 1e-8
PERIOD_FS = 10_000_000


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


@dataclass
class TraceWindow:
    """The waveform a :meth:`PysimTrainer.run` wrote (:attr:`PysimTrainer.trace`)."""

    vcd: Path
    gtkw: Path
    #: first sample of the window, in streaming order (over every batch of :meth:`PysimTrainer.run`)
    start: int
    #: samples traced (fewer than asked when the run ends or is interrupted first; 0: no file was written)
    samples: int
    #: clock cycles traced
    cycles: int
    #: size of the VCD file
    bytes: int
    #: the estimate made before the run (:meth:`PysimTrainer.estimate_trace`)
    estimate: TraceEstimate | None = None

    def as_json(self) -> dict[str, object]:
        return {
            "vcd": str(self.vcd),
            "gtkw": str(self.gtkw),
            "samples": [self.start, self.samples],
            "cycles": self.cycles,
            "bytes": self.bytes,
            "estimated_bytes": self.estimate.bytes if self.estimate else None,
        }


@contextmanager
def _vcd_from_now(sim: Simulator, vcd: Path, timestamp: int) -> Iterator[None]:
    """Write a VCD of the simulation from now on, its first values stamped at ``timestamp`` (fs, <= now).

    Amaranth 0.5's :meth:`~amaranth.sim.Simulator.write_vcd` refuses to start
    after time 0 ("Cannot start writing waveforms after advancing simulation
    time"); its engine's ``write_vcd`` does not mind: the writer declares every
    variable with its current value. Only pyvcd's initial timestamp is set,
    so that the dump starts at the window, not at time 0.
    """
    engine = sim._engine
    with engine.write_vcd(vcd_file=str(vcd), gtkw_file=None, traces=(), fs_per_delta=0):
        writer = engine._vcd_writers[-1].vcd_writer
        writer._timestamp = int(timestamp)  # nothing is written before the first change
        yield


class PysimTrainer:
    """Run training and inference on the RTL in Amaranth's simulator.

    Parameters
    ----------
    cfg : TrainerConfig
        The design.
    vcd : str or Path or None
        Write a waveform of the samples ``trace_samples`` to this VCD file, and
        a GTKWave save file (``.gtkw`` beside it) showing the signals of
        :data:`~.waves.WAVES`, grouped.
    trace_samples : (int, int)
        ``(start, count)``: the samples ``[start, start + count)`` in streaming
        order (over every batch of :meth:`run`) are traced; the simulation runs
        untraced before and after them, with the same results.
    """

    def __init__(
        self, cfg: TrainerConfig, vcd: str | Path | None = None, trace_samples: tuple[int, int] = (0, 10)
    ) -> None:
        start, count = trace_samples
        if start < 0 or count < 0:
            raise ValueError(f"trace_samples: start and count must be >= 0, got {tuple(trace_samples)}")
        self.cfg = cfg
        self.dut = Trainer(cfg)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(PERIOD)
        self.vcd = Path(vcd) if vcd is not None else None
        self.trace_samples = (int(start), int(count))
        #: the waveform written by :meth:`run` (``None`` without ``vcd``)
        self.trace: TraceWindow | None = None
        self.kinds: list[StepKind] = []
        self.predictions: list[int] = []
        self.counters: dict[str, int] = {}
        self.params: list[tuple[np.ndarray, np.ndarray]] = []
        #: weights after each batch of :meth:`run`
        self.snapshots: list[list[tuple[np.ndarray, np.ndarray]]] = []
        #: counters after each batch of :meth:`run`
        self.snapshot_counters: list[dict[str, int]] = []
        #: :meth:`run` was stopped by Ctrl-C (between two samples; the batches before it are complete)
        self.interrupted = False
        self._vcd_variables: int | None = None

    def traced_samples(self, total: int) -> int:
        """How many of ``total`` streamed samples fall in the trace window."""
        start, count = self.trace_samples
        return max(0, min(start + count, total) - start)

    def estimate_trace(self, total: int) -> TraceEstimate:
        """Size of the waveform :meth:`run` will write for a run of ``total`` samples (cycle model estimate)."""
        return estimate_trace(self.cfg, self.traced_samples(total), self.vcd_variables(), "pysim")

    def vcd_variables(self) -> int:
        """Variables the VCD declares: every signal, struct field and memory row of the design."""
        if self._vcd_variables is None:
            from amaranth.sim.pysim import _VCDWriter

            # declares every variable into a string buffer (an unclosed writer writes nothing else)
            dry = _VCDWriter(self.sim._engine._state, self.sim._design, vcd_file=io.StringIO())
            self._vcd_variables = sum(len(v) for v in dry.vcd_signal_vars.values()) + sum(
                len(row) for rows in dry.vcd_memory_vars.values() for row in rows
            )
        return self._vcd_variables

    def run(self, batches: list[tuple[np.ndarray, np.ndarray, bool, bool]], progress=None) -> None:
        """Process ``(x, y, infer, epoch_start)`` batches, in order, in one simulation.

        ``epoch_start`` flags the first sample of the batch as the first of an
        epoch (the update rule's step index restarts there).

        With ``vcd``, the samples of ``trace_samples`` (counted over all
        batches) are written to it; :attr:`trace` then describes the file.

        Ctrl-C (SIGINT) ends the simulation cleanly after the current sample
        and sets :attr:`interrupted`; :attr:`snapshots` then hold the batches
        that completed, and :attr:`params` and :attr:`counters` the state at
        the interruption.
        """
        dut = self.dut
        stop = threading.Event()
        #: streaming position: the sample being streamed (-1 before the first), and samples completed
        position = {"started": -1, "done": 0}

        async def read_back(ctx) -> None:
            """Wait for a pending update, then read the weights and counters (into :attr:`params`)."""
            while not ctx.get(dut.idle):
                await ctx.tick()
            self.params = dut.peek_weights(ctx)
            self.counters = dut.peek_counters(ctx)

        async def testbench(ctx) -> None:
            ctx.set(dut.result.ready, 1)
            for number, (x, y, infer, epoch_start) in enumerate(batches):
                tick = progress(number, len(y)) if progress else None
                for n in range(len(y)):
                    position["started"] += 1
                    label = int(y[n]) if not infer else 0
                    for j, px in enumerate(x[n]):
                        ctx.set(
                            dut.sample.payload,
                            {
                                "pixel": int(px),
                                "label": label,
                                "infer": int(infer),
                                "epoch_start": int(epoch_start and n == 0 and j == 0),
                            },
                        )
                        ctx.set(dut.sample.valid, 1)
                        await ctx.tick().until(dut.sample.ready)
                    ctx.set(dut.sample.valid, 0)
                    (result,) = await ctx.tick().sample(dut.result.payload).until(dut.result.valid)
                    position["done"] += 1
                    if infer:
                        self.predictions.append(int(result.prediction))
                    else:
                        self.kinds.append(result.kind)
                    if tick:
                        tick(1)
                    if stop.is_set():  # Ctrl-C: end between two samples; the state so far is read back
                        await read_back(ctx)
                        return
                await read_back(ctx)
                self.snapshots.append(self.params)
                self.snapshot_counters.append(self.counters)

        self.sim.add_testbench(testbench)
        with interrupt_flag(stop):
            if self.vcd is None:
                self.sim.run()
            else:
                total = sum(len(y) for _, y, _, _ in batches)
                self._run_traced(position, self.estimate_trace(total))
        self.interrupted = stop.is_set()

    def _run_traced(self, position: dict[str, int], estimate: TraceEstimate) -> None:
        """Run the simulation, tracing the samples of the window only."""
        sim, engine = self.sim, self.sim._engine
        assert self.vcd is not None
        start, count = self.trace_samples
        vcd, gtkw = self.vcd, gtkw_path(self.vcd)
        self.trace = TraceWindow(vcd, gtkw, start, 0, 0, 0, estimate)
        if count == 0:  # an empty window: no file, as the rtl backend
            sim.run()
            return
        running = True
        t0 = engine.now
        while running and position["started"] < start:  # untraced up to the window's first sample
            t0 = engine.now
            running = sim.advance()
        if position["started"] != start:  # the run ended (or was interrupted) before the window
            return
        vcd.parent.mkdir(parents=True, exist_ok=True)
        # the testbench began the window's first sample in the advance() that started at t0
        with _vcd_from_now(sim, vcd, t0):
            while running and position["done"] < start + count:
                running = sim.advance()
            t1 = engine.now
        write_gtkw(gtkw, vcd, gtkw_traces(vcd_variables(vcd), PYSIM_SCOPE), treeopen="bench.top.")
        self.trace = TraceWindow(
            vcd, gtkw, start, position["done"] - start, (t1 - t0) // PERIOD_FS, vcd.stat().st_size, estimate
        )
        while running:  # untraced after it
            running = sim.advance()

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
