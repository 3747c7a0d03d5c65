"""Property test of the command line: random argument vectors for every subcommand.

Every option of every subcommand (read from the parser itself, so a new option
is covered without touching this file) gets random values: valid ones, the
choices it lists, and the mistakes users make (negative and huge numbers,
``nan``, empty strings, missing or read-only directories, a file where a
folder is expected, a layer too wide for memory). The work a command starts
(training, a sweep, a build, a bench, inference, elaboration) is replaced by a
sentinel, so a case ends as soon as the command has checked its arguments.

The property: the command either gets as far as starting its work, or exits 0
(help), or exits 2 with exactly one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specbp_rtl import cli

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"
#: examples per subcommand
EXAMPLES = 120


class Started(BaseException):
    """The command got past its checks and started its work (not caught by ``cli.main``)."""


def _start(*args, **kwargs):
    raise Started


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, str]:
    """Paths of every kind a user may give."""
    root = tmp_path_factory.mktemp("cli")
    a_file = root / "a_file"
    a_file.write_text("not a folder\n")
    a_dir = root / "a_dir"
    a_dir.mkdir()
    from specbp_rtl.checkpoint import save_checkpoint
    from specbp_rtl.config import TrainConfig
    from specbp_rtl.data import load_dataset
    from specbp_rtl.model.golden import FixedEngine
    from specbp_rtl.model.speculation import SpeculativeTrainer

    checkpoint = root / "ck.npz"
    save_checkpoint(
        checkpoint,
        SpeculativeTrainer(FixedEngine(TrainConfig(layers=(64, 16, 16, 10)))),
        backend="fixed",
        numerics="standard",
        dataset=load_dataset("digits"),
    )
    return {
        "new": str(root / "new.json"),
        "file": str(a_file),
        "dir": str(a_dir),
        "missing": str(root / "no" / "x"),
        "proc": "/proc/specbp.json",
        "checkpoint": str(checkpoint),
        "mnist": str(MNIST),
        "empty": "",
        "new_dir": str(root / "out"),
    }


def _good(dest: str, paths: dict[str, str]) -> list[str]:
    """Values a user would give an option on purpose (so that many cases get past the first check)."""
    return {
        "weights": [paths["checkpoint"]],
        "resume": [paths["checkpoint"]],
        "init": [paths["checkpoint"]],
        "out": [paths["new_dir"]],
        "out_dir": [paths["new_dir"]],
        "output": [paths["new"]],
        "json": [paths["new"]],
        "png": [paths["new"]],
        "save": [paths["new"]],
        "vcd": [paths["new"]],
        "fst": [paths["new"]],
        "port": ["/dev/ttyUSB1"],
        "data": [paths["mnist"]],
        "layers": ["64,16,10"],
        "epochs": ["1", "2"],
        "train": ["100"],
        "test": ["50"],
        "seed": ["1", "2"],
        "seeds": ["1,2"],
        "threshold": ["0", "0.1"],
        "thresholds": ["0,0.1"],
        "lanes": ["4", "16"],
        "batch": ["5", "15"],
        "samples": ["10"],
        "image": [paths["file"], paths["missing"]],
    }.get(dest, [])


VALUES = [
    "0",
    "1",
    "2",
    "3",
    "15",
    "-1",
    "-7",
    "0.25",
    "0.1",
    "1e400",
    "nan",
    "inf",
    "-inf",
    "abc",
    "",
    "1,2,3",
    "0,0.25",
    "64,16,10",
    "64,16,16,10",
    "784,16,16,10",
    "16,4,2",
    "64,100000000,10",
    "64,,10",
    "mean-abs,max-abs",
    "l1",
    "tcp://127.0.0.1:1",
    "99999999999999999999",
]


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


SUBCOMMANDS = _subparsers()


@st.composite
def argv_for(draw, command: str, paths: dict[str, str]) -> list[str]:
    parser = SUBCOMMANDS[command]
    argv = [command]
    positionals = [a for a in parser._actions if not a.option_strings and a.dest != "help"]
    for action in positionals:
        if action.choices and draw(st.integers(0, 9)):
            argv.append(draw(st.sampled_from(sorted(action.choices))))
            if isinstance(action, argparse._SubParsersAction):  # `board train|pack|load-data`: its options
                parser = action.choices[argv[-1]]
    options = _options(parser)
    if not options:
        return argv
    required = [a for a in options if a.required and draw(st.integers(0, 9))]
    chosen = draw(st.lists(st.sampled_from(options), max_size=5, unique_by=lambda a: a.dest))
    for action in required + [a for a in chosen if a not in required]:
        flag = draw(st.sampled_from(action.option_strings))
        if action.nargs == 0:
            argv.append(flag)
            continue
        count = action.nargs if isinstance(action.nargs, int) else 1
        good = _good(action.dest, paths) + [str(c) for c in action.choices or ()]
        pool = list(VALUES) + list(paths.values())
        if good and draw(st.integers(0, 2)):
            pool = good
        argv += [flag, *(draw(st.sampled_from(pool)) for _ in range(count))]
    return argv


@pytest.fixture
def no_work(monkeypatch, tmp_path):
    """Replace every entry point of long work with :func:`_start`; relative paths land in a temporary folder."""
    monkeypatch.chdir(tmp_path)
    import specbp_rtl.bench
    import specbp_rtl.bench_blocks
    import specbp_rtl.boards.build
    import specbp_rtl.boards.flash
    import specbp_rtl.boards.host
    import specbp_rtl.gateware.trainer
    import specbp_rtl.infer
    import specbp_rtl.sim.runner
    import specbp_rtl.sweep

    for module, name in (
        (specbp_rtl.sim.runner, "run_training"),
        (specbp_rtl.sweep, "sweep"),
        (specbp_rtl.boards.build, "build_board"),
        (specbp_rtl.boards.host, "BoardTrainer"),
        (specbp_rtl.bench, "bench_golden"),
        (specbp_rtl.bench, "bench_trainer"),
        (specbp_rtl.bench_blocks, "bench_blocks"),
        (specbp_rtl.infer, "run_inference"),
        (specbp_rtl.gateware.trainer, "Trainer"),
        (specbp_rtl.boards.flash, "load_data"),
    ):
        monkeypatch.setattr(module, name, _start)


def _check(argv: list[str], capsys) -> None:
    try:
        code = cli.main(argv)
    except Started:
        capsys.readouterr()
        return
    except SystemExit as exc:  # --help
        code = exc.code
    out, err = capsys.readouterr()
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err and "Traceback" not in out, (argv, err)
    if code == 2:
        assert len(err.splitlines()) == 1, (argv, err)


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_random_command_lines_are_one_line_or_start(command: str, paths, no_work, capsys) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(argv=argv_for(command, paths))
    def run(argv: list[str]) -> None:
        _check(argv, capsys)

    run()


def test_known_mistakes_are_one_line(paths, no_work, capsys) -> None:
    """The issue's reproductions, each a clean one-line error before any work."""
    cases = [
        ["verilog", "-o", paths["dir"]],
        ["train", "--backend", "pysim", "--vcd", paths["missing"]],
        ["sweep", "--out", paths["file"]],
        ["build", "--board", "icebreaker", "--out-dir", paths["file"]],
        ["train", "--layers", "64,100000000,10"],
        ["train", "--json", paths["proc"]],
        ["bench", "golden", "--json", paths["proc"]],
        ["train", "--backend", "rtl", "--vcd", paths["proc"]],
        ["train", "--dataset", "digits", "--data", paths["dir"]],
        ["train", "--layers", ""],
        ["train", "--json", ""],
        ["train", "--batch", "5000"],
        ["sweep", "--seeds", "-1", "--out", paths["dir"]],
        ["train", "--resume", paths["checkpoint"], "--seed", "2"],
        ["train", "--resume", paths["file"]],
        ["infer", "--weights", paths["missing"]],
    ]
    for argv in cases:
        code = cli.main(argv)
        out, err = capsys.readouterr()
        assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (argv, code, err)
