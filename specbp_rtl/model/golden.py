"""Bit-exact fixed-point golden model: the oracle for every RTL result.

The same algorithm as :mod:`.reference`, in integer arithmetic built only from
the :mod:`specbp_rtl.fixed` primitives and the formats of
:mod:`specbp_rtl.numerics`. Each function below is the ``model()`` of one
hardware block; the RTL must reproduce it bit for bit:

* :func:`weight_operand` — master weight to MAC operand (round, saturate);
* :func:`layer_forward` — MAC array in broadcast mode plus bias, requantised;
* :func:`leaky_relu`, :func:`leaky_derivative` — activation unit;
* :func:`softmax` — max-subtract, exp LUT, one floor reciprocal, multiplies;
* :func:`output_error` — ``p - onehot`` saturated;
* :func:`backprop_delta` — ``W^T delta`` requantised, times the derivative;
* :func:`outer_accumulate` — exact gradient outer products (per-lane MAC mode);
* :func:`sgd_update` — update unit: ``W -= lr * clip(G)``;
* :func:`comparator` — ``sum |dp| <= T*N`` (mean-abs), ``max |dp| <= T``, ``sum |dp| <= T`` (l1).

Integer matrix products are evaluated with float64 BLAS: every operand and
partial sum stays below ``2**53``, so the result is exact (checked in
:func:`_exact_matmul`).
"""

from __future__ import annotations

import numpy as np

from ..config import TrainConfig
from ..fixed import Q, requantize, round_shift, saturate
from ..numerics import Numerics, Plan
from .reference import init_integers
from .speculation import ForwardState, load_parameter_state, parameter_state, weights_sha256

__all__ = [
    "FixedEngine",
    "weight_operand",
    "layer_forward",
    "leaky_relu",
    "leaky_derivative",
    "softmax",
    "output_error",
    "backprop_delta",
    "outer_accumulate",
    "sgd_update",
    "comparator",
]

_EXACT = float(1 << 53)


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Integer ``a @ b`` through float64 BLAS, exact because every sum is < 2**53."""
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * a.shape[-1]
    if bound >= _EXACT:  # pragma: no cover - formats are chosen so this cannot happen
        return a.astype(np.int64) @ b.astype(np.int64)
    return (a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def weight_operand(w: np.ndarray, nx: Numerics) -> np.ndarray:
    """Master weights to the MAC operand format (round half up, saturate)."""
    return requantize(w, nx.weight.frac_bits, nx.weight_operand)


def layer_forward(x: np.ndarray, w_op: np.ndarray, b_op: np.ndarray, in_frac: int, nx: Numerics) -> np.ndarray:
    """``z = x @ W^T + b`` in the accumulator, requantised into ``act``.

    ``x``: ``(n, in)`` with ``in_frac`` fractional bits; ``w_op``: ``(out, in)``
    and ``b_op``: ``(out,)`` in the weight-operand format. The bias enters the
    accumulator as a product with the constant input ``1.0``.
    """
    acc = _exact_matmul(x, w_op.T) + (b_op.astype(np.int64) << in_frac)
    return requantize(acc, nx.weight_operand_frac + in_frac, nx.act)


def leaky_relu(z: np.ndarray, plan: Plan) -> np.ndarray:
    """``z`` if ``z > 0`` else ``round(z * slope)`` (slope as ``slope_m * 2**-slope_shift``)."""
    return np.where(z > 0, z, round_shift(z * plan.slope_m, plan.slope_shift))


def leaky_derivative(s: np.ndarray, z: np.ndarray, plan: Plan) -> np.ndarray:
    """``s * f'(z)``: ``s`` if ``z > 0`` else ``round(s * slope)``."""
    return np.where(z > 0, s, round_shift(s * plan.slope_m, plan.slope_shift))


def softmax(z: np.ndarray, nx: Numerics, lut: np.ndarray | None = None) -> np.ndarray:
    """Hardware softmax of logits ``z`` (``act`` format) into ``prob`` format.

    ``d = max(z) - z``; ``e = LUT[min(round(d * 2**(exp_lut_frac - act.frac)), size - 1)]``;
    ``S = sum e``; ``r = floor(2**(2 f) / S)``; ``p = round(e * r / 2**f)`` with
    ``f = prob.frac_bits``.
    """
    if lut is None:
        lut = nx.exp_lut()
    f = nx.prob.frac_bits
    d = z.max(axis=-1, keepdims=True) - z
    idx = np.minimum(round_shift(d, nx.act.frac_bits - nx.exp_lut_frac), nx.exp_lut_size - 1)
    e = lut[idx]
    r = (1 << (2 * f)) // e.sum(axis=-1, keepdims=True)
    return round_shift(e * r, f)


def output_error(p: np.ndarray, labels: np.ndarray, nx: Numerics) -> np.ndarray:
    """``p - onehot(label)`` saturated into ``out_delta``."""
    d = p.astype(np.int64).copy()
    d[np.arange(len(labels)), labels] -= 1 << nx.prob.frac_bits
    return saturate(d, nx.out_delta)


def backprop_delta(delta: np.ndarray, w_op: np.ndarray, z_prev: np.ndarray, delta_fmt: Q, plan: Plan) -> np.ndarray:
    """Error of the previous layer: ``requantize(delta @ W) * f'(z_prev)``."""
    nx = plan.numerics
    s = requantize(_exact_matmul(delta, w_op), delta_fmt.frac_bits + nx.weight_operand_frac, nx.delta)
    return leaky_derivative(s, z_prev, plan)


def outer_accumulate(g_w: np.ndarray, g_b: np.ndarray, delta: np.ndarray, x: np.ndarray, in_frac: int) -> None:
    """``G_w += sum_n delta_n ⊗ x_n``, ``G_b += sum_n delta_n * 1.0``, exact (no rounding)."""
    g_w += _exact_matmul(delta.T, x)
    g_b += delta.sum(axis=0) << in_frac


def sgd_update(w: np.ndarray, g: np.ndarray, layer: int, plan: Plan) -> np.ndarray:
    """Update unit: ``saturate(W - round(clip(G) * lr))``; returns the new ``W``."""
    c = plan.clip_int(layer)
    step = round_shift(np.clip(g, -c, c) * plan.lr_m, plan.update_shift(layer))
    return saturate(w - step, plan.numerics.weight)


def comparator(p_stored: np.ndarray, p_current: np.ndarray, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Hit flags and integer distances, per row."""
    diff = np.abs(p_stored.astype(np.int64) - p_current)
    dist = diff.max(axis=-1) if plan.config.metric == "max-abs" else diff.sum(axis=-1)
    return dist <= plan.threshold_int, dist


class FixedEngine:
    """The golden model as an :class:`~.speculation.Engine`.

    ``params[l] = (W, b)``: master weights (``numerics.weight``) of shape
    ``(out, in)``; ``grads[l]`` the exact accumulators in ``plan.grad[l]``.
    """

    name = "fixed"

    def __init__(self, config: TrainConfig, numerics: Numerics | None = None) -> None:
        self.config = config
        self.numerics = numerics or Numerics()
        self.plan = self.numerics.plan(config)
        self.lut = self.numerics.exp_lut()
        self.params = [(self.plan.init_weights(w), self.plan.init_weights(b)) for w, b in init_integers(config)]
        self.grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in self.params]
        self._refresh()

    def _refresh(self) -> None:
        self.operands = [(weight_operand(w, self.numerics), weight_operand(b, self.numerics)) for w, b in self.params]

    def _logits(self, x: np.ndarray, keep: list | None = None) -> np.ndarray:
        a = x.astype(np.int64)
        last = len(self.params) - 1
        for layer, (w_op, b_op) in enumerate(self.operands):
            if keep is not None:
                keep[0].append(a)
            z = layer_forward(a, w_op, b_op, self.plan.in_frac[layer], self.numerics)
            if keep is not None:
                keep[1].append(z)
            a = z if layer == last else leaky_relu(z, self.plan)
        return a

    def forward(self, x: np.ndarray) -> ForwardState:
        inputs: list[np.ndarray] = []
        pre: list[np.ndarray] = []
        z = self._logits(x, [inputs, pre])
        return ForwardState(inputs, pre, softmax(z, self.numerics, self.lut))

    def empty_state(self, rows: int) -> ForwardState:
        sizes = self.config.layers
        z = lambda n: np.zeros((rows, n), dtype=np.int64)  # noqa: E731
        return ForwardState([z(n) for n in sizes[:-1]], [z(n) for n in sizes[1:]], z(sizes[-1]))

    def accumulate(self, state: ForwardState, labels: np.ndarray) -> None:
        plan = self.plan
        delta = output_error(state.p, labels, self.numerics)
        for layer in range(len(self.params) - 1, -1, -1):
            g_w, g_b = self.grads[layer]
            outer_accumulate(g_w, g_b, delta, state.inputs[layer], plan.in_frac[layer])
            if layer:
                delta = backprop_delta(
                    delta, self.operands[layer][0], state.pre[layer - 1], plan.delta_fmt[layer], plan
                )

    def update(self) -> None:
        for layer, ((w, b), (g_w, g_b)) in enumerate(zip(self.params, self.grads)):
            w[...] = sgd_update(w, g_w, layer, self.plan)
            b[...] = sgd_update(b, g_b, layer, self.plan)
            g_w[...] = 0
            g_b[...] = 0
        self._refresh()

    def hits(self, p_stored: np.ndarray, p_current: np.ndarray) -> np.ndarray:
        return comparator(p_stored, p_current, self.plan)[0]

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self._logits(x), axis=1)

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the master weights and the exact gradient accumulators (int64).

        Keys ``w{l}``, ``b{l}`` (``numerics.weight`` integers, ``W`` of shape
        ``(out, in)``) and ``gw{l}``, ``gb{l}`` (``plan.grad[l]`` integers); see
        :func:`.speculation.parameter_state`. The MAC operands and the exp LUT
        are derived, not state.
        """
        return parameter_state(self.params, self.grads)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace weights and accumulators by a :meth:`state` dict and re-derive the MAC operands.

        Raises
        ------
        ValueError
            Naming the first entry that is missing, not an integer array of
            the right shape, or outside its format (weights: ``numerics.weight``,
            accumulators: ``plan.grad[l]``); nothing changes then.
        """
        weight, grad = self.numerics.weight, self.plan.grad

        def bounds(key: str, layer: int) -> tuple[int, int]:
            fmt = grad[layer] if key.startswith("g") else weight
            return fmt.min, fmt.max

        load_parameter_state(self.params, self.grads, state, "i", bounds)
        self._refresh()

    def weights_sha256(self) -> str:
        """Hash of the master-weight integers as int64 LE (see :func:`.speculation.weights_sha256`);
        the RTL backends reproduce it."""
        return weights_sha256(self.params, "<i8")
