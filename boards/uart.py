"""8N1 UART receiver and transmitter with :mod:`amaranth.lib.stream` byte interfaces.

Both sides count a fixed ``divisor = clk_freq // baud`` clock cycles per bit
(:func:`divisor_for`); at least 4 cycles per bit are required, so the UARTs
run up to ``clk_freq / 4`` baud (3 Mbaud at the iCEBreaker's 12 MHz, 6.25 Mbaud
at the ULX3S's 25 MHz). Bits are sent LSB first: one start bit (0), eight data
bits, one stop bit (1), no parity.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "divisor_for"]

MIN_DIVISOR = 4


def divisor_for(clk_freq: float, baud: int) -> int:
    """Clock cycles per bit for ``baud`` at ``clk_freq``; raises ``ValueError`` when too fast.

    The bit period error is ``(clk_freq / baud - divisor) / divisor``; at most 5 %
    is accepted (8N1 samples the stop bit 9.5 bit periods after the start edge,
    so 5 % drift moves it by under half a bit; 3 Mbaud at 25 MHz is 4.2 % fast).
    """
    if baud <= 0:
        raise ValueError(f"baud: must be positive, got {baud}")
    divisor = int(clk_freq // baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(
            f"baud: {baud} is too fast for a {clk_freq / 1e6:g} MHz clock "
            f"(at most {int(clk_freq // MIN_DIVISOR)} baud, {MIN_DIVISOR} cycles per bit)"
        )
    error = abs(clk_freq / baud - divisor) / divisor
    if error > 0.05:
        raise ValueError(
            f"baud: {baud} at {clk_freq / 1e6:g} MHz is off by {error:.1%} (divisor {divisor}); "
            f"pick a baud rate that divides the clock more evenly"
        )
    return divisor


def _check_divisor(divisor: int) -> None:
    if not isinstance(divisor, int) or divisor < MIN_DIVISOR:
        raise ValueError(f"divisor: must be an integer >= {MIN_DIVISOR} (cycles per bit), got {divisor!r}")


class UARTTx(wiring.Component):
    """8N1 transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Ports
    -----
    i : In(stream.Signature(8))
        Bytes to send. ``ready`` is high while the transmitter is idle and in
        the last cycle of a stop bit.
    tx : Out(1)
        The serial line (idle high).

    Latency and throughput: the start bit begins on the clock edge that
    accepts a byte (``valid & ready``); ``ready`` returns in the last cycle of
    the stop bit, so bytes go out back to back at one byte per ``10 * divisor``
    cycles.
    """

    def __init__(self, divisor: int) -> None:
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__(
            {
                "i": In(stream.Signature(8)),
                "tx": Out(1, init=1),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        shreg = Signal(10, init=0x3FF)  # start, 8 data bits, stop; LSB goes out first
        bits = Signal(range(11))  # bits left to send
        timer = Signal(range(self.divisor))
        # ready in the last cycle of the stop bit, so frames go out back to back
        m.d.comb += [self.tx.eq(shreg[0]), self.i.ready.eq((bits == 0) | ((bits == 1) & (timer == 0)))]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                shreg.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                bits.eq(10),
                timer.eq(self.divisor - 1),
            ]
        with m.Elif(bits != 0):
            with m.If(timer == 0):
                m.d.sync += [
                    shreg.eq(Cat(shreg[1:], Const(1, 1))),
                    bits.eq(bits - 1),
                    timer.eq(self.divisor - 1),
                ]
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver with mid-bit sampling.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (>= 4).

    Ports
    -----
    rx : In(1)
        The serial line (idle high); synchronised with two flip-flops here.
    o : Out(stream.Signature(8))
        Received bytes. The output register holds one byte; a byte that
        completes while the previous one has not been taken replaces it and
        pulses ``overrun``.
    framing_error : Out(1)
        One-cycle pulse when a stop bit reads 0; the byte is dropped and the
        receiver waits for the line to go idle (high) before looking for the
        next start bit, so a break condition produces a single error.
    overrun : Out(1)
        One-cycle pulse when an unread byte was overwritten.

    A falling edge starts a frame; the start bit is re-checked half a bit
    later (a glitch shorter than that is ignored) and every following bit is
    sampled one bit period apart, at its middle. Latency: ``o.valid`` rises
    about ``9.5 * divisor + 3`` cycles after the start edge (in the middle of
    the stop bit), so the receiver is ready for the next start bit in time
    even when the sender's clock is a few percent fast. Throughput: one byte
    per ``10 * divisor`` cycles, back to back.
    """

    def __init__(self, divisor: int) -> None:
        _check_divisor(divisor)
        self.divisor = divisor
        super().__init__(
            {
                "rx": In(1, init=1),
                "o": Out(stream.Signature(8)),
                "framing_error": Out(1),
                "overrun": Out(1),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        sync1 = Signal(init=1)
        line = Signal(init=1)
        m.d.sync += [sync1.eq(self.rx), line.eq(sync1)]

        timer = Signal(range(self.divisor))
        bits = Signal(range(9))
        shreg = Signal(8)
        data = Signal(8)
        valid = Signal()
        m.d.comb += [self.o.payload.eq(data), self.o.valid.eq(valid)]
        with m.If(self.o.ready):
            m.d.sync += valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(self.divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.sync += [timer.eq(self.divisor - 1), bits.eq(8)]
                        m.next = "DATA"
                    with m.Else():  # glitch
                        m.next = "IDLE"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shreg.eq(Cat(shreg[1:], line)), bits.eq(bits - 1), timer.eq(self.divisor - 1)]
                    with m.If(bits == 1):
                        m.next = "STOP"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += [data.eq(shreg), valid.eq(1)]
                        m.d.comb += self.overrun.eq(valid & ~self.o.ready)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.next = "BREAK"
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)
            with m.State("BREAK"):
                with m.If(line):
                    m.next = "IDLE"
        return m
