"""Leaky-ReLU activation and derivative unit (combinational, shift-add slope)."""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Module, Mux, Value
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
    :attr:`LATENCY` = 0: purely combinational (register around it as needed).

    Throughput
    ----------
    One vector per cycle on each path (no handshake).

    Model
    -----
    :meth:`model` calls :func:`~specbp_rtl.model.golden.leaky_relu` and
    :func:`~specbp_rtl.model.golden.leaky_derivative`.
    """

    #: Combinational: outputs follow the inputs in the same cycle.
    LATENCY = 0

    def __init__(self, lanes: int, plan: Plan) -> None:
        if isinstance(lanes, bool) or not isinstance(lanes, int):
            raise ValueError(f"lanes: must be an integer, got {lanes!r}")
        if lanes < 1:
            raise ValueError(f"lanes: must be >= 1, got {lanes}")
        if not isinstance(plan, Plan):
            raise ValueError(f"plan: must be a numerics.Plan, got {plan!r}")
        self.lanes = lanes
        self.plan = plan
        act, delta = plan.numerics.act, plan.numerics.delta
        super().__init__({
            "z": In(data.ArrayLayout(act.shape, lanes)),
            "a": Out(data.ArrayLayout(act.shape, lanes)),
            "delta_in": In(data.ArrayLayout(delta.shape, lanes)),
            "delta_z": In(data.ArrayLayout(act.shape, lanes)),
            "delta_out": Out(data.ArrayLayout(delta.shape, lanes)),
        })

    @staticmethod
    def model(z: np.ndarray, delta_in: np.ndarray, delta_z: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """``(leaky_relu(z), leaky_derivative(delta_in, delta_z))`` from the golden model."""
        z = np.asarray(z, dtype=np.int64)
        delta_in = np.asarray(delta_in, dtype=np.int64)
        delta_z = np.asarray(delta_z, dtype=np.int64)
        return golden.leaky_relu(z, plan), golden.leaky_derivative(delta_in, delta_z, plan)

    def _slope(self, x: Value) -> Value:
        return hdl_round_shift(hdl_const_mul(x, self.plan.slope_m), self.plan.slope_shift)

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(self.lanes):
            z = self.z[lane]
            s, sz = self.delta_in[lane], self.delta_z[lane]
            m.d.comb += [
                self.a[lane].eq(Mux(z > 0, z, self._slope(z))),
                self.delta_out[lane].eq(Mux(sz > 0, s, self._slope(s))),
            ]
        return m
