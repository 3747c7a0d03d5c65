"""Speculation comparator: distance between the stored and the current softmax, against a threshold.

Bit-exact hardware of :func:`specbp_rtl.model.golden.comparator`.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ..model import golden
from ..numerics import HW_METRICS, Numerics, Plan

__all__ = ["Metric", "Comparator"]


class Metric(enum.Enum, shape=2):
    """Distance metric of the hardware comparator (the ``metric`` register).

    ``MEAN_ABS`` and ``L1`` both sum ``|stored - current|``; they differ only
    in the threshold the host programs (:attr:`specbp_rtl.numerics.Plan.threshold_int`
    scales the mean-abs threshold by the number of classes). The unused
    encoding 3 behaves like ``L1``.
    """

    MEAN_ABS = 0
    MAX_ABS = 1
    L1 = 2

    @classmethod
    def from_name(cls, name: str) -> Metric:
        """The member for a :data:`~specbp_rtl.numerics.HW_METRICS` name (``"mean-abs"``, ...)."""
        if name not in HW_METRICS:
            raise ValueError(f"metric: {name!r} has no hardware comparator (one of {', '.join(HW_METRICS)})")
        return cls[name.upper().replace("-", "_")]

    @classmethod
    def of_run(cls, name: str) -> Metric:
        """The METRIC register value of a run with metric ``name``: :meth:`from_name`, or ``MEAN_ABS``.

        A metric without a hardware comparator (``"cross-entropy"``) is only
        accepted with threshold 0 (:meth:`specbp_rtl.numerics.Numerics.plan`),
        where the comparator is unused and the register's value does not matter.
        """
        return cls.from_name(name) if name in HW_METRICS else cls.MEAN_ABS


class Comparator(wiring.Component):
    """Distance ``sum |stored - current|`` (mean-abs, l1) or ``max |stored - current|`` (max-abs) and the hit flag.

    One beat per class: ``n`` beats of ``(stored, current)`` probability pairs
    produce one result beat with ``distance`` and ``hit = distance <=
    threshold``, equal to :func:`~specbp_rtl.model.golden.comparator` for a
    :class:`~specbp_rtl.numerics.Plan` whose ``threshold_int`` and metric are
    programmed into ``threshold`` and ``metric``. The distance is exact (no
    saturation): :attr:`distance_width` bits hold ``n * prob.max``.

    Parameters
    ----------
    n:
        Number of classes (beats per comparison), ``>= 1``.
    numerics:
        Number formats; the probabilities are ``numerics.prob``.

    Ports
    -----
    threshold: ``In(unsigned(32))``
        Integer bound in ``prob`` LSBs (``Plan.threshold_int``:
        ``floor(T * n * 2**f)`` for mean-abs, ``floor(T * 2**f)`` for
        max-abs and l1). Sampled when the ``n``-th beat is accepted.
    metric: ``In(Metric)``
        Sampled on every input beat; hold it constant during a comparison.
    i: ``In(stream.Signature(StructLayout({"stored": prob.shape, "current": prob.shape})))``
        ``n`` beats, class ``k = 0 .. n-1`` (counted; no ``last`` flag).
    o: ``Out(stream.Signature(StructLayout({"hit": 1, "distance": unsigned(distance_width)})))``
        One registered beat per ``n`` input beats.

    Latency
    -------
    :attr:`latency` ``= 3``: the edge accepting a beat registers ``|stored -
    current|``, the next one the running sum or maximum, the third the result
    (``distance`` and ``hit``); ``o.valid`` rises on the cycle after that
    third edge. At most one adder or comparator between registers.

    Throughput
    ----------
    One input beat per cycle, continuously (one comparison every ``n``
    cycles). Back-pressure is a global stall: while a result waits in ``o``
    (``o.valid`` high, ``o.ready`` low) every stage holds and ``i.ready`` is
    low.
    """

    def __init__(self, n: int, numerics: Numerics) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n: must be a positive integer, got {n!r}")
        if not isinstance(numerics, Numerics):
            raise ValueError(f"numerics: must be a Numerics instance, got {type(numerics).__name__}")
        self._n = n
        self._numerics = numerics
        self._distance_width = (n * numerics.prob.max).bit_length()
        self.in_layout = data.StructLayout({"stored": numerics.prob.shape, "current": numerics.prob.shape})
        self.out_layout = data.StructLayout({"hit": 1, "distance": unsigned(self._distance_width)})
        super().__init__(
            {
                "threshold": In(unsigned(32)),
                "metric": In(Metric),
                "i": In(stream.Signature(self.in_layout)),
                "o": Out(stream.Signature(self.out_layout)),
            }
        )

    @property
    def n(self) -> int:
        return self._n

    @property
    def numerics(self) -> Numerics:
        return self._numerics

    @property
    def distance_width(self) -> int:
        """Width of ``o.payload.distance``: holds ``n * prob.max``."""
        return self._distance_width

    @property
    def latency(self) -> int:
        """Cycles from accepting the ``n``-th beat to ``o.valid``."""
        return 3

    @property
    def period(self) -> int:
        """Cycles per comparison with ``i.valid`` and ``o.ready`` always high."""
        return self._n

    @staticmethod
    def model(p_stored: np.ndarray, p_current: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """The numpy model: :func:`specbp_rtl.model.golden.comparator` (hit flags and distances per row).

        The hardware equivalent programs ``threshold = plan.threshold_int`` and
        ``metric = Metric.from_name(plan.config.metric)``.
        """
        return golden.comparator(np.asarray(p_stored), np.asarray(p_current), plan)

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self._n

        k = Signal(range(n))
        payload = self.i.payload
        stall = Signal()
        m.d.comb += [stall.eq(self.o.valid & ~self.o.ready), self.i.ready.eq(~stall)]

        # stage A: |stored - current| of the accepted beat
        a_valid, a_first, a_last, a_max = Signal(), Signal(), Signal(), Signal()
        a_diff = Signal(self._numerics.prob.width)
        # the threshold saturated to the distance's width (every distance is below 2**distance_width)
        dw = self._distance_width
        a_thr = Signal(min(dw, len(self.threshold)))
        thr_sat = (
            self.threshold
            if dw >= len(self.threshold)
            else Mux(self.threshold[dw:].any(), (1 << dw) - 1, self.threshold[:dw])
        )
        # stage B: running sum / maximum, and the finished distance
        acc = Signal(self._distance_width)
        b_valid = Signal()
        b_dist = Signal(self._distance_width)
        b_thr = Signal.like(a_thr)
        base = Mux(a_first, 0, acc)
        dist = Mux(a_max, Mux(a_diff > base, a_diff, base), base + a_diff)

        with m.If(~stall):
            accept = self.i.valid
            m.d.sync += [
                a_valid.eq(accept),
                a_first.eq(k == 0),
                a_last.eq(k == n - 1),
                a_max.eq(self.metric == Metric.MAX_ABS),
                a_thr.eq(thr_sat),
                a_diff.eq(
                    Mux(
                        payload.stored >= payload.current,
                        payload.stored - payload.current,
                        payload.current - payload.stored,
                    )
                ),
                b_valid.eq(a_valid & a_last),
                self.o.valid.eq(b_valid),
            ]
            with m.If(accept):
                m.d.sync += k.eq(Mux(k == n - 1, 0, k + 1))
            with m.If(a_valid):
                m.d.sync += [acc.eq(dist), b_dist.eq(dist), b_thr.eq(a_thr)]
            with m.If(b_valid):
                m.d.sync += [
                    self.o.payload.distance.eq(b_dist),
                    self.o.payload.hit.eq(b_dist <= b_thr),
                ]
        return m
