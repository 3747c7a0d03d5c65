"""Trainer RTL vs the golden model, in Amaranth's simulator.

Weights (``weights_sha256``) and the step classification must be identical to
:class:`~specbp_rtl.model.golden.FixedEngine` driven by
:class:`~specbp_rtl.model.speculation.SpeculativeTrainer` on the same samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from specbp_rtl.config import TrainConfig
from specbp_rtl.data import load_dataset
from specbp_rtl.gateware.cycles import CycleModel
from specbp_rtl.gateware.layout import TrainerConfig
from specbp_rtl.gateware.microarch import PRESETS, Microarchitecture
from specbp_rtl.gateware.update import UpdateUnit
from specbp_rtl.model.golden import FixedEngine
from specbp_rtl.model.speculation import SpeculativeTrainer
from specbp_rtl.numerics import NUMERICS, Numerics
from specbp_rtl.sim.pysim import PysimTrainer


def golden(train: TrainConfig, epochs: list[tuple[np.ndarray, np.ndarray]], numerics: Numerics | None = None):
    eng = FixedEngine(train, numerics)
    tr = SpeculativeTrainer(eng, log=[])
    for x, y in epochs:
        tr.train_epoch(x, y)
    return eng, tr


def random_set(inputs: int, classes: int, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # class-dependent blobs so that training actually moves the outputs
    protos = rng.integers(0, 256, size=(classes, inputs))
    y = rng.integers(0, classes, size=n)
    x = np.clip(protos[y] + rng.integers(-60, 61, size=(n, inputs)), 0, 255).astype(np.uint8)
    return x, y.astype(np.uint8)


def check(
    train: TrainConfig,
    lanes: int,
    epochs: list[tuple[np.ndarray, np.ndarray]],
    numerics: Numerics | None = None,
    arch: Microarchitecture | None = None,
    **options,
) -> PysimTrainer:
    """Bit-exact against the golden model; ``options``: :class:`Microarchitecture` fields (over ``arch``)."""
    arch = dataclasses.replace(arch or Microarchitecture(), **options)
    cfg = TrainerConfig(train=train, lanes=lanes, numerics=numerics or Numerics(), arch=arch)
    eng, tr = golden(train, epochs, cfg.numerics)
    hw = PysimTrainer(cfg)
    probe = epochs[0][0][:6]  # inference after training: the hardware's predictions (first maximal logit)
    hw.run([(x, y, False, True) for x, y in epochs] + [(probe, np.zeros(len(probe), np.uint8), True, False)])
    assert hw.kinds == tr.log
    np.testing.assert_array_equal(hw.predictions, eng.predict(probe))
    c = hw.snapshot_counters[-2]  # after training, before the inference batch
    assert (c["steps"], c["hits"], c["misses"], c["first_sightings"], c["sequential"]) == (
        tr.counters.steps,
        tr.counters.hits,
        tr.counters.misses,
        tr.counters.first_sightings,
        tr.counters.sequential,
    )
    assert c["updates"] == tr.counters.updates
    assert hw.weights_sha256() == eng.weights_sha256()
    # the cycle model is exact
    model = CycleModel(cfg)
    sequential = c["sequential"] + c["first_sightings"]
    assert c["forward_cycles"] == c["steps"] * model.forward
    assert c["backward_cycles"] == (c["steps"] + c["misses"]) * model.backward
    assert c["sequential_cycles"] == sequential * model.sequential_step
    assert c["hit_cycles"] == c["hits"] * model.hit_step
    assert c["miss_cycles"] == c["misses"] * model.miss_step
    assert c["update_cycles"] == c["updates"] * model.update
    # (the counter snapshot is taken a cycle or two after the trainer went idle)
    assert 0 <= c["cycles"] - model.total(sequential, c["hits"], c["misses"], c["updates"]) <= 2
    return hw


@pytest.mark.parametrize(
    ("layers", "lanes", "batch"), [((16, 8, 4), 16, 4), ((16, 20, 8, 8, 4), 16, 3), ((16, 8, 8, 4), 4, 4)]
)
def test_pipelined_mode(layers: tuple[int, ...], lanes: int, batch: int) -> None:
    """The equal-multiplier baseline: the sequential weights, and the pipelined cycle model exactly.

    Forward passes F > B (16-8-4) and F < B (the others); epochs of 11 and 6 samples, so pipelines both
    drain at updates and carry a pending backward pass over an epoch boundary and an inference batch.
    """
    x, y = random_set(16, 4, 11, 3)
    epochs = [(x, y), (x[:6], y[:6])]
    train = TrainConfig(layers=layers, batch=batch, pipeline=True)
    eng, tr = golden(train, epochs)
    seq_eng, seq_tr = golden(TrainConfig(layers=layers, batch=batch), epochs)
    assert eng.weights_sha256() == seq_eng.weights_sha256() and tr.log == seq_tr.log
    cfg = TrainerConfig(train=train, lanes=lanes)
    hw = PysimTrainer(cfg)
    hw.run([(x, y, False, True), (x[:3], y[:3], True, False), (x[:6], y[:6], False, True)])
    assert hw.kinds == tr.log and hw.weights_sha256() == eng.weights_sha256()
    c, model = hw.counters, CycleModel(cfg)
    assert (c["steps"], c["sequential"], c["updates"], c["overlapped"]) == (
        tr.counters.steps,
        tr.counters.sequential,
        tr.counters.updates,
        tr.counters.overlapped,
    )
    assert c["hits"] == c["misses"] == c["first_sightings"] == 0
    steps, overlapped, updates = c["steps"], c["overlapped"], c["updates"]
    assert c["forward_cycles"] == (steps + c["inferences"]) * model.forward
    # every sample's backward pass runs once, except the last one's (still owed when the run stops)
    assert c["backward_cycles"] == (steps - 1) * model.backward
    assert c["sequential_cycles"] == (
        overlapped * model.pipelined_step + (steps - overlapped) * model.pipelined_first_step + updates * model.flush
    )
    assert c["update_cycles"] == updates * model.update
    infer_cycles = c["inferences"] * (model.forward + 3)  # an inference step: F + 2, and its idle cycle
    assert 0 <= c["cycles"] - infer_cycles - model.total_pipelined(steps, overlapped, updates) <= 2


@pytest.mark.parametrize("layers", [(16, 8, 4), (16, 20, 8, 8, 4), (16, 1, 4), (16, 2, 3, 4)])
def test_other_depths(layers: tuple[int, ...]) -> None:
    """Two and four layers, a hidden layer wider than the lanes (two passes), hidden layers of one and two
    neurons (the shortest error-propagation walks)."""
    x, y = random_set(16, 4, 20)
    check(TrainConfig(layers=layers, threshold=0.002, batch=4), 16, [(x, y)])


def test_more_classes_than_lanes() -> None:
    """Six classes on four lanes: the output layer and the softmax feed take two passes."""
    x, y = random_set(16, 6, 24, seed=4)
    hw = check(TrainConfig(layers=(16, 8, 6), threshold=0.002, batch=4), 4, [(x, y)])
    assert hw.counters["hits"] > 0 and hw.counters["misses"] > 0


@pytest.mark.parametrize(("layers", "lanes", "groups"), [((16, 20, 8, 8, 4), 16, 4), ((16, 8, 8, 4), 4, 2)])
def test_lane_grouped_pre_activation_memories(layers: tuple[int, ...], lanes: int, groups: int) -> None:
    """The ULX3S build's ``sz_groups``: pre-activation memories split by lanes, each group with its own address
    register copies (a hidden layer of two passes included); bit-exact, the cycle model holds."""
    x, y = random_set(16, 4, 30, seed=8)
    hw = check(TrainConfig(layers=layers, threshold=0.002, batch=4), lanes, [(x, y)], sz_groups=groups)
    assert hw.counters["hits"] > 0 and hw.counters["misses"] > 0


@pytest.mark.parametrize(
    ("layers", "lanes", "update_lanes", "ice40"),
    [
        ((16, 4, 2), 4, 1, True),  # the iCEBreaker's options: lean formats, memory delay lines and counters, no timing
        ((16, 8, 3), 4, 2, True),  # registers, area trims (a third class: the serial softmax multiplier)
        ((16, 20, 8, 8, 4), 16, 4, False),  # four groups of four, two passes in the first layer
        ((16, 8, 8, 4), 4, 2, False),
    ],
)
def test_lane_serial_update(layers: tuple[int, ...], lanes: int, update_lanes: int, ice40: bool) -> None:
    """``update_lanes``: each weight word goes through a narrower update unit one lane group per cycle;
    bit-exact, and the cycle model's longer update holds (with the iCEBreaker's other options, its forward and
    backward passes too)."""
    x, y = random_set(16, layers[-1], 30, seed=9)
    options = {"numerics": NUMERICS["lean"], "arch": PRESETS["ice40-up5k"]} if ice40 else {}
    hw = check(
        TrainConfig(layers=layers, threshold=0.002, batch=4),
        lanes,
        [(x, y), (x[:9], y[:9])],
        update_lanes=update_lanes,
        **options,
    )
    assert hw.counters["updates"] >= 8
    cfg = TrainerConfig(
        train=TrainConfig(layers=layers), lanes=lanes, arch=Microarchitecture(update_lanes=update_lanes)
    )
    assert CycleModel(cfg).update == (lanes // update_lanes) * cfg.total_words + UpdateUnit.LATENCY + 4


@pytest.mark.parametrize(
    ("threshold", "metric", "lanes"),
    [
        (0.0, "mean-abs", 16),  # baseline: every step sequential
        (0.25, "mean-abs", 16),  # the paper's threshold: every step after a first sighting hits
        (0.002, "mean-abs", 16),  # hits and misses (golden: 44 hits, 17 misses)
        (0.002, "max-abs", 4),  # hits and misses, 4 lanes: two passes per hidden layer
        (0.25, "mean-abs", 4),
    ],
)
def test_small_topology(threshold: float, metric: str, lanes: int) -> None:
    """16-8-8-4 over two epochs (the second shorter), batch 5: 65 steps."""
    x, y = random_set(16, 4, 40)
    train = TrainConfig(layers=(16, 8, 8, 4), threshold=threshold, metric=metric, batch=5)
    hw = check(train, lanes, [(x, y), (x[:25], y[:25])])
    if threshold == 0.002:
        assert hw.counters["hits"] > 0 and hw.counters["misses"] > 0


@pytest.mark.parametrize(("layers", "lanes", "classes"), [((16, 4, 2), 1, 2), ((16, 8, 8, 4), 4, 4)])
def test_compact_numerics_and_memory_delay_lines(layers: tuple[int, ...], lanes: int, classes: int) -> None:
    """The iCEBreaker's trainer options, ``compact`` formats and the long delay lines in memories
    (``delay_ram_min=3``): bit-exact with the golden model in the same formats; the cycle model holds."""
    x, y = random_set(layers[0], classes, 30, seed=6)
    train = TrainConfig(layers=layers, threshold=0.002, batch=4)
    hw = check(train, lanes, [(x, y), (x[:9], y[:9])], numerics=NUMERICS["compact"], delay_ram_min=3)
    assert hw.counters["hits"] > 0 and hw.counters["misses"] > 0


@pytest.mark.parametrize("threshold", [0.0, 0.25, 0.0005])
def test_digits_topology(threshold: float) -> None:
    """64-16-16-10 on the embedded digits, 60 samples, the paper's batch of 15."""
    ds = load_dataset("digits")
    x, y = ds.train_x[:60], ds.train_y[:60]
    hw = check(TrainConfig(layers=(64, 16, 16, 10), threshold=threshold), 16, [(x, y)])
    if threshold == 0.0005:
        assert hw.counters["hits"] > 0 and hw.counters["misses"] > 0


@pytest.mark.slow
def test_mnist_topology(mnist_dir) -> None:
    """784-16-16-10, 16 lanes, 12 MNIST samples with speculation (first sightings and hits)."""
    ds = load_dataset("mnist", mnist_dir, 8000, 2000)
    x, y = ds.train_x[:12], ds.train_y[:12]
    hw = check(TrainConfig(layers=(784, 16, 16, 10), threshold=0.25), 16, [(x, y)])
    assert hw.counters["hits"] > 0


def test_cli_pysim_matches_fixed(tmp_path) -> None:
    """``specbp train --backend pysim`` gives the fixed backend's weights and adds the cycle fields."""
    import json

    from specbp_rtl.cli import main

    common = ["train", "--quiet", "--train", "20", "--test", "10", "--epochs", "2", "--threshold", "0.25"]
    assert main([*common, "--backend", "fixed", "--json", str(tmp_path / "fixed.json")]) == 0
    assert main([*common, "--backend", "pysim", "--json", str(tmp_path / "pysim.json")]) == 0
    fixed = json.loads((tmp_path / "fixed.json").read_text())
    hw = json.loads((tmp_path / "pysim.json").read_text())
    for key in ("weights_sha256", "accuracy_per_epoch", "hits", "misses", "first_sightings", "steps"):
        assert hw[key] == fixed[key], key
    assert hw["backend"] == "pysim"
    assert hw["cycles"] > 0 and hw["cycles_per_sample"] > 0
    assert hw["forward_cycles"] > 0 and hw["backward_cycles"] > 0
    assert set(hw["cycles_per_step"]) == {"hit", "miss", "sequential"}
    assert hw["cycles_per_step"]["hit"] < hw["cycles_per_step"]["sequential"]


def test_cli_pysim_vcd(tmp_path) -> None:
    from specbp_rtl.cli import main

    vcd = tmp_path / "run.vcd"
    args = [
        "train",
        "--quiet",
        "--backend",
        "pysim",
        "--train",
        "2",
        "--test",
        "2",
        "--batch",
        "2",
        "--epochs",
        "1",
        "--vcd",
        str(vcd),
    ]
    assert main(args) == 0
    assert vcd.stat().st_size > 0 and (tmp_path / "run.gtkw").stat().st_size > 0
    assert "sample__payload" in vcd.read_text()[:200000]


@pytest.mark.parametrize(
    ("kwargs", "arch", "name"),
    [
        ({"lanes": 0}, {}, "lanes"),
        ({"lanes": 65}, {}, "lanes"),
        ({}, {"counter_width": 8}, "counter_width"),
        ({}, {"counter_width": 65}, "counter_width"),
        ({}, {"delay_ram_min": 1}, "delay_ram_min"),
        ({}, {"delay_ram_min": -2}, "delay_ram_min"),
        ({}, {"sz_groups": 0}, "sz_groups"),
        ({"lanes": 16}, {"sz_groups": 3}, "sz_groups"),
        ({}, {"update_lanes": 0}, "update_lanes"),
        ({}, {"counter_memory": "distributed"}, "counter_memory"),
        ({}, {"mac_output_registers": 0}, "mac_output_registers"),
        ({}, {"softmax_serial_multiplier": 1}, "softmax_serial_multiplier"),
        ({}, {"link_address_check": None}, "link_address_check"),
        ({"lanes": 4}, {"update_lanes": 3}, "update_lanes"),
        ({"train": TrainConfig(layers=(16, 8, 17))}, {}, "layers"),
        ({"train": TrainConfig(threshold=0.1, metric="cross-entropy")}, {}, "metric"),
        ({"arch": "ice40-up5k"}, None, "arch"),
    ],
)
def test_invalid_trainer_config_names_the_parameter(kwargs: dict, arch: dict | None, name: str) -> None:
    from specbp_rtl.config import ConfigError

    with pytest.raises(ConfigError, match=f"^{name}:"):
        TrainerConfig(**kwargs, **({} if arch is None else {"arch": Microarchitecture(**arch)}))


#: every Microarchitecture field that changes the trainer's datapath and was only ever switched together with
#: others (the ECP5's timing registers, the iCE40's area trims): each alone must stay bit-exact, cycle model too
SINGLE_OPTIONS = (
    "backward_operand_registers",
    "backward_gradient_registers",
    "mac_output_registers",
    "forward_weight_register",
    "host_read_word_register",
    "input_read_port_if_used",
    "softmax_exp_one_in_logic",
    "softmax_serial_multiplier",
    "host_state_access",
)


@pytest.mark.parametrize("option", SINGLE_OPTIONS)
def test_each_microarchitecture_option_alone(option: str) -> None:
    """One option flipped from the default: weights, step kinds, counters and the cycle model still agree."""
    x, y = random_set(16, 3, 16, seed=11)
    flipped = not getattr(Microarchitecture(), option)
    # (16, 4, 4, 3) on 4 lanes: one pass per layer (input_read_port_if_used acts), a hidden pre-activation memory
    check(TrainConfig(layers=(16, 4, 4, 3), threshold=0.002, batch=4), 4, [(x, y)], **{option: flipped})


def test_input_read_port_option_changes_the_netlist() -> None:
    """``input_read_port_if_used`` drops a read port when the first layer has one pass (the option test above
    would otherwise pass vacuously)."""
    from amaranth.back import rtlil

    from specbp_rtl.gateware.trainer import Trainer

    texts = [
        rtlil.convert(Trainer(TrainerConfig(train=TrainConfig(layers=(16, 4, 4, 3)), lanes=4, arch=arch)))
        for arch in (Microarchitecture(), Microarchitecture(input_read_port_if_used=True))
    ]
    assert texts[0].count("$memrd") > texts[1].count("$memrd")


def test_presets_are_valid_and_differ() -> None:
    """Every preset builds a configuration; the boards name their preset."""
    from specbp_rtl.boards.top import BOARDS

    assert set(PRESETS) == {"default", "ecp5-80mhz", "ice40-up5k"}
    assert PRESETS["default"] == Microarchitecture()
    assert len(set(PRESETS.values())) == len(PRESETS)
    for arch in PRESETS.values():
        TrainerConfig(train=TrainConfig(layers=(16, 8, 4)), lanes=4, arch=arch)
    assert BOARDS["icebreaker"].arch == PRESETS["ice40-up5k"] and BOARDS["ulx3s-85f"].arch == PRESETS["ecp5-80mhz"]


def test_32_bit_counters() -> None:
    """``counter_width=32`` (the iCEBreaker's) counts exactly like the default 48 bits on a short run."""
    x, y = random_set(16, 4, 6)
    runs = []
    for width in (48, 32):
        hw = PysimTrainer(
            TrainerConfig(
                train=TrainConfig(layers=(16, 8, 4), threshold=0.25, batch=4),
                lanes=4,
                arch=Microarchitecture(counter_width=width),
            )
        )
        hw.run([(x, y, False, True)])
        runs.append((hw.counters, hw.weights_sha256()))
    assert runs[0] == runs[1]
    assert runs[1][0]["hits"] > 0 and runs[1][0]["cycles"] > 0


def test_peek_needs_an_elaborated_trainer() -> None:
    """The peek API reads what elaborate built; before that it says so instead of failing on a missing attribute."""
    from amaranth.hdl import Fragment

    from specbp_rtl.gateware.trainer import Trainer

    trainer = Trainer(TrainerConfig(train=TrainConfig(layers=(16, 8, 4)), lanes=4))
    with pytest.raises(RuntimeError, match="^peek: elaborate the trainer"):
        trainer.peek_weights(None)
    Fragment.get(trainer, None)  # elaborated: what it peeks at exists now (and Amaranth sees it used)
    assert set(trainer._peek) == {"weights", "counter_bank", "sum_counters"}
