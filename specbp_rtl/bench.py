"""Benchmarks: ``specbp bench golden``.

Trains the float reference and the fixed golden model over a grid of
thresholds and seeds and prints one row per run (accuracy, hit rate, samples
per second), then the comparisons the project tracks: fixed minus float
accuracy per threshold (mean over seeds) and speculative minus baseline
accuracy. Timings are single-process wall-clock training time (testing
excluded); run under ``taskset -c 0`` for a strict one-core figure.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import numpy as np

from .config import TrainConfig
from .data import load_dataset

__all__ = ["bench_golden"]

THRESHOLDS = (0.0, 0.1, 0.25)


def bench_golden(args: argparse.Namespace) -> int:
    from .sim.runner import run_training

    if args.data:
        ds = load_dataset("mnist", args.data, 8000, 2000)
        layers = (784, 16, 16, 10)
    else:
        ds = load_dataset("digits")
        layers = (64, 16, 16, 10)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"# golden-model benchmark: {ds.describe()}, layers {layers}, {args.epochs} epochs, "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    print(f"{'backend':8} {'thr':>5} {'seed':>4} {'acc %':>7} {'hit rate':>8} {'samples/s':>10}")
    records = []
    for threshold in THRESHOLDS:
        for seed in seeds:
            for backend in ("float", "fixed"):
                cfg = TrainConfig(layers=layers, threshold=threshold, seed=seed)
                r = run_training(backend, cfg, ds, args.epochs).as_json()
                records.append(r)
                print(f"{backend:8} {threshold:5.2f} {seed:4d} {100 * r['accuracy']:7.2f} "
                      f"{r['hit_rate']:8.4f} {r['samples_per_second']:10.0f}", flush=True)

    def mean_acc(backend: str, threshold: float) -> float:
        return float(np.mean([r["accuracy"] for r in records if r["backend"] == backend
                              and r["threshold"] == threshold]))

    print()
    for threshold in THRESHOLDS:
        fx, fl = mean_acc("fixed", threshold), mean_acc("float", threshold)
        print(f"threshold {threshold:.2f}: float {100 * fl:.2f}%  fixed {100 * fx:.2f}%  "
              f"fixed - float {100 * (fx - fl):+.2f} pp (mean of {len(seeds)} seeds)")
    for backend in ("float", "fixed"):
        base = mean_acc(backend, 0.0)
        for threshold in THRESHOLDS[1:]:
            diff = 100 * (mean_acc(backend, threshold) - base)
            print(f"{backend}: threshold {threshold:.2f} - baseline {diff:+.2f} pp")
    for backend in ("float", "fixed"):
        sps = [r["samples_per_second"] for r in records if r["backend"] == backend]
        print(f"{backend}: {np.median(sps):.0f} samples/s (median of {len(sps)} runs)")
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    return 0
