"""Lane-parallel multiply-accumulate array (DESIGN §3: lanes = output neurons)."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import Q, hdl_round_shift, hdl_saturate, requantize

__all__ = ["MacArray"]


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def _sign_extend(value: Value, width: int) -> Value:
    """``value`` (signed) sign-extended to at least ``width`` bits."""
    if len(value) >= width:
        return value
    return Cat(value, value[-1].replicate(width - len(value))).as_signed()


class MacArray(wiring.Component):
    """``lanes`` multiply-accumulate units fed by one stream, one multiplier per lane.

    Every accepted beat multiplies ``a[l]`` by ``b`` (broadcast mode: one
    operand shared by all lanes) or by ``b[l]`` (per-lane mode) and adds the
    product to lane ``l``'s accumulator; ``first`` starts a new sum instead of
    adding. A beat with ``last`` set produces one output beat holding every
    lane's sum, requantised into ``out`` (round half up, then saturate:
    :func:`~specbp_rtl.fixed.hdl_requantize`) or raw if ``out`` is ``None``.
    Beats without ``last`` produce nothing. A beat may carry both ``first``
    and ``last`` (a one-term sum). After reset the accumulators hold 0.

    A layer's forward pass (:func:`specbp_rtl.model.golden.layer_forward`) is
    one group per sample: ``a = W[:, i]``, ``b = x[i]`` for every input ``i``
    (``first`` on ``i = 0``), then a bias beat ``a = b_op``,
    ``b = 1 << in_frac`` with ``last``; ``acc_frac = weight_operand_frac +
    in_frac``, ``out = numerics.act``.

    Parameters
    ----------
    lanes:
        Number of lanes (parallel MACs), ``>= 1``.
    a_width, b_width:
        Signed operand widths, ``>= 1``. Keep them ``<= 16`` for one iCE40
        ``SB_MAC16`` per lane (``<= 18`` for one ECP5 ``MULT18X18D``).
    broadcast:
        ``True``: ``b`` is a single ``signed(b_width)`` shared by all lanes;
        ``False``: ``b`` is an array with one operand per lane.
    acc_width:
        Accumulator width in bits (signed), ``>= a_width + b_width``. The sum
        wraps modulo ``2**acc_width``; the caller guarantees it does not
        overflow.
    acc_frac:
        Fractional bits of the accumulator (``a`` frac + ``b`` frac), ``>= 0``;
        used only to requantise into ``out``.
    out:
        Output format, or ``None`` for the raw ``signed(acc_width)`` sums.
    output_registers:
        ``True`` (default): the rounded and the saturated sums are registered
        (:attr:`LATENCY`). ``False``: ``o.payload`` is the accumulator,
        rounded and saturated combinationally, and ``o.valid`` is high in the
        cycle after the sum completes (:attr:`LATENCY_UNREGISTERED`); two
        registers fewer per lane and bit, for devices short of logic cells.

    Attributes
    ----------
    i : In(stream.Signature(StructLayout))
        Operands: ``a``: ``ArrayLayout(signed(a_width), lanes)``; ``b``:
        ``signed(b_width)`` (broadcast) or ``ArrayLayout(signed(b_width),
        lanes)``; ``first``, ``last``: 1 bit each.
    o : Out(stream.Signature(StructLayout))
        ``value``: ``ArrayLayout(out.shape or signed(acc_width), lanes)``, one
        beat per ``last`` input beat.

    Latency
    -------
    :attr:`latency` cycles: :attr:`LATENCY` = 4 with ``output_registers``: the
    beat carrying ``last`` is accepted on clock edge ``t`` (operand
    registers), the product is registered at ``t + 1``, the accumulator at
    ``t + 2``, the rounded sum at ``t + 3`` and the saturated output at
    ``t + 4``, after which ``o.valid`` is high (with ``o.ready`` held high).
    Without ``out`` the sum passes both registers unchanged. Without
    ``output_registers``: :attr:`LATENCY_UNREGISTERED` = 2 (``o.valid`` after
    the accumulator's edge ``t + 2``).

    Throughput
    ----------
    One input beat per cycle (so one output per cycle for one-beat groups).
    Back-pressure is a global stall: while ``o.valid & ~o.ready`` every stage
    holds and ``i.ready`` is low (``i.ready = ~stall``, combinationally).

    Model
    -----
    :meth:`model` (numpy); equal to :func:`~specbp_rtl.model.golden.layer_forward`
    for the stream described above.
    """

    #: Cycles from the clock edge accepting a ``last`` beat to ``o.valid`` (with ``o.ready`` high).
    LATENCY = 4
    #: The same without ``output_registers``.
    LATENCY_UNREGISTERED = 2

    def __init__(
        self,
        lanes: int,
        *,
        a_width: int = 16,
        b_width: int = 16,
        broadcast: bool = True,
        acc_width: int = 48,
        acc_frac: int = 0,
        out: Q | None = None,
        output_registers: bool = True,
    ) -> None:
        _check_int("lanes", lanes, 1)
        _check_int("a_width", a_width, 1)
        _check_int("b_width", b_width, 1)
        if not isinstance(broadcast, bool):
            raise ValueError(f"broadcast: must be a bool, got {broadcast!r}")
        _check_int("acc_width", acc_width, a_width + b_width)
        _check_int("acc_frac", acc_frac, 0)
        if out is not None and not isinstance(out, Q):
            raise ValueError(f"out: must be a fixed.Q format or None, got {out!r}")
        if not isinstance(output_registers, bool):
            raise ValueError(f"output_registers: must be a bool, got {output_registers!r}")
        self.lanes = lanes
        self.a_width = a_width
        self.b_width = b_width
        self.broadcast = broadcast
        self.acc_width = acc_width
        self.acc_frac = acc_frac
        self.out = out
        self.output_registers = output_registers
        b_layout = signed(b_width) if broadcast else data.ArrayLayout(signed(b_width), lanes)
        in_layout = data.StructLayout(
            {
                "a": data.ArrayLayout(signed(a_width), lanes),
                "b": b_layout,
                "first": 1,
                "last": 1,
            }
        )
        out_shape = out.shape if out is not None else signed(acc_width)
        out_layout = data.StructLayout({"value": data.ArrayLayout(out_shape, lanes)})
        super().__init__(
            {
                "i": In(stream.Signature(in_layout)),
                "o": Out(stream.Signature(out_layout)),
            }
        )

    @property
    def latency(self) -> int:
        """Cycles from the clock edge accepting a ``last`` beat to ``o.valid`` (with ``o.ready`` high)."""
        return self.latency_for(self.output_registers)

    @classmethod
    def latency_for(cls, output_registers: bool) -> int:
        """:attr:`latency` of an array with or without ``output_registers``."""
        return cls.LATENCY if output_registers else cls.LATENCY_UNREGISTERED

    @staticmethod
    def model(
        a: np.ndarray,
        b: np.ndarray,
        first: np.ndarray,
        last: np.ndarray,
        *,
        acc_frac: int = 0,
        out: Q | None = None,
        acc_width: int = 48,
    ) -> np.ndarray:
        """Bit-exact numpy model of a beat sequence.

        ``a``: ``(n, lanes)``; ``b``: ``(n,)`` (broadcast) or ``(n, lanes)``;
        ``first``, ``last``: ``(n,)`` flags. Returns ``(n_outputs, lanes)``
        int64: one row per ``last`` beat, requantised with
        :func:`~specbp_rtl.fixed.requantize` when ``out`` is given. Sums wrap
        modulo ``2**acc_width`` like the hardware (``acc_width <= 62``).
        """
        a = np.asarray(a, dtype=np.int64)
        b = np.asarray(b, dtype=np.int64)
        if a.ndim != 2:
            raise ValueError(f"a: must be 2-D (beats, lanes), got shape {a.shape}")
        if b.ndim == 1:
            b = b[:, None]
        first = np.asarray(first, dtype=bool)
        last = np.asarray(last, dtype=bool)
        if not 2 <= acc_width <= 62:
            raise ValueError(f"acc_width: the numpy model supports 2..62, got {acc_width}")
        prod = a * b
        half, span = 1 << (acc_width - 1), 1 << acc_width
        acc = np.zeros(a.shape[1], dtype=np.int64)
        rows = []
        for n in range(a.shape[0]):
            acc = prod[n] if first[n] else acc + prod[n]
            acc = (acc + half) % span - half
            if last[n]:
                rows.append(acc)
        result = np.array(rows, dtype=np.int64).reshape(-1, a.shape[1])
        return requantize(result, acc_frac, out) if out is not None else result

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes = self.lanes
        payload = self.i.payload

        stall = Signal()
        m.d.comb += [
            stall.eq(self.o.valid & ~self.o.ready),
            self.i.ready.eq(~stall),
        ]

        # Stage 1: operand registers (the accepting edge).
        v1, first1, last1 = Signal(), Signal(), Signal()
        a1 = [Signal(signed(self.a_width), name=f"a1_{lane}", reset_less=True) for lane in range(lanes)]
        # one operand register per lane in both modes: a broadcast operand's copies are equal, and a build
        # that keeps them apart (toolchain.REGISTER_COPIES_KEPT) lets each sit beside its multiplier
        b1 = [Signal(signed(self.b_width), name=f"b1_{lane}", reset_less=True) for lane in range(lanes)]
        # Stage 2: products.
        v2, first2, last2 = Signal(), Signal(), Signal()
        prod_width = self.a_width + self.b_width
        prod2 = [Signal(signed(prod_width), name=f"prod2_{lane}", reset_less=True) for lane in range(lanes)]
        # Stage 3: accumulators; `done3` marks a completed sum.
        done3 = Signal()
        acc3 = [Signal(signed(self.acc_width), name=f"acc3_{lane}") for lane in range(lanes)]
        # Stage 4: rounded sums.
        done4 = Signal()
        round_shape = Value.cast(self._round(acc3[0])).shape()
        round4 = [Signal(round_shape, name=f"round4_{lane}", reset_less=True) for lane in range(lanes)]

        with m.If(~stall):
            m.d.sync += [
                v1.eq(self.i.valid),
                first1.eq(payload.first),
                last1.eq(payload.last),
                v2.eq(v1),
                first2.eq(first1),
                last2.eq(last1),
                done3.eq(v2 & last2),
                *([done4.eq(done3), self.o.valid.eq(done4)] if self.output_registers else []),
            ]
            for lane in range(lanes):
                m.d.sync += [
                    a1[lane].eq(payload.a[lane]),
                    b1[lane].eq(payload.b if self.broadcast else payload.b[lane]),
                    prod2[lane].eq(a1[lane] * b1[lane]),
                ]
            with m.If(v2):
                for lane in range(lanes):
                    m.d.sync += acc3[lane].eq(Mux(first2, prod2[lane], acc3[lane] + prod2[lane]))
            if self.output_registers:
                # Stage 4: the completed sum, rounded to the output format's LSB (not yet saturated).
                with m.If(done3):
                    for lane in range(lanes):
                        m.d.sync += round4[lane].eq(self._round(acc3[lane]))
                # Stage 5: the output register, saturated.
                with m.If(done4):
                    for lane in range(lanes):
                        m.d.sync += self.o.payload.value[lane].eq(self._saturate(round4[lane]))
        if not self.output_registers:
            # the accumulator holds a completed sum for one cycle (or while stalled)
            m.d.comb += [
                self.o.valid.eq(done3),
                *(self.o.payload.value[lane].eq(self._saturate(self._round(acc3[lane]))) for lane in range(lanes)),
            ]
        return m

    def _round(self, acc: Value) -> Value:
        if self.out is None:
            return acc
        # hdl_saturate needs an input at least as wide as the format (it slices
        # the in-range value), so sign-extend for formats wider than the sum.
        shift = self.acc_frac - self.out.frac_bits
        acc = _sign_extend(acc, self.out.width + max(shift, 0))
        return hdl_round_shift(acc, shift)

    def _saturate(self, rounded: Value) -> Value:
        return rounded if self.out is None else hdl_saturate(rounded, self.out)
