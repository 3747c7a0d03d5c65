"""Leaky-ReLU activation and derivative unit (shift-add slope; combinational or one register)."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import hdl_const_mul, hdl_round_shift
from ..model import golden
from ..numerics import Plan

__all__ = ["Activation"]


class Activation(wiring.Component):
    """``lanes`` leaky-ReLU units and ``lanes`` leaky-ReLU derivative units.

    Forward: ``a = z`` if ``z > 0`` else ``round_shift(z * slope_m, slope_shift)``
    (:func:`~specbp_rtl.model.golden.leaky_relu`). Backward:
    ``delta_out = delta_in`` if ``delta_z > 0`` else
    ``round_shift(delta_in * slope_m, slope_shift)``
    (:func:`~specbp_rtl.model.golden.leaky_derivative`), where ``delta_z`` is
    the pre-activation the derivative is taken at. Rounding is half up. The
    slope product is built from shifts and adds
    (:func:`~specbp_rtl.fixed.hdl_const_mul`): no multiplier. Results always
    fit their format (``|slope| < 1``), so nothing saturates.

    Parameters
    ----------
    lanes:
        Number of lanes, ``>= 1``.
    plan:
        The :class:`~specbp_rtl.numerics.Plan`; uses ``numerics.act``,
        ``numerics.delta``, ``slope_m`` and ``slope_shift``.
    latency:
        ``0``: combinational. ``1``: the slope product (and the input and its
        sign) is registered, and rounding and the select follow the register:
        outputs appear one clock edge after the inputs, every cycle.

    Attributes
    ----------
    z : In(ArrayLayout(act.shape, lanes))
        Pre-activations.
    a : Out(ArrayLayout(act.shape, lanes))
        Activations ``leaky_relu(z)``.
    delta_in : In(ArrayLayout(delta.shape, lanes))
        Back-propagated error ``W^T delta`` (already requantised into ``delta``).
    delta_z : In(ArrayLayout(act.shape, lanes))
        Pre-activations at which the derivative is taken.
    delta_out : Out(ArrayLayout(delta.shape, lanes))
        ``leaky_derivative(delta_in, delta_z)``.

    Latency
    -------
    :attr:`latency` (the parameter): 0, purely combinational; or 1, one
    register in the middle of each path (the shift-add product before its
    rounding) for a higher clock.

    Throughput
    ----------
    One vector per cycle on each path (no handshake).

    Model
    -----
    :meth:`model` calls :func:`~specbp_rtl.model.golden.leaky_relu` and
    :func:`~specbp_rtl.model.golden.leaky_derivative`.
    """

    def __init__(self, lanes: int, plan: Plan, latency: int = 0) -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise ValueError(f"lanes: must be an integer, got {lanes!r}")
        if lanes < 1:
            raise ValueError(f"lanes: must be >= 1, got {lanes}")
        if not isinstance(plan, Plan):
            raise ValueError(f"plan: must be a numerics.Plan, got {plan!r}")
        if latency not in (0, 1) or isinstance(latency, bool):
            raise ValueError(f"latency: must be 0 or 1, got {latency!r}")
        self.latency = latency
        self.lanes = lanes
        self.plan = plan
        act, delta = plan.numerics.act, plan.numerics.delta
        super().__init__(
            {
                "z": In(data.ArrayLayout(act.shape, lanes)),
                "a": Out(data.ArrayLayout(act.shape, lanes)),
                "delta_in": In(data.ArrayLayout(delta.shape, lanes)),
                "delta_z": In(data.ArrayLayout(act.shape, lanes)),
                "delta_out": Out(data.ArrayLayout(delta.shape, lanes)),
            }
        )

    @staticmethod
    def model(z: np.ndarray, delta_in: np.ndarray, delta_z: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """``(leaky_relu(z), leaky_derivative(delta_in, delta_z))`` from the golden model."""
        z = np.asarray(z, dtype=np.int64)
        delta_in = np.asarray(delta_in, dtype=np.int64)
        delta_z = np.asarray(delta_z, dtype=np.int64)
        return golden.leaky_relu(z, plan), golden.leaky_derivative(delta_in, delta_z, plan)

    def _leaky(self, m: Module, x: Value, sel: Value, name: str) -> Value:
        """``x`` if ``sel > 0`` else ``round_shift(x * slope_m, slope_shift)``, registered mid-way if latency 1."""
        x, sel = Value.cast(x), Value.cast(sel)
        product = hdl_const_mul(x, self.plan.slope_m)
        positive = sel > 0
        if self.latency:
            x_r = Signal.like(x, name=f"{name}_x", reset_less=True)
            p_r = Signal(product.shape(), name=f"{name}_p", reset_less=True)
            pos_r = Signal(name=f"{name}_pos", reset_less=True)
            m.d.sync += [x_r.eq(x), p_r.eq(product), pos_r.eq(positive)]
            x, product, positive = x_r, p_r, pos_r
        return Mux(positive, x, hdl_round_shift(product, self.plan.slope_shift))

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(self.lanes):
            z = self.z[lane]
            m.d.comb += [
                self.a[lane].eq(self._leaky(m, z, z, f"a{lane}")),
                self.delta_out[lane].eq(self._leaky(m, self.delta_in[lane], self.delta_z[lane], f"d{lane}")),
            ]
        return m
