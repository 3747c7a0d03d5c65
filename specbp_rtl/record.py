"""The record of a training run: one JSON shape for every backend.

:class:`RunResult` is what :func:`specbp_rtl.sim.runner.run_training`, the
``rtl`` backend (:func:`specbp_rtl.sim.verilator.run_rtl`) and a board
(:meth:`specbp_rtl.boards.host.BoardTrainer.train`) return, and
:meth:`RunResult.as_json` is the record ``specbp train --json`` writes: fields
are added by later backends, never renamed. :func:`hardware_fields` derives
the cycle fields of the hardware backends from the trainer's performance
counters (:data:`specbp_rtl.gateware.host.COUNTERS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import TrainConfig
from .model.speculation import STEP_COUNTERS

__all__ = ["RunResult", "hardware_fields"]


@dataclass
class RunResult:
    """One training run: its settings, accuracy after each epoch, step counters, speed and final weights.

    ``extra`` holds the backend's own fields (cycle counts, build times,
    link statistics); :meth:`as_json` flattens everything into the record.
    """

    backend: str
    dataset: str
    config: TrainConfig
    epochs: int
    train_samples: int
    test_samples: int
    accuracy_per_epoch: list[float] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    hit_rate: float = 0.0
    wall_seconds: float = 0.0
    train_seconds: float = 0.0
    weights_sha256: str = ""
    interrupted: bool = False
    #: backend-specific fields (cycle counts of the hardware backends)
    extra: dict[str, Any] = field(default_factory=dict)
    #: number formats (:data:`specbp_rtl.numerics.NUMERICS`; the float backend has none)
    numerics: str | None = "standard"
    #: steps a resumed run's checkpoint had already trained (counted in ``counters``, not in the speed)
    steps_before: int = 0

    @property
    def accuracy(self) -> float:
        return self.accuracy_per_epoch[-1] if self.accuracy_per_epoch else 0.0

    @property
    def samples_trained(self) -> int:
        return self.counters.get("steps", 0)

    def as_json(self) -> dict[str, Any]:
        cfg = self.config
        c = self.counters
        return {
            "backend": self.backend,
            "dataset": self.dataset,
            "layers": list(cfg.layers),
            "epochs": self.epochs,
            "epochs_completed": len(self.accuracy_per_epoch),
            "threshold": cfg.threshold,
            "metric": cfg.metric,
            "seed": cfg.seed,
            "pipeline": cfg.pipeline,
            "batch": cfg.batch,
            "lr": cfg.lr,
            "clip": cfg.clip,
            "slope": cfg.slope,
            "numerics": self.numerics,
            "train_samples": self.train_samples,
            "test_samples": self.test_samples,
            "samples_trained": self.samples_trained,
            "accuracy": self.accuracy,
            "accuracy_per_epoch": self.accuracy_per_epoch,
            "steps": c.get("steps", 0),
            "sequential": c.get("sequential", 0),
            "first_sightings": c.get("first_sightings", 0),
            "hits": c.get("hits", 0),
            "misses": c.get("misses", 0),
            "updates": c.get("updates", 0),
            "overlapped": c.get("overlapped", 0),
            "hit_rate": self.hit_rate,
            "wall_seconds": round(self.wall_seconds, 4),
            "samples_per_second": (
                round((self.samples_trained - self.steps_before) / self.train_seconds, 1) if self.train_seconds else 0.0
            ),
            "weights_sha256": self.weights_sha256,
            "interrupted": self.interrupted,
        } | self.extra

    def take_counters(self, counters: dict[str, int]) -> None:
        """Set :attr:`counters` (the :data:`~specbp_rtl.model.speculation.STEP_COUNTERS`) and
        :attr:`hit_rate` from a trainer's performance counters."""
        self.counters = {k: counters[k] for k in STEP_COUNTERS}
        spec = counters["hits"] + counters["misses"]
        self.hit_rate = counters["hits"] / spec if spec else 0.0


def hardware_fields(counters: dict[str, int]) -> dict[str, Any]:
    """JSON fields derived from the trainer's performance counters."""
    steps = max(counters["steps"], 1)

    def mean(cycles: str, count: int) -> float | None:
        return round(counters[cycles] / count, 2) if count else None

    return {
        "cycles": counters["cycles"],
        "cycles_per_sample": round(counters["cycles"] / steps, 2),
        # the forward engine also runs the hardware's inference passes (rtl backend's test set)
        "forward_cycles": round(counters["forward_cycles"] / max(counters["steps"] + counters["inferences"], 1), 2),
        "backward_cycles": round(counters["backward_cycles"] / steps, 2),
        "update_cycles": counters["update_cycles"],
        "updates": counters["updates"],
        "cycles_per_step": {
            "hit": mean("hit_cycles", counters["hits"]),
            "miss": mean("miss_cycles", counters["misses"]),
            "sequential": mean("sequential_cycles", counters["sequential"] + counters["first_sightings"]),
        },
        "counters": counters,
    }
