"""Event counters kept in one memory, with one adder for all of them."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["CounterBank"]


class CounterBank(wiring.Component):
    """``n`` event counters of ``width`` bits in one memory, one adder for all.

    Counter ``k`` counts the cycles in which ``inc[k]`` is high (and wraps at
    ``2**width``). Instead of ``n`` registers and ``n`` adders of ``width`` bits,
    the counts live in an ``n``-word memory visited by a scan, one counter
    every two cycles: the first cycle reads the counter's word, the second
    writes back the word plus the events gathered since the previous visit.
    Those wait in a register of ``(2 * n).bit_length()`` bits per counter (at
    most ``2 * n`` events fall between two visits). Both cycles of a visit use
    the same address, so the memory has a single port in effect and maps to an
    iCE40 SPRAM (``attrs={"ram_style": "huge"}``) as well as to a block RAM.
    The first scan after reset writes every count from its pending events
    alone: the memory needs no initial contents (an SPRAM has none; the build
    deletes the simulation's zeros, :data:`specbp_rtl.toolchain.COUNTER_RAM_UNINITIALISED`),
    and a reset clears the counts.

    In registers, the trainer's 15 counters cost the iCE40UP5K about 1.8 logic
    cells per counter bit with their adders and read multiplexer (the 16-4-2 x4
    trainer: 7,303 cells with 32-bit counters, 6,872 with 16-bit ones); here a
    counter costs its pending register and its share of the scan (the same
    trainer: 6,736 -> 6,355 cells with the event counters in a bank in SPRAM;
    nextpnr's packed counts of the trainer with its link).

    Parameters
    ----------
    n : int
        Number of counters, ``>= 2``.
    width : int
        Counter width in bits, ``1 .. 64``.
    attrs : dict or None
        Attributes of the memory (for example the Yosys ``ram_style``).

    Attributes
    ----------
    inc : In(n)
        Bit ``k``: counter ``k`` counts one event in this cycle.
    read : In(stream.Signature(range(n)))
        A counter to read. Accepted (``ready``) when no read is outstanding.
    value : Out(stream.Signature(width))
        The answer to a read: the counter's events before the read cycle of
        its first visit from the cycle the read is accepted on (so at least
        every event before that cycle, and none from the answer's cycle on).
        Held until ``ready``.

    Latency
    -------
    A read accepted in cycle ``t`` is answered with ``value.valid`` in cycle
    ``t + 2`` to ``t + 2 * n + 1`` (it waits for the counter's visit). Events
    count in every cycle; there is no back-pressure on ``inc``.

    Model
    -----
    ``count[k] = sum(inc[k])`` over the cycles; :meth:`peek` returns the exact
    current counts in simulation.
    """

    def __init__(self, n: int, width: int, attrs: dict | None = None) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 2:
            raise ValueError(f"n: must be an integer >= 2, got {n!r}")
        if isinstance(width, bool) or not isinstance(width, int) or not 1 <= width <= 64:
            raise ValueError(f"width: must be an integer in 1..64, got {width!r}")
        self.n, self.width, self.attrs = n, width, dict(attrs or {})
        self.pending_width = (2 * n).bit_length()
        super().__init__(
            {
                "inc": In(n),
                "read": In(stream.Signature(range(n))),
                "value": Out(stream.Signature(width)),
            }
        )
        # built here so that simulators can peek at the counts (:meth:`peek`)
        self._mem = Memory(shape=width, depth=n, init=[], attrs=self.attrs)
        self._pending = [Signal(self.pending_width, name=f"pending{k}") for k in range(n)]
        self._visit = Signal(range(n))
        self._write = Signal()  # second cycle of the visit
        self._snap = Signal(self.pending_width)
        self._fresh = Signal(init=1)  # the first scan after reset: the memory's words are not counts yet

    def peek(self, ctx) -> list[int]:
        """The counts, in a simulator testbench (``ctx``): memory word, pending events, and the visit's events
        in flight."""
        n, mask = self.n, (1 << self.width) - 1
        visit, write, snap = ctx.get(self._visit), ctx.get(self._write), ctx.get(self._snap)
        fresh = ctx.get(self._fresh)
        return [
            (
                (0 if fresh and k >= visit else ctx.get(self._mem.data[k]))
                + ctx.get(self._pending[k])
                + (snap if write and visit == k else 0)
            )
            & mask
            for k in range(n)
        ]

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self.n
        m.submodules.counter_ram = mem = self._mem
        rd, wr = mem.read_port(), mem.write_port()
        pending, visit, write, snap, fresh = self._pending, self._visit, self._write, self._snap, self._fresh

        # the scan: read counter `visit`, then write it back, then the next counter
        m.d.sync += write.eq(~write)
        with m.If(write):
            m.d.sync += visit.eq(Mux(visit == n - 1, 0, visit + 1))
            with m.If(visit == n - 1):
                m.d.sync += fresh.eq(0)
        total = Signal(self.width)
        m.d.comb += [
            rd.addr.eq(visit),
            rd.en.eq(~write),
            total.eq(Mux(fresh, 0, rd.data) + snap),
            wr.addr.eq(visit),
            wr.data.eq(total),
            wr.en.eq(write),
        ]
        # the read cycle takes the counter's pending events (its new pending count is this cycle's event)
        with m.If(~write):
            m.d.sync += snap.eq(Array(pending)[visit])
        for k in range(n):
            taken = ~write & (visit == k)
            m.d.sync += pending[k].eq(Mux(taken, 0, pending[k]) + self.inc[k])

        # reads: answered with the written-back total of the counter's next visit
        want = Signal(range(n))
        outstanding = Signal()
        m.d.comb += self.read.ready.eq(~outstanding & ~self.value.valid)
        with m.If(self.read.valid & self.read.ready):
            m.d.sync += [want.eq(self.read.payload), outstanding.eq(1)]
        with m.If(self.value.valid & self.value.ready):
            m.d.sync += self.value.valid.eq(0)
        with m.If(outstanding & write & (visit == want)):
            m.d.sync += [self.value.payload.eq(total), self.value.valid.eq(1), outstanding.eq(0)]
        return m
