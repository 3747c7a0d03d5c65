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

Checkpoints (:mod:`specbp_rtl.checkpoint`) need the complete training state:
:meth:`SpeculativeTrainer.state` returns it as a flat ``dict[str, ndarray]``
(the engine's weights and gradient accumulators under ``engine.``, the label
slots, seen flags, the pipeline's owed backward pass, the counters and the
position in the epoch) and :meth:`SpeculativeTrainer.load_state` puts it back.
``train_epoch(..., start=k)`` continues an epoch after its first ``k`` samples
with the step index continuing from ``k``; :attr:`SpeculativeTrainer.position`
says how many samples of the current epoch are complete, and
:meth:`SpeculativeTrainer.deferred_interrupts` holds a Ctrl-C that arrives
inside a group until the group is done, so the state is always consistent
when the ``KeyboardInterrupt`` arrives.
"""

from __future__ import annotations

import hashlib
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Protocol

import numpy as np

from ..config import TrainConfig
from ..steps import StepKind

__all__ = [
    "STEP_COUNTERS",
    "Counters",
    "Engine",
    "ForwardState",
    "SpeculativeTrainer",
    "load_parameter_state",
    "parameter_state",
    "weights_sha256",
]


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


Params = list[tuple[np.ndarray, np.ndarray]]


def parameter_state(params: Params, grads: Params) -> dict[str, np.ndarray]:
    """Copies of the weights and gradient accumulators of an engine, by name.

    Layer ``l`` gives ``w{l}`` (``(out, in)``), ``b{l}`` (``(out,)``) and the
    accumulators ``gw{l}``, ``gb{l}`` of the same shapes; the arrays keep the
    engine's dtype (int64 integers for the fixed model, float64 for the float
    one). Copies, so training on does not change a saved state.
    """
    state: dict[str, np.ndarray] = {}
    for layer, ((w, b), (g_w, g_b)) in enumerate(zip(params, grads)):
        state[f"w{layer}"] = w.copy()
        state[f"b{layer}"] = b.copy()
        state[f"gw{layer}"] = g_w.copy()
        state[f"gb{layer}"] = g_b.copy()
    return state


def load_parameter_state(
    params: Params,
    grads: Params,
    state: dict[str, np.ndarray],
    kind: str,
    bounds: Callable[[str, int], tuple[float, float]] | None = None,
) -> None:
    """Copy a :func:`parameter_state` dict into ``params`` and ``grads`` in place.

    Everything is checked before anything is written, so a bad state leaves the
    engine untouched: the keys must be exactly those of :func:`parameter_state`,
    every array must have its parameter's shape and a dtype of numpy kind
    ``kind`` (``"i"`` integers, ``"f"`` floats), and, if ``bounds(key, layer)``
    is given, every value must lie in the closed interval it returns.

    Raises
    ------
    ValueError
        Naming the first key that is missing, unexpected, or of the wrong
        shape, dtype or range.
    """
    expected = {
        f"{k}{layer}": (k, layer, a)
        for layer, ((w, b), (g_w, g_b)) in enumerate(zip(params, grads))
        for k, a in (("w", w), ("b", b), ("gw", g_w), ("gb", g_b))
    }
    missing = [k for k in expected if k not in state]
    if missing:
        raise ValueError(f"engine state: {missing[0]} is missing")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise ValueError(f"engine state: unexpected entry {unexpected[0]}")
    for key, (_, layer, target) in expected.items():
        value = np.asarray(state[key])
        if value.shape != target.shape:
            raise ValueError(f"engine state: {key} has shape {value.shape}, expected {target.shape}")
        if value.dtype.kind != kind:
            raise ValueError(f"engine state: {key} has dtype {value.dtype}, expected {target.dtype}")
        if bounds is not None and value.size:
            lo, hi = bounds(key, layer)
            if value.min() < lo or value.max() > hi:
                raise ValueError(f"engine state: {key} holds values outside its format's range {lo}..{hi}")
    for key, (_, _, target) in expected.items():
        target[...] = state[key]


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
        return ForwardState([a[index] for a in self.inputs], [z[index] for z in self.pre], self.p[index])

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

    def state(self) -> dict[str, np.ndarray]:
        """Copies of the weights and gradient accumulators (:func:`parameter_state`)."""

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the weights and accumulators by a :meth:`state` dict (checked first)."""


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
    """Runs the paper's training loop on an :class:`Engine`.

    Besides the counters, :attr:`position` (samples of the current epoch that
    are complete, always at the end of a group) and :attr:`epochs_done`
    (epochs completed) say where training stands; both are part of
    :meth:`state`. ``slots`` (the stored forward state per label), ``seen``
    and ``pending`` (pipelined mode: the last step's backward pass is owed)
    complete the training state, with ``last_label`` (the label of the last
    step, ``-1`` before the first): the hardware backends need it to tell an
    owed backward pass's gradient apart (:mod:`specbp_rtl.hwstate`). ``log`` is a trace, not state.
    """

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
        #: the label of the last training step (-1 before the first)
        self.last_label = -1
        #: samples of the current epoch completed (0 between epochs); a checkpoint resumes from here
        self.position = 0
        #: epochs completed by this trainer (including those of a restored state)
        self.epochs_done = 0
        # set while a group changes the state: an exception in there leaves it inconsistent
        self._in_group = False
        # deferred_interrupts(): a Ctrl-C arrived inside a group and is delivered when the group is done
        self._interrupt_pending = False
        self._deliver_interrupt: Callable[[], None] | None = None

    def train_epoch(
        self,
        x: np.ndarray,
        y: np.ndarray,
        progress: Callable[[int], None] | None = None,
        start: int = 0,
    ) -> None:
        """Train one epoch over ``x`` (``uint8``) and ``y`` in file order.

        Parameters
        ----------
        x, y:
            The epoch's samples and labels.
        progress:
            Called with the number of samples of each completed group, after
            :attr:`position` counts them.
        start:
            Continue an epoch whose first ``start`` samples are done: train
            samples ``start..`` with the step index ``i`` continuing from
            ``start`` (updates after steps with ``i % batch == 0``), the
            gradients, slots and counters carrying over. ``start =``
            :attr:`position` of a saved state reproduces the uninterrupted
            epoch bit for bit; the group boundaries then are the
            uninterrupted epoch's (any other ``start`` splits a group, which
            the integer golden model does not notice but float64 rounding
            does).

        Notes
        -----
        After every group :attr:`position` is the number of samples of this
        epoch that are complete; when the epoch is, it is 0 again and
        :attr:`epochs_done` has grown by one.
        """
        batch = self.engine.config.batch
        n = len(y)
        if not (0 <= start < n or start == n == 0):
            raise ValueError(f"start: must be in 0..{max(n - 1, 0)} (the epoch has {n} samples), got {start}")
        self.position = start
        if n == 0:
            self.epochs_done += 1
            return
        # Group boundaries: an update follows step i when i % batch == 0.
        ends = [i + 1 for i in range(0, n, batch)]
        if not ends or ends[-1] != n:
            ends.append(n)
        for end in ends:
            if end <= start:
                continue
            self._in_group = True
            self._group(x[start:end], y[start:end], update=(end - 1) % batch == 0)
            if end == n:
                self.position = 0
                self.epochs_done += 1
            else:
                self.position = end
            self._in_group = False
            if progress is not None:
                progress(end - start)
            start = end
            if self._interrupt_pending:
                self._take_interrupt()

    @contextmanager
    def deferred_interrupts(self) -> Iterator[None]:
        """Hold a Ctrl-C (SIGINT) that arrives inside a group until the group is done.

        Python raises ``KeyboardInterrupt`` between any two bytecodes; inside a
        group (counters counted, gradients half accumulated, weights half
        updated) that leaves a state no checkpoint can save. Inside this
        context a SIGINT during a group is delivered right after the group
        (after its ``progress`` call), one outside a group at once, and a second
        one while the first is held at once too (the way out of a stuck run;
        the state is then inconsistent and :meth:`state` refuses it). Numbers
        do not change. Outside the main thread, or when SIGINT is ignored, the
        context does nothing.
        """
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or previous in (signal.SIG_IGN, None):
            yield
            return

        def deliver() -> None:
            if callable(previous):
                previous(signal.SIGINT, None)
            else:
                raise KeyboardInterrupt

        def handler(signum: int, frame: object) -> None:
            if self._in_group and not self._interrupt_pending:
                self._interrupt_pending = True
            else:
                self._interrupt_pending = False
                deliver()

        signal.signal(signal.SIGINT, handler)
        self._deliver_interrupt = deliver
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
            self._deliver_interrupt = None
        if self._interrupt_pending:  # held but the context ended before a group boundary
            self._interrupt_pending = False
            deliver()

    def _take_interrupt(self) -> None:
        self._interrupt_pending = False
        deliver = self._deliver_interrupt
        if deliver is None:
            raise KeyboardInterrupt
        deliver()

    # -- training state (checkpoints) ----------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        """The complete training state, as copies.

        Keys: ``engine.<key>`` for the engine's :meth:`Engine.state`
        (``engine.w0``, ``engine.gb1``, ...); ``slots.inputs.<l>``,
        ``slots.pre.<l>`` and ``slots.p`` (the stored forward state of every
        label, one row per class, in the engine's dtype); ``seen`` (bool per
        class); ``pending`` (0-d bool, pipelined mode); ``last_label`` (0-d
        int64, -1 before the first step); ``counters.<name>``
        for every :data:`STEP_COUNTERS` name, ``position`` and
        ``epochs_done`` (0-d int64).

        Raises
        ------
        RuntimeError
            If a group was interrupted half way (an exception inside a group
            without :meth:`deferred_interrupts`): that state is inconsistent.
        """
        if self._in_group:
            raise RuntimeError(
                "training was interrupted inside a group, so its state is inconsistent "
                "(train inside SpeculativeTrainer.deferred_interrupts())"
            )
        st = {f"engine.{k}": v for k, v in self.engine.state().items()}
        for layer, a in enumerate(self.slots.inputs):
            st[f"slots.inputs.{layer}"] = a.copy()
        for layer, z in enumerate(self.slots.pre):
            st[f"slots.pre.{layer}"] = z.copy()
        st["slots.p"] = self.slots.p.copy()
        st["seen"] = self.seen.copy()
        st["pending"] = np.array(self.pending)
        st["last_label"] = np.array(self.last_label, dtype=np.int64)
        for name, value in self.counters.as_dict().items():
            st[f"counters.{name}"] = np.array(value, dtype=np.int64)
        st["position"] = np.array(self.position, dtype=np.int64)
        st["epochs_done"] = np.array(self.epochs_done, dtype=np.int64)
        return st

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Replace the complete training state by a :meth:`state` dict.

        Everything is checked (keys, shapes, dtypes, counters non-negative)
        before anything changes, so a bad state leaves the trainer as it was.

        Raises
        ------
        ValueError
            Naming the first entry that is missing, unexpected or does not fit
            this trainer's engine.
        """
        template = self.engine.empty_state(self.engine.config.classes)
        slot_keys = (
            [f"slots.inputs.{layer}" for layer in range(len(template.inputs))]
            + [f"slots.pre.{layer}" for layer in range(len(template.pre))]
            + ["slots.p"]
        )
        slot_like = dict(zip(slot_keys, [*template.inputs, *template.pre, template.p]))
        counter_keys = [f"counters.{name}" for name in STEP_COUNTERS]
        own = [*slot_keys, "seen", "pending", "last_label", *counter_keys, "position", "epochs_done"]
        state = {"last_label": np.array(-1, dtype=np.int64)} | dict(state)  # optional (older states lack it)
        missing = [k for k in own if k not in state]
        if missing:
            raise ValueError(f"trainer state: {missing[0]} is missing")
        unexpected = sorted(k for k in set(state) - set(own) if not k.startswith("engine."))
        if unexpected:
            raise ValueError(f"trainer state: unexpected entry {unexpected[0]}")
        for key, like in slot_like.items():
            value = np.asarray(state[key])
            if value.shape != like.shape or value.dtype.kind != like.dtype.kind:
                raise ValueError(
                    f"trainer state: {key} is {value.dtype}{list(value.shape)}, expected {like.dtype}{list(like.shape)}"
                )
        seen = np.asarray(state["seen"])
        if seen.shape != (self.engine.config.classes,) or seen.dtype != bool:
            raise ValueError(
                f"trainer state: seen is {seen.dtype}{list(seen.shape)}, expected bool[{self.engine.config.classes}]"
            )
        pending = np.asarray(state["pending"])
        if pending.shape != () or pending.dtype != bool:
            raise ValueError(f"trainer state: pending is {pending.dtype}{list(pending.shape)}, expected a bool")
        scalars = {}
        for key in [*counter_keys, "position", "epochs_done"]:
            value = np.asarray(state[key])
            if value.shape != () or value.dtype.kind not in "iu" or int(value) < 0:
                raise ValueError(f"trainer state: {key} must be a non-negative integer, got {value!r}")
            scalars[key] = int(value)
        last = np.asarray(state["last_label"])
        if last.shape != () or last.dtype.kind not in "iu" or not -1 <= int(last) < self.engine.config.classes:
            raise ValueError(f"trainer state: last_label must be -1 or a class index, got {last!r}")
        self.engine.load_state({k[len("engine.") :]: v for k, v in state.items() if k.startswith("engine.")})
        n_in = len(template.inputs)
        values = [np.array(state[k], dtype=slot_like[k].dtype) for k in slot_keys]
        self.slots = ForwardState(values[:n_in], values[n_in:-1], values[-1])
        self.seen = seen.copy()
        self.pending = bool(pending)
        self.last_label = int(last)
        for name in STEP_COUNTERS:  # in place: whoever holds the Counters object sees the restored values
            setattr(self.counters, name, scalars[f"counters.{name}"])
        self.position = scalars["position"]
        self.epochs_done = scalars["epochs_done"]
        self._in_group = False
        self._interrupt_pending = False

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
        if n:
            self.last_label = int(y[-1])
        src = classes + np.arange(n)
        spec = spec_src >= 0
        if spec.any():
            rows = np.flatnonzero(spec)
            hit = eng.hits(pool.p[spec_src[rows]], cur.p[rows])
            src[rows[hit]] = spec_src[rows[hit]]
            c.hits += int(hit.sum())
            c.misses += int((~hit).sum())
            kinds = [StepKind.HIT if h else StepKind.MISS for h in hit]
        if speculative:
            c.first_sightings += int((~spec).sum())
        else:
            c.sequential += n
        if self.log is not None:
            k = [StepKind.FIRST_SIGHTING if speculative else StepKind.SEQUENTIAL] * n
            if spec.any():
                for row, kind in zip(rows.tolist(), kinds):
                    k[row] = kind
            self.log.extend(k)
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
