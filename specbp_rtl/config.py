"""Training configuration shared by every backend.

:class:`TrainConfig` holds the algorithmic hyper-parameters of speculative
backpropagation (DESIGN §2). Every backend (float reference, fixed-point golden
model, Amaranth simulation, Verilator, board) reads the same object, so a run is
described by one value that can be printed, hashed and compared.

Invalid values raise :class:`ConfigError` with a message that names the
offending parameter.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .data import Dataset

__all__ = ["METRICS", "ConfigError", "TrainConfig", "parse_layers"]

#: Speculation distance metrics. ``mean-abs`` is the paper's.
METRICS: tuple[str, ...] = ("mean-abs", "max-abs", "l1", "cross-entropy")


class ConfigError(ValueError):
    """An invalid configuration value; the message names the parameter."""


def parse_layers(text: str) -> tuple[int, ...]:
    """Parse ``"784,16,16,10"`` into a tuple of layer widths."""
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ConfigError(f"layers: expected comma-separated integers, got {text!r}") from None
    return layers


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Parameters
    ----------
    layers:
        Widths from input to output, e.g. ``(784, 16, 16, 10)``. At least one
        hidden layer; the output width is the number of classes.
    batch:
        Number of per-sample gradients that are **summed** before an update.
        The update fires after step ``i`` when ``i % batch == 0`` (``i``
        restarts every epoch).
    lr:
        SGD learning rate: ``W -= lr * clip(G, -clip, clip)``.
    clip:
        Element-wise clip bound of the summed gradient.
    slope:
        Leaky-ReLU slope for ``z <= 0``.
    threshold:
        Speculation threshold; ``0`` turns speculation off (every step is
        sequential). A speculation hits when ``distance <= threshold``.
    metric:
        Distance between the stored and the current softmax output, one of
        :data:`METRICS`.
    seed:
        Seed of the weight initialisation.
    pipeline:
        The equal-multiplier baseline: speculation off, and the backward pass
        of sample ``i`` runs on the backward engine while the forward engine
        runs sample ``i + 1`` (both engines busy on every step). Weights only
        change at updates, so this is exactly the sequential algorithm; the
        pipeline drains before every update. Needs ``threshold == 0``.
    """

    layers: tuple[int, ...] = (784, 16, 16, 10)
    batch: int = 15
    lr: float = 0.01
    clip: float = 5.0
    slope: float = 0.01
    threshold: float = 0.0
    metric: str = "mean-abs"
    seed: int = 1
    pipeline: bool = False

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if len(layers) < 3:
            raise ConfigError(f"layers: need input, at least one hidden and an output layer, got {layers}")
        if any(not isinstance(n, int) or n < 1 for n in layers):
            raise ConfigError(f"layers: every width must be a positive integer, got {layers}")
        if layers[-1] < 2:
            raise ConfigError(f"layers: the output layer needs at least 2 classes, got {layers[-1]}")
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ConfigError(f"batch: must be a positive integer, got {self.batch!r}")
        for name in ("lr", "clip", "slope", "threshold"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{name}: must be a finite number, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr: must be positive, got {self.lr!r}")
        if not self.clip > 0:
            raise ConfigError(f"clip: must be positive, got {self.clip!r}")
        if not 0 <= self.slope < 1:
            raise ConfigError(f"slope: must be in [0, 1), got {self.slope!r}")
        if not self.threshold >= 0:
            raise ConfigError(f"threshold: must be >= 0, got {self.threshold!r}")
        if self.metric not in METRICS:
            raise ConfigError(f"metric: must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not isinstance(self.pipeline, bool):
            raise ConfigError(f"pipeline: must be a boolean, got {self.pipeline!r}")
        if self.pipeline and self.threshold > 0:
            raise ConfigError(
                f"pipeline: the pipelined baseline needs speculation off (threshold 0), "
                f"got threshold={self.threshold!r}"
            )
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: must be a non-negative integer, got {self.seed!r}")

    @property
    def speculative(self) -> bool:
        """Whether speculation is on (``threshold > 0``)."""
        return self.threshold > 0

    @property
    def classes(self) -> int:
        return self.layers[-1]

    def check_dataset(self, dataset: Dataset) -> None:
        """Raise ``ValueError`` unless ``dataset`` fits the network: its pixels per sample are the first
        layer's inputs and its labels (train and test) are below the number of classes."""
        if dataset.inputs != self.layers[0]:
            raise ValueError(
                f"layers: the first layer has {self.layers[0]} inputs but dataset {dataset.name} "
                f"has {dataset.inputs} pixels per sample"
            )
        labels = [y for y in (dataset.train_y, dataset.test_y) if len(y)]
        top = max((int(y.max()) for y in labels), default=-1)
        if top >= self.classes:
            raise ValueError(f"layers: the output layer has {self.classes} classes but the labels go up to {top}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["layers"] = list(self.layers)
        return d
