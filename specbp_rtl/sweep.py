"""``specbp sweep``: threshold x metric x seed grids on a Dask cluster.

Every grid point is one :func:`specbp_rtl.sim.runner.run_training` call,
submitted to Dask distributed (a local cluster of ``workers`` single-threaded
processes by default, or a running scheduler). Each finished run is written to
``OUT/runs/<key>.json`` at once, so an interrupted sweep resumes where it
stopped. Threshold 0 means speculation off, so it is run once per seed and
shared by every metric.

Hardware cycles: the ``rtl`` and ``pysim`` backends report the trainer's
counters; for the ``fixed`` backend the exact :class:`CycleModel` of the
trainer turns the run's step counts (sequential, hit, miss, update) into the
same cycle figures (the tests check the model against the counters cycle for
cycle).

Equal-multiplier baseline (a Trainer configuration, run once per seed):
:attr:`TrainConfig.pipeline <specbp_rtl.config.TrainConfig.pipeline>`, speculation
off and both engines busy on every step: the backward pass of sample ``i``
runs while the forward pass of sample ``i + 1`` runs, which is exact because
the weights only change at updates (the pipeline drains before each one). Its
weights are those of the sequential baseline, bit for bit. This is the honest
competitor of speculation: the same multipliers kept busy without guessing.

Wide-datapath model (modelled, not built): speculation off, and both engines'
``2 * lanes`` multipliers work on every phase by splitting each layer's input
dimension in two (partial sums added at the end of a pass), so every pass
takes ``ceil((n_in + 1) / 2)`` beats plus one add cycle and the gradient and
error-propagation phases likewise halve; pipeline overheads are those of the
trainer.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .files import write_atomic
from .gateware.cycles import CycleModel
from .gateware.layout import TrainerConfig

__all__ = [
    "SweepError",
    "SweepInterrupted",
    "SweepPoint",
    "SweepSettings",
    "run_point",
    "sweep",
    "wide_datapath_cycles",
]

#: The authors' C/OpenMP implementation on a CPU, two threads, MNIST 784-16-16-10
#: (figure given in the project's experiment issue, measured on this class of machine).
AUTHORS_C_SAMPLES_PER_SECOND = 21_000
#: seconds to wait for a running scheduler (``--scheduler``) before giving up
SCHEDULER_TIMEOUT = 5


class SweepError(Exception):
    """A sweep that cannot start or resume (one line)."""


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sweep; ``records`` are the finished runs (written to the results files)."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(records)} runs finished")
        self.records = records


@dataclass(frozen=True)
class SweepSettings:
    """Everything but the grid axes that changes a run's result: one sweep folder holds one setting.

    ``layers`` ``None`` means the dataset's inputs, then 16, 16, 10; ``train``
    and ``test`` ``None`` mean :func:`~specbp_rtl.data.load_dataset`'s defaults;
    ``numerics`` is ``None`` for the float backend (it has no formats).
    """

    backend: str = "fixed"
    epochs: int = 10
    dataset: str = "digits"
    data: str | None = None
    train: int | None = None
    test: int | None = None
    layers: tuple[int, ...] | None = None
    lanes: int = 16
    numerics: str | None = "standard"
    batch: int = 15
    lr: float = 0.01
    clip: float = 5.0
    slope: float = 0.01

    def train_config(
        self, threshold: float, metric: str, seed: int, pipeline: bool = False, inputs: int | None = None
    ) -> TrainConfig:
        """The run configuration of one grid point."""
        layers = self.layers or ((inputs or (784 if self.dataset == "mnist" else 64)), 16, 16, 10)
        return TrainConfig(
            layers=tuple(layers),
            batch=self.batch,
            lr=self.lr,
            clip=self.clip,
            slope=self.slope,
            threshold=threshold,
            metric=metric,
            seed=seed,
            pipeline=pipeline,
        )

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["layers"] = None if self.layers is None else list(self.layers)
        return d


@dataclass(frozen=True)
class SweepPoint:
    threshold: float
    metric: str
    seed: int
    #: the pipelined equal-multiplier baseline (threshold 0)
    pipeline: bool = False

    @property
    def key(self) -> str:
        if self.pipeline:
            return f"pipelined_s{self.seed}"
        metric = "off" if self.threshold == 0 else self.metric
        return f"t{self.threshold:g}_{metric}_s{self.seed}"


def wide_datapath_cycles(cfg: TrainerConfig) -> float:
    """Cycles per sequential step of the modelled wide-datapath design (see module docstring)."""
    model = CycleModel(cfg)
    half_f = sum(cfg.passes(lay) * (math.ceil((cfg.n_in(lay) + 1) / 2) + 1) for lay in range(cfg.n_layers))
    full_f = sum(cfg.words(lay) for lay in range(cfg.n_layers))
    half_b = half_f + sum(cfg.passes(lay) * math.ceil(cfg.n_in(lay) / 2) for lay in range(1, cfg.n_layers))
    full_b = full_f + sum(cfg.passes(lay) * cfg.n_in(lay) for lay in range(1, cfg.n_layers))
    forward = model.forward - full_f + half_f
    backward = model.backward - full_b + half_b
    return forward + backward + 4


@lru_cache(maxsize=4)
def _dataset(dataset: str, data: str | None, train: int | None, test: int | None):
    from .data import load_dataset

    return load_dataset(dataset, data, train, test)


def run_point(point: SweepPoint, settings: SweepSettings) -> dict[str, Any]:
    """Train one grid point (runs in a Dask worker) and add the cycle figures."""
    from .sim.runner import run_training

    ds = _dataset(settings.dataset, settings.data, settings.train, settings.test)
    cfg = settings.train_config(point.threshold, point.metric, point.seed, point.pipeline, inputs=ds.inputs)
    lanes = settings.lanes
    record = run_training(
        settings.backend, cfg, ds, settings.epochs, lanes=lanes, numerics=settings.numerics or "standard"
    ).as_json()
    from .numerics import numerics_preset

    tcfg = TrainerConfig(train=cfg, lanes=lanes, numerics=numerics_preset(settings.numerics or "standard"))
    model = CycleModel(tcfg)
    modelled = model.run_total(record, cfg.pipeline)
    if "cycles" not in record:
        record["cycles"] = modelled
        record["cycles_source"] = "model"
    else:
        record["cycles_source"] = "counters"
        record["cycles_model"] = modelled
    steps = max(record["steps"], 1)
    record["cycles_per_sample"] = record["cycles"] / steps
    base = model.total(steps, 0, 0, record["updates"]) / steps
    record["baseline_cycles_per_sample"] = base
    record["wide_model_cycles_per_sample"] = wide_datapath_cycles(tcfg) + 1 + record["updates"] * model.update / steps
    record["lanes"] = lanes
    record["key"] = point.key
    record["sweep_settings"] = settings.as_dict()
    return record


def _grid(thresholds: list[float], metrics: list[str], seeds: list[int]) -> list[SweepPoint]:
    points, keys = [], set()
    for threshold in thresholds:
        for metric in metrics:
            for seed in seeds:
                p = SweepPoint(threshold, metrics[0] if threshold == 0 else metric, seed)
                if p.key not in keys:
                    keys.add(p.key)
                    points.append(p)
    points += [SweepPoint(0.0, metrics[0], seed, pipeline=True) for seed in seeds]
    return points


#: record fields that must equal the sweep's settings for a run file to be reused (older run files have no
#: ``sweep_settings``)
_RECORD_FIELDS = {
    "backend": "backend",
    "epochs": "epochs",
    "dataset": "dataset",
    "batch": "batch",
    "lr": "lr",
    "clip": "clip",
    "slope": "slope",
    "numerics": "numerics",
    "lanes": "lanes",
}


def _mismatch(have: dict[str, Any], want: dict[str, Any]) -> str | None:
    """The first setting in which ``have`` differs from ``want``, as text (``None``: they agree)."""
    for name, value in want.items():
        if name in have and have[name] != value:
            return f"{name} {have[name]!r} (this sweep: {value!r})"
    return None


def _load_run(path: Path, point: SweepPoint, settings: SweepSettings) -> dict[str, Any] | None:
    """A finished run's record, ``None`` (with a one-line note) when its file is corrupt."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or record.get("key") != point.key or "accuracy_per_epoch" not in record:
            raise ValueError("not a run record of this grid point")
    except (OSError, ValueError) as exc:
        print(f"sweep: {path} is corrupt ({str(exc).splitlines()[0]}); running {point.key} again")
        return None
    want = settings.as_dict()
    have = record.get("sweep_settings")
    if have is None:  # a run file of an older version: compare the record's own fields
        have = {s: record.get(r) for r, s in _RECORD_FIELDS.items() if r in record}
        want = {k: v for k, v in want.items() if k in have}
    diff = _mismatch(have, want)
    if diff:
        raise SweepError(f"{path.parent.parent}: holds runs with {diff}; use another --out for these settings")
    return record


@contextlib.contextmanager
def _quiet_dask():
    """Dask's own logging at ERROR: its start-up and shutdown chatter is not the user's business."""
    loggers = [logging.getLogger(name) for name in ("distributed", "dask", "tornado", "asyncio")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _client(scheduler: str | None, workers: int):
    """``(client, cluster or None)``; an unreachable scheduler is a :class:`SweepError` after a short wait."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout=SCHEDULER_TIMEOUT), None
        except (OSError, ValueError, TypeError) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SweepError(
                f"--scheduler {scheduler}: cannot connect within {SCHEDULER_TIMEOUT} s ({reason})"
            ) from None
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.CRITICAL
    )
    return Client(cluster), cluster


def sweep(
    thresholds: list[float],
    metrics: list[str],
    seeds: list[int],
    settings: SweepSettings,
    out: str | Path,
    scheduler: str | None = None,
    workers: int = 2,
    fmax_mhz: float | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the grid (resuming finished points), write results and plots, return the records.

    ``out`` keeps one setting: ``OUT/sweep.json`` records ``settings``, and a
    sweep with other settings (epochs, backend, data, topology, formats,
    hyper-parameters) is refused with :class:`SweepError` instead of reusing
    runs that do not belong to it. Every run file is written atomically when
    its run finishes; a corrupt one is named and run again. Ctrl-C raises
    :class:`SweepInterrupted` after the results files of the finished runs
    have been written.
    """
    out = Path(out)
    runs = out / "runs"
    manifest = out / "sweep.json"
    if manifest.exists():
        try:
            have = json.loads(manifest.read_text())
        except (OSError, ValueError):
            have = None
        if isinstance(have, dict):
            diff = _mismatch(have, settings.as_dict())
            if diff:
                raise SweepError(f"{out}: holds a sweep with {diff}; use another --out for these settings")
    points = _grid(thresholds, metrics, seeds)
    records: dict[str, dict] = {}
    todo = []
    for p in points:
        f = runs / f"{p.key}.json"
        record = _load_run(f, p, settings) if f.exists() else None
        if record is None:
            todo.append(p)
        else:
            records[p.key] = record
    interrupted = False
    with _quiet_dask():
        client, cluster = _client(scheduler, workers) if todo else (None, None)
        runs.mkdir(parents=True, exist_ok=True)
        write_atomic(manifest, json.dumps(settings.as_dict(), indent=1) + "\n")
        print(
            f"sweep: {len(points)} runs, {len(points) - len(todo)} already done, backend {settings.backend}, "
            f"{settings.epochs} epochs -> {out}"
        )
        if client is not None:
            from dask.distributed import as_completed

            t0 = time.perf_counter()
            bar = None
            try:
                futures = [client.submit(run_point, p, settings, key=f"specbp-{p.key}", pure=False) for p in todo]
                if progress:
                    from tqdm import tqdm

                    bar = tqdm(total=len(futures), desc="sweep", unit="run")
                for future in as_completed(futures):
                    record = future.result()
                    if record["interrupted"]:  # the worker saw the Ctrl-C too: a partial run is not a result
                        raise KeyboardInterrupt
                    write_atomic(runs / f"{record['key']}.json", json.dumps(record, indent=1) + "\n")
                    records[record["key"]] = record
                    if bar:
                        bar.update(1)
            except KeyboardInterrupt:
                interrupted = True
            finally:
                if bar:
                    bar.close()
                with contextlib.suppress(Exception, KeyboardInterrupt):
                    client.close(timeout=SCHEDULER_TIMEOUT)
                if cluster is not None:
                    with contextlib.suppress(Exception, KeyboardInterrupt):
                        cluster.close(timeout=SCHEDULER_TIMEOUT)
            print(f"sweep: {len(records) - (len(points) - len(todo))} runs in {time.perf_counter() - t0:.1f} s")
    ordered = [records[p.key] for p in points if p.key in records]
    if ordered:
        write_results(ordered, out, metrics, fmax_mhz)
    if interrupted:
        raise SweepInterrupted(ordered)
    return ordered


def _pipelined_cycles(records: list[dict]) -> float:
    """Mean cycles per sample of the pipelined equal-multiplier runs (nan when the grid has none)."""
    rs = [r["cycles_per_sample"] for r in records if r.get("pipeline")]
    return float(np.mean(rs)) if rs else float("nan")


def _summary(records: list[dict], metrics: list[str]) -> list[dict[str, Any]]:
    rows = []
    grid = [r for r in records if not r.get("pipeline")]
    base = [r for r in grid if r["threshold"] == 0]
    base_acc = float(np.mean([r["accuracy"] for r in base])) if base else float("nan")
    eqm = _pipelined_cycles(records)
    groups = [
        (
            metric,
            threshold,
            [r for r in grid if r["threshold"] == threshold and (threshold == 0 or r["metric"] == metric)],
        )
        for metric in metrics
        for threshold in sorted({r["threshold"] for r in grid})
    ]
    groups.append(("pipelined", 0.0, [r for r in records if r.get("pipeline")]))
    for group, threshold, rs in groups:
        if not rs:
            continue
        cps = float(np.mean([r["cycles_per_sample"] for r in rs]))
        seq = float(np.mean([r["baseline_cycles_per_sample"] for r in rs]))
        wide = float(np.mean([r["wide_model_cycles_per_sample"] for r in rs]))
        acc = float(np.mean([r["accuracy"] for r in rs]))
        rows.append(
            {
                "group": group,
                "metric": group if group == "pipelined" else (group if threshold else "off"),
                "threshold": threshold,
                "seeds": len(rs),
                "accuracy": acc,
                "accuracy_vs_baseline_pp": 100 * (acc - base_acc),
                "hit_rate": float(np.mean([r["hit_rate"] for r in rs])),
                "cycles_per_sample": cps,
                "saving_vs_sequential": 1 - cps / seq,
                "saving_vs_equal_multiplier": 1 - cps / eqm,
                "saving_vs_wide_model": 1 - cps / wide,
            }
        )
    return rows


def write_results(records: list[dict], out: Path, metrics: list[str], fmax_mhz: float | None) -> None:
    """``results.json``, ``results.csv``, ``summary.csv`` and the PNG plots."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(records, indent=1) + "\n")
    fields = [
        "key",
        "backend",
        "threshold",
        "metric",
        "seed",
        "pipeline",
        "epochs",
        "accuracy",
        "hit_rate",
        "hits",
        "misses",
        "first_sightings",
        "sequential",
        "overlapped",
        "updates",
        "cycles",
        "cycles_source",
        "cycles_per_sample",
        "baseline_cycles_per_sample",
        "wide_model_cycles_per_sample",
        "weights_sha256",
    ]
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=fields + ["accuracy_per_epoch"], extrasaction="ignore")
    w.writeheader()
    for r in records:
        w.writerow(r | {"accuracy_per_epoch": " ".join(f"{a:.4f}" for a in r["accuracy_per_epoch"])})
    write_atomic(out / "results.csv", f.getvalue())
    summary = _summary(records, metrics)
    f = io.StringIO(newline="")
    w = csv.DictWriter(f, fieldnames=list(summary[0]) if summary else ["metric"])
    w.writeheader()
    w.writerows(summary)
    write_atomic(out / "summary.csv", f.getvalue())
    print(
        f"{'metric':9} {'thr':>6} {'acc %':>7} {'d pp':>6} {'hit rate':>8} {'cyc/sample':>10} "
        f"{'vs seq':>7} {'vs eq-mult':>10} {'vs wide':>8}"
    )
    for s in summary:
        print(
            f"{s['metric']:9} {s['threshold']:6.3f} {100 * s['accuracy']:7.2f} {s['accuracy_vs_baseline_pp']:+6.2f} "
            f"{s['hit_rate']:8.4f} {s['cycles_per_sample']:10.1f} {100 * s['saving_vs_sequential']:6.1f}% "
            f"{100 * s['saving_vs_equal_multiplier']:9.1f}% {100 * s['saving_vs_wide_model']:7.1f}%"
        )
    _plots(records, summary, out, metrics, fmax_mhz)


def _plots(records: list[dict], summary: list[dict], out: Path, metrics: list[str], fmax_mhz: float | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eqm = _pipelined_cycles(records)
    records = [r for r in records if not r.get("pipeline")]  # (same weights as the sequential runs)
    thresholds = sorted({r["threshold"] for r in records})
    fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for threshold in thresholds:
            rs = [r for r in records if r["threshold"] == threshold and (threshold == 0 or r["metric"] == metric)]
            if rs:
                acc = 100 * np.mean([r["accuracy_per_epoch"] for r in rs], axis=0)
                ax.plot(range(1, len(acc) + 1), acc, marker=".", label="off" if threshold == 0 else f"{threshold:g}")
        ax.set(title=f"accuracy vs epoch ({metric})", xlabel="epoch", ylabel="test accuracy %")
        ax.legend(title="threshold", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _savefig(fig, out / "accuracy_vs_epoch.png")
    plt.close(fig)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for metric in metrics:
        rows = [s for s in summary if s["group"] == metric]
        ax1.plot([s["threshold"] for s in rows], [s["hit_rate"] for s in rows], marker="o", label=metric)
        ax2.plot([s["threshold"] for s in rows], [s["cycles_per_sample"] for s in rows], marker="o", label=metric)
    base = np.mean([r["baseline_cycles_per_sample"] for r in records]) if records else float("nan")
    if records:
        wide = np.mean([r["wide_model_cycles_per_sample"] for r in records])
        ax2.axhline(base, color="k", ls="--", lw=1, label="sequential baseline")
        if not math.isnan(eqm):
            ax2.axhline(eqm, color="r", ls="-.", lw=1, label="equal-multiplier baseline (pipelined, exact)")
        ax2.axhline(wide, color="gray", ls=":", lw=1, label="wide datapath (model)")
    ax1.set(title="hit rate vs threshold", xlabel="threshold", ylabel="hits / (hits + misses)")
    ax2.set(title="hardware cycles per sample vs threshold", xlabel="threshold", ylabel="cycles / sample")
    for ax in (ax1, ax2):
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    _savefig(fig, out / "hit_rate_and_cycles_vs_threshold.png")
    plt.close(fig)

    if fmax_mhz:
        fig, ax = plt.subplots(figsize=(6, 4))
        for metric in metrics:
            rows = [s for s in summary if s["group"] == metric]
            ax.plot(
                [s["threshold"] for s in rows],
                [fmax_mhz * 1e6 / s["cycles_per_sample"] for s in rows],
                marker="o",
                label=f"FPGA @ {fmax_mhz:g} MHz, {metric}",
            )
        if records:
            ax.axhline(fmax_mhz * 1e6 / base, color="k", ls=":", lw=1, label="FPGA, sequential baseline")
        if not math.isnan(eqm):
            ax.axhline(fmax_mhz * 1e6 / eqm, color="r", ls="-.", lw=1, label="FPGA, equal-multiplier (pipelined)")
        ax.axhline(AUTHORS_C_SAMPLES_PER_SECOND, color="k", ls="--", lw=1, label="authors' C code, 2 threads")
        ax.set(title="modelled training throughput", xlabel="threshold", ylabel="samples / s")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        _savefig(fig, out / "throughput.png")
        plt.close(fig)


def _savefig(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_atomic(path, buf.getvalue())
