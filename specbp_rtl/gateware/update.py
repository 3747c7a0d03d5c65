"""SGD update unit: ``W <- saturate(W - round(clip(G) * lr))`` on a stream of weight words."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import Q, hdl_const_mul_parts, hdl_round_shift, hdl_saturate, round_shift, saturate
from ..model import golden
from ..numerics import Plan
from .microarch import check_delay_ram_min
from .util import delay

__all__ = ["UpdateUnit"]


class UpdateUnit(wiring.Component):
    """``lanes`` SGD updaters: ``w_new = saturate(w - round_shift(clip(g) * lr_m, shift), weight)``.

    ``clip(g)`` clamps the summed gradient to ``[-clip_int, clip_int]``; the
    learning-rate product is exact and built from shifts and adds
    (:func:`~specbp_rtl.fixed.hdl_const_mul`, no multiplier); the rounding is
    half up (:func:`~specbp_rtl.fixed.hdl_round_shift`, a left shift when
    ``shift <= 0``) and the result saturates into ``weight``. This is
    :func:`~specbp_rtl.model.golden.sgd_update`.

    One unit can serve several layers (:meth:`for_plan`): ``grad``,
    ``clip_int`` and ``shift`` are then sequences with one entry per layer and
    every beat names its layer. The layers share the one constant multiplier:
    the clipped gradient is first shifted left by ``max(shift) - shift[layer]``
    and every layer is rounded by ``max(shift)``, which is exact
    (``round_shift(x << k, s + k) == round_shift(x, s)``).

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
        Gradient accumulator format (signed), or one per layer.
    clip_int:
        Clip bound in ``grad`` LSBs, ``>= 0``, or one per layer.
    lr_m:
        Learning-rate mantissa (``lr = lr_m * 2**-lr_shift``), ``>= 1``.
    shift:
        Right shift from ``clip(g) * lr_m`` (``grad.frac_bits + lr_shift``
        fractional bits) to ``weight`` (a left shift when negative), or one
        per layer.
    delay_ram_min:
        ``0`` (default) or above 5: the old weights wait for their result
        in five registers per lane; ``2 .. 5``: in one memory line instead
        (:func:`~.util.delay`, for iCE40, which has no distributed RAM).

    Attributes
    ----------
    i : In(stream.Signature(StructLayout))
        ``w``: ``ArrayLayout(weight.shape, lanes)``; ``g``:
        ``ArrayLayout(grad.shape, lanes)`` (the widest ``grad`` of a
        several-layer unit, sign-extended); ``layer`` (several-layer units
        only): which constants apply to the beat.
    o : Out(stream.Signature(StructLayout))
        ``w``: ``ArrayLayout(weight.shape, lanes)``, the updated weights, one
        beat per input beat, in order.

    Latency
    -------
    :attr:`LATENCY` = 5 cycles from the clock edge accepting a beat to
    ``o.valid`` (with ``o.ready`` held high): input registers at edge ``t``,
    clipped (and aligned) gradient at ``t + 1``, two partial sums of
    ``clip(g) * lr_m`` at ``t + 2``, the product at ``t + 3``, the rounded
    product at ``t + 4``, the subtracted and saturated weight (the output
    register) at ``t + 5``. No path has more than two adders in a row.

    Throughput
    ----------
    One beat per cycle. Back-pressure is a global stall: while
    ``o.valid & ~o.ready`` every stage holds and ``i.ready`` is low
    (``i.ready = ~stall``, combinationally).

    Model
    -----
    :meth:`model` is :func:`~specbp_rtl.model.golden.sgd_update` (for units
    built by :meth:`for_layer` or :meth:`for_plan`); :meth:`apply` is the same
    formula with this instance's constants.
    """

    #: Cycles from the clock edge accepting a beat to ``o.valid`` (with ``o.ready`` high).
    LATENCY = 5

    def __init__(
        self,
        lanes: int,
        *,
        weight: Q,
        grad: Q | Sequence[Q],
        clip_int: int | Sequence[int],
        lr_m: int,
        shift: int | Sequence[int],
        delay_ram_min: int = 0,
    ) -> None:
        per_layer = isinstance(grad, (tuple, list))
        grads = tuple(grad) if per_layer else (grad,)
        clips = tuple(clip_int) if isinstance(clip_int, (tuple, list)) else (clip_int,)
        shifts = tuple(shift) if isinstance(shift, (tuple, list)) else (shift,)
        if not grads:
            raise ValueError("grad: needs at least one layer")
        for name, values in (("clip_int", clips), ("shift", shifts)):
            if len(values) != len(grads):
                raise ValueError(f"{name}: needs one value per layer ({len(grads)}), got {len(values)}")
        for name, value in (
            ("lanes", lanes),
            ("lr_m", lr_m),
            *(("clip_int", c) for c in clips),
            *(("shift", s) for s in shifts),
        ):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name}: must be an integer, got {value!r}")
        if lanes < 1:
            raise ValueError(f"lanes: must be >= 1, got {lanes}")
        for name, fmt in (("weight", weight), *(("grad", g) for g in grads)):
            if not isinstance(fmt, Q) or not fmt.signed:
                raise ValueError(f"{name}: must be a signed fixed.Q format, got {fmt!r}")
        check_delay_ram_min(delay_ram_min)
        for c in clips:
            if c < 0:
                raise ValueError(f"clip_int: must be >= 0, got {c}")
        if lr_m < 1:
            raise ValueError(f"lr_m: must be >= 1, got {lr_m}")
        self.lanes = lanes
        self.weight = weight
        self.grads, self.clip_ints, self.shifts = grads, clips, shifts
        # single-layer units keep scalar attributes
        self.grad = grads[0] if not per_layer else max(grads, key=lambda g: g.width)
        self.clip_int = clips[0] if not per_layer else None
        self.shift = shifts[0] if not per_layer else None
        self.lr_m = lr_m
        self.delay_ram_min = delay_ram_min
        w_array = data.ArrayLayout(weight.shape, lanes)
        fields = {"w": w_array, "g": data.ArrayLayout(self.grad.shape, lanes)}
        if per_layer:
            fields["layer"] = range(max(len(grads), 2))
        super().__init__(
            {
                "i": In(stream.Signature(data.StructLayout(fields))),
                "o": Out(stream.Signature(data.StructLayout({"w": w_array}))),
            }
        )

    @classmethod
    def for_layer(cls, lanes: int, plan: Plan, layer: int) -> UpdateUnit:
        """The update unit of layer ``layer`` (weights and biases share it)."""
        if not isinstance(plan, Plan):
            raise ValueError(f"plan: must be a numerics.Plan, got {plan!r}")
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < len(plan.grad):
            raise ValueError(f"layer: must be in 0..{len(plan.grad) - 1}, got {layer!r}")
        return cls(
            lanes,
            weight=plan.numerics.weight,
            grad=plan.grad[layer],
            clip_int=plan.clip_int(layer),
            lr_m=plan.lr_m,
            shift=plan.update_shift(layer),
        )

    @classmethod
    def for_plan(cls, lanes: int, plan: Plan, delay_ram_min: int = 0) -> UpdateUnit:
        """One unit for every layer of ``plan`` (each beat's ``layer`` field selects the constants)."""
        if not isinstance(plan, Plan):
            raise ValueError(f"plan: must be a numerics.Plan, got {plan!r}")
        layers = range(len(plan.grad))
        return cls(
            lanes,
            weight=plan.numerics.weight,
            grad=list(plan.grad),
            clip_int=[plan.clip_int(layer) for layer in layers],
            lr_m=plan.lr_m,
            shift=[plan.update_shift(layer) for layer in layers],
            delay_ram_min=delay_ram_min,
        )

    @staticmethod
    def model(w: np.ndarray, g: np.ndarray, layer: int, plan: Plan) -> np.ndarray:
        """:func:`~specbp_rtl.model.golden.sgd_update`: the new weights."""
        return golden.sgd_update(np.asarray(w, dtype=np.int64), np.asarray(g, dtype=np.int64), layer, plan)

    def apply(self, w: np.ndarray, g: np.ndarray, layer: int = 0) -> np.ndarray:
        """Numpy model with this instance's constants (equal to :meth:`model` for :meth:`for_layer` units)."""
        clip = self.clip_ints[layer]
        g = np.clip(np.asarray(g, dtype=np.int64), -clip, clip)
        step = round_shift(g * self.lr_m, self.shifts[layer])
        return saturate(np.asarray(w, dtype=np.int64) - step, self.weight)

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes, weight = self.lanes, self.weight
        n = len(self.grads)

        stall = Signal()
        m.d.comb += [
            stall.eq(self.o.valid & ~self.o.ready),
            self.i.ready.eq(~stall),
        ]

        # per layer: clip bounds (inside the layer's format) and the left shift onto the common scale
        s_max = max(self.shifts)
        his = [min(c, g.max) for c, g in zip(self.clip_ints, self.grads)]
        los = [max(-c, g.min) for c, g in zip(self.clip_ints, self.grads)]
        aligns = [s_max - s for s in self.shifts]
        c_width = max(max(abs(lo), hi) << k for lo, hi, k in zip(los, his, aligns)).bit_length() + 1
        prod_width = ((1 << (c_width - 1)) * self.lr_m).bit_length() + 1

        def lane_signals(stage: str, shape) -> list[Signal]:
            return [Signal(shape, name=f"{stage}_{lane}", reset_less=True) for lane in range(lanes)]

        n_parts = 2
        g1 = lane_signals("g1", self.grad.shape)
        c2 = lane_signals("c2", signed(c_width))
        parts3 = [lane_signals(f"part3_{k}", signed(prod_width)) for k in range(n_parts)]
        p4 = lane_signals("p4", signed(prod_width))
        r5 = lane_signals("r5", signed(prod_width + max(0, -s_max)))
        valid = [Signal(name=f"v{k}") for k in range(1, 6)]  # v1 .. v5
        layer1 = Signal(range(max(n, 2)))

        def clip_align(g: Value) -> Value:
            """Stage 2: clip to the beat's layer bounds, then align to the common rounding shift."""
            if n == 1:
                return Mux(g > his[0], his[0], Mux(g < los[0], los[0], g)) << aligns[0]
            out = Signal(signed(c_width))
            with m.Switch(layer1):
                for k in range(n):
                    with m.Case(k):
                        clipped = Mux(g > his[k], his[k], Mux(g < los[k], los[k], g))
                        m.d.comb += out.eq(clipped << aligns[k])
            return out

        c_next = [clip_align(g1[lane]) for lane in range(lanes)]
        # the old weights wait for their step: five stages, a memory line with delay_ram_min <= 5
        w5 = delay(m, self.i.payload.w, 5, "w", ram_min=self.delay_ram_min, en=~stall)
        with m.If(~stall):
            m.d.sync += [valid[0].eq(self.i.valid), self.o.valid.eq(valid[-1])]
            m.d.sync += [valid[k].eq(valid[k - 1]) for k in range(1, len(valid))]
            if n > 1:
                m.d.sync += layer1.eq(self.i.payload.layer)
            for lane in range(lanes):
                m.d.sync += g1[lane].eq(self.i.payload.g[lane])
                parts = hdl_const_mul_parts(c2[lane], self.lr_m, n_parts)
                m.d.sync += [
                    # stage 2: clip and align
                    c2[lane].eq(c_next[lane]),
                    # stage 3: exact clip(g) * lr_m from shifts and adds, as partial sums
                    *(parts3[k][lane].eq(parts[k] if k < len(parts) else 0) for k in range(n_parts)),
                    # stage 4: the product
                    p4[lane].eq(sum(parts3[k][lane] for k in range(n_parts))),
                    # stage 5: rounded to the weight's LSB
                    r5[lane].eq(hdl_round_shift(p4[lane], s_max)),
                ]
            with m.If(valid[-1]):
                for lane in range(lanes):
                    # output register: subtract, saturate
                    m.d.sync += self.o.payload.w[lane].eq(hdl_saturate(w5[lane] - r5[lane], weight))
        return m
