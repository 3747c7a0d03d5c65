"""The ``specbp`` command line, end to end: as a subprocess and through ``main(argv)``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fake_images, fake_labels, write_mnist_pair

from specbp_rtl.cli import main
from specbp_rtl.config import TrainConfig
from specbp_rtl.data import load_dataset
from specbp_rtl.sim.runner import run_training

REQUIRED_KEYS = {
    "backend",
    "dataset",
    "layers",
    "epochs",
    "threshold",
    "metric",
    "seed",
    "samples_trained",
    "accuracy",
    "accuracy_per_epoch",
    "steps",
    "first_sightings",
    "hits",
    "misses",
    "hit_rate",
    "wall_seconds",
    "samples_per_second",
    "weights_sha256",
}


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "specbp_rtl.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def run_main(args: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(params=["subprocess", "main"])
def cli(request, tmp_path: Path, capsys):
    """``cli(args) -> (exit code, stdout, stderr)``, both ways of running the command."""

    def call(args: list[str]) -> tuple[int, str, str]:
        if request.param == "subprocess":
            r = run_cli(args, tmp_path)
            return r.returncode, r.stdout, r.stderr
        return run_main(args, capsys)

    return call


def check_record(record: dict, *, backend: str, epochs: int, train: int) -> None:
    assert REQUIRED_KEYS <= record.keys(), REQUIRED_KEYS - record.keys()
    assert record["backend"] == backend
    assert record["epochs"] == epochs
    assert record["samples_trained"] == record["steps"] == epochs * train
    assert record["steps"] == (
        record.get("sequential", 0) + record["first_sightings"] + record["hits"] + record["misses"]
    )
    assert len(record["accuracy_per_epoch"]) == epochs
    assert record["accuracy"] == record["accuracy_per_epoch"][-1]
    assert 0.0 <= record["accuracy"] <= 1.0
    assert 0.0 <= record["hit_rate"] <= 1.0
    assert record["wall_seconds"] > 0 and record["samples_per_second"] > 0
    sha = record["weights_sha256"]
    assert len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)


# -- success --------------------------------------------------------------------


def test_train_json_on_digits(cli, tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    code, out, err = cli(["train", "--quiet", "--epochs", "1", "--json", str(out_json)])
    assert code == 0, err
    assert err == ""  # no warnings, no progress bar
    record = json.loads(out_json.read_text())
    check_record(record, backend="fixed", epochs=1, train=1437)
    assert record["dataset"] == "digits"
    assert record["layers"] == [64, 16, 16, 10]
    assert record["threshold"] == 0.0 and record["metric"] == "mean-abs" and record["seed"] == 1
    assert record["sequential"] == 1437 and record["hit_rate"] == 0.0
    # the summary on stdout
    assert "backend fixed" in out and "digits" in out and record["weights_sha256"][:16] in out
    # the CLI runs exactly what the library runs
    direct = run_training("fixed", TrainConfig(layers=(64, 16, 16, 10)), load_dataset("digits"), 1)
    assert record["weights_sha256"] == direct.weights_sha256
    assert record["accuracy"] == direct.accuracy


def test_same_seed_same_weights_both_ways(tmp_path: Path, capsys) -> None:
    args = [
        "train",
        "--quiet",
        "--epochs",
        "1",
        "--train",
        "400",
        "--test",
        "100",
        "--threshold",
        "0.001",
        "--seed",
        "3",
    ]
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    assert run_cli([*args, "--json", str(a)], tmp_path).returncode == 0
    assert run_cli([*args, "--json", str(b)], tmp_path).returncode == 0
    assert run_main([*args, "--json", str(c)], capsys)[0] == 0
    ra, rb, rc = (json.loads(p.read_text()) for p in (a, b, c))
    assert ra["weights_sha256"] == rb["weights_sha256"] == rc["weights_sha256"]
    assert ra["hits"] == rb["hits"] == rc["hits"] > 0 and ra["misses"] > 0
    d = tmp_path / "d.json"
    assert (
        run_main(
            [
                "train",
                "--quiet",
                "--epochs",
                "1",
                "--train",
                "400",
                "--test",
                "100",
                "--threshold",
                "0.001",
                "--seed",
                "4",
                "--json",
                str(d),
            ],
            capsys,
        )[0]
        == 0
    )
    assert json.loads(d.read_text())["weights_sha256"] != ra["weights_sha256"]


@pytest.mark.parametrize("backend", ["fixed", "float"])
def test_backends(cli, tmp_path: Path, backend: str) -> None:
    p = tmp_path / f"{backend}.json"
    code, out, err = cli(
        [
            "train",
            "--quiet",
            "--backend",
            backend,
            "--epochs",
            "2",
            "--train",
            "300",
            "--test",
            "200",
            "--threshold",
            "0.25",
            "--json",
            str(p),
        ]
    )
    assert code == 0, err
    record = json.loads(p.read_text())
    check_record(record, backend=backend, epochs=2, train=300)
    assert record["first_sightings"] == 10 and record["misses"] == 0 and record["hit_rate"] == 1.0
    assert record["threshold"] == 0.25
    cfg = TrainConfig(layers=(64, 16, 16, 10), threshold=0.25)
    direct = run_training(backend, cfg, load_dataset("digits", train=300, test=200), 2)
    assert record["weights_sha256"] == direct.weights_sha256


def test_float_and_fixed_differ(tmp_path: Path, capsys) -> None:
    shas = {}
    for backend in ("fixed", "float"):
        p = tmp_path / f"{backend}.json"
        assert (
            run_main(
                [
                    "train",
                    "--quiet",
                    "--backend",
                    backend,
                    "--epochs",
                    "1",
                    "--train",
                    "100",
                    "--test",
                    "50",
                    "--json",
                    str(p),
                ],
                capsys,
            )[0]
            == 0
        )
        shas[backend] = json.loads(p.read_text())["weights_sha256"]
    assert shas["fixed"] != shas["float"]


def test_numerics_option(tmp_path: Path, capsys) -> None:
    """``--numerics compact``: other weights than ``standard``, recorded in the JSON; ``specbp verilog`` too."""
    records = {}
    for name in ("standard", "compact"):
        p = tmp_path / f"{name}.json"
        assert (
            run_main(
                [
                    "train",
                    "--quiet",
                    "--epochs",
                    "1",
                    "--train",
                    "100",
                    "--test",
                    "50",
                    "--numerics",
                    name,
                    "--json",
                    str(p),
                ],
                capsys,
            )[0]
            == 0
        )
        records[name] = json.loads(p.read_text())
    assert records["compact"]["numerics"] == "compact" and records["standard"]["numerics"] == "standard"
    assert records["compact"]["weights_sha256"] != records["standard"]["weights_sha256"]
    v = tmp_path / "t.il"
    assert (
        run_main(
            ["verilog", "-o", str(v), "--format", "il", "--layers", "16,4,2", "--lanes", "1", "--numerics", "compact"],
            capsys,
        )[0]
        == 0
    )
    assert "specbp_trainer" in v.read_text()


def test_verilog_of_a_board_trainer(tmp_path: Path, capsys) -> None:
    """``specbp verilog --board icebreaker``: the iCEBreaker build's trainer (its layers, lanes, formats and area
    options, here the counter bank in an SPRAM), the same RTLIL as the board's configuration elaborates to; a
    --numerics that disagrees with the board fails naming it."""
    from amaranth.back import rtlil

    from specbp_rtl.boards.top import trainer_config
    from specbp_rtl.gateware.trainer import Trainer

    il = tmp_path / "ice.il"
    code, out, _ = run_main(["verilog", "-o", str(il), "--format", "il", "--board", "icebreaker"], capsys)
    assert code == 0 and "layers 16,4,2, 4 lanes per engine" in out
    text = il.read_text()
    assert text == rtlil.convert(Trainer(trainer_config("icebreaker")), name="specbp_trainer")
    assert 'ram_style "huge"' in text
    code, _, err = run_main(["verilog", "-o", str(il), "--board", "icebreaker", "--numerics", "standard"], capsys)
    assert code == 2 and err.startswith("specbp verilog: error: --numerics standard:") and err.count("\n") == 1


def test_train_other_options(tmp_path: Path, capsys) -> None:
    p = tmp_path / "r.json"
    args = [
        "train",
        "--quiet",
        "--backend",
        "float",
        "--epochs",
        "1",
        "--train",
        "150",
        "--test",
        "30",
        "--layers",
        "64,8,10",
        "--batch",
        "5",
        "--lr",
        "0.05",
        "--clip",
        "2",
        "--slope",
        "0.1",
        "--threshold",
        "0.01",
        "--metric",
        "cross-entropy",
        "--seed",
        "9",
        "--json",
        str(p),
    ]
    assert run_main(args, capsys)[0] == 0
    r = json.loads(p.read_text())
    assert r["layers"] == [64, 8, 10] and r["metric"] == "cross-entropy" and r["seed"] == 9
    assert (r["batch"], r["lr"], r["clip"], r["slope"]) == (5, 0.05, 2.0, 0.1)
    assert r["updates"] == 30  # after i = 0, 5, ..., 145
    assert r["train_samples"] == 150 and r["test_samples"] == 30
    # the pipelined baseline: the sequential weights, with its overlapped steps counted
    q = tmp_path / "q.json"
    base = ["train", "--quiet", "--epochs", "1", "--train", "150", "--test", "30", "--batch", "5"]
    assert run_main([*base, "--json", str(p)], capsys)[0] == 0
    assert run_main([*base, "--pipeline", "--json", str(q)], capsys)[0] == 0
    seq, pipe = json.loads(p.read_text()), json.loads(q.read_text())
    assert pipe["pipeline"] and not seq["pipeline"] and pipe["weights_sha256"] == seq["weights_sha256"]
    # every step overlaps except the first and the one after each of the 30 updates
    assert pipe["overlapped"] == 150 - 1 - 30 and seq["overlapped"] == 0


def test_train_without_json_prints_summary(capsys) -> None:
    code, out, err = run_main(["train", "--quiet", "--epochs", "1", "--train", "60", "--test", "20"], capsys)
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[1].startswith("speculation off")
    assert lines[3].startswith("accuracy ")


def test_train_on_fake_mnist_folder(tmp_path: Path, capsys) -> None:
    d = tmp_path / "mnist"
    d.mkdir()
    write_mnist_pair(d, "t10k", fake_images(40, rows=2, cols=3), fake_labels(40), gz=True)
    p = tmp_path / "r.json"
    code, _, err = run_main(
        [
            "train",
            "--quiet",
            "--data",
            str(d),
            "--train",
            "30",
            "--test",
            "10",
            "--layers",
            "6,4,10",
            "--epochs",
            "2",
            "--json",
            str(p),
        ],
        capsys,
    )
    assert code == 0, err
    r = json.loads(p.read_text())
    assert r["dataset"] == "mnist" and r["samples_trained"] == 60 and r["layers"] == [6, 4, 10]


@pytest.mark.slow
def test_train_on_real_mnist(mnist_dir: Path, tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    r = run_cli(
        [
            "train",
            "--quiet",
            "--data",
            str(mnist_dir),
            "--train",
            "2000",
            "--test",
            "500",
            "--epochs",
            "2",
            "--json",
            str(p),
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    record = json.loads(p.read_text())
    check_record(record, backend="fixed", epochs=2, train=2000)
    assert record["dataset"] == "mnist" and record["layers"] == [784, 16, 16, 10]
    assert record["accuracy"] > 0.5  # measured 68.0 % (42.2 % after the first epoch)


# -- errors: exit 2, one line on stderr, no traceback -------------------------------


def _corrupt_mnist_dir(root: Path) -> Path:
    d = root / "corrupt-mnist"
    d.mkdir(exist_ok=True)
    write_mnist_pair(d, "t10k", fake_images(30), fake_labels(30), gz=True)
    img = d / "t10k-images-idx3-ubyte.gz"
    img.write_bytes(img.read_bytes()[:-10])
    return d


BAD_ARGS = {
    "unknown-backend": (["--backend", "foo"], "backend"),
    "epochs-zero": (["--epochs", "0"], "--epochs"),
    "unknown-metric": (["--metric", "foo"], "--metric"),
    "negative-threshold": (["--threshold", "-1"], "--threshold"),
    "too-few-layers": (["--layers", "1,2"], "layers"),
    "input-mismatch": (["--layers", "10,16,10"], "layers"),
    "mnist-without-data": (["--dataset", "mnist"], "--data"),
    "corrupted-data": (["--data", "{corrupt}"], "t10k-images-idx3-ubyte.gz"),
    "layers-not-integers": (["--layers", "64,16,x"], "layers"),
    "cross-entropy-on-fixed": (["--metric", "cross-entropy", "--threshold", "0.1"], "metric"),
    "too-many-samples": (["--train", "5000"], "digits"),
    "negative-seed": (["--seed", "-1"], "seed"),
    "slope-one": (["--slope", "1"], "slope"),
    "missing-data-dir": (["--data", "{tmp}/absent"], "not a directory"),
}


def _expand(args: list[str], tmp_path: Path) -> list[str]:
    corrupt = _corrupt_mnist_dir(tmp_path)
    return [a.format(corrupt=corrupt, tmp=tmp_path) for a in args]


def assert_clean_usage_error(code: int, out: str, err: str, word: str) -> None:
    assert code == 2, (code, out, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].strip(), err
    assert "Traceback" not in err and "Traceback" not in out
    assert word in lines[0], (word, lines[0])
    assert lines[0].startswith("specbp")


@pytest.mark.parametrize("case", list(BAD_ARGS))
def test_bad_arguments(cli, tmp_path: Path, case: str) -> None:
    args, word = BAD_ARGS[case]
    # a later --epochs wins in argparse, so "epochs-zero" still sees 0
    code, out, err = cli(["train", "--quiet", "--epochs", "1", *_expand(args, tmp_path)])
    assert_clean_usage_error(code, out, err, word)
    assert out == ""


def test_no_command_prints_the_usage(cli) -> None:
    code, out, err = cli([])
    assert code == 0 and err == ""
    assert out.startswith("usage: specbp") and all(c in out for c in ("train", "verilog", "build", "sweep"))


# Not-so-obvious bad values: each must also be one clean line and exit 2. These
# currently escape as tracebacks (OverflowError / FileNotFoundError); see the report.
BAD_VALUES = {
    "lr-inf": (["--lr", "inf"], "lr"),
    "lr-tiny": (["--lr", "1e-300"], "lr"),
    "clip-inf": (["--clip", "inf"], "clip"),
    "threshold-inf-fixed": (["--threshold", "inf"], "threshold"),
    "json-in-missing-dir": (["--json", "{tmp}/no/such/dir/r.json"], "r.json"),
    # digits has labels 0..9: an output layer of 5 cannot hold them (IndexError today)
    "output-narrower-than-labels": (["--layers", "64,16,5"], "layers"),
    "pipeline-with-speculation": (["--pipeline", "--threshold", "0.1"], "pipeline"),
    "float-has-no-number-formats": (["--backend", "float", "--numerics", "compact"], "numerics"),
}


@pytest.mark.parametrize("case", list(BAD_VALUES))
def test_bad_values_without_traceback(cli, tmp_path: Path, case: str) -> None:
    args, word = BAD_VALUES[case]
    base = ["train", "--quiet", "--epochs", "1", "--train", "100", "--test", "20"]
    code, out, err = cli([*base, *[a.format(tmp=tmp_path) for a in args]])
    assert code == 2, (code, err[-500:])
    lines = err.splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err[-500:]
    assert word in lines[0]


def test_empty_test_set(cli, tmp_path: Path) -> None:
    """``--train 1797`` leaves digits with no test samples. Today the run "succeeds" with
    accuracy NaN (numpy's "Mean of empty slice" warning on stderr) and writes ``NaN`` into
    the JSON, which is not JSON. Either refuse (exit 2, one line) or report a defined number."""
    p = tmp_path / "r.json"
    code, out, err = cli(
        ["train", "--quiet", "--backend", "float", "--epochs", "1", "--train", "1797", "--json", str(p)]
    )
    if code == 2:
        assert len(err.splitlines()) == 1 and "Traceback" not in err
    else:
        assert code == 0 and err == "", err

        def no_nan(const: str):
            raise AssertionError(f"non-JSON constant {const} in the record")

        record = json.loads(p.read_text(), parse_constant=no_nan)
        assert record["test_samples"] == 0


def test_board_train_bad_port_is_one_line(capsys) -> None:
    from specbp_rtl.cli import main

    assert main(["board", "train", "--port", "/dev/specbp-no-such-port", "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "/dev/specbp-no-such-port" in err[0]


def test_sweep_fmax_from_a_build_report(tmp_path: Path) -> None:
    """``--fmax`` takes MHz or a ``specbp build --json`` report; a report without a routed fmax is refused."""
    import argparse

    from specbp_rtl.cli import _fmax

    routed, unrouted = tmp_path / "routed.json", tmp_path / "unrouted.json"
    routed.write_text(json.dumps({"board": "ulx3s-85f", "fmax_mhz": 52.13}))
    unrouted.write_text(json.dumps({"board": "ulx3s-85f", "fmax_mhz": None}))
    assert _fmax("25") == 25.0 and _fmax(str(routed)) == 52.13
    for bad, word in (
        (str(unrouted), "did not route"),
        (str(tmp_path / "absent.json"), "neither a number"),
        ("0", "clock in MHz"),
    ):
        with pytest.raises(argparse.ArgumentTypeError, match=word):
            _fmax(bad)


@pytest.mark.slow
def test_demo_trains_the_rtl_and_matches_the_golden_model(tmp_path: Path) -> None:
    """The README's first command: the RTL in Verilator, checked bit for bit against the golden model."""
    r = run_cli(["demo", "--epochs", "2", "--json", str(tmp_path / "demo.json")], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "match the golden model's bit for bit" in r.stdout
    record = json.loads((tmp_path / "demo.json").read_text())
    assert record["bit_identical"] and record["rtl"]["weights_sha256"] == record["fixed"]["weights_sha256"]
    assert record["rtl"]["backend"] == "rtl" and record["rtl"]["hits"] > 0


def test_checkpoint_resume_equals_one_run(cli, tmp_path: Path) -> None:
    """``--epochs 2 --save``, then ``--resume --epochs 3``: the 5-epoch run's weights, accuracies and counters;
    ``infer`` reports the accuracy the training run reported."""
    ck, first, resumed, whole = (str(tmp_path / n) for n in ("a.npz", "a.json", "r.json", "w.json"))
    base = ["train", "--quiet", "--layers", "64,16,10", "--threshold", "0.1"]
    assert cli([*base, "--epochs", "2", "--save", ck, "--json", first])[0] == 0
    assert cli([*base, "--resume", ck, "--epochs", "3", "--json", resumed])[0] == 0
    assert cli([*base, "--epochs", "5", "--json", whole])[0] == 0
    r, w = json.loads(Path(resumed).read_text()), json.loads(Path(whole).read_text())
    for key in ("weights_sha256", "accuracy_per_epoch", "steps", "hits", "misses", "updates", "epochs"):
        assert r[key] == w[key], key
    code, out, err = cli(["infer", "--weights", ck, "--json", str(tmp_path / "i.json")])
    assert code == 0, err
    trained = json.loads(Path(first).read_text())["accuracy"]
    assert f"accuracy {100 * trained:.2f}%" in out
    assert json.loads((tmp_path / "i.json").read_text())["accuracy"] == trained
    code, out, err = cli([*base, "--resume", ck, "--seed", "2"])
    assert code == 2 and err.strip() == f"specbp: error: checkpoint {ck}: seed 1 does not match the run's 2"


@pytest.mark.slow
def test_infer_on_the_rtl_equals_the_golden_model(tmp_path: Path) -> None:
    """A fixed checkpoint's weights written into the Verilator trainer: its inference mode predicts exactly what
    the golden model predicts (the same confusion matrix)."""
    ck = str(tmp_path / "a.npz")
    trained = run_cli(["train", "--quiet", "--layers", "64,16,10", "--epochs", "2", "--save", ck], tmp_path)
    assert trained.returncode == 0, trained.stderr
    records = {}
    for backend in ("fixed", "rtl"):
        out = str(tmp_path / f"{backend}.json")
        r = run_cli(["infer", "--weights", ck, "--backend", backend, "--json", out, "--png", out + ".png"], tmp_path)
        assert r.returncode == 0, r.stderr
        records[backend] = json.loads(Path(out).read_text())
        assert Path(out + ".png").stat().st_size > 0
    assert records["rtl"]["confusion"] == records["fixed"]["confusion"]
    assert records["rtl"]["accuracy"] == records["fixed"]["accuracy"] > 0.2


def test_build_seeds_reports_min_and_median(tmp_path: Path, monkeypatch, capsys) -> None:
    """``build --seeds N``: one place and route per nextpnr seed; the verdict is the median's."""
    import specbp_rtl.boards.build as build

    fmax = {1: 30.52, 2: 31.67, 3: 29.45}  # the iCEBreaker default's measured seeds

    def fake_build(board, *, placer_seed, out_dir, **kwargs):
        assert Path(out_dir).name == f"seed{placer_seed}"
        report = {"board": board, "fmax_mhz": fmax[placer_seed], "clock_mhz": 30.0, "lanes": 4, "layers": [16, 4, 2]}
        if fmax[placer_seed] < 30:
            raise build.BuildError("timing", report)
        return report

    monkeypatch.setattr(build, "build_board", fake_build)
    monkeypatch.setattr(build, "format_report", lambda report: "report")
    out = tmp_path / "seeds.json"
    code, stdout, _ = run_main(
        ["build", "--board", "icebreaker", "--seeds", "3", "--out-dir", str(tmp_path / "b"), "--json", str(out)], capsys
    )
    assert code == 0 and "min 29.45, median 30.52 MHz; clock 30 MHz met at the median" in stdout
    record = json.loads(out.read_text())
    assert record["fmax_mhz"] == [30.52, 31.67, 29.45] and record["met_at_median"]
    fmax[1] = 29.0
    assert (
        run_main(["build", "--board", "icebreaker", "--seeds", "3", "--out-dir", str(tmp_path / "b")], capsys)[0] == 1
    )
