"""Run a training job on a backend and collect the result record.

:func:`run_training` is what ``specbp train`` does: train ``epochs`` epochs in
file order, test after every epoch, and return a :class:`RunResult` whose
:meth:`~RunResult.as_json` is the stable JSON record shared by every backend
(fields are added by later backends, never renamed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import TrainConfig
from ..data import Dataset
from ..model.golden import FixedEngine
from ..model.reference import FloatEngine
from ..model.speculation import STEP_COUNTERS, SpeculativeTrainer
from ..numerics import numerics_preset

__all__ = ["BACKENDS", "RunResult", "make_engine", "run_training"]

#: Numpy model backends.
ENGINES: dict[str, type] = {"float": FloatEngine, "fixed": FixedEngine}
#: Every backend this build can train on.
BACKENDS: tuple[str, ...] = ("float", "fixed", "pysim", "rtl")


def make_engine(backend: str, config: TrainConfig, numerics: str = "standard"):
    """Instantiate the engine of ``backend`` for ``config`` (the fixed model in the ``numerics`` formats)."""
    try:
        cls = ENGINES[backend]
    except KeyError:
        raise ValueError(f"backend: unknown model backend {backend!r} (choose from {', '.join(ENGINES)})") from None
    if cls is FixedEngine:
        return cls(config, numerics_preset(numerics))
    if numerics != "standard":
        raise ValueError(f"numerics: the float backend computes in float64, {numerics!r} applies to fixed, "
                         f"pysim and rtl")
    return cls(config)


@dataclass
class RunResult:
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
            "samples_per_second": round(self.samples_trained / self.train_seconds, 1) if self.train_seconds else 0.0,
            "weights_sha256": self.weights_sha256,
            "interrupted": self.interrupted,
        } | self.extra


def run_training(
    backend: str,
    config: TrainConfig,
    dataset: Dataset,
    epochs: int,
    progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
    lanes: int = 16,
    vcd: str | None = None,
    fst: str | None = None,
    trace_samples: tuple[int, int] = (0, 10),
    numerics: str = "standard",
) -> RunResult:
    """Train and test; ``progress(epoch, total)`` may return a per-group callback.

    ``numerics`` names the number formats of the fixed-point backends (:data:`specbp_rtl.numerics.NUMERICS`);
    the float backend accepts only ``standard`` (it has none).

    A ``KeyboardInterrupt`` stops training after the current group; the result
    then covers the completed epochs and has ``interrupted`` set, so nothing
    already measured is lost.
    """
    if dataset.inputs != config.layers[0]:
        raise ValueError(
            f"layers: the first layer has {config.layers[0]} inputs but dataset {dataset.name} "
            f"has {dataset.inputs} pixels per sample"
        )
    top = int(max(dataset.train_y.max(), dataset.test_y.max()))
    if top >= config.classes:
        raise ValueError(f"layers: the output layer has {config.classes} classes but the labels go up to {top}")
    numerics_preset(numerics)  # an unknown name fails here, naming the parameter (float: make_engine refuses
    # any formats but standard)
    if backend == "pysim":
        return _run_pysim(config, dataset, epochs, progress, lanes, vcd, numerics)
    if backend == "rtl":
        from .verilator import run_rtl

        return run_rtl(config, dataset, epochs, progress, lanes, vcd=vcd, fst=fst, trace_samples=trace_samples,
                       numerics=numerics)
    start = time.perf_counter()
    engine = make_engine(backend, config, numerics)
    trainer = SpeculativeTrainer(engine)
    result = RunResult(backend, dataset.name, config, epochs, len(dataset.train_y), len(dataset.test_y),
                       numerics=None if backend == "float" else numerics)
    train_time = 0.0
    try:
        for epoch in range(epochs):
            callback = progress(epoch, len(dataset.train_y)) if progress else None
            t0 = time.perf_counter()
            trainer.train_epoch(dataset.train_x, dataset.train_y, callback)
            train_time += time.perf_counter() - t0
            predicted = engine.predict(dataset.test_x)
            result.accuracy_per_epoch.append(float(np.mean(predicted == dataset.test_y)))
    except KeyboardInterrupt:
        result.interrupted = True
    result.counters = trainer.counters.as_dict()
    result.hit_rate = trainer.counters.hit_rate
    result.train_seconds = train_time
    result.wall_seconds = time.perf_counter() - start
    result.weights_sha256 = engine.weights_sha256()
    return result


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


def _run_pysim(config, dataset, epochs, progress, lanes, vcd, numerics) -> RunResult:
    from ..gateware.layout import TrainerConfig
    from .pysim import PysimTrainer

    start = time.perf_counter()
    hw = PysimTrainer(TrainerConfig(train=config, lanes=lanes, numerics=numerics_preset(numerics)), vcd=vcd)
    result = RunResult("pysim", dataset.name, config, epochs, len(dataset.train_y), len(dataset.test_y),
                       numerics=numerics)
    hw.run([(dataset.train_x, dataset.train_y, False, True)] * epochs, progress=progress)
    train_time = time.perf_counter() - start
    for params in hw.snapshots:
        predicted = hw.golden_with_weights(params).predict(dataset.test_x)
        result.accuracy_per_epoch.append(float(np.mean(predicted == dataset.test_y)))
    c = hw.counters
    result.counters = {k: c[k] for k in STEP_COUNTERS}
    spec = c["hits"] + c["misses"]
    result.hit_rate = c["hits"] / spec if spec else 0.0
    result.train_seconds = train_time
    result.wall_seconds = time.perf_counter() - start
    result.weights_sha256 = hw.weights_sha256()
    result.extra = hardware_fields(c) | {"lanes": lanes, "sim_cycles_per_second": round(c["cycles"] / train_time, 1)}
    return result
