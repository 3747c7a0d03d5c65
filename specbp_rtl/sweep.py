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

import csv
import json
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .config import TrainConfig
from .gateware.cycles import CycleModel
from .gateware.layout import TrainerConfig

__all__ = ["SweepPoint", "run_point", "sweep", "wide_datapath_cycles"]

#: The authors' C/OpenMP implementation on a CPU, two threads, MNIST 784-16-16-10
#: (figure given in the project's experiment issue, measured on this class of machine).
AUTHORS_C_SAMPLES_PER_SECOND = 21_000


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
def _dataset(data: str | None, train: int, test: int):
    from .data import load_dataset

    if data:
        return load_dataset("mnist", data, train, test)
    return load_dataset("digits")


def run_point(point: SweepPoint, backend: str, epochs: int, data: str | None, train: int, test: int,
              lanes: int) -> dict[str, Any]:
    """Train one grid point (runs in a Dask worker) and add the cycle figures."""
    from .sim.runner import run_training

    ds = _dataset(data, train, test)
    layers = (ds.inputs, 16, 16, 10)
    cfg = TrainConfig(layers=layers, threshold=point.threshold, metric=point.metric, seed=point.seed,
                      pipeline=point.pipeline)
    record = run_training(backend, cfg, ds, epochs, lanes=lanes).as_json()
    tcfg = TrainerConfig(train=cfg, lanes=lanes)
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


def sweep(thresholds: list[float], metrics: list[str], seeds: list[int], epochs: int, backend: str,
          out: str | Path, data: str | None = None, train: int = 8000, test: int = 2000, lanes: int = 16,
          scheduler: str | None = None, workers: int = 2, fmax_mhz: float | None = None,
          progress: bool = True) -> list[dict[str, Any]]:
    """Run the grid (resuming finished points), write results and plots, return the records."""
    out = Path(out)
    runs = out / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    points = _grid(thresholds, metrics, seeds)
    records: dict[str, dict] = {}
    todo = []
    for p in points:
        f = runs / f"{p.key}.json"
        if f.exists():
            records[p.key] = json.loads(f.read_text())
        else:
            todo.append(p)
    print(f"sweep: {len(points)} runs, {len(points) - len(todo)} already done, backend {backend}, "
          f"{epochs} epochs -> {out}")
    if todo:
        from dask.distributed import Client, LocalCluster, as_completed

        t0 = time.perf_counter()
        if scheduler:
            client, cluster = Client(scheduler), None
        else:
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=":0")
            client = Client(cluster)
        try:
            futures = [client.submit(run_point, p, backend, epochs, data, train, test, lanes, key=f"specbp-{p.key}",
                                     pure=False) for p in todo]
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=len(futures), desc="sweep", unit="run")
            for future in as_completed(futures):
                record = future.result()
                (runs / f"{record['key']}.json").write_text(json.dumps(record, indent=1) + "\n")
                records[record["key"]] = record
                if bar:
                    bar.update(1)
            if bar:
                bar.close()
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        print(f"sweep: {len(todo)} runs in {time.perf_counter() - t0:.1f} s")
    ordered = [records[p.key] for p in points]
    write_results(ordered, out, metrics, fmax_mhz)
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
    groups = [(metric, threshold, [r for r in grid if r["threshold"] == threshold
                                   and (threshold == 0 or r["metric"] == metric)])
              for metric in metrics for threshold in sorted({r["threshold"] for r in grid})]
    groups.append(("pipelined", 0.0, [r for r in records if r.get("pipeline")]))
    for group, threshold, rs in groups:
        if not rs:
            continue
        cps = float(np.mean([r["cycles_per_sample"] for r in rs]))
        seq = float(np.mean([r["baseline_cycles_per_sample"] for r in rs]))
        wide = float(np.mean([r["wide_model_cycles_per_sample"] for r in rs]))
        acc = float(np.mean([r["accuracy"] for r in rs]))
        rows.append({
            "group": group, "metric": group if group == "pipelined" else (group if threshold else "off"),
            "threshold": threshold, "seeds": len(rs),
            "accuracy": acc, "accuracy_vs_baseline_pp": 100 * (acc - base_acc),
            "hit_rate": float(np.mean([r["hit_rate"] for r in rs])),
            "cycles_per_sample": cps, "saving_vs_sequential": 1 - cps / seq,
            "saving_vs_equal_multiplier": 1 - cps / eqm, "saving_vs_wide_model": 1 - cps / wide,
        })
    return rows


def write_results(records: list[dict], out: Path, metrics: list[str], fmax_mhz: float | None) -> None:
    """``results.json``, ``results.csv``, ``summary.csv`` and the PNG plots."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(records, indent=1) + "\n")
    fields = ["key", "backend", "threshold", "metric", "seed", "pipeline", "epochs", "accuracy", "hit_rate", "hits",
              "misses", "first_sightings", "sequential", "overlapped", "updates", "cycles", "cycles_source",
              "cycles_per_sample", "baseline_cycles_per_sample", "wide_model_cycles_per_sample", "weights_sha256"]
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields + ["accuracy_per_epoch"], extrasaction="ignore")
        w.writeheader()
        for r in records:
            w.writerow(r | {"accuracy_per_epoch": " ".join(f"{a:.4f}" for a in r["accuracy_per_epoch"])})
    summary = _summary(records, metrics)
    with open(out / "summary.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summary[0]) if summary else ["metric"])
        w.writeheader()
        w.writerows(summary)
    print(f"{'metric':9} {'thr':>6} {'acc %':>7} {'d pp':>6} {'hit rate':>8} {'cyc/sample':>10} "
          f"{'vs seq':>7} {'vs eq-mult':>10} {'vs wide':>8}")
    for s in summary:
        print(f"{s['metric']:9} {s['threshold']:6.3f} {100 * s['accuracy']:7.2f} {s['accuracy_vs_baseline_pp']:+6.2f} "
              f"{s['hit_rate']:8.4f} {s['cycles_per_sample']:10.1f} {100 * s['saving_vs_sequential']:6.1f}% "
              f"{100 * s['saving_vs_equal_multiplier']:9.1f}% {100 * s['saving_vs_wide_model']:7.1f}%")
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
    fig.savefig(out / "accuracy_vs_epoch.png", dpi=110)
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
    fig.savefig(out / "hit_rate_and_cycles_vs_threshold.png", dpi=110)
    plt.close(fig)

    if fmax_mhz:
        fig, ax = plt.subplots(figsize=(6, 4))
        for metric in metrics:
            rows = [s for s in summary if s["group"] == metric]
            ax.plot([s["threshold"] for s in rows], [fmax_mhz * 1e6 / s["cycles_per_sample"] for s in rows],
                    marker="o", label=f"FPGA @ {fmax_mhz:g} MHz, {metric}")
        if records:
            ax.axhline(fmax_mhz * 1e6 / base, color="k", ls=":", lw=1, label="FPGA, sequential baseline")
        if not math.isnan(eqm):
            ax.axhline(fmax_mhz * 1e6 / eqm, color="r", ls="-.", lw=1, label="FPGA, equal-multiplier (pipelined)")
        ax.axhline(AUTHORS_C_SAMPLES_PER_SECOND, color="k", ls="--", lw=1, label="authors' C code, 2 threads")
        ax.set(title="modelled training throughput", xlabel="threshold", ylabel="samples / s")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / "throughput.png", dpi=110)
        plt.close(fig)
