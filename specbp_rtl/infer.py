"""``specbp infer``: a checkpoint's weights evaluated on a test set, in software or in the hardware.

:func:`run_inference` loads a checkpoint's weights (:mod:`specbp_rtl.checkpoint`)
into a backend and predicts every test sample:

* ``float``, ``fixed``: the numpy models' forward pass (a float checkpoint on
  ``float``, a fixed one on ``fixed``);
* ``rtl``: the Trainer's Verilog in Verilator, weights written over its host
  bus, each sample streamed through the hardware's inference mode;
* ``board``: the same over a board's UART link (``port``).

The fixed-point backends agree bit for bit, so ``fixed``, ``rtl`` and
``board`` give the same predictions. :class:`InferenceResult` holds the
predictions, the accuracy and the confusion matrix, and writes its JSON record
and a PNG of the matrix.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .checkpoint import Checkpoint
from .data import Dataset
from .files import write_atomic

__all__ = ["INFER_BACKENDS", "InferenceResult", "run_inference"]

#: backends ``specbp infer`` runs on
INFER_BACKENDS: tuple[str, ...] = ("float", "fixed", "rtl", "board")


@dataclass
class InferenceResult:
    """Predictions of one backend on a dataset's test split."""

    backend: str
    dataset: str
    checkpoint: str
    labels: np.ndarray
    predictions: np.ndarray
    classes: int
    wall_seconds: float

    @property
    def accuracy(self) -> float:
        return float(np.mean(self.predictions == self.labels)) if len(self.labels) else 0.0

    @property
    def confusion(self) -> np.ndarray:
        """``confusion[true, predicted]`` counts."""
        m = np.zeros((self.classes, self.classes), dtype=np.int64)
        np.add.at(m, (self.labels.astype(np.int64), self.predictions.astype(np.int64)), 1)
        return m

    def as_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "dataset": self.dataset,
            "checkpoint": self.checkpoint,
            "test_samples": int(len(self.labels)),
            "accuracy": self.accuracy,
            "confusion": self.confusion.tolist(),
            "wall_seconds": round(self.wall_seconds, 4),
        }

    def format_confusion(self) -> str:
        """The matrix as text: rows are true classes, columns predicted ones."""
        m = self.confusion
        width = max(4, len(str(int(m.max(initial=0)))) + 1)
        head = "true\\pred" + "".join(f"{c:>{width}}" for c in range(self.classes))
        rows = [f"{t:>9}" + "".join(f"{v:>{width}}" for v in m[t]) for t in range(self.classes)]
        return "\n".join([head, *rows])

    def write_png(self, path: str) -> None:
        """The confusion matrix as a PNG heat map (written atomically)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        m = self.confusion
        fig, ax = plt.subplots(figsize=(1 + 0.5 * self.classes, 0.8 + 0.5 * self.classes))
        ax.imshow(m, cmap="Blues")
        for t in range(self.classes):
            for p in range(self.classes):
                ax.text(
                    p,
                    t,
                    str(m[t, p]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if m[t, p] > m.max() / 2 else "black",
                )
        ax.set(
            xlabel="predicted",
            ylabel="true",
            xticks=range(self.classes),
            yticks=range(self.classes),
            title=f"{self.backend}: {100 * self.accuracy:.2f} % on {len(self.labels)} samples",
        )
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        write_atomic(path, buf.getvalue())


def _engine(ck: Checkpoint, backend: str):
    from .model.golden import FixedEngine
    from .model.reference import FloatEngine
    from .numerics import numerics_preset

    engine = FloatEngine(ck.config) if backend == "float" else FixedEngine(ck.config, numerics_preset(ck.numerics))
    ck.init_weights(engine)
    return engine


def run_inference(
    ck: Checkpoint, backend: str, dataset: Dataset, *, lanes: int = 16, port: str | None = None, baud: int = 1_000_000
) -> InferenceResult:
    """Predict ``dataset``'s test split with ``ck``'s weights on ``backend`` (see the module docstring).

    Raises :class:`~specbp_rtl.checkpoint.CheckpointError` when the checkpoint
    does not fit the backend (a float checkpoint on a fixed-point one, or the
    reverse) and ``ValueError`` when the dataset does not fit its topology.
    """
    if backend not in INFER_BACKENDS:
        raise ValueError(f"backend: choose from {', '.join(INFER_BACKENDS)}, got {backend!r}")
    cfg = ck.config
    if dataset.inputs != cfg.layers[0]:
        raise ValueError(
            f"dataset: {dataset.name} has {dataset.inputs} inputs, the checkpoint's network {cfg.layers[0]}"
        )
    ck.check_fits(cfg, None if backend == "float" else ck.numerics, backend, resume=False)
    start = time.perf_counter()
    x = dataset.test_x
    if backend in ("float", "fixed"):
        predictions = _engine(ck, backend).predict(x)
    elif backend == "rtl":
        from .gateware.layout import TrainerConfig
        from .numerics import numerics_preset
        from .sim.verilator import VerilatorTrainer

        with VerilatorTrainer(TrainerConfig(train=cfg, lanes=lanes, numerics=numerics_preset(ck.numerics))) as hw:
            hw.build()
            hw.load_weights(ck.weights)
            predictions = hw.infer(x)
    else:
        from .boards.host import BoardTrainer
        from .checkpoint import CheckpointError
        from .numerics import numerics_name

        with BoardTrainer(port, baud) as board:
            board.configure(cfg)
            tcfg = board.cfg
            if numerics_name(tcfg.numerics) != ck.numerics:
                raise CheckpointError(
                    f"checkpoint {ck.path}: numerics {ck.numerics} do not match the board's "
                    f"{numerics_name(tcfg.numerics)}"
                )
            board.load_weights(ck.weights)
            predictions = np.array([board.infer(bytes(np.asarray(s, dtype=np.uint8))) for s in x], dtype=np.int64)
    return InferenceResult(
        backend,
        dataset.name,
        str(ck.path),
        np.asarray(dataset.test_y),
        np.asarray(predictions),
        cfg.classes,
        time.perf_counter() - start,
    )
