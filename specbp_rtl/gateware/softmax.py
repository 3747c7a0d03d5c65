"""Softmax unit: max-subtract, exp LUT in block RAM, one reciprocal, one shift-add multiplier.

Bit-exact hardware of :func:`specbp_rtl.model.golden.softmax`.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..fixed import hdl_round_shift
from ..model import golden
from ..numerics import Numerics
from .util import tree_sum

__all__ = ["Softmax"]


class Softmax(wiring.Component):
    """Softmax of ``n`` logits into ``n`` probabilities, bit-exact with :func:`~specbp_rtl.model.golden.softmax`.

    With ``f = numerics.prob.frac_bits`` and ``LUT = numerics.exp_lut()``:

    * ``d_k = max(z) - z_k``; ``e_k = LUT[min(round_shift(d_k, act.frac_bits - exp_lut_frac), exp_lut_size - 1)]``;
    * ``S = sum e_k``; ``r = floor(2**(2 f) / S)``;
    * ``p_k = round_shift(e_k * r, f)``.

    The exp LUT is an :class:`~amaranth.lib.memory.Memory` with a synchronous
    read port (block RAM: 6 ``SB_RAM40_4K`` on iCE40, 2 ``DP16KD`` on ECP5 with
    the default numerics). One ``n``-entry buffer memory holds the logits,
    which are overwritten in place by the ``e`` values (one more
    ``SB_RAM40_4K`` on iCE40, which has no distributed RAM; 4
    ``TRELLIS_DPR16X4`` on ECP5). ``r`` comes from a sequential
    restoring divider, one quotient bit per cycle, no multiplier. Because the
    maximum logit contributes ``LUT[0] = 2**f``, ``S >= 2**f`` and
    ``r <= 2**f``: the divider only needs :attr:`quotient_bits` ``= f + 1``
    iterations. ``e_k * r`` (``prob.width x (f + 1)``: 16x16 with the
    default numerics) is a shift-add multiplier in logic, in two registered
    stages (four partial sums of four partial products, then their sum), so
    the unit uses no DSP block and the trainer's DSPs are exactly its MAC
    lanes.

    Operation is in four phases that do not overlap (except that the last
    outputs drain while the next vector loads): LOAD (accept ``n`` logits,
    track the max, a cycle behind), EXP (``n + 2`` cycles: buffer read, LUT
    read, accumulate ``S``; each ``e_k`` is written back from a register a
    cycle later, the last in DIV's first cycle), DIV (:attr:`quotient_bits`
    cycles; the last one also reads ``e_0``), OUT (the other ``n - 1`` buffer reads, one product per cycle through the
    two-stage multiplier into a registered output).

    Parameters
    ----------
    n:
        Number of logits per vector (the number of classes), ``>= 1``.
    numerics:
        Number formats: logits in ``numerics.act``, probabilities in
        ``numerics.prob``, exp LUT from :meth:`Numerics.exp_lut`.
    serial_multiplier:
        ``e_k * r`` one multiplier bit per cycle (:attr:`quotient_bits` cycles
        per probability, :attr:`interval`) in a few dozen logic cells instead
        of the two-stage shift-add array (several hundred on iCE40). Same
        results.
    lut_top_in_logic:
        Keep ``LUT[0]`` (1.0, the largest entry) out of the memory and store
        the others a bit narrower where they fit (with the ``lean`` formats,
        384 x 8 bits: one iCE40 block RAM instead of two). Same results, same
        timing.

    Ports
    -----
    i: ``In(stream.Signature(numerics.act.shape))``
        The ``n`` logits, one per beat, ``k = 0 .. n-1`` (the unit counts
        beats; there is no ``last`` flag). ``i.ready`` is high only while
        loading.
    o: ``Out(stream.Signature(numerics.prob.shape))``
        The ``n`` probabilities in order ``k = 0 .. n-1``. ``o.payload`` is
        registered. Back-pressure (``o.ready`` low) stalls the output phase.

    Latency
    -------
    :attr:`latency` ``= n + quotient_bits + 5`` cycles (31 for ``n = 10``
    with the default numerics; ``quotient_bits - 1`` more with
    ``serial_multiplier``) from the clock edge that accepts the ``n``-th
    logit to the first cycle ``o.valid`` is high with ``p_0``; the following
    probabilities come one per cycle (every :attr:`interval` cycles) while
    ``o.ready`` is high.

    Throughput
    ----------
    With ``i.valid`` and ``o.ready`` always high, one softmax every
    :attr:`period` ``= 3 n + quotient_bits + 1`` cycles (47 for ``n = 10``;
    one more cycle for ``n = 1``), i.e. ``n / period`` logits per cycle. The
    first logit of the next vector is accepted on the cycle after the last
    buffer read of the current one, while its last outputs are still draining.
    With ``serial_multiplier`` the last logit waits until the multiplier has
    taken the current vector's last ``e``: :attr:`period` ``= n + q + 3 +
    max((n - 1) q + 1, (n - 2) q + n)`` with ``q = quotient_bits`` (174 for
    ``n = 10``), counted between the last logits of consecutive vectors.
    """

    def __init__(
        self, n: int, numerics: Numerics, lut_top_in_logic: bool = False, serial_multiplier: bool = False
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: must be a positive integer, got {n!r}")
        if not isinstance(numerics, Numerics):
            raise ValueError(f"numerics: must be a Numerics instance, got {type(numerics).__name__}")
        if not isinstance(lut_top_in_logic, bool):
            raise ValueError(f"lut_top_in_logic: must be a bool, got {lut_top_in_logic!r}")
        if not isinstance(serial_multiplier, bool):
            raise ValueError(f"serial_multiplier: must be a bool, got {serial_multiplier!r}")
        self._serial = serial_multiplier
        self._n = n
        self._numerics = numerics
        self._lut_top_in_logic = lut_top_in_logic
        self._lut = [int(v) for v in numerics.exp_lut()]
        f = numerics.prob.frac_bits
        # S >= LUT[0] (the max logit's entry), so the quotient is < 2**quotient_bits
        self._quotient_bits = ((1 << (2 * f)) // self._lut[0]).bit_length()
        if self._quotient_bits < 2:
            raise ValueError(f"numerics.prob: needs at least 1 fractional bit, got {numerics.prob}")
        super().__init__(
            {
                "i": In(stream.Signature(numerics.act.shape)),
                "o": Out(stream.Signature(numerics.prob.shape)),
            }
        )

    @property
    def n(self) -> int:
        return self._n

    @property
    def numerics(self) -> Numerics:
        return self._numerics

    @property
    def quotient_bits(self) -> int:
        """Iterations of the restoring divider (``prob.frac_bits + 1`` for the default LUT)."""
        return self._quotient_bits

    @property
    def latency(self) -> int:
        """Cycles from accepting the ``n``-th logit to ``o.valid`` with the first probability."""
        return self._n + self._quotient_bits + 5 + (self._quotient_bits - 1 if self._serial else 0)

    @property
    def interval(self) -> int:
        """Cycles between consecutive probabilities of a vector (with ``o.ready`` high)."""
        return self._quotient_bits if self._serial else 1

    @property
    def period(self) -> int:
        """Cycles per softmax with ``i.valid`` and ``o.ready`` always high (between the last logits of
        consecutive vectors)."""
        n, q = self._n, self._quotient_bits
        if self._serial:
            return n + q + 3 + max((n - 1) * q + 1, (n - 2) * q + n)
        return 3 * n + q + 1 + (1 if n == 1 else 0)

    @staticmethod
    def model(z: np.ndarray, numerics: Numerics) -> np.ndarray:
        """The numpy model: :func:`specbp_rtl.model.golden.softmax` (rows of ``n`` logits)."""
        return golden.softmax(np.asarray(z, dtype=np.int64), numerics)

    def elaborate(self, platform) -> Module:
        m = Module()
        n, nx = self._n, self._numerics
        act, prob = nx.act, nx.prob
        f = prob.frac_bits
        qbits = self._quotient_bits
        lut_size = nx.exp_lut_size

        # -- memories ---------------------------------------------------------
        # lut_top_in_logic: LUT[0] = 1.0, the only entry with the top bit set (where the rounding keeps the others
        # below it), is not stored, so the memory is a bit narrower (the iCEBreaker's 9-bit entries fit 512 x 8)
        lut_width = max(self._lut).bit_length()
        narrow = self._lut_top_in_logic and max(self._lut[1:], default=0).bit_length() < lut_width
        stored = [0] + self._lut[1:] if narrow else self._lut
        m.submodules.lut = lut = Memory(shape=unsigned(max(stored).bit_length() or 1), depth=lut_size, init=stored)
        lut_rd = lut.read_port(domain="sync")
        lut_data = lut_rd.data  # the entry read
        if narrow:
            lut_zero = Signal()  # the entry read is LUT[0]
            lut_data = Signal(lut_width, name="lut_data")
            m.d.sync += lut_zero.eq(lut_rd.addr == 0)
            m.d.comb += lut_data.eq(Mux(lut_zero, self._lut[0], lut_rd.data))
        buf_width = max(act.width, prob.width)
        m.submodules.buf = buf = Memory(shape=unsigned(buf_width), depth=n, init=[])
        buf_rd = buf.read_port(domain="sync")
        buf_wr = buf.write_port()

        # -- state --------------------------------------------------------------
        k = Signal(range(n + 1))  # load / buffer-read index
        kw = Signal(range(n + 1))  # EXP write-back index
        zmax = Signal(act.shape)
        # LUT index round_shift(max - z, shift): the rounding half is added to the max in EXP's first cycle
        # (stage 1 first runs in its second), so stage 1 has one subtractor before the clamp
        shift = act.frac_bits - nx.exp_lut_frac
        half = 1 << (shift - 1) if shift > 0 else 0
        zmax_h = Signal(signed(act.width + 1))
        v1 = Signal()  # EXP: buf_rd.data holds z_k
        v2 = Signal()  # EXP: lut_data holds e_k
        s_sum = Signal(range(n * max(self._lut) + 1))
        dividend = 1 << (2 * f)
        rem = Signal(range(2 * n * max(self._lut) + 1))  # restoring-divider partial remainder (< 2 S)
        quo = Signal(qbits)  # low dividend bits, shifted out as quotient bits shift in; r when done
        step = Signal(range(qbits + 1))
        pend = Signal()  # OUT: buf_rd.data holds an unconsumed e_k

        # the max is tracked a cycle behind the accepted logits (from registers, not from the handshake); EXP's
        # first cycle, which reads the max, sees the last logit's pending comparison through zmax_now
        z_in = Signal(act.shape)
        z_in_first = Signal()
        z_in_valid = Signal()
        zmax_now = Signal(act.shape)
        m.d.comb += zmax_now.eq(Mux(z_in_valid & (z_in_first | (z_in > zmax)), z_in, zmax))
        m.d.sync += [zmax.eq(zmax_now), z_in_valid.eq(0)]

        # stage 3 (EXP, and DIV's first cycle for the last one): e_k from a register into the buffer, in place of
        # z_k (DIV reads the buffer only in its last cycle, and quotient_bits >= 2)
        v3 = Signal()
        e3 = Signal.like(lut_data)
        kw3 = Signal.like(kw)
        m.d.sync += v3.eq(0)

        issue_exp = Signal()  # EXP: read z_k
        issue_out = Signal()  # OUT: read e_k
        m.d.comb += [
            buf_rd.addr.eq(k),
            buf_rd.en.eq(issue_exp | issue_out),
        ]

        # -- output stage (also drains while the next vector loads) --------------
        advance = Signal()  # the output register can take a new value
        take = Signal()  # stage 1 takes the e_k on buf_rd.data
        e = buf_rd.data[: prob.width]
        if self._serial:
            # e_k * r + half an LSB one multiplier bit per cycle: the multiplicand shifts left, the multiplier
            # (a copy of r) right; the last of the quotient_bits steps writes the rounded product into the output
            # register, and the next e_k is taken in the same cycle
            busy = Signal()
            mc = Signal(prob.width + qbits)
            mq = Signal(qbits)
            macc = Signal(prob.width + qbits + 1)
            mstep = Signal(range(qbits))
            fin = Signal()  # the last step is due
            mgo = Signal()  # a step happens (the last one only when the output register is free)
            addend = Mux(mq[0], mc, 0)
            m.d.comb += [
                advance.eq(~self.o.valid | self.o.ready),
                fin.eq(busy & (mstep == qbits - 1)),
                mgo.eq(busy & (~fin | advance)),
                take.eq(pend & (~busy | (fin & advance))),
            ]
            with m.If(advance):
                m.d.sync += self.o.valid.eq(0)
            with m.If(mgo):
                m.d.sync += [macc.eq(macc + addend), mc.eq(mc << 1), mq.eq(mq >> 1), mstep.eq(mstep + 1)]
                with m.If(fin):
                    m.d.sync += [
                        busy.eq(0),
                        self.o.valid.eq(1),
                        self.o.payload.eq(((macc + addend) >> f)[: prob.width]),
                    ]
            with m.If(take):
                m.d.sync += [busy.eq(1), mc.eq(e), mq.eq(quo), macc.eq(1 << (f - 1)), mstep.eq(0)]
        else:
            # e_k * r + half an LSB as a shift-add multiplier in two registered stages (no DSP): stage 1 holds
            # four partial sums of four gated partial products each, stage 2 (the output register) adds them
            s1_valid = Signal()
            terms = [Mux(quo[j], e << j, 0) for j in range(qbits)] + [1 << (f - 1)]
            groups = [terms[g : g + 4] for g in range(0, len(terms), 4)]
            partial = [Signal(prob.width + qbits + 1, name=f"partial{g}") for g in range(len(groups))]
            m.d.comb += [
                advance.eq(~self.o.valid | self.o.ready),
                take.eq(pend & (~s1_valid | advance)),
            ]
            with m.If(take):
                m.d.sync += [p.eq(tree_sum(group)) for p, group in zip(partial, groups)]
            m.d.sync += s1_valid.eq(take | (s1_valid & ~advance))
            with m.If(advance):
                m.d.sync += self.o.valid.eq(s1_valid)
                with m.If(s1_valid):
                    m.d.sync += self.o.payload.eq((tree_sum(partial) >> f)[: prob.width])
        m.d.sync += pend.eq(issue_out | (pend & ~take))

        with m.FSM(init="LOAD"):
            with m.State("LOAD"):
                last = k == n - 1
                # the last logit starts EXP, which needs the buffer read port: wait until it is drained
                m.d.comb += self.i.ready.eq(~(last & pend))
                z = self.i.payload
                m.d.comb += [
                    buf_wr.addr.eq(k),
                    buf_wr.data.eq(z),
                    buf_wr.en.eq(self.i.valid & self.i.ready),
                ]
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += [z_in.eq(z), z_in_first.eq(k == 0), z_in_valid.eq(1)]
                    m.d.sync += k.eq(k + 1)
                    with m.If(last):
                        m.d.sync += [
                            k.eq(0),
                            kw.eq(0),
                            s_sum.eq(0),
                            rem.eq(dividend >> qbits),
                            quo.eq(dividend & ((1 << qbits) - 1)),
                            step.eq(0),
                        ]
                        m.next = "EXP"

            with m.State("EXP"):
                # stage 0: read z_k from the buffer
                m.d.comb += issue_exp.eq(k < n)
                with m.If(issue_exp):
                    m.d.sync += k.eq(k + 1)
                m.d.sync += [v1.eq(issue_exp), v2.eq(v1), zmax_h.eq(zmax_now + half)]
                # stage 1: d = max - z, LUT index
                z_k = buf_rd.data[: act.width].as_signed()
                d = (zmax_h - z_k).as_unsigned()  # max - z + half >= 0
                idx = d >> shift if shift > 0 else hdl_round_shift(d, shift)
                m.d.comb += lut_rd.addr.eq(Mux(idx > lut_size - 1, lut_size - 1, idx))
                # stage 2: S += e_k; e_k registered for the buffer
                e_k = lut_data
                m.d.sync += [v3.eq(v2), e3.eq(e_k), kw3.eq(kw)]
                with m.If(v2):
                    m.d.sync += [s_sum.eq(s_sum + e_k), kw.eq(kw + 1)]
                    with m.If(kw == n - 1):
                        m.d.sync += k.eq(0)
                        m.next = "DIV"

            with m.State("DIV"):
                # restoring division of the constant 2**(2f) by S, one quotient bit per cycle
                trial = Signal.like(rem)
                m.d.comb += trial.eq((rem << 1) | quo[-1])
                with m.If(trial >= s_sum):
                    m.d.sync += [rem.eq(trial - s_sum), quo.eq((quo << 1) | 1)]
                with m.Else():
                    m.d.sync += [rem.eq(trial), quo.eq(quo << 1)]
                m.d.sync += step.eq(step + 1)
                with m.If(step == qbits - 1):
                    # the e values are final: read e_0 now, so that the multiplier's first stage meets r
                    m.d.comb += issue_out.eq(1)
                    m.d.sync += k.eq(1 if n > 1 else 0)  # (for n = 1 the next index is a load's)
                    m.next = "OUT" if n > 1 else "LOAD"

            with m.State("OUT"):
                # read e_k whenever the read port's data is free or being taken this cycle
                m.d.comb += issue_out.eq(~pend | take)
                with m.If(issue_out):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == n - 1):
                        m.d.sync += k.eq(0)
                        m.next = "LOAD"

        with m.If(v3):
            m.d.comb += [buf_wr.addr.eq(kw3), buf_wr.data.eq(e3), buf_wr.en.eq(1)]
        return m
