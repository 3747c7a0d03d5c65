# amaranth: UnusedElaboratable=no
"""UART RX/TX against a bit-level 8N1 model in Amaranth's simulator."""

from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from specbp_rtl.boards.simserial import uart_bits
from specbp_rtl.boards.uart import UARTRx, UARTTx, divisor_for


def run(dut, *benches) -> None:
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for bench in benches:
        sim.add_testbench(bench)
    sim.run()


async def send_bits(ctx, line, levels, divisor: int) -> None:
    for level in levels:
        ctx.set(line, level)
        await ctx.tick().repeat(divisor)


@pytest.mark.parametrize("divisor", [4, 5, 12])
def test_tx_random_bytes(divisor: int) -> None:
    """Bytes offered back to back come out as 8N1 frames, 10 bits of ``divisor`` cycles each."""
    dut = UARTTx(divisor)
    data = bytes(random.Random(divisor).randrange(256) for _ in range(12))
    got: list[int] = []
    starts: list[int] = []

    async def producer(ctx) -> None:
        for byte in data:
            ctx.set(dut.i.payload, byte)
            ctx.set(dut.i.valid, 1)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx) -> None:
        cycle = 0
        while len(got) < len(data):
            if ctx.get(dut.tx):
                await ctx.tick()
                cycle += 1
                continue
            starts.append(cycle)
            await ctx.tick().repeat(divisor // 2)
            assert ctx.get(dut.tx) == 0, "start bit"
            levels = []
            for _ in range(9):
                await ctx.tick().repeat(divisor)
                levels.append(ctx.get(dut.tx))
            assert levels[8] == 1, "stop bit"
            got.append(sum(bit << i for i, bit in enumerate(levels[:8])))
            await ctx.tick().repeat(divisor - divisor // 2)  # to the end of the stop bit
            cycle += 10 * divisor

    run(dut, producer, monitor)
    assert bytes(got) == data
    # back to back: one frame every 10 bit periods
    assert all(b - a == 10 * divisor for a, b in zip(starts, starts[1:]))


@pytest.mark.parametrize("divisor", [4, 7, 12])
def test_rx_random_bytes(divisor: int) -> None:
    """Back-to-back frames from the bit-level model are received exactly, in order."""
    dut = UARTRx(divisor)
    data = bytes(random.Random(100 + divisor).randrange(256) for _ in range(16)) + b"\x00\xff\x55\xaa"
    got: list[int] = []
    errors = []

    async def line(ctx) -> None:
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        for byte in data:
            await send_bits(ctx, dut.rx, uart_bits(byte), divisor)

    async def sink(ctx) -> None:
        ctx.set(dut.o.ready, 1)
        while len(got) < len(data):
            *_, payload, valid, framing = await ctx.tick().sample(dut.o.payload, dut.o.valid, dut.framing_error)
            if valid:
                got.append(payload)
            if framing:
                errors.append(1)

    run(dut, line, sink)
    assert bytes(got) == data
    assert not errors


def test_rx_framing_error_and_recovery() -> None:
    """A stop bit of 0 pulses ``framing_error`` once and drops the byte; the next byte is fine."""
    divisor = 6
    dut = UARTRx(divisor)
    got: list[int] = []
    errors: list[int] = []
    done = []

    async def line(ctx) -> None:
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(2 * divisor)
        bad = uart_bits(0x3C)
        bad[-1] = 0  # broken stop bit, then a break of 3 bit times
        await send_bits(ctx, dut.rx, bad + [0, 0, 0], divisor)
        await send_bits(ctx, dut.rx, [1, 1], divisor)
        await send_bits(ctx, dut.rx, uart_bits(0xC3) + uart_bits(0x01), divisor)
        await ctx.tick().repeat(2 * divisor)
        done.append(1)

    async def sink(ctx) -> None:
        ctx.set(dut.o.ready, 1)
        while not done:
            *_, payload, valid, framing = await ctx.tick().sample(dut.o.payload, dut.o.valid, dut.framing_error)
            if valid:
                got.append(payload)
            if framing:
                errors.append(1)

    run(dut, line, sink)
    assert got == [0xC3, 0x01]
    assert errors == [1]


def test_rx_ignores_glitch_and_holds_output() -> None:
    """A one-cycle low glitch is not a start bit; an untaken byte stays valid until ``ready``."""
    divisor = 8
    dut = UARTRx(divisor)

    async def bench(ctx) -> None:
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(4)
        ctx.set(dut.rx, 0)
        await ctx.tick()
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        assert not ctx.get(dut.o.valid)
        await send_bits(ctx, dut.rx, uart_bits(0x5A), divisor)
        await ctx.tick().repeat(divisor)
        for _ in range(20):
            assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x5A
            await ctx.tick()
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        assert not ctx.get(dut.o.valid)

    run(dut, bench)


def test_loopback() -> None:
    """TX into RX at the same divisor."""
    divisor = 5
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor)
    m.submodules.rx = rx = UARTRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    data = bytes(random.Random(7).randrange(256) for _ in range(10))
    got: list[int] = []

    async def producer(ctx) -> None:
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
        ctx.set(tx.i.valid, 0)

    async def sink(ctx) -> None:
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            *_, payload, valid = await ctx.tick().sample(rx.o.payload, rx.o.valid)
            if valid:
                got.append(payload)

    run(m, producer, sink)
    assert bytes(got) == data


def test_divisor() -> None:
    assert divisor_for(12e6, 3_000_000) == 4
    assert divisor_for(12e6, 1_000_000) == 12
    assert divisor_for(25e6, 1_000_000) == 25
    assert divisor_for(25e6, 3_000_000) == 8
    with pytest.raises(ValueError, match="too fast"):
        divisor_for(12e6, 4_000_000)
    with pytest.raises(ValueError, match="off by"):
        divisor_for(12e6, 2_500_000)
    with pytest.raises(ValueError, match="divisor"):
        UARTRx(3)
    with pytest.raises(ValueError, match="divisor"):
        UARTTx(2)
