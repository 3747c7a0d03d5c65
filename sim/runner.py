"""Run a training job on a backend and collect the result record.

:func:`run_training` is what ``specbp train`` does: train ``epochs`` epochs in
file order, test after every epoch, and return a
:class:`~specbp_rtl.record.RunResult`, the record shared by every backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ..config import TrainConfig
from ..data import Dataset
from ..model.golden import FixedEngine
from ..model.reference import FloatEngine
from ..model.speculation import SpeculativeTrainer
from ..numerics import numerics_preset
from ..record import RunResult, hardware_fields

__all__ = ["BACKENDS", "make_engine", "run_training"]

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

    Checkpoints (:mod:`specbp_rtl.checkpoint`, the ``float``, ``fixed`` and
    ``rtl`` backends): ``save`` writes one at the end, and also when the run is
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
    config.check_dataset(dataset)
    numerics_preset(numerics)  # an unknown name fails here, naming the parameter (float: make_engine refuses
    # any formats but standard)
    if backend == "pysim":
        if save or resume or init:
            raise ValueError("checkpoints: the pysim backend does not save or resume yet; use rtl or fixed")
        return _run_pysim(config, dataset, epochs, progress, lanes, vcd, numerics, trace_samples)
    if backend == "rtl":
        from .verilator import run_rtl

        if resume and init:
            raise ValueError("checkpoints: give --resume or --init, not both")
        waves = {"vcd": vcd, "fst": fst, "trace_samples": trace_samples}
        checkpoints = {"save": save, "resume": resume, "init": init}
        return run_rtl(config, dataset, epochs, progress, lanes, numerics=numerics, **waves, **checkpoints)
    if (save or resume or init) and backend not in ENGINES:
        raise ValueError(
            f"checkpoints: the {backend} backend does not save or resume yet; use fixed or rtl, whose numerics agree"
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
    result.take_counters(c)
    result.train_seconds = train_time
    result.wall_seconds = time.perf_counter() - start
    result.weights_sha256 = hw.weights_sha256()
    result.extra = hardware_fields(c) | {"lanes": lanes, "sim_cycles_per_second": round(c["cycles"] / train_time, 1)}
    if hw.trace is not None:
        result.extra["trace"] = hw.trace.as_json()
    return result
