"""A byte stream backed by a bit-level UART in Amaranth's simulator.

:class:`SimSerial` runs the simulation of a design with serial ``rx``/``tx``
lines (e.g. :class:`~specbp_rtl.boards.link.LinkedTrainer`) in a background
thread and exposes ``write(bytes)`` / ``read(n)`` like a pyserial port, so
the real host driver (:class:`~specbp_rtl.boards.host.BoardTrainer`) can talk
to the simulated board. The testbenches are an independent bit-level 8N1
model: the transmitter drives ``rx`` for ``divisor`` cycles per bit, the
receiver samples ``tx`` in the middle of each bit and checks the stop bit.
"""

from __future__ import annotations

import queue
import threading
import time

from amaranth.sim import Simulator

__all__ = ["SimSerial", "uart_bits"]


def uart_bits(byte: int) -> list[int]:
    """Line levels of one 8N1 frame: start, 8 data bits LSB first, stop."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [1]


class SimSerial:
    """Simulate ``dut`` and bridge its UART lines to ``write``/``read``.

    Parameters
    ----------
    dut
        Elaboratable with ``rx`` (input) and ``tx`` (output) serial lines.
    divisor : int
        Clock cycles per bit of the simulated host UART (the DUT's).
    read_timeout : float
        Wall-clock seconds :meth:`read` waits for a byte (simulation is slow).
    read_cycles : int or None
        Also end a :meth:`read` when this many simulated cycles have passed
        without a byte: a timeout that means the same on a loaded machine
        (a lost response is a line gone quiet, not a slow simulator).

    Notes
    -----
    To keep the simulation short, simulated time only advances while bytes
    are being sent, while :meth:`read` waits for bytes, or during
    :meth:`idle`; otherwise the simulation thread sleeps.
    """

    def __init__(self, dut, divisor: int, read_timeout: float = 60.0, read_cycles: int | None = None) -> None:
        self.dut, self.divisor, self.read_timeout, self.read_cycles = dut, divisor, read_timeout, read_cycles
        #: simulated cycles spent waiting in :meth:`read`
        self._wait_cycles = 0
        self._out: queue.Queue = queue.Queue()
        self._in: queue.Queue[int] = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._waiting = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        #: stop bits the model received as 0
        self.framing_errors = 0
        self.sim = Simulator(dut)
        self.sim.add_clock(1e-8)
        self.sim.add_testbench(self._transmitter)
        self.sim.add_testbench(self._receiver, background=True)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.sim.run()
        except BaseException as exc:  # reported by the next call from the host side
            self._error = exc

    async def _transmitter(self, ctx) -> None:
        ctx.set(self.dut.rx, 1)
        while not self._stop.is_set():
            try:
                item = self._out.get_nowait()
            except queue.Empty:
                if self._waiting.is_set():
                    await ctx.tick().repeat(self.divisor)
                    self._wait_cycles += self.divisor
                    continue
                try:
                    item = self._out.get(timeout=0.01)
                except queue.Empty:
                    continue
            if isinstance(item, bytes):
                for byte in item:
                    for bit in uart_bits(byte):
                        ctx.set(self.dut.rx, bit)
                        await ctx.tick().repeat(self.divisor)
            elif isinstance(item, list):  # raw line levels, one per bit period
                for level in item:
                    ctx.set(self.dut.rx, level)
                    await ctx.tick().repeat(self.divisor)
            elif isinstance(item, int):
                await ctx.tick().repeat(item)
                self._done.put(None)
            else:
                self._done.put(item(ctx))

    async def _receiver(self, ctx) -> None:
        d, tx = self.divisor, self.dut.tx
        while True:
            await ctx.changed(tx)
            if ctx.get(tx):
                continue
            await ctx.tick().repeat(d // 2)  # the middle of the start bit
            if ctx.get(tx):
                continue
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(d)
                byte |= ctx.get(tx) << i
            await ctx.tick().repeat(d)
            if ctx.get(tx):
                self._in.put(byte)
            else:
                self.framing_errors += 1

    # -- the byte-stream interface -----------------------------------------------------------------------
    def write(self, data: bytes) -> int:
        self._check()
        self._out.put(bytes(data))
        return len(data)

    def write_bits(self, levels: list[int]) -> None:
        """Drive raw line levels, one per bit period (to build broken frames)."""
        self._check()
        self._out.put([int(v) for v in levels])

    def read(self, n: int) -> bytes:
        out = bytearray()
        self._waiting.set()
        try:
            while len(out) < n:
                self._check()
                try:
                    if self.read_cycles is None:
                        out.append(self._in.get(timeout=self.read_timeout))
                        continue
                    start, deadline = self._wait_cycles, time.monotonic() + self.read_timeout
                    while True:
                        try:
                            out.append(self._in.get(timeout=0.01))
                            break
                        except queue.Empty:
                            if self._wait_cycles - start > self.read_cycles or time.monotonic() > deadline:
                                raise
                except queue.Empty:
                    break
        finally:
            self._waiting.clear()
        return bytes(out)

    # -- simulation control ----------------------------------------------------------------------------------
    def idle(self, cycles: int) -> None:
        """Let ``cycles`` cycles pass with the line idle (after the bytes already written)."""
        self._call(cycles)

    def peek(self, fn):
        """Run ``fn(ctx)`` in the simulation (after the bytes already written) and return its result."""
        return self._call(fn)

    def _call(self, item):
        self._check()
        self._out.put(item)
        while True:
            try:
                return self._done.get(timeout=0.1)
            except queue.Empty:
                self._check()

    def _check(self) -> None:
        if self._error is not None:
            raise RuntimeError("simulation failed") from self._error

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        self._check()
