"""Speculative-backpropagation control, shared by the float and fixed models.

The paper's control flow (DESIGN §2) is independent of the arithmetic, so it is
written once here and drives any :class:`Engine` (the float64 reference or the
bit-exact fixed-point golden model). Per training step ``i`` with label ``L``:

1. forward pass of the current sample;
2. if speculation is off (``threshold == 0``) the step is **sequential**: the
   gradient comes from the current sample; if ``L`` was never seen the step is a
   **first sighting**, handled the same way;
3. otherwise the speculative gradient comes from the stored forward state of
   ``L`` (through the *current* weights). The engine's comparator decides:
   **hit** keeps it, **miss** discards it and the current sample's gradient is
   used instead;
4. the current forward state replaces slot ``L``; the seen flag is never reset;
5. the summed gradient updates the weights after step ``i`` when
   ``i % batch == 0``.

Weights only change at updates, so every run of steps between two updates is
evaluated as one vectorised *group*: one batched forward pass, the control
decisions sample by sample (cheap integer work), then one batched gradient
pass. This is exactly the sequential algorithm, only faster; the tests check
it against a scalar re-statement.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np

from ..config import TrainConfig

__all__ = ["STEP_COUNTERS", "Counters", "Engine", "ForwardState", "SpeculativeTrainer", "StepKind", "weights_sha256"]


def weights_sha256(params: list[tuple[np.ndarray, np.ndarray]], dtype: str) -> str:
    """SHA-256 of the canonical weight layout.

    For each layer from input to output: the weight matrix of shape
    ``(out, in)`` in row-major order, then the bias vector, every element in
    ``dtype`` (``"<i8"``: the fixed model's master-weight integers, little-endian
    int64; ``"<f8"``: the float model's float64), concatenated with no header.
    """
    h = hashlib.sha256()
    for w, b in params:
        h.update(np.ascontiguousarray(w, dtype=dtype).tobytes())
        h.update(np.ascontiguousarray(b, dtype=dtype).tobytes())
    return h.hexdigest()


class StepKind:
    """Classification of a training step."""

    SEQUENTIAL = "sequential"
    FIRST_SIGHTING = "first_sighting"
    HIT = "hit"
    MISS = "miss"


@dataclass
class ForwardState:
    """Batched forward state: everything a backward pass needs.

    ``inputs[l]`` is the input of layer ``l`` (``inputs[0]`` the sample itself,
    ``inputs[l]`` for ``l > 0`` the activation of hidden layer ``l``);
    ``pre[l]`` is the pre-activation of layer ``l`` (the last one holds the
    logits); ``p`` is the softmax output. Every array has the sample axis first.
    """

    inputs: list[np.ndarray]
    pre: list[np.ndarray]
    p: np.ndarray

    def take(self, index: np.ndarray) -> ForwardState:
        return ForwardState(
            [a[index] for a in self.inputs], [z[index] for z in self.pre], self.p[index]
        )

    def concat(self, other: ForwardState) -> ForwardState:
        return ForwardState(
            [np.concatenate([a, b]) for a, b in zip(self.inputs, other.inputs)],
            [np.concatenate([a, b]) for a, b in zip(self.pre, other.pre)],
            np.concatenate([self.p, other.p]),
        )


class Engine(Protocol):
    """The arithmetic of one model (float reference or fixed golden)."""

    config: TrainConfig

    def forward(self, x: np.ndarray) -> ForwardState:
        """Forward pass of a batch of raw input bytes (``uint8``, shape ``(n, inputs)``)."""

    def accumulate(self, state: ForwardState, labels: np.ndarray) -> None:
        """Add the summed gradients of the given forward states to the accumulators."""

    def update(self) -> None:
        """``W -= lr * clip(G)`` for every parameter, then ``G = 0``."""

    def hits(self, p_stored: np.ndarray, p_current: np.ndarray) -> np.ndarray:
        """Comparator: a boolean per row, ``distance <= threshold``."""

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predicted class of each row of raw input bytes."""

    def empty_state(self, rows: int) -> ForwardState:
        """A zeroed state of ``rows`` rows (the label-state memory at reset)."""


@dataclass
class Counters:
    """What happened, step by step; mirrors the hardware performance counters."""

    steps: int = 0
    sequential: int = 0
    first_sightings: int = 0
    hits: int = 0
    misses: int = 0
    updates: int = 0
    #: pipelined mode: steps whose forward pass overlapped the previous step's backward pass
    overlapped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def hit_rate(self) -> float:
        """Hits over speculated steps (hits + misses); 0 when nothing was speculated."""
        spec = self.hits + self.misses
        return self.hits / spec if spec else 0.0


#: The step counters every backend reports (hardware backends read them from the performance counters).
STEP_COUNTERS: tuple[str, ...] = tuple(f.name for f in fields(Counters))


@dataclass
class SpeculativeTrainer:
    """Runs the paper's training loop on an :class:`Engine`."""

    engine: Engine
    counters: Counters = field(default_factory=Counters)
    #: optional per-step log of :class:`StepKind` values (tests, traces)
    log: list[str] | None = None

    def __post_init__(self) -> None:
        classes = self.engine.config.classes
        self.slots = self.engine.empty_state(classes)
        self.seen = np.zeros(classes, dtype=bool)
        #: pipelined mode: the last step's backward pass is still owed (it runs with the next forward pass)
        self.pending = False

    def train_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        """Train one epoch over ``x`` (``uint8``) and ``y`` in file order."""
        batch = self.engine.config.batch
        n = len(y)
        if n == 0:
            return
        # Group boundaries: an update follows step i when i % batch == 0.
        ends = [i + 1 for i in range(0, n, batch)]
        if not ends or ends[-1] != n:
            ends.append(n)
        start = 0
        for end in ends:
            self._group(x[start:end], y[start:end], update=(end - 1) % batch == 0)
            if progress is not None:
                progress(end - start)
            start = end

    def _group(self, x: np.ndarray, y: np.ndarray, update: bool) -> None:
        eng, c = self.engine, self.counters
        classes = eng.config.classes
        speculative = eng.config.speculative
        cur = eng.forward(x)
        pool = self.slots.concat(cur)  # rows 0..classes-1: slots; then this group
        n = len(y)
        slot_ptr = np.arange(classes)
        spec_src = np.full(n, -1)
        for j in range(n):
            label = int(y[j])
            if speculative and self.seen[label]:
                spec_src[j] = slot_ptr[label]
            slot_ptr[label] = classes + j
            self.seen[label] = True
        src = classes + np.arange(n)
        spec = spec_src >= 0
        if spec.any():
            rows = np.flatnonzero(spec)
            hit = eng.hits(pool.p[spec_src[rows]], cur.p[rows])
            src[rows[hit]] = spec_src[rows[hit]]
            c.hits += int(hit.sum())
            c.misses += int((~hit).sum())
            kinds = np.where(hit, StepKind.HIT, StepKind.MISS)
        if speculative:
            c.first_sightings += int((~spec).sum())
        else:
            c.sequential += n
        if self.log is not None:
            k = np.full(n, StepKind.FIRST_SIGHTING if speculative else StepKind.SEQUENTIAL, dtype=object)
            if spec.any():
                k[rows] = kinds
            self.log.extend(k.tolist())
        c.steps += n
        if eng.config.pipeline:
            # every step but a group's first overlaps its predecessor's backward pass; the first does when
            # the previous group ended without an update (the pipeline drains before every update)
            c.overlapped += n - 1 + int(self.pending)
            self.pending = not update
        eng.accumulate(pool.take(src), y)
        self.slots = pool.take(slot_ptr)
        if update:
            eng.update()
            c.updates += 1
