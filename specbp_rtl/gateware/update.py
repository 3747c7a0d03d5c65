"""SGD update unit: ``W <- saturate(W - round(clip(G) * lr))`` on a stream of weight words."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import Q, hdl_const_mul, hdl_round_shift, hdl_saturate, round_shift, saturate
from ..model import golden
from ..numerics import Plan

__all__ = ["UpdateUnit"]


class UpdateUnit(wiring.Component):
    """``lanes`` SGD updaters: ``w_new = saturate(w - round_shift(clip(g) * lr_m, shift), weight)``.

    ``clip(g)`` clamps the summed gradient to ``[-clip_int, clip_int]``; the
    learning-rate product is exact and built from shifts and adds
    (:func:`~specbp_rtl.fixed.hdl_const_mul`, no multiplier); the rounding is
    half up (:func:`~specbp_rtl.fixed.hdl_round_shift`, a left shift when
    ``shift <= 0``) and the result saturates into ``weight``. This is
    :func:`~specbp_rtl.model.golden.sgd_update`.

    The caller streams one weight word and the matching gradient word per beat
    (``W`` word ``i`` with ``G`` word ``i``) and writes the result back to
    ``W`` word ``i``. The unit does not clear ``G``: the caller does it by
    writing zero to ``G`` at the same address.

    Parameters
    ----------
    lanes:
        Number of lanes (weights per word), ``>= 1``.
    weight:
        Master weight format (signed).
    grad:
        Gradient accumulator format (signed).
    clip_int:
        Clip bound in ``grad`` LSBs, ``>= 0``.
    lr_m:
        Learning-rate mantissa (``lr = lr_m * 2**-lr_shift``), ``>= 1``.
    shift:
        Right shift from ``clip(g) * lr_m`` (``grad.frac_bits + lr_shift``
        fractional bits) to ``weight`` (a left shift when negative).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout))
        ``w``: ``ArrayLayout(weight.shape, lanes)``; ``g``:
        ``ArrayLayout(grad.shape, lanes)``.
    o : Out(stream.Signature(StructLayout))
        ``w``: ``ArrayLayout(weight.shape, lanes)``, the updated weights, one
        beat per input beat, in order.

    Latency
    -------
    :attr:`LATENCY` = 3 cycles from the clock edge accepting a beat to
    ``o.valid`` (with ``o.ready`` held high): input registers at edge ``t``,
    clipped gradient at ``t + 1``, ``clip(g) * lr_m`` at ``t + 2``, the
    rounded, subtracted and saturated weight (the output register) at ``t + 3``.

    Throughput
    ----------
    One beat per cycle. Back-pressure is a global stall: while
    ``o.valid & ~o.ready`` every stage holds and ``i.ready`` is low
    (``i.ready = ~stall``, combinationally).

    Model
    -----
    :meth:`model` is :func:`~specbp_rtl.model.golden.sgd_update` (for units
    built by :meth:`for_layer`); :meth:`apply` is the same formula with this
    instance's constants.
    """

    #: Cycles from the clock edge accepting a beat to ``o.valid`` (with ``o.ready`` high).
    LATENCY = 3

    def __init__(self, lanes: int, *, weight: Q, grad: Q, clip_int: int, lr_m: int, shift: int) -> None:
        for name, value in (("lanes", lanes), ("clip_int", clip_int), ("lr_m", lr_m), ("shift", shift)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: must be an integer, got {value!r}")
        if lanes < 1:
            raise ValueError(f"lanes: must be >= 1, got {lanes}")
        for name, fmt in (("weight", weight), ("grad", grad)):
            if not isinstance(fmt, Q) or not fmt.signed:
                raise ValueError(f"{name}: must be a signed fixed.Q format, got {fmt!r}")
        if clip_int < 0:
            raise ValueError(f"clip_int: must be >= 0, got {clip_int}")
        if lr_m < 1:
            raise ValueError(f"lr_m: must be >= 1, got {lr_m}")
        self.lanes = lanes
        self.weight = weight
        self.grad = grad
        self.clip_int = clip_int
        self.lr_m = lr_m
        self.shift = shift
        w_array = data.ArrayLayout(weight.shape, lanes)
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"w": w_array, "g": data.ArrayLayout(grad.shape, lanes)}))),
            "o": Out(stream.Signature(data.StructLayout({"w": w_array}))),
        })

    @classmethod
    def for_layer(cls, lanes: int, plan: Plan, layer: int) -> UpdateUnit:
        """The update unit of layer ``layer`` (weights and biases share it)."""
        if not isinstance(plan, Plan):
            raise ValueError(f"plan: must be a numerics.Plan, got {plan!r}")
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(plan.grad):
            raise ValueError(f"layer: must be in 0..{len(plan.grad) - 1}, got {layer!r}")
        return cls(lanes, weight=plan.numerics.weight, grad=plan.grad[layer], clip_int=plan.clip_int(layer),
                   lr_m=plan.lr_m, shift=plan.update_shift(layer))

    @staticmethod
    def model(w: np.ndarray, g: np.ndarray, layer: int, plan: Plan) -> np.ndarray:
        """:func:`~specbp_rtl.model.golden.sgd_update`: the new weights."""
        return golden.sgd_update(np.asarray(w, dtype=np.int64), np.asarray(g, dtype=np.int64), layer, plan)

    def apply(self, w: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Numpy model with this instance's constants (equal to :meth:`model` for :meth:`for_layer` units)."""
        g = np.clip(np.asarray(g, dtype=np.int64), -self.clip_int, self.clip_int)
        step = round_shift(g * self.lr_m, self.shift)
        return saturate(np.asarray(w, dtype=np.int64) - step, self.weight)

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes, weight, grad = self.lanes, self.weight, self.grad

        stall = Signal()
        m.d.comb += [
            stall.eq(self.o.valid & ~self.o.ready),
            self.i.ready.eq(~stall),
        ]

        # |clip(g)| never exceeds the format's range or clip_int.
        clip_abs = min(self.clip_int, -grad.min)
        prod_width = (clip_abs * self.lr_m).bit_length() + 1

        def lane_signals(stage: str, shape) -> list[Signal]:
            return [Signal(shape, name=f"{stage}_{lane}", reset_less=True) for lane in range(lanes)]

        w1, g1 = lane_signals("w1", weight.shape), lane_signals("g1", grad.shape)
        w2, c2 = lane_signals("w2", weight.shape), lane_signals("c2", grad.shape)
        w3, p3 = lane_signals("w3", weight.shape), lane_signals("p3", signed(prod_width))
        v1, v2, v3 = Signal(), Signal(), Signal()

        hi = Const(min(self.clip_int, grad.max), grad.shape)
        lo = Const(max(-self.clip_int, grad.min), grad.shape)
        with m.If(~stall):
            m.d.sync += [v1.eq(self.i.valid), v2.eq(v1), v3.eq(v2), self.o.valid.eq(v3)]
            for lane in range(lanes):
                m.d.sync += [
                    # stage 1: input registers
                    w1[lane].eq(self.i.payload.w[lane]),
                    g1[lane].eq(self.i.payload.g[lane]),
                    # stage 2: clip
                    w2[lane].eq(w1[lane]),
                    c2[lane].eq(Mux(g1[lane] > hi, hi, Mux(g1[lane] < lo, lo, g1[lane]))),
                    # stage 3: exact clip(g) * lr_m from shifts and adds
                    w3[lane].eq(w2[lane]),
                    p3[lane].eq(hdl_const_mul(c2[lane], self.lr_m)),
                ]
            with m.If(v3):
                for lane in range(lanes):
                    # output register: round, subtract, saturate
                    new_w = hdl_saturate(w3[lane] - hdl_round_shift(p3[lane], self.shift), weight)
                    m.d.sync += self.o.payload.w[lane].eq(new_w)
        return m
