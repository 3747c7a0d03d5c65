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
import sys

import numpy as np

from .config import TrainConfig
from .data import load_dataset
from .files import write_atomic

__all__ = ["bench_golden"]

THRESHOLDS = (0.0, 0.1, 0.25)


def _bench_data(args: argparse.Namespace):
    """MNIST t10k split (784-16-16-10) with ``--data``, else the embedded digits (64-16-16-10)."""
    if args.data:
        return load_dataset("mnist", args.data, 8000, 2000), (784, 16, 16, 10)
    return load_dataset("digits"), (64, 16, 16, 10)


def bench_golden(args: argparse.Namespace) -> int:
    from .sim.runner import run_training

    ds, layers = _bench_data(args)
    seeds = list(args.seeds)
    print(
        f"# golden-model benchmark: {ds.describe()}, layers {layers}, {args.epochs} epochs, "
        f"{platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    print(f"{'backend':8} {'thr':>5} {'seed':>4} {'acc %':>7} {'hit rate':>8} {'samples/s':>10}")
    records = []
    for threshold in THRESHOLDS:
        for seed in seeds:
            for backend in ("float", "fixed"):
                cfg = TrainConfig(layers=layers, threshold=threshold, seed=seed)
                r = run_training(backend, cfg, ds, args.epochs).as_json()
                records.append(r)
                print(
                    f"{backend:8} {threshold:5.2f} {seed:4d} {100 * r['accuracy']:7.2f} "
                    f"{r['hit_rate']:8.4f} {r['samples_per_second']:10.0f}",
                    flush=True,
                )
                if r["interrupted"]:  # Ctrl-C: keep the runs so far (the last one partial)
                    _save(args.json, records)
                    print(f"interrupted: {len(records)} runs recorded (the last one partial)", file=sys.stderr)
                    return 130

    def mean_acc(backend: str, threshold: float) -> float:
        return float(
            np.mean([r["accuracy"] for r in records if r["backend"] == backend and r["threshold"] == threshold])
        )

    print()
    for threshold in THRESHOLDS:
        fx, fl = mean_acc("fixed", threshold), mean_acc("float", threshold)
        print(
            f"threshold {threshold:.2f}: float {100 * fl:.2f}%  fixed {100 * fx:.2f}%  "
            f"fixed - float {100 * (fx - fl):+.2f} pp (mean of {len(seeds)} seeds)"
        )
    for backend in ("float", "fixed"):
        base = mean_acc(backend, 0.0)
        for threshold in THRESHOLDS[1:]:
            diff = 100 * (mean_acc(backend, threshold) - base)
            print(f"{backend}: threshold {threshold:.2f} - baseline {diff:+.2f} pp")
    for backend in ("float", "fixed"):
        sps = [r["samples_per_second"] for r in records if r["backend"] == backend]
        print(f"{backend}: {np.median(sps):.0f} samples/s (median of {len(sps)} runs)")
    _save(args.json, records)
    return 0


def _save(path: str | None, records: object) -> None:
    """Write the bench records atomically (the path was checked before the bench started)."""
    if path is not None:
        write_atomic(path, json.dumps(records, indent=2) + "\n")


def bench_trainer(args: argparse.Namespace) -> int:
    """Cycle figures of the Trainer RTL from its hardware counters (Amaranth simulator).

    Runs ``--samples`` MNIST (or digits) samples at threshold 0 (baseline), at
    0.25 (paper metric: every step after a label's first sighting hits) and in
    the pipelined equal-multiplier mode, and reports steady-state cycles per
    sample over the second half of the run.
    """
    import time

    from .gateware.layout import TrainerConfig
    from .record import hardware_fields
    from .sim.pysim import PysimTrainer

    ds, layers = _bench_data(args)
    n = args.samples
    half = n // 2
    x, y = ds.train_x[:n], ds.train_y[:n]
    macs_fwd = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
    macs_bwd = macs_fwd + sum(a * b for a, b in zip(layers[1:-1], layers[2:]))
    macs = macs_fwd + macs_bwd
    print(
        f"# trainer benchmark: layers {layers}, {args.lanes} lanes/engine, {n} samples "
        f"(steady state over the last {n - half}), Amaranth simulator, {platform.python_version()}"
    )
    rows = {}
    for mode, threshold in ((0.0, 0.0), (0.25, 0.25), ("pipelined", 0.0)):
        train = TrainConfig(layers=layers, threshold=threshold, pipeline=mode == "pipelined")
        cfg = TrainerConfig(train=train, lanes=args.lanes)
        hw = PysimTrainer(cfg)
        t0 = time.perf_counter()
        hw.run([(x[:half], y[:half], False, True), (x[half:], y[half:], False, False)])
        seconds = time.perf_counter() - t0
        if hw.interrupted:  # Ctrl-C: keep the modes measured so far
            _save(args.json, {str(k): v for k, v in rows.items()})
            print(f"interrupted: {len(rows)} modes recorded", file=sys.stderr)
            return 130
        c_all = hw.counters
        f = hardware_fields(c_all)
        rows[mode] = f
        first = hw.snapshot_counters[0]
        steady = (c_all["cycles"] - first["cycles"]) / (c_all["steps"] - first["steps"])
        f["steady_cycles_per_sample"] = round(steady, 1)
        f["sim_cycles_per_second"] = round(c_all["cycles"] / seconds, 1)
        name = "pipelined" if mode == "pipelined" else f"threshold {threshold:.2f}"
        print(
            f"{name}: steady {steady:.1f} cycles/sample, forward {f['forward_cycles']:.1f}, "
            f"backward {f['backward_cycles']:.1f} (cycles/sample), step cycles {f['cycles_per_step']}, "
            f"{f['update_cycles'] / max(f['updates'], 1):.0f} cycles/update, "
            f"sim {f['sim_cycles_per_second']:.0f} cycles/s"
        )
    base, spec = rows[0.0], rows[0.25]
    seq = base["cycles_per_step"]["sequential"]
    hit = spec["cycles_per_step"]["hit"]
    fwd, bwd = spec["forward_cycles"], spec["backward_cycles"]
    print()
    print(
        f"MACs per sample: {macs} -> {macs / args.lanes:.0f} cycles at {args.lanes} lanes; "
        f"baseline steady {base['steady_cycles_per_sample']:.0f} = "
        f"{base['steady_cycles_per_sample'] / (macs / args.lanes):.3f} x MACs/lanes (target <= 1.2)"
    )
    if hit and seq:
        both = base["forward_cycles"] + base["backward_cycles"]
        print(
            f"hit step {hit:.0f} cycles = {hit / max(fwd, bwd):.3f} x max(forward {fwd:.0f}, backward {bwd:.0f}) "
            f"(target <= 1.15); sequential step {seq:.0f} ({seq / both:.3f} x forward+backward); "
            f"hit step is {100 * (1 - hit / seq):.1f}% shorter (target >= 40%)"
        )
    ratio = spec["steady_cycles_per_sample"] / base["steady_cycles_per_sample"]
    print(f"steady cycles/sample at 0.25 / baseline = {ratio:.3f} (target <= 0.6)")
    pipe = rows["pipelined"]["steady_cycles_per_sample"]
    print(
        f"pipelined equal-multiplier baseline: steady {pipe:.0f} cycles/sample = "
        f"{pipe / base['steady_cycles_per_sample']:.3f} x baseline; 0.25 / pipelined = "
        f"{spec['steady_cycles_per_sample'] / pipe:.3f}"
    )
    _save(args.json, {str(k): v for k, v in rows.items()})
    return 0
