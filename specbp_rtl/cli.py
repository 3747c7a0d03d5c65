"""The ``specbp`` command line.

``specbp train``  trains on a backend and prints (or writes as JSON) the result;
``specbp bench``  prints the performance table of the golden models.

Errors in arguments or data files print one line and exit with status 2;
nothing prints a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .config import METRICS, ConfigError, TrainConfig, parse_layers
from .data import DATASETS, DataError, load_dataset
from .files import OutputError, check_output_dir, check_output_file, write_atomic
from .numerics import NUMERICS, numerics_preset

__all__ = ["main"]

DEFAULT_LAYERS = {"digits": "64,16,16,10", "mnist": "784,16,16,10"}


class UsageError(Exception):
    """A bad argument; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise UsageError(f"{self.prog}: error: {message}")


def _int_at_least(low: int, what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_nonneg_int = _int_at_least(0, "an integer >= 0")


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        choices=DATASETS,
        default=None,
        help="digits (embedded 8x8, the default without --data) or mnist (needs --data)",
    )
    p.add_argument("--data", metavar="DIR", help="folder with MNIST IDX files (train-*/t10k-*, raw or .gz)")
    p.add_argument(
        "--train",
        type=_positive_int,
        metavar="N",
        help="number of training samples (MNIST with only t10k files: split 8000/2000 by default)",
    )
    p.add_argument("--test", type=_positive_int, metavar="M", help="number of test samples")


def _add_model_args(p: argparse.ArgumentParser, grid: bool = False) -> None:
    """Topology and hyper-parameters (``grid``: the sweep gives threshold, metric and seed as lists)."""
    if not grid:
        p.add_argument(
            "--threshold",
            type=_nonneg_float,
            default=0.0,
            metavar="T",
            help="speculation threshold; 0 turns speculation off (default 0)",
        )
        p.add_argument("--metric", choices=METRICS, default="mean-abs", help="speculation distance (default mean-abs)")
        p.add_argument(
            "--seed", type=_nonneg_int, default=1, metavar="S", help="weight-initialisation seed (default 1)"
        )
        p.add_argument(
            "--pipeline",
            action="store_true",
            help="equal-multiplier baseline: speculation off, sample i's backward pass overlaps "
            "sample i+1's forward pass (exactly the sequential result; needs --threshold 0)",
        )
    p.add_argument(
        "--layers",
        metavar="L",
        help="layer widths, e.g. 784,16,16,10 (default: 64,16,16,10 on digits, 784,16,16,10 on mnist)",
    )
    p.add_argument("--batch", type=_positive_int, default=15, help="summed gradients per update (default 15)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient clip bound (default 5)")
    p.add_argument("--slope", type=float, default=0.01, help="leaky-ReLU slope (default 0.01)")


def _add_serial_args(p: argparse.ArgumentParser, required: bool) -> None:
    """``--port`` and ``--baud`` of a board's UART (``required``: the command always talks to a board)."""
    board = "" if required else "board: "
    p.add_argument("--port", required=required, help=f"{board}serial port, e.g. /dev/ttyUSB1")
    p.add_argument(
        "--baud", type=_positive_int, default=1_000_000, help=f"{board}baud rate of the bitstream (default 1000000)"
    )


def _add_record_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--json`` (``what`` the record is) and ``--quiet`` of a command that trains."""
    p.add_argument("--json", metavar="FILE", help=f"write {what} as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_epochs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epochs", type=_positive_int, default=10, metavar="E", help="epochs (default 10)")


def _add_numerics_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--numerics",
        choices=list(NUMERICS),
        default="standard",
        help="number formats of the fixed-point backends (default standard; lean: the iCEBreaker's)",
    )


def _dataset_name(args: argparse.Namespace) -> str:
    """The dataset the options name; ``--data`` with ``--dataset digits`` is a contradiction."""
    if args.dataset == "digits" and args.data is not None:
        raise UsageError(
            f"specbp {args.command}: error: --data {args.data}: the digits dataset is embedded; "
            f"--data needs --dataset mnist (or no --dataset)"
        )
    return args.dataset or ("mnist" if args.data is not None else "digits")


def _layers(args: argparse.Namespace, dataset: str) -> tuple[int, ...]:
    return parse_layers(args.layers if args.layers is not None else DEFAULT_LAYERS[dataset])


def _config(args: argparse.Namespace) -> tuple[TrainConfig, str]:
    dataset = _dataset_name(args)
    layers = _layers(args, dataset)
    cfg = TrainConfig(
        layers=layers,
        batch=args.batch,
        lr=args.lr,
        clip=args.clip,
        slope=args.slope,
        threshold=args.threshold,
        metric=args.metric,
        seed=args.seed,
        pipeline=args.pipeline,
    )
    _check_memory(cfg)
    return cfg, dataset


#: the models hold about this many copies of the parameters (weights, operands, gradient banks, updates),
#: 8 bytes each
_BYTES_PER_PARAMETER = 8 * 6


def _check_memory(cfg: TrainConfig) -> None:
    """Refuse a network whose parameters cannot fit this machine's memory (before numpy fails half-way)."""
    params = sum((a + 1) * b for a, b in zip(cfg.layers[:-1], cfg.layers[1:]))
    need = params * _BYTES_PER_PARAMETER
    try:
        have = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):  # not POSIX: assume 16 GiB
        have = 16 << 30
    if need > have // 2:
        raise ConfigError(
            f"layers: {','.join(map(str, cfg.layers))} has {params:,} parameters, about "
            f"{need / 2**30:.1f} GiB to train; this machine has {have / 2**30:.1f} GiB"
        )


def _check_batch(cfg: TrainConfig, ds) -> None:
    n = len(ds.train_y)
    if cfg.batch > n:
        raise ConfigError(
            f"batch: {cfg.batch} is more than the {n} training samples of an epoch: the update "
            f"(after step i when i % batch == 0, i restarting every epoch) would never run"
        )


def _progress(enabled: bool, epochs: int):
    if not enabled:
        return None
    from tqdm import tqdm

    bars: list = []

    def start(epoch: int, total: int):
        if bars:
            bars.pop().close()
        bar = tqdm(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="sample", leave=False, file=sys.stderr)
        bars.append(bar)
        return bar.update

    start.close = lambda: bars and bars.pop().close()  # type: ignore[attr-defined]
    return start


def _write_record(option: str, path: str | None, record: object) -> bool:
    """Write a JSON record atomically; on failure print one line and the record itself (nothing is lost)."""
    if path is None:
        return True
    text = json.dumps(record, indent=2) + "\n"
    try:
        write_atomic(path, text)
    except OSError as exc:
        print(
            f"specbp: error: {option} {path}: cannot write ({exc.strerror}); the record follows on stdout",
            file=sys.stderr,
        )
        print(text, end="")
        return False
    return True


def _simulate(run, progress):
    """``run()``, with a missing tool or a failed simulation as one line (``None``); closes the progress bar."""
    try:
        return run()
    except Exception as exc:
        from .sim.verilator import SimulationError, ToolError

        if isinstance(exc, (ToolError, SimulationError)):
            print(f"specbp: error: {exc}".splitlines()[0], file=sys.stderr)
            return None
        raise
    finally:
        if progress is not None:
            progress.close()


def _cmd_train(args: argparse.Namespace) -> int:
    from .sim.runner import BACKENDS, run_training

    cfg, dataset_name = _config(args)
    if args.backend not in BACKENDS:
        raise UsageError(
            f"specbp train: error: backend {args.backend!r} is not available (choose from {', '.join(BACKENDS)})"
        )
    if args.vcd is not None and args.backend not in ("pysim", "rtl"):
        raise UsageError("specbp train: error: --vcd needs --backend pysim or rtl")
    if args.fst is not None and args.backend != "rtl":
        raise UsageError("specbp train: error: --fst needs --backend rtl")
    if args.vcd is not None and args.fst is not None:
        raise UsageError("specbp train: error: give --vcd or --fst, not both")
    start, count = args.trace_samples
    if start < 0 or count < 1:
        raise UsageError(f"specbp train: error: --trace-samples {start} {count}: START must be >= 0 and COUNT >= 1")
    if args.backend != "float":
        numerics_preset(args.numerics).plan(cfg)  # fail early on configs the hardware cannot do
    elif args.numerics != "standard":
        raise UsageError(f"specbp train: error: --numerics {args.numerics}: the float backend has no number formats")
    if args.backend in ("pysim", "rtl"):
        from .gateware.layout import TrainerConfig

        TrainerConfig(train=cfg, lanes=args.lanes, numerics=numerics_preset(args.numerics))  # fail early
    check_output_file("--json", args.json)
    check_output_file("--vcd", args.vcd)
    check_output_file("--fst", args.fst)
    check_output_file("--save", args.save)
    if args.resume is not None and args.init is not None:
        raise UsageError("specbp train: error: give --resume or --init, not both")
    if (args.save or args.resume or args.init) and args.backend not in ("float", "fixed", "rtl"):
        raise UsageError(
            f"specbp train: error: checkpoints (--save, --resume, --init) are not available on the "
            f"{args.backend} backend yet; use rtl or fixed (bit-exact with it)"
        )
    ds = load_dataset(dataset_name, args.data, args.train, args.test)
    _check_batch(cfg, ds)
    if args.resume or args.init:  # a checkpoint that does not fit is refused before any work
        from .checkpoint import load_checkpoint

        load_checkpoint(args.resume or args.init).check_fits(
            cfg,
            None if args.backend == "float" else args.numerics,
            args.backend,
            resume=bool(args.resume),
            dataset=ds if args.resume else None,
        )
    progress = _progress(not args.quiet and sys.stderr.isatty(), args.epochs)
    result = _simulate(
        lambda: run_training(
            args.backend,
            cfg,
            ds,
            args.epochs,
            progress,
            lanes=args.lanes,
            vcd=args.vcd,
            fst=args.fst,
            trace_samples=tuple(args.trace_samples),
            numerics=args.numerics,
            save=args.save,
            resume=args.resume,
            init=args.init,
        ),
        progress,
    )
    if result is None:
        return 2
    record = result.as_json()
    _print_summary(record, ds.describe())
    trace = record.get("trace")
    if trace:
        wave = trace.get("vcd") or trace.get("fst")
        if trace.get("bytes"):
            print(f"wrote {wave} ({trace['bytes'] / 1e6:.1f} MB, samples {trace['samples']}) and {trace['gtkw']}")
        else:
            print("no waveform written: the trace window starts after the run's last sample", file=sys.stderr)
    written = _write_record("--json", args.json, record)
    if "checkpoint_error" in record:
        print(f"specbp: error: {record['checkpoint_error']}", file=sys.stderr)
    if result.interrupted:
        print(
            f"interrupted after {record['samples_trained']} samples: the record covers "
            f"{record['epochs_completed']} completed epochs",
            file=sys.stderr,
        )
        return 130
    return 0 if written and "checkpoint_error" not in record else 1


def _cmd_demo(args: argparse.Namespace) -> int:
    """The main job: train the embedded digits on the RTL (Verilator) and check it against the golden model."""
    from .sim.runner import run_training

    check_output_file("--json", args.json)
    ds = load_dataset("digits")
    cfg = TrainConfig(layers=parse_layers(DEFAULT_LAYERS["digits"]), threshold=args.threshold)
    progress = _progress(not args.quiet and sys.stderr.isatty(), args.epochs)
    print(
        f"training {ds.describe()}, 64-16-16-10, {args.epochs} epochs, speculation threshold {args.threshold:g}, "
        f"on the Trainer RTL in Verilator (the first run builds it, then it is cached)",
        flush=True,
    )
    rtl = _simulate(lambda: run_training("rtl", cfg, ds, args.epochs, progress), progress)
    if rtl is None:
        return 2
    if rtl.interrupted:
        print("specbp: interrupted", file=sys.stderr)
        return 130
    fixed = run_training("fixed", cfg, ds, args.epochs)
    if fixed.interrupted:
        print("specbp: interrupted", file=sys.stderr)
        return 130
    r, f = rtl.as_json(), fixed.as_json()
    _print_summary(r, ds.describe())
    keys = ("weights_sha256", "accuracy_per_epoch", "steps", "hits", "misses", "first_sightings", "updates")
    differ = [k for k in keys if r[k] != f[k]]
    written = _write_record("--json", args.json, {"rtl": r, "fixed": f, "bit_identical": not differ})
    if differ:
        print(f"specbp: error: the RTL and the golden model differ in {', '.join(differ)}", file=sys.stderr)
        return 1
    print(
        f"the RTL's weights match the golden model's bit for bit (sha256 {r['weights_sha256'][:16]}), and so do "
        f"the accuracy per epoch and the hit, miss and update counts; the hardware took "
        f"{r['cycles_per_sample']:.0f} cycles per sample ({r['sim_cycles_per_second'] / 1e6:.2f}M simulated "
        f"cycles/s)"
    )
    return 0 if written else 1


def _print_summary(r: dict, data: str) -> None:
    per_epoch = " ".join(f"{100 * a:.2f}" for a in r["accuracy_per_epoch"])
    spec = "off" if r["threshold"] == 0 else f"{r['metric']} <= {r['threshold']}"
    if r.get("pipeline"):
        spec += f" (pipelined: {r['overlapped']} steps overlapped)"
    print(f"backend {r['backend']}  data {data}  layers {','.join(map(str, r['layers']))}  seed {r['seed']}")
    print(
        f"speculation {spec}: steps {r['steps']}  first sightings {r['first_sightings']}  "
        f"hits {r['hits']}  misses {r['misses']}  hit rate {r['hit_rate']:.4f}"
    )
    print(f"accuracy per epoch (%): {per_epoch}")
    if "cycles" in r:
        steps = r["cycles_per_step"]
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        print(
            f"hardware ({r['lanes']} lanes): {r['cycles_per_sample']:.1f} cycles/sample  "
            f"forward {r['forward_cycles']:.1f}  backward {r['backward_cycles']:.1f}  "
            f"step cycles hit {fmt(steps['hit'])} miss {fmt(steps['miss'])} "
            f"sequential {fmt(steps['sequential'])}  sim {r['sim_cycles_per_second']:.0f} cycles/s"
        )
    print(
        f"accuracy {100 * r['accuracy']:.2f}%  in {r['wall_seconds']:.2f} s  "
        f"({r['samples_per_second']:.0f} samples/s)  weights {r['weights_sha256'][:16]}"
    )


def _cmd_infer(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .infer import run_inference

    ck = load_checkpoint(args.weights)
    backend = args.backend or ck.backend
    if backend == "board" and args.port is None:
        raise UsageError("specbp infer: error: --backend board needs --port")
    if args.port is not None and backend != "board":
        raise UsageError("specbp infer: error: --port needs --backend board")
    check_output_file("--json", args.json)
    check_output_file("--png", args.png)
    if args.dataset is None and args.data is None:
        args.dataset = ck.dataset.get("name", "digits")
    ds = load_dataset(_dataset_name(args), args.data, args.train, args.test)
    ck.check_fits(ck.config, None if backend == "float" else ck.numerics, backend, resume=False)
    if backend == "board":
        from .boards.host import BoardError
        from .boards.protocol import ProtocolError, StatusError

        try:
            result = run_inference(ck, backend, ds, port=args.port, baud=args.baud)
        except (BoardError, ProtocolError, StatusError, OSError) as exc:  # a bad port, a board that does not answer
            print(f"specbp: error: board {args.port}: {exc}".splitlines()[0], file=sys.stderr)
            return 2
    else:
        result = _simulate(lambda: run_inference(ck, backend, ds, lanes=args.lanes), None)
        if result is None:
            return 2
    record = result.as_json()
    print(
        f"backend {backend}  data {ds.describe()}  checkpoint {args.weights} "
        f"({ck.epochs_done} epochs, layers {','.join(map(str, ck.config.layers))})"
    )
    print(result.format_confusion())
    print(f"accuracy {100 * result.accuracy:.2f}%  ({len(result.labels)} samples in {result.wall_seconds:.2f} s)")
    written = _write_record("--json", args.json, record)
    if args.png is not None:
        try:
            result.write_png(args.png)
        except (OSError, ImportError) as exc:
            print(f"specbp: error: --png {args.png}: {exc}".splitlines()[0], file=sys.stderr)
            return 1
    return 0 if written else 1


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    check_output_file("--json", args.json)
    if args.what == "blocks":
        from .bench_blocks import bench_blocks

        bench_blocks(args.json)
        return 0
    _dataset_name(args)
    if args.what == "trainer":
        return bench.bench_trainer(args)
    return bench.bench_golden(args)


def _cmd_verilog(args: argparse.Namespace) -> int:
    from amaranth.back import rtlil, verilog

    from .gateware.layout import TrainerConfig
    from .gateware.trainer import Trainer

    if args.board:
        from .boards.top import BOARDS, trainer_config

        spec = BOARDS[args.board]
        if args.numerics is not None and args.numerics != spec.numerics:
            raise UsageError(
                f"specbp verilog: error: --numerics {args.numerics}: the {args.board} trainer uses "
                f"{spec.numerics!r} (leave --numerics out with --board)"
            )
        if args.layers is None:
            args.layers = ",".join(map(str, spec.layers))
    cfg, _ = _config(args)
    check_output_file("-o", args.output)
    if not args.name.isidentifier():
        raise UsageError(f"specbp verilog: error: --name {args.name!r}: a module name must be an identifier")
    if args.board:
        trainer_cfg = trainer_config(args.board, lanes=args.lanes, train=cfg)
    else:
        trainer_cfg = TrainerConfig(
            train=cfg, lanes=args.lanes or 16, numerics=numerics_preset(args.numerics or "standard")
        )
    trainer_cfg.numerics.plan(cfg)
    top = Trainer(trainer_cfg)
    text = (verilog.convert if args.format == "v" else rtlil.convert)(top, name=args.name)
    write_atomic(args.output, text)
    kind = "Verilog" if args.format == "v" else "RTLIL"
    board = f" ({args.board}'s trainer)" if args.board else ""
    print(
        f"wrote {args.output}: {args.name}{board}, layers {','.join(map(str, cfg.layers))}, "
        f"{trainer_cfg.lanes} lanes per engine, initial weights of seed {cfg.seed}, "
        f"{len(text) // 1024} KiB of {kind}"
    )
    return 0


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(not v >= 0 or v != v for v in values):
        raise argparse.ArgumentTypeError(f"thresholds must be >= 0, got {text!r}")
    if len({f"{v:g}" for v in values}) != len(values):  # the run files are named by f"{threshold:g}"
        raise argparse.ArgumentTypeError(f"thresholds repeat (to 6 significant digits): {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"seeds must be integers >= 0, got {text!r}")
    if len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"seeds repeat: {text!r}")
    return values


def _metric_list(text: str) -> list[str]:
    values = text.split(",")
    bad = [v for v in values if v not in METRICS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown metric {bad[0]!r} (choose from {', '.join(METRICS)})")
    return values


def _fmax(text: str) -> float:
    """``--fmax``: a clock in MHz, or a ``specbp build --json`` report whose routed ``fmax_mhz`` is used."""
    try:
        value: object = float(text)
    except ValueError:
        try:
            report = json.loads(Path(text).read_text())
        except (OSError, ValueError) as exc:
            raise argparse.ArgumentTypeError(
                f"neither a number nor a readable build report: {text!r} ({exc})"
            ) from None
        value = report.get("fmax_mhz") if isinstance(report, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"build report {text!r} has no fmax_mhz (the design did not route)")
    if not 0 < value < 10_000:
        raise argparse.ArgumentTypeError(f"must be a clock in MHz, got {value!r}")
    return float(value)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .sweep import SweepError, SweepInterrupted, SweepSettings, sweep

    dataset = _dataset_name(args)
    layers = _layers(args, dataset)
    settings = SweepSettings(
        backend=args.backend,
        epochs=args.epochs,
        dataset=dataset,
        data=None if args.data is None else str(Path(args.data).resolve()),
        train=args.train,
        test=args.test,
        layers=layers,
        lanes=args.lanes,
        numerics=None if args.backend == "float" else args.numerics,
        batch=args.batch,
        lr=args.lr,
        clip=args.clip,
        slope=args.slope,
    )
    if args.backend == "float" and args.numerics != "standard":
        raise UsageError(f"specbp sweep: error: --numerics {args.numerics}: the float backend has no number formats")
    for metric in args.metrics:  # every grid point's configuration, before a cluster starts
        for threshold in args.thresholds:
            for seed in args.seeds:
                cfg = settings.train_config(threshold, metric, seed)
                if args.backend != "float":
                    numerics_preset(args.numerics).plan(cfg)
                if args.backend in ("pysim", "rtl"):
                    from .gateware.layout import TrainerConfig

                    TrainerConfig(train=cfg, lanes=args.lanes, numerics=numerics_preset(args.numerics))
    _check_memory(settings.train_config(0.0, args.metrics[0], args.seeds[0]))
    check_output_dir("--out", args.out)
    ds = load_dataset(dataset, args.data, args.train, args.test)
    _check_batch(settings.train_config(0.0, args.metrics[0], args.seeds[0]), ds)
    try:
        sweep(
            args.thresholds,
            args.metrics,
            args.seeds,
            settings,
            args.out,
            scheduler=args.scheduler,
            workers=args.workers,
            fmax_mhz=args.fmax,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except SweepError as exc:
        print(f"specbp: error: {exc}", file=sys.stderr)
        return 2
    except SweepInterrupted as exc:
        print(
            f"specbp: interrupted: {len(exc.records)} finished runs kept in {args.out} (a rerun resumes)",
            file=sys.stderr,
        )
        return 130
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .boards.build import BuildError, build_board, format_report

    layers = parse_layers(args.layers) if args.layers is not None else None
    if args.clock is not None and not 0 < args.clock < 10_000:
        raise UsageError(f"specbp build: error: --clock {args.clock:g}: must be a clock in MHz")
    check_output_file("--json", args.json)
    check_output_dir("--out-dir", args.out_dir)
    if args.seeds is not None:
        if args.program:
            raise UsageError("specbp build: error: --seeds builds several placements; program one without --seeds")
        return _build_seeds(args, layers)
    try:
        report = build_board(
            args.board,
            lanes=args.lanes,
            layers=layers,
            program=args.program,
            out_dir=args.out_dir,
            json_path=args.json,
            baud=args.baud,
            clock_mhz=args.clock,
        )
    except BuildError as exc:
        if exc.report:
            print(format_report(exc.report))
        print(f"specbp: error: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


def _build_seeds(args: argparse.Namespace, layers: tuple[int, ...] | None) -> int:
    """``build --seeds N``: place and route with nextpnr seeds 1..N; min and median fmax against the clock."""
    import statistics

    from .boards.build import BuildError, build_board, format_report

    reports: list[dict] = []
    for seed in range(1, args.seeds + 1):
        try:
            report = build_board(
                args.board,
                lanes=args.lanes,
                layers=layers,
                out_dir=str(Path(args.out_dir) / f"seed{seed}"),
                baud=args.baud,
                clock_mhz=args.clock,
                placer_seed=seed,
            )
        except BuildError as exc:
            report = exc.report or {}
            if report.get("fmax_mhz") is None:  # no timing to report (did not fit, a tool failed)
                _write_record("--json", args.json, {"board": args.board, "builds": reports, "error": str(exc)})
                print(f"specbp: error: {exc}".splitlines()[0], file=sys.stderr)
                return 1
        except KeyboardInterrupt:
            _write_record("--json", args.json, {"board": args.board, "builds": reports, "interrupted": True})
            raise
        reports.append(report)
        print(f"seed {seed}: fmax {report['fmax_mhz']:.2f} MHz (clock {report['clock_mhz']:g} MHz)", flush=True)
    fmax = [r["fmax_mhz"] for r in reports]
    clock = reports[0]["clock_mhz"]
    summary = {
        "board": args.board,
        "seeds": list(range(1, args.seeds + 1)),
        "fmax_mhz": fmax,
        "fmax_min_mhz": min(fmax),
        "fmax_median_mhz": statistics.median(fmax),
        "clock_mhz": clock,
        "met_at_median": statistics.median(fmax) >= clock,
        "builds": reports,
    }
    print(format_report(reports[0]))
    print(
        f"fmax over nextpnr seeds {summary['seeds']}: min {summary['fmax_min_mhz']:.2f}, median "
        f"{summary['fmax_median_mhz']:.2f} MHz; clock {clock:g} MHz "
        f"{'met' if summary['met_at_median'] else 'NOT met'} at the median"
    )
    written = _write_record("--json", args.json, summary)
    return 0 if summary["met_at_median"] and written else 1


def _cmd_board_pack(args: argparse.Namespace) -> int:
    from .boards.flash import check_image_fits
    from .boards.image import pack_image, parse_image

    check_output_file("--out", args.out)
    name = _dataset_name(args)
    layers = parse_layers(args.layers) if args.layers is not None else None
    if layers is not None and args.board is None:
        raise UsageError("specbp board pack: error: --layers needs --board")
    ds = load_dataset(name, args.data, args.train, args.test)
    if args.board is not None:
        from .boards.top import BOARDS

        layers = layers or BOARDS[args.board].layers
    classes = layers[-1] if layers else 10
    top = int(max(ds.train_y.max(), ds.test_y.max()))
    if top >= classes:
        raise ConfigError(f"classes: the labels go up to {top}, the trainer has {classes} classes")
    image = pack_image(ds, classes)
    info = parse_image(image, args.out)
    if args.board is not None:
        check_image_fits(info, args.board, layers)
    write_atomic(args.out, image)
    print(f"wrote {info.describe()}")
    return 0


def _cmd_board_load(args: argparse.Namespace) -> int:
    from .boards.build import BuildError
    from .boards.flash import load_data

    layers = parse_layers(args.layers) if args.layers is not None else None
    try:
        report = load_data(args.board, args.image, layers=layers, dry_run=args.dry_run)
    except BuildError as exc:  # the programmer is missing or failed (the image was checked): as for build
        print(f"specbp: error: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    verb = "would run" if args.dry_run else "programmed"
    print(
        f"{verb}: {' '.join(map(str, report['command']))} ({report['image_bytes']:,} bytes at offset "
        f"0x{report['offset']:x}, region {report['region_bytes']:,} bytes)"
    )
    return 0


def _cmd_board(args: argparse.Namespace) -> int:
    from .boards.host import BoardError, BoardTrainer
    from .boards.protocol import ProtocolError, StatusError

    cfg, dataset_name = _config(args)
    check_output_file("--json", args.json)
    ds = load_dataset(dataset_name, args.data, args.train, args.test)
    _check_batch(cfg, ds)
    try:
        cfg.check_dataset(ds)
    except ValueError as exc:
        print(f"specbp: error: {exc}", file=sys.stderr)
        return 2
    progress = _progress(not args.quiet and sys.stderr.isatty(), args.epochs)
    try:
        board = BoardTrainer(args.port, args.baud)
    except Exception as exc:  # pyserial raises SerialException (an OSError) for a bad port
        if isinstance(exc, (BoardError, OSError)):
            print(f"specbp: error: {args.port}: {exc}".splitlines()[0], file=sys.stderr)
            return 2
        raise
    try:
        result = board.train(cfg, ds, args.epochs, progress)
    except (BoardError, ProtocolError, StatusError, OSError) as exc:  # before training started
        print(f"specbp: error: board: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    finally:
        board.close()
        if progress is not None:
            progress.close()
    record = result.as_json()
    _print_summary(record, ds.describe())
    written = _write_record("--json", args.json, record)
    if "error" in record:
        print(
            f"specbp: error: board: {record['error']}; the record covers {record['epochs_completed']} "
            f"completed epochs".splitlines()[0],
            file=sys.stderr,
        )
        return 1
    if result.interrupted:
        print(
            f"interrupted after {record['samples_trained']} samples: the record covers "
            f"{record['epochs_completed']} completed epochs",
            file=sys.stderr,
        )
        return 130
    return 0 if written else 1


BOARD_NAMES = ("icebreaker", "ulx3s-85f")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="specbp", description="Speculative backpropagation on FPGA hardware, in Amaranth HDL.")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")

    train = sub.add_parser(
        "train",
        help="train a network and report accuracy, hit rate and speed",
        description="Train on a backend; print accuracy per epoch, hit rate and speed.",
    )
    train.add_argument(
        "--backend",
        default="fixed",
        help="float | fixed | pysim | rtl (default fixed: the bit-exact golden model; rtl: Verilator, cached build)",
    )
    train.add_argument("--lanes", type=_positive_int, default=16, help="MACs per engine (pysim, rtl; default 16)")
    _add_numerics_arg(train)
    train.add_argument(
        "--vcd",
        metavar="FILE",
        help="pysim, rtl: a VCD of the samples of --trace-samples and a GTKWave save file (FILE.gtkw: "
        "streams, control state, engines and counters, grouped); pysim prints its estimated "
        "size first",
    )
    train.add_argument("--fst", metavar="FILE", help="rtl: an FST waveform of the traced samples (and a .gtkw)")
    train.add_argument(
        "--trace-samples",
        type=int,
        nargs=2,
        default=[0, 10],
        metavar=("START", "COUNT"),
        help="pysim, rtl: samples to trace, in streaming order (default 0 10); the rest of the run "
        "is untraced, with the same results",
    )
    _add_data_args(train)
    _add_epochs_arg(train)
    _add_model_args(train)
    train.add_argument(
        "--save",
        metavar="CK.npz",
        help="float, fixed, rtl: write a checkpoint at the end (and where an interrupted run stopped)",
    )
    train.add_argument(
        "--resume",
        metavar="CK.npz",
        help="float, fixed, rtl: continue a checkpoint's run for --epochs more epochs, exactly",
    )
    train.add_argument(
        "--init", metavar="CK.npz", help="float, fixed, rtl: start from a checkpoint's weights, fresh state"
    )
    _add_record_args(train, "the result record")
    train.set_defaults(func=_cmd_train)

    demo = sub.add_parser(
        "demo",
        help="train the embedded digits on the RTL (Verilator) and check it bit for bit against the golden model",
        description="The quick start: 64-16-16-10 on the embedded digits, trained on the "
        "Trainer's Verilog in Verilator and on the fixed-point golden model; their "
        "weights and counters must be identical.",
    )
    demo.add_argument("--epochs", type=_positive_int, default=8, help="epochs (default 8)")
    demo.add_argument(
        "--threshold", type=_nonneg_float, default=0.1, help="speculation threshold (default 0.1; 0: off)"
    )
    _add_record_args(demo, "both records")
    demo.set_defaults(func=_cmd_demo)

    verilog = sub.add_parser(
        "verilog",
        help="elaborate the Trainer to Verilog or RTLIL (for vendor tools)",
        description="Elaborate the Trainer (initial weights of --seed) to Verilog or RTLIL.",
    )
    verilog.add_argument("-o", "--output", required=True, metavar="FILE", help="output file")
    verilog.add_argument("--format", choices=["v", "il"], default="v", help="Verilog (default) or RTLIL")
    verilog.add_argument("--name", default="specbp_trainer", help="top module name (default specbp_trainer)")
    verilog.add_argument("--lanes", type=_positive_int, help="MACs per engine (default 16, or the board's)")
    verilog.add_argument(
        "--board",
        choices=BOARD_NAMES,
        help="the trainer configuration of a board's build (its lanes, number formats, layers "
        "and area options), without the link",
    )
    verilog.add_argument(
        "--numerics",
        choices=list(NUMERICS),
        help="number formats (default standard, or the board's; lean: the iCEBreaker's)",
    )
    _add_model_args(verilog)
    verilog.set_defaults(func=_cmd_verilog, dataset=None, data=None)

    build = sub.add_parser(
        "build",
        help="bitstream for a board, with fmax and resource report",
        description="Synthesise, place and route a board's bitstream; report fmax and resources.",
    )
    build.add_argument("--board", required=True, choices=BOARD_NAMES, help="the board")
    build.add_argument("--lanes", type=_positive_int, help="MACs per engine (default: the board's)")
    build.add_argument("--layers", metavar="L", help="layer widths (default: the board's)")
    build.add_argument("--program", action="store_true", help="program the board (iceprog / openFPGALoader)")
    build.add_argument("--json", metavar="FILE", help="write the report as JSON")
    build.add_argument("--out-dir", default="build", metavar="DIR", help="build directory (default build/)")
    build.add_argument("--baud", type=_positive_int, default=1_000_000, help="UART baud rate (default 1000000)")
    build.add_argument(
        "--clock",
        type=float,
        metavar="MHZ",
        help="trainer clock from the board's PLL (ULX3S; default: the board's, 80 MHz)",
    )
    build.add_argument(
        "--seeds",
        type=_positive_int,
        metavar="N",
        help="place and route with nextpnr seeds 1..N (each in OUT_DIR/seedK) and report the min "
        "and median fmax; exit 1 unless the median meets the clock",
    )
    build.set_defaults(func=_cmd_build)

    board_parser = sub.add_parser(
        "board",
        help="train on a board; pack a dataset image and load it into its flash",
        description="Work with a board running a `specbp build` bitstream.",
    )
    actions = board_parser.add_subparsers(dest="action", required=True, parser_class=_Parser, metavar="ACTION")
    board = actions.add_parser(
        "train",
        help="train over the board's UART link",
        description="Train on a board over its UART link; the same record as every backend.",
    )
    _add_serial_args(board, required=True)
    _add_data_args(board)
    _add_epochs_arg(board)
    _add_model_args(board)
    _add_record_args(board, "the result record")
    board.set_defaults(func=_cmd_board)
    pack = actions.add_parser(
        "pack",
        help="write a packed dataset image (boards/image.py's format)",
        description="Pack a dataset (train split, then test split) into the image format "
        "that `board load-data` programs into a board's flash.",
    )
    pack.add_argument("--out", required=True, metavar="FILE", help="the image file to write")
    pack.add_argument(
        "--board", choices=BOARD_NAMES, help="check that the image fits this board's default trainer and flash region"
    )
    pack.add_argument("--layers", metavar="L", help="with --board: the trainer's layers if not the board's default")
    _add_data_args(pack)
    pack.set_defaults(func=_cmd_board_pack)
    load = actions.add_parser(
        "load-data",
        help="program a dataset image into a board's flash, past its bitstream",
        description="Check a packed image against the board, then program it at the board's "
        "data offset (iceprog / openFPGALoader; this resets the FPGA).",
    )
    load.add_argument("--board", required=True, choices=BOARD_NAMES, help="the board")
    load.add_argument("--image", required=True, metavar="FILE", help="a `specbp board pack` image")
    load.add_argument("--layers", metavar="L", help="the trainer's layers if not the board's default")
    load.add_argument("--dry-run", action="store_true", help="check everything, print the command, program nothing")
    load.set_defaults(func=_cmd_board_load)

    sw = sub.add_parser(
        "sweep",
        help="threshold x metric x seed grid on a Dask cluster, with CSV/JSON and plots",
        description="Train every threshold x metric x seed point (plus the pipelined baseline per "
        "seed) on a Dask cluster; write per-run records, CSV tables and plots. A "
        "rerun with the same --out resumes.",
    )
    sw.add_argument(
        "--thresholds",
        type=_float_list,
        default=[0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25],
        help="comma-separated thresholds (default 0,0.02,0.05,0.1,0.15,0.2,0.25; 0: speculation off)",
    )
    sw.add_argument(
        "--metrics",
        type=_metric_list,
        default=["mean-abs", "max-abs"],
        help="comma-separated distances (default mean-abs,max-abs)",
    )
    sw.add_argument("--seeds", type=_int_list, default=[1, 2, 3], help="comma-separated seeds (default 1,2,3)")
    sw.add_argument(
        "--backend",
        choices=["float", "fixed", "pysim", "rtl"],
        default="fixed",
        help="backend of every run (default fixed, with the exact cycle model)",
    )
    _add_numerics_arg(sw)
    _add_data_args(sw)
    _add_epochs_arg(sw)
    _add_model_args(sw, grid=True)
    sw.add_argument("--lanes", type=_positive_int, default=16, help="lanes per engine of the modelled hardware")
    sw.add_argument("--out", required=True, metavar="DIR", help="results folder (a rerun resumes)")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler (tcp://host:port)")
    sw.add_argument("--workers", type=_positive_int, default=2, help="local cluster worker processes (default 2)")
    sw.add_argument(
        "--fmax",
        type=_fmax,
        metavar="MHZ|REPORT",
        help="clock for the modelled-throughput plot: MHz, or a `specbp build --json` report's fmax",
    )
    sw.add_argument("--quiet", action="store_true", help="no progress bar")
    sw.set_defaults(func=_cmd_sweep)

    infer = sub.add_parser(
        "infer",
        help="evaluate a checkpoint's weights: accuracy and confusion matrix",
        description="Predict the test split with a checkpoint's weights (specbp train --save) "
        "on a backend; print the accuracy and the confusion matrix.",
    )
    infer.add_argument("--weights", required=True, metavar="CK.npz", help="checkpoint (specbp train --save)")
    infer.add_argument(
        "--backend",
        choices=["float", "fixed", "rtl", "board"],
        help="default: the checkpoint's (float or fixed); rtl: Verilator; board: over --port",
    )
    infer.add_argument("--lanes", type=_positive_int, default=16, help="rtl: MACs per engine (default 16)")
    _add_serial_args(infer, required=False)
    _add_data_args(infer)
    infer.add_argument("--json", metavar="FILE", help="write the record (accuracy, confusion matrix) as JSON")
    infer.add_argument("--png", metavar="FILE", help="write the confusion matrix as a PNG")
    infer.set_defaults(func=_cmd_infer)

    bench = sub.add_parser(
        "bench",
        help="performance figures",
        description="golden: accuracy and speed of the models; trainer: cycle counts of the RTL "
        "(Amaranth simulator); blocks: synthesis of every block.",
    )
    bench.add_argument(
        "what",
        nargs="?",
        default="golden",
        choices=["golden", "trainer", "blocks"],
        help="golden: model accuracy/speed; trainer: RTL cycle counts; blocks: synthesis",
    )
    bench.add_argument("--samples", type=_positive_int, default=60, help="trainer: samples to simulate")
    bench.add_argument("--lanes", type=_positive_int, default=16, help="trainer: lanes per engine")
    bench.add_argument("--data", metavar="DIR", help="golden, trainer: MNIST folder (default: embedded digits)")
    bench.add_argument("--seeds", type=_int_list, default=[1], help="golden: comma-separated seeds (default 1)")
    bench.add_argument("--epochs", type=_positive_int, default=10, help="golden: epochs (default 10)")
    bench.add_argument("--json", metavar="FILE", help="write the records as JSON")
    bench.set_defaults(func=_cmd_bench, dataset=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.func(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ConfigError, DataError, OutputError, ValueError) as exc:  # CheckpointError is a ValueError
        print(f"specbp: error: {exc}".splitlines()[0], file=sys.stderr)
        return 2
    except MemoryError:
        print("specbp: error: out of memory (a smaller network, or fewer samples)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("specbp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
