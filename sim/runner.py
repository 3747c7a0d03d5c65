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
        raise ValueError(
            f"numerics: the float backend computes in float64, {numerics!r} applies to fixed, pysim and rtl"
        )
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
    save: str | None = None,
    resume: str | None = None,
    init: str | None = None,
) -> RunResult:
    """Train and test; ``progress(epoch, total)`` may return a per-group callback.

    Checkpoints (:mod:`specbp_rtl.checkpoint`, the ``float`` and ``fixed``
    backends): ``save`` writes one at the end, and also when the run is
    interrupted (where it stopped, in the middle of an epoch too);
    ``resume`` continues a saved run for ``epochs`` more epochs (finishing an
    interrupted epoch counts as one), bit-identical to a run that never
    stopped, and its record then covers the whole run (``epochs``, counters
    and ``accuracy_per_epoch`` include the saved part); ``init`` starts from a
    checkpoint's weights with fresh state.

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
        return _run_pysim(config, dataset, epochs, progress, lanes, vcd, numerics, trace_samples)
    if backend == "rtl":
        from .verilator import run_rtl

        return run_rtl(
            config, dataset, epochs, progress, lanes, vcd=vcd, fst=fst, trace_samples=trace_samples, numerics=numerics
        )
    if (save or resume or init) and backend not in ENGINES:
        raise ValueError(
            f"checkpoints: the {backend} backend does not save or resume yet (its label-state memory "
            f"and gradient banks are not reachable over the host bus); use fixed, whose numerics agree"
        )
    if resume and init:
        raise ValueError("checkpoints: give --resume or --init, not both")
    from ..checkpoint import load_checkpoint, save_checkpoint

    nx = None if backend == "float" else numerics
    start = time.perf_counter()
    engine = make_engine(backend, config, numerics)
    history: list[float] = []
    done_before = 0
    if init:
        load_checkpoint(init).init_weights(engine)
    trainer = SpeculativeTrainer(engine)
    if resume:
        ck = load_checkpoint(resume)
        ck.check_fits(config, nx, backend, resume=True, dataset=dataset)
        ck.restore(trainer, dataset)
        history = [float(a) for a in ck.extra.get("accuracy_per_epoch", [])]
        done_before = ck.epochs_done
    result = RunResult(
        backend,
        dataset.name,
        config,
        done_before + epochs,
        len(dataset.train_y),
        len(dataset.test_y),
        numerics=nx,
        steps_before=trainer.counters.as_dict()["steps"],
    )
    result.accuracy_per_epoch = list(history)
    train_time = 0.0
    try:
        with trainer.deferred_interrupts():
            for epoch in range(epochs):
                callback = progress(done_before + epoch, len(dataset.train_y)) if progress else None
                if callback and trainer.position:
                    callback(trainer.position)
                t0 = time.perf_counter()
                try:
                    trainer.train_epoch(dataset.train_x, dataset.train_y, callback, start=trainer.position)
                finally:
                    train_time += time.perf_counter() - t0
                predicted = engine.predict(dataset.test_x)
                result.accuracy_per_epoch.append(float(np.mean(predicted == dataset.test_y)))
    except KeyboardInterrupt:
        result.interrupted = True
        if trainer.position == 0 and len(result.accuracy_per_epoch) < trainer.epochs_done:
            # the epoch was complete (the Ctrl-C came during its test): test it, so the history stays aligned
            result.accuracy_per_epoch.append(float(np.mean(engine.predict(dataset.test_x) == dataset.test_y)))
    if save:
        from ..checkpoint import CheckpointError

        try:
            save_checkpoint(
                save,
                trainer,
                backend=backend,
                numerics=nx,
                dataset=dataset,
                extra={"accuracy_per_epoch": result.accuracy_per_epoch},
            )
        except CheckpointError as exc:  # the record of the run is kept; the caller reports this
            result.extra["checkpoint_error"] = str(exc)
    result.counters = trainer.counters.as_dict()
    result.hit_rate = trainer.counters.hit_rate
    result.train_seconds = train_time
    result.wall_seconds = time.perf_counter() - start
    result.weights_sha256 = engine.weights_sha256()
    if resume:
        result.extra["resumed_from"] = {"checkpoint": str(resume), "epochs_done": done_before}
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


def _run_pysim(
    config, dataset, epochs, progress, lanes, vcd, numerics, trace_samples: tuple[int, int] = (0, 10)
) -> RunResult:
    import sys

    from ..gateware.layout import TrainerConfig
    from .pysim import PysimTrainer

    start = time.perf_counter()
    hw = PysimTrainer(
        TrainerConfig(train=config, lanes=lanes, numerics=numerics_preset(numerics)),
        vcd=vcd,
        trace_samples=trace_samples,
    )
    result = RunResult(
        "pysim", dataset.name, config, epochs, len(dataset.train_y), len(dataset.test_y), numerics=numerics
    )
    if vcd:
        estimate = hw.estimate_trace(epochs * len(dataset.train_y))
        first = hw.trace_samples[0]
        window = f"samples {first}..{first + estimate.samples - 1}" if estimate.samples else "no samples"
        print(
            f"pysim: tracing {window} of {epochs * len(dataset.train_y)} to {vcd}: ~{estimate.cycles:,} cycles, "
            f"~{estimate.bytes / 1e6:.1f} MB (estimate)",
            file=sys.stderr,
        )
    hw.run([(dataset.train_x, dataset.train_y, False, True)] * epochs, progress=progress)
    result.interrupted = hw.interrupted
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
    if hw.trace is not None:
        result.extra["trace"] = hw.trace.as_json()
    return result
