#!/usr/bin/env python3
"""Train on the embedded 8x8 digits from Python, the way ``specbp train`` does.

:func:`specbp_rtl.sim.run_training` trains the bit-exact fixed-point golden
model (``"fixed"``; ``"float"``, ``"pysim"`` and ``"rtl"`` take the same
arguments) on :func:`specbp_rtl.data.load_dataset` ``("digits")`` and
returns the run record. The script prints the accuracy after every epoch,
the hit rate and the weights hash, and checks two things (exit status 1 if
either fails):

* the record's ``weights_sha256`` equals that of a
  :class:`~specbp_rtl.model.SpeculativeTrainer` driving a
  :class:`~specbp_rtl.model.FixedEngine` directly for the same epochs;
* the final accuracy is at least ``--min-accuracy``.

``--check-rtl N`` also trains the first ``N`` samples on the Trainer RTL in
Amaranth's simulator (``"pysim"``, a few seconds for ``N = 30``) and checks
that its weights hash equals the fixed model's on the same samples.

Run: ``python3 examples/train_from_python.py [--epochs 3] [--threshold 0.1] [--check-rtl 30]``
"""

from __future__ import annotations

import argparse
import sys

from specbp_rtl.config import TrainConfig
from specbp_rtl.data import load_dataset
from specbp_rtl.model import FixedEngine, SpeculativeTrainer
from specbp_rtl.sim import run_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.1, help="speculation threshold (0: off)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--min-accuracy", type=float, default=0.5)
    parser.add_argument(
        "--check-rtl",
        type=int,
        default=0,
        metavar="N",
        help="also train the first N samples on the RTL (pysim) and compare",
    )
    args = parser.parse_args(argv)

    config = TrainConfig(layers=(64, 16, 10), threshold=args.threshold, seed=args.seed)
    dataset = load_dataset("digits")
    print(dataset.describe())
    result = run_training("fixed", config, dataset, epochs=args.epochs)
    for epoch, acc in enumerate(result.accuracy_per_epoch, 1):
        print(f"epoch {epoch}: accuracy {100 * acc:.2f} %")
    print(
        f"hit rate {100 * result.hit_rate:.1f} % ({result.counters.get('hits', 0)} hits, "
        f"{result.counters.get('misses', 0)} misses)"
    )
    print(f"weights_sha256 {result.weights_sha256}")

    failed = False
    trainer = SpeculativeTrainer(FixedEngine(config))
    for _ in range(args.epochs):
        trainer.train_epoch(dataset.train_x, dataset.train_y)
    if trainer.engine.weights_sha256() != result.weights_sha256:
        print(f"MISMATCH: the model driven directly gives weights_sha256 {trainer.engine.weights_sha256()}")
        failed = True
    else:
        print("checked: run_training's weights equal the golden model's, driven directly")
    if result.accuracy < args.min_accuracy:
        print(f"MISMATCH: final accuracy {result.accuracy:.4f} < {args.min_accuracy}")
        failed = True

    if args.check_rtl:
        n = args.check_rtl
        small = load_dataset("digits", train=n, test=10)
        rtl = run_training("pysim", config, small, epochs=1, lanes=4)
        fixed = run_training("fixed", config, small, epochs=1)
        if rtl.weights_sha256 != fixed.weights_sha256:
            print(f"MISMATCH: pysim weights_sha256 {rtl.weights_sha256} != fixed {fixed.weights_sha256}")
            failed = True
        else:
            print(
                f"checked: the Trainer RTL (pysim, 4 lanes) trained {n} samples to the fixed model's weights "
                f"({rtl.weights_sha256[:16]}...)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
