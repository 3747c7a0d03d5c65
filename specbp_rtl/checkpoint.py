"""Training checkpoints of the model backends: save, check, resume, initialise.

A checkpoint holds everything needed to continue a run exactly: training E1
epochs, saving, loading and training E2 more gives the weights (same
``weights_sha256()``) and counters of one uninterrupted E1 + E2 run, also from
a checkpoint taken in the middle of an epoch (a Ctrl-C).

File format
-----------
One ``.npz`` (``numpy.savez``, uncompressed, readable with
``np.load(path, allow_pickle=False)``) holding

* ``meta``: a 0-d unicode array with a JSON object: ``kind``
  (``"specbp-checkpoint"``), ``format_version`` (:data:`FORMAT_VERSION`),
  ``backend`` (``float``, ``fixed``; later hardware backends), ``numerics``
  (the :data:`specbp_rtl.numerics.NUMERICS` name, ``null`` for float),
  ``numerics_formats`` (the formats of that set, as strings, so a changed
  definition is noticed), ``config`` (:meth:`TrainConfig.as_dict`),
  ``epochs_done``, ``position`` (samples of the current epoch completed),
  ``dataset`` (``name``, ``train_samples``, ``test_samples``, ``inputs``),
  ``counters``, ``weights_sha256``, ``specbp_version`` and ``extra`` (a JSON
  object the caller chose);
* one array per entry of :meth:`SpeculativeTrainer.state`, under the same
  name: ``engine.w{l}``, ``engine.b{l}`` (weights, ``W`` of shape
  ``(out, in)``), ``engine.gw{l}``, ``engine.gb{l}`` (gradient accumulators),
  ``slots.inputs.{l}``, ``slots.pre.{l}``, ``slots.p`` (the stored forward
  state of every label), ``seen``, ``pending``, ``last_label``, ``counters.<name>``,
  ``position``, ``epochs_done``. Fixed: int64 (master-weight and accumulator
  integers); float: float64.

The file is written atomically: into a temporary file in the target's
directory, flushed to disk, then renamed over the target with
:func:`os.replace`, so a reader sees the old file or the complete new one and
a failed save leaves nothing behind. The path is used as given (no ``.npz`` is
appended).

API
---
* :func:`save_checkpoint` writes a trainer's state;
* :func:`load_checkpoint` reads and verifies a file into a :class:`Checkpoint`;
* :meth:`Checkpoint.check_fits` refuses a checkpoint that does not fit a run;
* :meth:`Checkpoint.restore` (``--resume``) loads the complete state into a
  trainer; then train the rest of the interrupted epoch with
  ``trainer.train_epoch(x, y, progress, start=trainer.position)`` and the
  following epochs from ``start=0``;
* :meth:`Checkpoint.init_weights` (``--init``) loads only the weights into an
  engine (accumulators zero); the trainer around it starts fresh;
* :attr:`Checkpoint.weights` gives ``[(W, b), ...]`` for inference.

Every failure raises :class:`CheckpointError`, one line naming the file.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .config import ConfigError, TrainConfig
from .data import Dataset
from .files import write_atomic
from .model.speculation import STEP_COUNTERS, SpeculativeTrainer, weights_sha256
from .numerics import NUMERICS, Numerics, numerics_name

__all__ = [
    "FIXED_BACKENDS",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "load_checkpoint",
    "save_checkpoint",
]

#: Version of the file layout this module writes and reads.
FORMAT_VERSION = 1
_KIND = "specbp-checkpoint"
#: Backends that compute in the fixed-point formats of :mod:`specbp_rtl.numerics`: their numbers agree bit for bit,
#: so a checkpoint of one resumes on any other.
FIXED_BACKENDS: tuple[str, ...] = ("fixed", "pysim", "rtl", "board")
#: Settings a resumed run must share with its checkpoint (each changes the result), in the order they are checked.
RESUME_FIELDS: tuple[str, ...] = ("batch", "lr", "clip", "slope", "threshold", "metric", "seed", "pipeline")


class CheckpointError(ValueError):
    """A checkpoint that cannot be written, read or used; the one-line message names the file."""


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _formats(numerics: Numerics) -> dict[str, str]:
    return {f.name: str(getattr(numerics, f.name)) for f in fields(numerics)}


def _family(backend: str) -> str:
    return "float" if backend == "float" else "fixed" if backend in FIXED_BACKENDS else backend


def _numerics_of(engine: Any, what: str) -> str | None:
    """The format-set name of an engine (``None`` for the float model, which has no ``numerics``)."""
    nx = getattr(engine, "numerics", None)
    try:
        return None if nx is None else numerics_name(nx)
    except ConfigError:
        raise CheckpointError(
            f"{what}: the engine's number formats are not a named format set ({', '.join(NUMERICS)})"
        ) from None


def _fmt(name: str, value: Any) -> str:
    if name == "layers":
        return ",".join(map(str, value))
    return "none" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def save_checkpoint(
    path: str | os.PathLike[str],
    trainer: SpeculativeTrainer,
    *,
    backend: str,
    numerics: str | None,
    dataset: Dataset,
    extra: dict[str, Any] | None = None,
) -> None:
    """Write ``trainer``'s complete training state to ``path``, atomically.

    Parameters
    ----------
    path:
        The file to write (used as given; an existing file is replaced only
        once the new one is complete).
    trainer:
        The trainer; its :meth:`~SpeculativeTrainer.state` supplies the
        arrays, its ``epochs_done`` and ``position`` where training stands
        (so a Ctrl-C checkpoint needs no bookkeeping by the caller).
    backend:
        The backend that trained (``float``, ``fixed``).
    numerics:
        The format-set name, ``None`` for float; must be the engine's.
    dataset:
        The training data; its name and sizes are recorded, and a resume
        checks them (the position counts samples of this epoch).
    extra:
        JSON-serialisable fields the caller wants kept (returned as
        :attr:`Checkpoint.extra`).

    Raises
    ------
    CheckpointError
        If the state is inconsistent (a group interrupted half way), the
        numerics do not match the engine, or the file cannot be written; no
        file is left behind then.
    """
    path = Path(path)
    engine = trainer.engine
    try:
        state = trainer.state()
    except RuntimeError as exc:
        raise CheckpointError(f"cannot save checkpoint {path}: {_one_line(exc)}") from None
    engine_numerics = _numerics_of(engine, f"cannot save checkpoint {path}")
    if numerics != engine_numerics:
        raise CheckpointError(
            f"cannot save checkpoint {path}: numerics {_fmt('numerics', numerics)} is not the "
            f"engine's ({_fmt('numerics', engine_numerics)})"
        )
    if _family(backend) != ("float" if engine_numerics is None else "fixed"):
        raise CheckpointError(
            f"cannot save checkpoint {path}: backend {backend} does not match the engine ({type(engine).__name__})"
        )
    layers = len(engine.config.layers) - 1
    params = [(state[f"engine.w{layer}"], state[f"engine.b{layer}"]) for layer in range(layers)]
    meta = {
        "kind": _KIND,
        "format_version": FORMAT_VERSION,
        "specbp_version": __version__,
        "backend": backend,
        "numerics": numerics,
        "numerics_formats": None if numerics is None else _formats(engine.numerics),
        "config": engine.config.as_dict(),
        "epochs_done": int(state["epochs_done"]),
        "position": int(state["position"]),
        "dataset": {
            "name": dataset.name,
            "train_samples": int(len(dataset.train_y)),
            "test_samples": int(len(dataset.test_y)),
            "inputs": int(dataset.inputs),
        },
        "counters": {name: int(state[f"counters.{name}"]) for name in STEP_COUNTERS},
        "weights_sha256": weights_sha256(params, "<f8" if numerics is None else "<i8"),
        "extra": extra or {},
    }
    try:
        text = json.dumps(meta, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"cannot save checkpoint {path}: extra is not JSON-serialisable ({exc})") from None
    buf = io.BytesIO()
    np.savez(buf, meta=np.array(text), **state)
    try:
        write_atomic(path, buf.getvalue())  # a failure (also Ctrl-C) leaves no partial file
    except OSError as exc:
        raise CheckpointError(f"cannot save checkpoint {path}: {exc.strerror or _one_line(exc)}") from None


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint read by :func:`load_checkpoint`.

    The meta fields are those of the module docstring; ``state`` maps every
    :meth:`SpeculativeTrainer.state` key to its array.
    """

    path: str
    format_version: int
    backend: str
    numerics: str | None
    numerics_formats: dict[str, str] | None
    config: TrainConfig
    epochs_done: int
    position: int
    dataset: dict[str, Any]
    counters: dict[str, int]
    weights_sha256: str
    specbp_version: str
    extra: dict[str, Any] = field(default_factory=dict)
    state: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per layer from input to output ``(W, b)``: ``W`` of shape ``(out, in)``, ``b`` of ``(out,)``.

        int64 master-weight integers (``numerics.weight``) for a fixed-point
        checkpoint, float64 for a float one: the engines' ``params`` layout,
        so ``engine.load_state`` / :meth:`init_weights` and then
        ``engine.predict`` evaluate them. Copies.
        """
        return [
            (self.state[f"engine.w{layer}"].copy(), self.state[f"engine.b{layer}"].copy())
            for layer in range(len(self.config.layers) - 1)
        ]

    def _error(self, message: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {self.path}: {message}")

    def check_fits(
        self, config: TrainConfig, numerics: str | None, backend: str, resume: bool, dataset: Dataset | None = None
    ) -> None:
        """Refuse a checkpoint that does not fit a run, naming the first mismatch.

        Checked in this order: the backend family (a float checkpoint only on
        ``float``; a fixed-point one on any of :data:`FIXED_BACKENDS`, whose
        numbers agree), ``layers``, ``numerics`` (name and, so a changed
        definition is noticed, formats). With ``resume`` also every setting
        that changes the result (:data:`RESUME_FIELDS`) and, if ``dataset`` is
        given, its name and number of training samples (the position counts
        samples of an epoch of that data). Without ``resume`` (``--init``)
        only the weights must fit: backend family, layers and numerics.

        Raises
        ------
        CheckpointError
            ``checkpoint a.npz: layers 64,16,10 do not match the run's 64,16,16,10``
            and the like.
        """
        family = _family(self.backend)
        use = "resumes" if resume else "initialises"
        if family == "float" and backend != "float":
            raise self._error(f"a float checkpoint {use} only the float backend, not {backend}")
        if family == "fixed" and backend not in FIXED_BACKENDS:
            raise self._error(
                f"a fixed-point checkpoint ({self.backend}) {use} only the fixed-point backends "
                f"({', '.join(FIXED_BACKENDS)}), not {backend}"
            )
        if family not in ("float", "fixed"):
            raise self._error(f"backend {self.backend} is unknown")
        if tuple(config.layers) != tuple(self.config.layers):
            raise self._error(
                f"layers {_fmt('layers', self.config.layers)} do not match the run's {_fmt('layers', config.layers)}"
            )
        if numerics != self.numerics:
            raise self._error(
                f"numerics {_fmt('numerics', self.numerics)} does not match the run's {_fmt('numerics', numerics)}"
            )
        if numerics is not None:
            preset = NUMERICS.get(numerics)
            if preset is None:
                raise self._error(f"numerics {numerics} is not a format set of this specbp ({', '.join(NUMERICS)})")
            if _formats(preset) != self.numerics_formats:
                changed = next(k for k, v in _formats(preset).items() if (self.numerics_formats or {}).get(k) != v)
                raise self._error(
                    f"the formats of numerics {numerics} changed since it was written "
                    f"({changed}: {(self.numerics_formats or {}).get(changed)} then, "
                    f"{getattr(preset, changed)} now)"
                )
        if not resume:
            return
        for name in RESUME_FIELDS:
            mine, theirs = getattr(self.config, name), getattr(config, name)
            if mine != theirs:
                raise self._error(f"{name} {_fmt(name, mine)} does not match the run's {_fmt(name, theirs)}")
        if dataset is not None:
            ds = self.dataset
            if ds.get("name") != dataset.name or ds.get("train_samples") != len(dataset.train_y):
                raise self._error(
                    f"dataset {ds.get('name')} with {ds.get('train_samples')} training samples "
                    f"does not match the run's {dataset.name} with {len(dataset.train_y)}"
                )

    def restore(self, trainer: SpeculativeTrainer, dataset: Dataset | None = None) -> None:
        """``--resume``: load the complete training state into ``trainer``.

        Checks :meth:`check_fits` (``resume=True``) against the trainer's
        engine first. Afterwards ``trainer.position`` and
        ``trainer.epochs_done`` are the checkpoint's: continue with
        ``trainer.train_epoch(x, y, progress, start=trainer.position)``.

        Raises
        ------
        CheckpointError
            If it does not fit, or its arrays do not fit the engine.
        """
        engine = trainer.engine
        numerics = _numerics_of(engine, f"checkpoint {self.path}")
        self.check_fits(engine.config, numerics, self._engine_backend(engine), True, dataset)
        try:
            trainer.load_state(self.state)
        except ValueError as exc:
            raise self._error(_one_line(exc)) from None

    def init_weights(self, engine: Any) -> None:
        """``--init``: the checkpoint's weights into ``engine``, gradient accumulators zero.

        Only topology and formats must fit (:meth:`check_fits` with
        ``resume=False``); a trainer built around the engine starts with fresh
        state (counters zero, no label seen).

        Raises
        ------
        CheckpointError
            If the weights do not fit the engine.
        """
        numerics = _numerics_of(engine, f"checkpoint {self.path}")
        self.check_fits(engine.config, numerics, self._engine_backend(engine), False)
        st: dict[str, np.ndarray] = {}
        for layer, (w, b) in enumerate(self.weights):
            st.update({f"w{layer}": w, f"b{layer}": b, f"gw{layer}": np.zeros_like(w), f"gb{layer}": np.zeros_like(b)})
        try:
            engine.load_state(st)
        except ValueError as exc:
            raise self._error(_one_line(exc)) from None

    def _engine_backend(self, engine: Any) -> str:
        """The backend name of a model engine; a fixed-point checkpoint of a hardware backend fits ``fixed``."""
        return getattr(engine, "name", "float" if getattr(engine, "numerics", None) is None else "fixed")


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and verify a checkpoint file.

    Verified: it is an npz with a ``meta`` entry of this kind and a format
    version this module reads, its configuration is valid, the weight arrays
    are there with the configuration's shapes and the engine's dtype, and
    their hash is the recorded ``weights_sha256`` (the zip CRCs cover the
    other arrays).

    Raises
    ------
    CheckpointError
        One line naming the file: missing, unreadable, not a checkpoint,
        corrupt, or of another format version.
    """
    path = Path(path)
    name = str(path)

    def bad(message: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {name}: {message}")

    if not path.is_file():
        raise bad("no such file" if not path.exists() else "not a file")
    try:
        with open(path, "rb") as f:  # our own handle: closed on every error (np.load leaks it on some)
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise bad("not a specbp checkpoint (a single .npy array, not an .npz)")
            with npz:
                arrays = {key: npz[key] for key in npz.files}
    except CheckpointError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, OSError, ValueError (pickles, bad headers), EOFError, ...
        raise bad(f"not a readable specbp checkpoint ({type(exc).__name__}: {_one_line(exc)})") from None
    raw = arrays.pop("meta", None)
    if raw is None or raw.shape != () or raw.dtype.kind != "U":
        raise bad("not a specbp checkpoint (no meta entry)")
    try:
        meta = json.loads(str(raw))
    except ValueError:
        raise bad("corrupt meta entry (not JSON)") from None
    if not isinstance(meta, dict) or meta.get("kind") != _KIND:
        raise bad("not a specbp checkpoint (meta has the wrong kind)")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise bad(f"format version {version} is not the one this specbp reads ({FORMAT_VERSION})")
    try:
        cfg = dict(meta["config"])
        cfg["layers"] = tuple(cfg["layers"])
        config = TrainConfig(**cfg)
        ck = Checkpoint(
            path=name,
            format_version=version,
            backend=str(meta["backend"]),
            numerics=meta["numerics"],
            numerics_formats=meta["numerics_formats"],
            config=config,
            epochs_done=int(meta["epochs_done"]),
            position=int(meta["position"]),
            dataset=dict(meta["dataset"]),
            counters={k: int(v) for k, v in meta["counters"].items()},
            weights_sha256=str(meta["weights_sha256"]),
            specbp_version=str(meta.get("specbp_version", "")),
            extra=dict(meta.get("extra") or {}),
            state=arrays,
        )
    except ConfigError as exc:
        raise bad(f"invalid configuration ({_one_line(exc)})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise bad(f"corrupt meta entry ({type(exc).__name__}: {_one_line(exc)})") from None
    fixed = _family(ck.backend) == "fixed"
    kind, dtype = ("i", "<i8") if fixed else ("f", "<f8")
    sizes = config.layers
    for layer, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        for key, shape in ((f"engine.w{layer}", (n_out, n_in)), (f"engine.b{layer}", (n_out,))):
            a = arrays.get(key)
            if a is None:
                raise bad(f"corrupt: {key} is missing")
            if a.shape != shape or a.dtype.kind != kind:
                raise bad(f"corrupt: {key} is {a.dtype}{list(a.shape)}, expected {np.dtype(dtype)}{list(shape)}")
    if weights_sha256(ck.weights, dtype) != ck.weights_sha256:
        raise bad("corrupt: the weights do not match their recorded weights_sha256")
    return ck
