"""The ``specbp`` command line.

``specbp train``  trains on a backend and prints (or writes as JSON) the result;
``specbp bench``  prints the performance table of the golden models.

Errors in arguments or data files print one line and exit with status 2;
nothing prints a traceback for a user mistake.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from .config import METRICS, ConfigError, TrainConfig, parse_layers
from .data import DATASETS, DataError, load_dataset
from .numerics import NUMERICS, numerics_preset

__all__ = ["main"]

DEFAULT_LAYERS = {"digits": "64,16,16,10", "mnist": "784,16,16,10"}


class UsageError(Exception):
    """A bad argument; printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise UsageError(f"{self.prog}: error: {message}")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _nonneg_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="digits (embedded 8x8, default) or mnist (needs --data)")
    p.add_argument("--data", metavar="DIR", help="folder with MNIST IDX files (train-*/t10k-*, raw or .gz)")
    p.add_argument("--train", type=_positive_int, metavar="N", help="number of training samples")
    p.add_argument("--test", type=_positive_int, metavar="M", help="number of test samples")
    p.add_argument("--epochs", type=_positive_int, default=10, metavar="E", help="epochs (default 10)")
    p.add_argument("--threshold", type=_nonneg_float, default=0.0, metavar="T",
                   help="speculation threshold; 0 turns speculation off (default 0)")
    p.add_argument("--metric", choices=METRICS, default="mean-abs", help="speculation distance (default mean-abs)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="weight-initialisation seed (default 1)")
    p.add_argument("--pipeline", action="store_true",
                   help="equal-multiplier baseline: speculation off, sample i's backward pass overlaps sample "
                        "i+1's forward pass (exactly the sequential result; needs --threshold 0)")
    p.add_argument("--layers", metavar="L", help="layer widths, e.g. 784,16,16,10")
    p.add_argument("--batch", type=_positive_int, default=15, help="summed gradients per update (default 15)")
    p.add_argument("--lr", type=float, default=0.01, help="learning rate (default 0.01)")
    p.add_argument("--clip", type=float, default=5.0, help="gradient clip bound (default 5)")
    p.add_argument("--slope", type=float, default=0.01, help="leaky-ReLU slope (default 0.01)")


def _add_numerics_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--numerics", choices=list(NUMERICS), default="standard",
                   help="number formats of the fixed-point backends (default standard; lean: the iCEBreaker's)")


def _config(args: argparse.Namespace) -> tuple[TrainConfig, str]:
    dataset = args.dataset or ("mnist" if args.data else "digits")
    layers = parse_layers(args.layers or DEFAULT_LAYERS[dataset])
    cfg = TrainConfig(layers=layers, batch=args.batch, lr=args.lr, clip=args.clip, slope=args.slope,
                      threshold=args.threshold, metric=args.metric, seed=args.seed, pipeline=args.pipeline)
    return cfg, dataset


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


def _cmd_train(args: argparse.Namespace) -> int:
    from .sim.runner import BACKENDS, run_training

    cfg, dataset_name = _config(args)
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"specbp train: error: --json {args.json}: directory does not exist")
    if args.backend not in BACKENDS:
        raise UsageError(f"specbp train: error: backend {args.backend!r} is not available "
                         f"(choose from {', '.join(BACKENDS)})")
    ds = load_dataset(dataset_name, args.data, args.train, args.test)
    if args.backend != "float":
        numerics_preset(args.numerics).plan(cfg)  # fail early on configs the hardware cannot do
    elif args.numerics != "standard":
        raise UsageError(f"specbp train: error: --numerics {args.numerics}: the float backend has no number formats")
    progress = _progress(not args.quiet and sys.stderr.isatty(), args.epochs)
    if args.vcd and args.backend not in ("pysim", "rtl"):
        raise UsageError("specbp train: error: --vcd needs --backend pysim or rtl")
    if args.fst and args.backend != "rtl":
        raise UsageError("specbp train: error: --fst needs --backend rtl")
    if args.backend in ("pysim", "rtl"):
        from .gateware.layout import TrainerConfig

        TrainerConfig(train=cfg, lanes=args.lanes, numerics=numerics_preset(args.numerics))  # fail early
    try:
        result = run_training(args.backend, cfg, ds, args.epochs, progress, lanes=args.lanes, vcd=args.vcd,
                              fst=args.fst, trace_samples=tuple(args.trace_samples), numerics=args.numerics)
    except Exception as exc:
        from .sim.verilator import SimulationError, ToolError

        if isinstance(exc, (ToolError, SimulationError)):
            print(f"specbp: error: {exc}", file=sys.stderr)
            return 2
        raise
    if progress is not None:
        progress.close()
    record = result.as_json()
    _print_summary(record, ds.describe())
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
        except OSError as exc:
            print(f"specbp: error: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
            return 2
    if result.interrupted:
        print("interrupted: results cover the completed epochs", file=sys.stderr)
        return 130
    return 0


def _print_summary(r: dict, data: str) -> None:
    per_epoch = " ".join(f"{100 * a:.2f}" for a in r["accuracy_per_epoch"])
    spec = "off" if r["threshold"] == 0 else f"{r['metric']} <= {r['threshold']}"
    if r.get("pipeline"):
        spec += f" (pipelined: {r['overlapped']} steps overlapped)"
    print(f"backend {r['backend']}  data {data}  layers {','.join(map(str, r['layers']))}  seed {r['seed']}")
    print(f"speculation {spec}: steps {r['steps']}  first sightings {r['first_sightings']}  "
          f"hits {r['hits']}  misses {r['misses']}  hit rate {r['hit_rate']:.4f}")
    print(f"accuracy per epoch (%): {per_epoch}")
    if "cycles" in r:
        steps = r["cycles_per_step"]
        fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
        print(f"hardware ({r['lanes']} lanes): {r['cycles_per_sample']:.1f} cycles/sample  "
              f"forward {r['forward_cycles']:.1f}  backward {r['backward_cycles']:.1f}  "
              f"step cycles hit {fmt(steps['hit'])} miss {fmt(steps['miss'])} "
              f"sequential {fmt(steps['sequential'])}  sim {r['sim_cycles_per_second']:.0f} cycles/s")
    print(f"accuracy {100 * r['accuracy']:.2f}%  in {r['wall_seconds']:.2f} s  "
          f"({r['samples_per_second']:.0f} samples/s)  weights {r['weights_sha256'][:16]}")


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench

    if args.what == "trainer":
        return bench.bench_trainer(args)
    if args.what == "blocks":
        from .bench_blocks import bench_blocks

        bench_blocks(args.json)
        return 0
    return bench.bench_golden(args)


def _cmd_verilog(args: argparse.Namespace) -> int:
    from amaranth.back import rtlil, verilog

    from .gateware.layout import TrainerConfig
    from .gateware.trainer import Trainer

    if args.board:
        from .boards.top import BOARDS, trainer_config

        spec = BOARDS[args.board]
        if args.numerics is not None and args.numerics != spec.numerics:
            raise UsageError(f"specbp verilog: error: --numerics {args.numerics}: the {args.board} trainer uses "
                             f"{spec.numerics!r} (leave --numerics out with --board)")
        if not args.layers:
            args.layers = ",".join(map(str, spec.layers))
    cfg, _ = _config(args)
    if not Path(args.output).resolve().parent.is_dir():
        raise UsageError(f"specbp verilog: error: -o {args.output}: directory does not exist")
    if args.board:
        trainer_cfg = trainer_config(args.board, lanes=args.lanes, train=cfg)
    else:
        trainer_cfg = TrainerConfig(train=cfg, lanes=args.lanes or 16,
                                    numerics=numerics_preset(args.numerics or "standard"))
    top = Trainer(trainer_cfg)
    text = (verilog.convert if args.format == "v" else rtlil.convert)(top, name=args.name)
    Path(args.output).write_text(text)
    kind = "Verilog" if args.format == "v" else "RTLIL"
    board = f" ({args.board}'s trainer)" if args.board else ""
    print(f"wrote {args.output}: {args.name}{board}, layers {','.join(map(str, cfg.layers))}, "
          f"{trainer_cfg.lanes} lanes per engine, initial weights of seed {cfg.seed}, "
          f"{len(text) // 1024} KiB of {kind}")
    return 0


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if any(not v >= 0 or v != v for v in values):
        raise argparse.ArgumentTypeError(f"thresholds must be >= 0, got {text!r}")
    return values


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


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
            raise argparse.ArgumentTypeError(f"neither a number nor a readable build report: {text!r} ({exc})") \
                from None
        value = report.get("fmax_mhz") if isinstance(report, dict) else None
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise argparse.ArgumentTypeError(f"build report {text!r} has no fmax_mhz (the design did not route)")
    if not 0 < value < 10_000:
        raise argparse.ArgumentTypeError(f"must be a clock in MHz, got {value!r}")
    return float(value)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from .numerics import Numerics
    from .sweep import sweep

    for metric in args.metrics:  # fail before starting a cluster
        for threshold in args.thresholds:
            cfg = TrainConfig(threshold=threshold, metric=metric)
            if args.backend != "float":
                Numerics().plan(cfg)
    load_dataset("mnist" if args.data else "digits", args.data, args.train if args.data else None,
                 args.test if args.data else None)
    sweep(args.thresholds, args.metrics, args.seeds, args.epochs, args.backend, args.out, data=args.data,
          train=args.train, test=args.test, lanes=args.lanes, scheduler=args.scheduler, workers=args.workers,
          fmax_mhz=args.fmax, progress=not args.quiet and sys.stderr.isatty())
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    from .boards.build import BuildError, build_board, format_report

    layers = parse_layers(args.layers) if args.layers else None
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"specbp build: error: --json {args.json}: directory does not exist")
    try:
        report = build_board(args.board, lanes=args.lanes, layers=layers, program=args.program,
                             out_dir=args.out_dir, json_path=args.json, baud=args.baud, clock_mhz=args.clock)
    except BuildError as exc:
        if exc.report:
            print(format_report(exc.report))
        print(f"specbp: error: {exc}", file=sys.stderr)
        return 1
    print(format_report(report))
    return 0


def _cmd_board(args: argparse.Namespace) -> int:
    from .boards.host import BoardError, BoardTrainer
    from .boards.protocol import ProtocolError, StatusError

    cfg, dataset_name = _config(args)
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"specbp board: error: --json {args.json}: directory does not exist")
    ds = load_dataset(dataset_name, args.data, args.train, args.test)
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
    except (BoardError, ProtocolError, StatusError, OSError) as exc:
        print(f"specbp: error: board: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    finally:
        board.close()
    if progress is not None:
        progress.close()
    record = result.as_json()
    _print_summary(record, ds.describe())
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="specbp", description="Speculative backpropagation on FPGA hardware, in Amaranth HDL.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = sub.add_parser("train", help="train a network and report accuracy, hit rate and speed")
    train.add_argument("--backend", default="fixed",
                       help="float | fixed | pysim | rtl (default fixed: the bit-exact golden model; "
                            "rtl: Verilator, cached build)")
    train.add_argument("--lanes", type=_positive_int, default=16, help="MACs per engine (hardware backends)")
    _add_numerics_arg(train)
    train.add_argument("--vcd", metavar="FILE",
                       help="write a waveform (pysim, rtl) and, for pysim, a GTKWave save file")
    train.add_argument("--fst", metavar="FILE", help="rtl: write an FST waveform of the traced samples")
    train.add_argument("--trace-samples", type=int, nargs=2, default=[0, 10], metavar=("START", "COUNT"),
                       help="rtl: samples to trace, in streaming order (default 0 10)")
    _add_config_args(train)
    train.add_argument("--json", metavar="FILE", help="write the result record as JSON")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(func=_cmd_train)

    verilog = sub.add_parser("verilog", help="elaborate the Trainer to Verilog or RTLIL (for vendor tools)")
    verilog.add_argument("-o", "--output", required=True, metavar="FILE", help="output file")
    verilog.add_argument("--format", choices=["v", "il"], default="v", help="Verilog (default) or RTLIL")
    verilog.add_argument("--name", default="specbp_trainer", help="top module name")
    verilog.add_argument("--lanes", type=_positive_int, help="MACs per engine (default 16, or the board's)")
    verilog.add_argument("--board", choices=["icebreaker", "ulx3s-85f"],
                         help="the trainer configuration of a board's build (its lanes, number formats, layers "
                              "and area options), without the link")
    verilog.add_argument("--numerics", choices=list(NUMERICS),
                         help="number formats (default standard, or the board's; lean: the iCEBreaker's)")
    _add_config_args(verilog)
    verilog.set_defaults(func=_cmd_verilog, epochs=1, train=None, test=None)

    build = sub.add_parser("build", help="bitstream for a board, with fmax and resource report")
    build.add_argument("--board", required=True, choices=["icebreaker", "ulx3s-85f"])
    build.add_argument("--lanes", type=_positive_int, help="MACs per engine (default: the board's)")
    build.add_argument("--layers", metavar="L", help="layer widths (default: the board's)")
    build.add_argument("--program", action="store_true", help="program the board (iceprog / openFPGALoader)")
    build.add_argument("--json", metavar="FILE", help="write the report as JSON")
    build.add_argument("--out-dir", default="build", metavar="DIR", help="build directory (default build/)")
    build.add_argument("--baud", type=_positive_int, default=1_000_000, help="UART baud rate (default 1000000)")
    build.add_argument("--clock", type=float, metavar="MHZ",
                       help="trainer clock from the board's PLL (ULX3S; default: the board's, 80 MHz)")
    build.set_defaults(func=_cmd_build)

    board = sub.add_parser("board", help="train on a board over its UART link")
    board.add_argument("action", choices=["train"])
    board.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB1")
    board.add_argument("--baud", type=_positive_int, default=1_000_000)
    _add_config_args(board)
    board.add_argument("--json", metavar="FILE", help="write the result record as JSON")
    board.add_argument("--quiet", action="store_true", help="no progress bar")
    board.set_defaults(func=_cmd_board)

    sw = sub.add_parser("sweep", help="threshold x metric x seed grid on a Dask cluster, with CSV/JSON and plots")
    sw.add_argument("--thresholds", type=_float_list, default=[0, 0.02, 0.05, 0.1, 0.15, 0.2, 0.25])
    sw.add_argument("--metrics", type=_metric_list, default=["mean-abs", "max-abs"])
    sw.add_argument("--seeds", type=_int_list, default=[1, 2, 3])
    sw.add_argument("--epochs", type=_positive_int, default=10)
    sw.add_argument("--backend", choices=["float", "fixed", "pysim", "rtl"], default="fixed")
    sw.add_argument("--data", metavar="DIR", help="MNIST folder (default: embedded digits)")
    sw.add_argument("--train", type=_positive_int, default=8000)
    sw.add_argument("--test", type=_positive_int, default=2000)
    sw.add_argument("--lanes", type=_positive_int, default=16, help="lanes per engine of the modelled hardware")
    sw.add_argument("--out", required=True, metavar="DIR", help="results folder (resumable)")
    sw.add_argument("--scheduler", metavar="ADDRESS", help="use a running Dask scheduler")
    sw.add_argument("--workers", type=_positive_int, default=2, help="local cluster worker processes (default 2)")
    sw.add_argument("--fmax", type=_fmax, metavar="MHZ|REPORT",
                    help="clock for the modelled-throughput plot: MHz, or a `specbp build --json` report's fmax")
    sw.add_argument("--quiet", action="store_true")
    sw.set_defaults(func=_cmd_sweep)

    bench = sub.add_parser("bench", help="performance figures")
    bench.add_argument("what", nargs="?", default="golden", choices=["golden", "trainer", "blocks"],
                       help="golden: model accuracy/speed; trainer: RTL cycle counts; blocks: synthesis")
    bench.add_argument("--samples", type=_positive_int, default=60, help="trainer: samples to simulate")
    bench.add_argument("--lanes", type=_positive_int, default=16, help="trainer: lanes per engine")
    bench.add_argument("--data", metavar="DIR", help="MNIST folder (default: embedded digits only)")
    bench.add_argument("--seeds", default="1", help="comma-separated seeds")
    bench.add_argument("--epochs", type=_positive_int, default=10)
    bench.add_argument("--json", metavar="FILE", help="write the records as JSON")
    bench.set_defaults(func=_cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        print(exc, file=sys.stderr)
        return 2
    except (ConfigError, DataError, ValueError) as exc:
        print(f"specbp: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("specbp: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
