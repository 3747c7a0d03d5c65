"""Helpers for testing Amaranth stream components against numpy models.

This project checks every hardware block against its numpy ``model()`` in
Amaranth's simulator, with random gaps on the input (``valid`` low) and
back-pressure on the output (``ready`` low); these are the helpers it uses,
public for anyone who tests their own RTL the same way. They work with any
:class:`amaranth.lib.stream.Interface` and the async testbenches of
:class:`amaranth.sim.Simulator` (Amaranth 0.5).

* one beat at a time, inside your own testbench: :func:`put` (the DUT
  consumes), :func:`get` (the DUT produces), :func:`gaps` (random idle
  cycles), :func:`isolated_latency`;
* whole testbenches: :func:`stream_source` and :class:`StreamSink` (seeded
  random gaps and back-pressure), :func:`stream_monitor` (the stream rule:
  payload and ``valid`` held while stalled), :func:`watchdog` (fails the
  simulation after ``N`` cycles with a clear message instead of hanging);
* one call: :func:`run_stream` feeds beats into ``dut.i``, collects rows
  from ``dut.o`` and checks the stream rule and a cycle limit;
* the comparison: :func:`assert_matches_model` (and :func:`first_difference`)
  names the first index at which the hardware differs from the model;
* other simulators: :func:`icarus_g2012_compatible` makes the Verilog of
  ``amaranth.back.verilog.convert`` simulate in Icarus Verilog's
  SystemVerilog mode (``iverilog -g2012``, which cocotb's Icarus runner uses).

Example::

    from amaranth.sim import Simulator
    from specbp_rtl.gateware import Softmax
    from specbp_rtl.numerics import Numerics
    from specbp_rtl.testing import StreamSink, assert_matches_model, stream_source, watchdog

    nx = Numerics()
    dut = Softmax(10, nx)
    logits = [[(k * 37) % 200 - 100 for k in range(10)]] * 3
    sink = StreamSink(dut.o, count=30, seed=2)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(dut.i, [z for row in logits for z in row], seed=1))
    sim.add_testbench(sink.testbench)
    sim.add_testbench(watchdog(2000, "softmax of 3 vectors", sink.progress), background=True)
    sim.run()
    assert_matches_model(sink.rows(), Softmax.model(logits, nx).reshape(-1), what="probabilities")

An exception raised in any testbench (a failed assertion, the watchdog)
stops the simulation and propagates out of ``Simulator.run()``. The helpers
wait with one-shot triggers (``await ctx.tick()...``, never
``.until()`` or ``async for``), so the testbenches left waiting then are
discarded silently; a testbench of yours that waits with ``until()`` at that
moment is closed while its trigger runs, and Python reports "Exception
ignored ... aclose()" (an error under pytest's ``filterwarnings = error``) on
top of the real failure.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

__all__ = [
    "StreamSink",
    "assert_matches_model",
    "first_difference",
    "gaps",
    "get",
    "icarus_g2012_compatible",
    "isolated_latency",
    "put",
    "run_stream",
    "stream_monitor",
    "stream_source",
    "watchdog",
]

#: An async testbench: ``async def testbench(ctx)``, for ``Simulator.add_testbench``.
Testbench = Callable[[Any], Awaitable[None]]
#: A random source: a seed for :func:`numpy.random.default_rng`, a generator, or ``None`` (no gaps).
RngLike = int | np.random.Generator | None


def _rng(seed: RngLike) -> np.random.Generator | None:
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


async def gaps(ctx: Any, rng: np.random.Generator | None, most: int = 3) -> None:
    """Idle for a random ``0 .. most`` cycles.

    Parameters
    ----------
    ctx:
        The testbench context (``amaranth.sim.SimulatorContext``).
    rng:
        The random source; ``None`` never idles.
    most:
        The longest gap, in cycles.
    """
    if rng is not None:
        for _ in range(int(rng.integers(0, most + 1))):
            await ctx.tick()


async def put(ctx: Any, stream: Any, payload: Any, rng: np.random.Generator | None = None, most: int = 3) -> None:
    """Send one beat on a stream the DUT consumes (the DUT drives ``stream.ready``).

    Waits a random gap first (when ``rng`` is given), then holds ``valid`` and
    ``payload`` until the clock edge on which ``ready`` is high, and drops
    ``valid`` after it.

    Parameters
    ----------
    ctx:
        The testbench context.
    stream:
        The DUT's input :class:`~amaranth.lib.stream.Interface`.
    payload:
        Anything ``ctx.set(stream.payload, ...)`` accepts (an int, a dict for a
        struct layout, a list for an array layout).
    rng, most:
        Random gap of ``0 .. most`` cycles before the beat (:func:`gaps`).
    """
    await gaps(ctx, rng, most)
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    while True:
        *_, ready = await ctx.tick().sample(stream.ready)
        if ready:
            break
    ctx.set(stream.valid, 0)


async def get(ctx: Any, stream: Any, rng: np.random.Generator | None = None, most: int = 3) -> Any:
    """Receive one beat from a stream the DUT produces (the DUT drives ``stream.valid``).

    Holds ``ready`` low for a random gap first (back-pressure, when ``rng`` is
    given), then raises it until the clock edge on which ``valid`` is high.

    Parameters
    ----------
    ctx, stream:
        The testbench context and the DUT's output
        :class:`~amaranth.lib.stream.Interface`.
    rng, most:
        Random ``ready``-low stretch of ``0 .. most`` cycles before the beat.

    Returns
    -------
    The payload sampled on the transferring edge (an int, or a
    :class:`~amaranth.lib.data.Const` view for a shaped payload).
    """
    await gaps(ctx, rng, most)
    ctx.set(stream.ready, 1)
    while True:
        *_, payload, valid = await ctx.tick().sample(stream.payload, stream.valid)
        if valid:
            break
    ctx.set(stream.ready, 0)
    return payload


async def isolated_latency(ctx: Any, dut: Any, beat: Any, limit: int = 20) -> int:
    """Latency of one beat through an idle ``dut`` (streams ``dut.i`` in, ``dut.o`` out).

    Sends ``beat`` on ``dut.i`` with ``dut.o.ready`` high and counts the cycles
    from its accepting clock edge to the first cycle with ``dut.o.valid``
    (the blocks' documented "latency").

    Parameters
    ----------
    ctx:
        The testbench context.
    dut:
        A component with stream members ``i`` (input) and ``o`` (output).
    beat:
        The payload of ``dut.i``; ``dut.i.ready`` must be high.
    limit:
        Fail (:class:`AssertionError`) if no output comes within this many cycles.

    Returns
    -------
    The latency in cycles.
    """
    ctx.set(dut.o.ready, 1)
    ctx.set(dut.i.payload, beat)
    ctx.set(dut.i.valid, 1)
    assert ctx.get(dut.i.ready), "isolated_latency: dut.i.ready is low"
    await ctx.tick()  # accepting edge
    ctx.set(dut.i.valid, 0)
    cycles = 0
    while not ctx.get(dut.o.valid):
        await ctx.tick()
        cycles += 1
        assert cycles < limit, f"isolated_latency: no output beat within {limit} cycles"
    return cycles


def stream_source(stream: Any, beats: Iterable[Any], seed: RngLike = 0, most: int = 3) -> Testbench:
    """A testbench that sends ``beats`` on ``stream`` (a DUT input), with seeded random gaps.

    Parameters
    ----------
    stream:
        The DUT's input stream.
    beats:
        The payloads, in order.
    seed:
        Seed or generator of the gaps (``valid`` low for ``0 .. most`` cycles
        before each beat); ``None``: back to back.
    most:
        The longest gap.

    Returns
    -------
    ``async def testbench(ctx)``, for ``Simulator.add_testbench``.
    """
    beats = list(beats)

    async def testbench(ctx: Any) -> None:
        rng = _rng(seed)
        for beat in beats:
            await put(ctx, stream, beat, rng, most)

    return testbench


class StreamSink:
    """Collects ``count`` beats from ``stream`` (a DUT output), with seeded random back-pressure.

    Parameters
    ----------
    stream:
        The DUT's output stream.
    count:
        Beats to receive; the testbench returns after the last one.
    seed:
        Seed or generator of the back-pressure (``ready`` low for ``0 ..
        most`` cycles before each beat); ``None``: ``ready`` high whenever a
        beat is expected.
    most:
        The longest ``ready``-low stretch.
    to_row:
        Converts a received payload to the value kept in :attr:`received`
        (default: ``int(payload)`` for a plain shape, the payload itself for
        a shaped one).

    Attributes
    ----------
    received: list
        The beats received so far (converted by ``to_row``).
    """

    def __init__(
        self, stream: Any, count: int, seed: RngLike = 0, most: int = 3, to_row: Callable[[Any], Any] | None = None
    ) -> None:
        self.stream = stream
        self.count = count
        self.seed = seed
        self.most = most
        self.to_row = to_row
        self.received: list[Any] = []

    def _convert(self, payload: Any) -> Any:
        if self.to_row is not None:
            return self.to_row(payload)
        try:
            return int(payload)
        except TypeError:
            return payload

    async def testbench(self, ctx: Any) -> None:
        """Receive :attr:`count` beats into :attr:`received`; pass to ``Simulator.add_testbench``."""
        rng = _rng(self.seed)
        while len(self.received) < self.count:
            self.received.append(self._convert(await get(ctx, self.stream, rng, self.most)))

    def progress(self) -> str:
        """``"k of n beats received"``, for :func:`watchdog` messages."""
        return f"{len(self.received)} of {self.count} beats received"

    def rows(self) -> np.ndarray:
        """:attr:`received` as an ``int64`` array (the converted beats must be ints or equal-length rows)."""
        return np.array(self.received, dtype=np.int64)


def stream_monitor(stream: Any, errors: list[str], name: str = "stream") -> Testbench:
    """A background testbench that checks the stream rule on ``stream``.

    While ``valid`` is high and ``ready`` low, the producer must hold
    ``valid`` high and ``payload`` unchanged on the next cycle. Violations are
    appended to ``errors`` (check it after the simulation: a monitor that
    raised would leave the other testbenches unfinished and hide the cycle).

    Parameters
    ----------
    stream:
        Any stream (a DUT input or output).
    errors:
        Receives one message per violation, naming the cycle.
    name:
        The stream's name in the messages.

    Returns
    -------
    ``async def testbench(ctx)``, for ``Simulator.add_testbench(..., background=True)``.
    """

    async def testbench(ctx: Any) -> None:
        held = None
        cycle = 0
        payload_bits = Value.cast(stream.payload)
        while True:
            *_, valid, ready, payload = await ctx.tick().sample(stream.valid, stream.ready, payload_bits)
            cycle += 1
            if held is not None and not (valid and payload == held):
                errors.append(f"{name}: payload/valid changed while stalled (cycle {cycle})")
            held = payload if valid and not ready else None

    return testbench


def watchdog(cycles: int, what: str = "simulation", progress: Callable[[], str] | None = None) -> Testbench:
    """A background testbench that fails the simulation after ``cycles`` clock cycles.

    A wrong handshake makes a stream testbench wait forever; with a watchdog
    the test fails instead, saying what did not finish.

    Parameters
    ----------
    cycles:
        Cycles allowed (``>= 1``).
    what:
        What should have finished, for the message.
    progress:
        Called when the watchdog fires; its text is appended to the message
        (e.g. :meth:`StreamSink.progress`).

    Returns
    -------
    ``async def testbench(ctx)``, for ``Simulator.add_testbench(..., background=True)``.
    It raises ``AssertionError("watchdog: <what> not finished after <cycles>
    cycles (<progress>)")``.
    """
    if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 1:
        raise ValueError(f"cycles: must be a positive integer, got {cycles!r}")

    async def testbench(ctx: Any) -> None:
        for _ in range(cycles):
            await ctx.tick()
        detail = f" ({progress()})" if progress is not None else ""
        raise AssertionError(f"watchdog: {what} not finished after {cycles} cycles{detail}")

    return testbench


def run_stream(
    dut: Any,
    beats: Sequence[Any],
    n_out: int,
    to_row: Callable[[Any], Sequence[int]],
    seed: int | None = 0,
    tail: int = 8,
    most: int = 3,
    limit: int | None = None,
) -> np.ndarray:
    """Feed ``beats`` into ``dut.i`` and collect ``n_out`` rows from ``dut.o``, with random gaps on both sides.

    A background monitor checks the stream rule on ``dut.o``
    (:func:`stream_monitor`); after the last row ``o.ready`` stays high and
    ``o.valid`` must stay low for ``tail`` cycles (no extra beats).

    Parameters
    ----------
    dut:
        A component with stream members ``i`` (input) and ``o`` (output),
        simulated with one clock domain ``sync``.
    beats:
        The payloads of ``dut.i``.
    n_out:
        Output beats expected.
    to_row:
        Converts an output payload to a row of ints.
    seed:
        Seed of the input gaps (``seed``) and the output back-pressure
        (``seed + 1``); ``None``: no gaps.
    tail:
        Cycles checked for extra output beats.
    most:
        The longest gap and ``ready``-low stretch.
    limit:
        Cycles allowed (default ``(2 * most + 4) * (len(beats) + 10)``);
        exceeding it fails.

    Returns
    -------
    The rows, an ``int64`` array ``(n_out, row length)``.

    Raises
    ------
    AssertionError
        On a timeout, a stream-rule violation or an extra output beat.
    """
    rng_in = np.random.default_rng(seed) if seed is not None else None
    rng_out = np.random.default_rng(seed + 1) if seed is not None else None
    results: list[list[int]] = []
    errors: list[str] = []  # checked after the run: an exception inside a testbench leaves the others dangling
    cycles = [0]

    async def producer(ctx: Any) -> None:
        for beat in beats:
            await put(ctx, dut.i, beat, rng_in, most)

    async def consumer(ctx: Any) -> None:
        for _ in range(n_out):
            payload = await get(ctx, dut.o, rng_out, most)
            results.append([int(v) for v in to_row(payload)])
        ctx.set(dut.o.ready, 1)
        for _ in range(tail):
            await ctx.tick()
            if ctx.get(dut.o.valid):
                errors.append("extra output beat")

    async def counter(ctx: Any) -> None:
        while True:
            await ctx.tick()
            cycles[0] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(producer)
    sim.add_testbench(consumer)
    sim.add_testbench(stream_monitor(dut.o, errors, "o"), background=True)
    sim.add_testbench(counter, background=True)
    if limit is None:
        limit = (2 * most + 4) * (len(beats) + 10)  # every beat waits at most 2 gaps plus the latency
    while sim.advance():
        if cycles[0] > limit:
            raise AssertionError(f"timeout: {len(results)} of {n_out} output beats after {limit} cycles")
    assert not errors, errors[:3]
    return np.array(results, dtype=np.int64).reshape(-1, len(results[0]) if results else 0)


def first_difference(got: Any, expected: Any) -> tuple[int, ...] | None:
    """The first index (row-major) at which ``got`` and ``expected`` differ, or ``None`` if they are equal.

    Parameters
    ----------
    got, expected:
        Array-likes of the same shape.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    got, expected = np.asarray(got), np.asarray(expected)
    if got.shape != expected.shape:
        raise ValueError(f"shapes differ: got {got.shape}, expected {expected.shape}")
    diff = np.argwhere(got != expected)
    return None if len(diff) == 0 else tuple(int(v) for v in diff[0])


def assert_matches_model(got: Any, expected: Any, what: str = "output") -> None:
    """Assert that the hardware's values equal the model's, naming the first difference.

    Parameters
    ----------
    got:
        What the hardware produced (array-like).
    expected:
        What the model (``model()``) says (array-like).
    what:
        The name of the values, for the message.

    Raises
    ------
    AssertionError
        ``"<what>: 3 of 40 values differ from the model; first at index (1, 4): got 17, model 18"``,
        or ``"<what>: got shape (9, 4), model (10, 4)"`` (for instance when the
        hardware produced fewer beats than expected).
    """
    got_a, expected_a = np.asarray(got), np.asarray(expected)
    if got_a.shape != expected_a.shape:
        raise AssertionError(f"{what}: got shape {got_a.shape}, model {expected_a.shape}")
    index = first_difference(got_a, expected_a)
    if index is not None:
        count = int(np.count_nonzero(got_a != expected_a))
        shown = index[0] if len(index) == 1 else index
        raise AssertionError(
            f"{what}: {count} of {expected_a.size} values differ from the model; "
            f"first at index {shown}: got {got_a[index].item()}, model {expected_a[index].item()}"
        )


#: Yosys' ``write_verilog`` (behind ``amaranth.back.verilog``) declares this register with an initialiser and reads it
#: in every ``always @*`` block, so that the blocks run once at time 0.
_TIME_ZERO_TRIGGER = re.compile(r"^(\s*)reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;$", re.M)


def icarus_g2012_compatible(verilog_text: str) -> str:
    """Verilog from ``amaranth.back.verilog.convert`` that also simulates in ``iverilog -g2012``.

    Yosys' Verilog makes every ``always @*`` block run at time 0 by reading a
    register declared as ``reg \\$auto$verilog_backend...$1 = 0;``. In Verilog
    2005 (Icarus' default) that initialiser is an event at time 0; in
    SystemVerilog (``-g2012``) a declaration's initial value is set before
    time 0 without an event, so blocks whose inputs never change afterwards
    (constants, registers holding their initial value) keep ``x`` outputs. The
    Trainer's Verilog then waits forever for its first result under
    ``-g2012``. This function moves the initial value into ``initial #0``
    (an event at time 0 after every ``always`` block waits, in both modes);
    nothing else changes. Icarus warns about "default and explicit timescale
    based delays" if other sources have a ```timescale``; the zero delay does
    not depend on it.

    Parameters
    ----------
    verilog_text:
        The output of ``amaranth.back.verilog.convert``.

    Returns
    -------
    The same Verilog with the time-0 trigger registers initialised in ``initial #0`` statements.
    """

    def initial_zero(m: re.Match) -> str:
        return f"{m.group(1)}reg {m.group(2)};\n{m.group(1)}initial #0 {m.group(2)} = 1'h0;"

    return _TIME_ZERO_TRIGGER.sub(initial_zero, verilog_text)
