"""Paper-faithful float64 reference model (DESIGN §2).

Inputs are ``pixel / 255``; hidden layers use leaky ReLU (``slope`` for
``z <= 0``); the output is a softmax trained with cross-entropy, so the output
error is ``p - onehot(label)``. Gradients are summed over ``batch`` samples,
clipped element-wise to ``±clip`` and applied with plain SGD. Weight
initialisation is shared with the fixed-point model (:func:`init_integers`).
"""

from __future__ import annotations

import numpy as np

from ..config import TrainConfig
from .speculation import ForwardState, load_parameter_state, parameter_state, weights_sha256

__all__ = ["FloatEngine", "init_integers", "distance"]


def init_integers(config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """The paper's initialisation as integers in hundredths.

    For each layer, in order, a weight matrix of shape ``(out, in)`` (row-major
    draw) then a bias vector of shape ``(out,)``, each drawn uniformly from
    ``-10..10`` with ``numpy.random.default_rng(seed)``; zeros become ``1``.
    The float model divides by 100; the fixed model rounds ``k / 100`` into its
    weight format, so both start from the same draw.
    """
    rng = np.random.default_rng(config.seed)
    params = []
    for n_in, n_out in zip(config.layers[:-1], config.layers[1:]):
        w = rng.integers(-10, 11, size=(n_out, n_in))
        b = rng.integers(-10, 11, size=n_out)
        w[w == 0] = 1
        b[b == 0] = 1
        params.append((w.astype(np.int64), b.astype(np.int64)))
    return params


def distance(metric: str, p_stored: np.ndarray, p_current: np.ndarray) -> np.ndarray:
    """Float distance between softmax rows, one value per row.

    ``mean-abs`` (the paper's): ``mean_k |p_s - p_c|``; ``max-abs``:
    ``max_k |p_s - p_c|``; ``l1``: ``sum_k |p_s - p_c|``; ``cross-entropy``:
    the excess cross-entropy of the current prediction against the stored one,
    ``sum_k p_s (log p_s - log p_c)`` (the KL divergence, 0 when identical).
    """
    diff = np.abs(p_stored - p_current)
    if metric == "mean-abs":
        return diff.mean(axis=1)
    if metric == "max-abs":
        return diff.max(axis=1)
    if metric == "l1":
        return diff.sum(axis=1)
    if metric == "cross-entropy":
        tiny = 1e-300
        ps = np.maximum(p_stored, tiny)
        return np.sum(ps * (np.log(ps) - np.log(np.maximum(p_current, tiny))), axis=1)
    raise ValueError(f"metric: unknown metric {metric!r}")


class FloatEngine:
    """float64 arithmetic of the paper, batched over samples.

    ``params[l] = (W, b)`` with ``W`` of shape ``(out, in)``; ``grads`` holds the
    summed gradients in the same layout.
    """

    name = "float"

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.params = [(w / 100.0, b / 100.0) for w, b in init_integers(config)]
        self.grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in self.params]

    # -- arithmetic ---------------------------------------------------------
    def _leaky(self, z: np.ndarray) -> np.ndarray:
        return np.where(z > 0, z, self.config.slope * z)

    def _logits(self, x: np.ndarray, keep: list | None = None) -> np.ndarray:
        a = x.astype(np.float64) / 255.0
        last = len(self.params) - 1
        for layer, (w, b) in enumerate(self.params):
            if keep is not None:
                keep[0].append(a)
            z = a @ w.T + b
            if keep is not None:
                keep[1].append(z)
            a = z if layer == last else self._leaky(z)
        return a

    def forward(self, x: np.ndarray) -> ForwardState:
        inputs: list[np.ndarray] = []
        pre: list[np.ndarray] = []
        z = self._logits(x, [inputs, pre])
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return ForwardState(inputs, pre, e / e.sum(axis=1, keepdims=True))

    def empty_state(self, rows: int) -> ForwardState:
        sizes = self.config.layers
        return ForwardState(
            [np.zeros((rows, n)) for n in sizes[:-1]],
            [np.zeros((rows, n)) for n in sizes[1:]],
            np.zeros((rows, sizes[-1])),
        )

    def accumulate(self, state: ForwardState, labels: np.ndarray) -> None:
        delta = state.p.copy()
        delta[np.arange(len(labels)), labels] -= 1.0
        for layer in range(len(self.params) - 1, -1, -1):
            gw, gb = self.grads[layer]
            gw += delta.T @ state.inputs[layer]
            gb += delta.sum(axis=0)
            if layer:
                w = self.params[layer][0]
                deriv = np.where(state.pre[layer - 1] > 0, 1.0, self.config.slope)
                delta = (delta @ w) * deriv

    def update(self) -> None:
        lr, clip = self.config.lr, self.config.clip
        for (w, b), (gw, gb) in zip(self.params, self.grads):
            w -= lr * np.clip(gw, -clip, clip)
            b -= lr * np.clip(gb, -clip, clip)
            gw[...] = 0
            gb[...] = 0

    def hits(self, p_stored: np.ndarray, p_current: np.ndarray) -> np.ndarray:
        return distance(self.config.metric, p_stored, p_current) <= self.config.threshold

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.argmax(self._logits(x), axis=1)

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the weights and summed gradients (float64): keys ``w{l}``, ``b{l}``, ``gw{l}``, ``gb{l}``.

        See :func:`.speculation.parameter_state`.
        """
        return parameter_state(self.params, self.grads)

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace weights and gradients by a :meth:`state` dict.

        Raises
        ------
        ValueError
            Naming the first entry that is missing or not a float array of
            the right shape; nothing changes then.
        """
        load_parameter_state(self.params, self.grads, state, "f")

    def weights_sha256(self) -> str:
        """Hash of the weights as float64 LE (see :func:`.speculation.weights_sha256`)."""
        return weights_sha256(self.params, "<f8")
