# amaranth: UnusedElaboratable=no
"""Board link end to end: the host driver's frames over a bit-level UART into the simulated board.

The board core (:class:`~specbp_rtl.boards.link.LinkedTrainer`: UART + Link +
Trainer, 16-8-8-4, 4 lanes, 4 cycles per bit) runs in Amaranth's simulator;
:class:`~specbp_rtl.boards.host.BoardTrainer` talks to it through
:class:`~specbp_rtl.boards.simserial.SimSerial`. Results are compared with the
golden model (FixedEngine + SpeculativeTrainer).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest
from amaranth.hdl import Signal
from amaranth.sim import Simulator

from specbp_rtl.boards import protocol as proto
from specbp_rtl.boards.build import BuildError, build_board, parse_nextpnr_log, program_bitstream
from specbp_rtl.boards.host import BoardTrainer
from specbp_rtl.boards.link import Link, LinkedTrainer, crc16_update
from specbp_rtl.boards.pll import ecp5_pll_params
from specbp_rtl.boards.simserial import SimSerial, uart_bits
from specbp_rtl.boards.top import BOARDS, BoardTop, trainer_config
from specbp_rtl.config import ConfigError, TrainConfig
from specbp_rtl.data import Dataset
from specbp_rtl.gateware.host import COUNTERS
from specbp_rtl.gateware.layout import TrainerConfig
from specbp_rtl.gateware.microarch import PRESETS, Microarchitecture
from specbp_rtl.model.golden import FixedEngine
from specbp_rtl.model.speculation import SpeculativeTrainer
from specbp_rtl.numerics import NUMERICS, Numerics
from specbp_rtl.sim.runner import run_training
from specbp_rtl.steps import StepKind

DIVISOR = 4
TIMEOUT = 200
#: a small receive buffer for the corrupted-frame test (write runs split into frames of 15 words)
MAX_PAYLOAD = 64
TRAIN = TrainConfig(layers=(16, 8, 8, 4), batch=5, threshold=0.25)
CFG = TrainerConfig(train=TRAIN, lanes=4)


def random_set(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(4, 16))
    y = rng.integers(0, 4, size=n)
    x = np.clip(protos[y] + rng.integers(-60, 61, size=(n, 16)), 0, 255).astype(np.uint8)
    return x, y.astype(np.uint8)


@pytest.fixture
def board(request):
    """``(dut, sim serial, driver)``; ``@pytest.mark.parametrize("board", [{options}], indirect=True)``: ``arch``
    (:class:`Microarchitecture` fields) and :class:`LinkedTrainer` arguments."""
    options = dict(getattr(request, "param", {}))
    cfg = dataclasses.replace(CFG, arch=Microarchitecture(**options.pop("arch", {})))
    dut = LinkedTrainer(cfg, DIVISOR, TIMEOUT, **options)
    ser = SimSerial(dut, DIVISOR, read_timeout=30)
    yield dut, ser, BoardTrainer(stream=ser)
    ser.close()


# -- protocol and CRC ------------------------------------------------------------------------------------------
def test_crc_model() -> None:
    assert proto.crc16(b"123456789") == 0x29B1  # CRC-16/CCITT-FALSE check value
    data = bytes(random.Random(1).randrange(256) for _ in range(64))
    crc = 0xFFFF
    for byte in data:
        crc = proto.crc16_bitwise(crc, byte)
    assert crc == proto.crc16(data)


def test_gateware_crc_matches_model() -> None:
    crc, byte = Signal(16), Signal(8)
    out = Signal(16)
    from amaranth.hdl import Module

    m = Module()
    m.d.comb += out.eq(crc16_update(crc, byte))
    rng = random.Random(2)
    cases = [(0xFFFF, 0), (0, 0xFF), (0x1234, 0xA5)] + [(rng.randrange(65536), rng.randrange(256)) for _ in range(200)]

    async def bench(ctx) -> None:
        for c, b in cases:
            ctx.set(crc, c)
            ctx.set(byte, b)
            assert ctx.get(out) == proto.crc16_bitwise(c, b), (c, b)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_frame_round_trip() -> None:
    frame = proto.train_sample(3, bytes(range(16)), epoch_start=True)
    cmd, payload = proto.decode_frame(frame)
    assert cmd == proto.Cmd.TRAIN_SAMPLE and payload == bytes([0x83]) + bytes(range(16))
    with pytest.raises(proto.ProtocolError, match="CRC"):
        proto.decode_frame(frame[:-1] + bytes([frame[-1] ^ 1]))
    stream = bytearray(b"\x00\x01" + frame)

    def read(n: int) -> bytes:  # at most 3 bytes per call, like a serial port with a short timeout
        chunk = bytes(stream[: min(n, 3)])
        del stream[: len(chunk)]
        return chunk

    assert proto.read_frame(read) == frame
    with pytest.raises(proto.ProtocolError, match="timeout"):
        proto.read_frame(lambda n: b"")
    for info in (
        proto.PingInfo(proto.PROTOCOL_VERSION, 4, (16, 8, 8, 4), 512),
        proto.PingInfo(proto.PROTOCOL_VERSION, 1, (16, 4, 2), 64, "compact"),
    ):
        assert proto.PingInfo.parse(info.encode()) == info
    old = bytearray(info.encode())
    old[2] = 1
    with pytest.raises(proto.ProtocolError, match="protocol version 1, this host 2: rebuild the bitstream"):
        proto.PingInfo.parse(bytes(old))
    with pytest.raises(proto.ProtocolError, match="too short"):
        proto.PingInfo.parse(info.encode()[:-1])
    with pytest.raises(proto.ProtocolError, match="3-byte reply is too short"):
        proto.PingInfo.parse(info.encode()[:3])
    with pytest.raises(proto.ProtocolError, match="unknown number formats 9"):
        proto.PingInfo.parse(info.encode()[:-1] + b"\x09")


def test_link_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="timeout"):
        Link(CFG, timeout=1)
    with pytest.raises(ValueError, match="max_payload"):
        Link(CFG, timeout=100, max_payload=8)
    odd = TrainerConfig(train=TRAIN, lanes=4, numerics=Numerics(exp_lut_frac=6))
    with pytest.raises(ConfigError, match="^numerics: not one of the named format sets"):
        Link(odd, timeout=100)


def _link_status(link: Link, frames: list[bytes]) -> list[int]:
    """Feed ``frames`` into a bare Link (rx bytes three cycles apart, a host bus that answers reads a cycle
    later) and return each response's status byte."""
    statuses: list[int] = []
    tx = bytearray()

    async def bus(ctx) -> None:
        async for _clk, _rst, re, valid, byte in ctx.tick().sample(link.host.re, link.tx.valid, link.tx.payload):
            ctx.set(link.host.rvalid, re)
            ctx.set(link.host.rdata, 0x1234)
            if valid:
                tx.append(byte)

    async def testbench(ctx) -> None:
        ctx.set(link.trainer_idle, 1)
        ctx.set(link.tx.ready, 1)
        for frame in frames:
            for byte in frame:
                ctx.set(link.rx.payload, byte)
                ctx.set(link.rx.valid, 1)
                await ctx.tick().until(link.rx.ready)
                ctx.set(link.rx.valid, 0)
                await ctx.tick().repeat(2)
            while len(tx) < 6 or len(tx) < 6 + int.from_bytes(tx[2:4], "little"):
                await ctx.tick()
            statuses.append(proto.Response.parse(bytes(tx)).status)
            tx.clear()

    sim = Simulator(link)
    sim.add_clock(1e-8)
    sim.add_testbench(bus, background=True)
    sim.add_testbench(testbench)
    sim.run()
    return statuses


@pytest.mark.parametrize("lanes,check_registers", [(4, False), (3, True)])
def test_link_refuses_runs_outside_the_address_map(lanes: int, check_registers: bool) -> None:
    """WRITE_WEIGHTS and READ_WEIGHTS runs outside the host bus's map (past a layer's last word, into the next
    layer, unmapped or read-only registers, the top address byte) get BAD_ARG, exactly where
    ``gateware.host.access_error`` says; runs inside it get OK. With 3 lanes (not a power of two) a run must also
    stay inside one word."""
    from specbp_rtl.gateware.host import access_error, weight_address

    cfg = TrainerConfig(train=TRAIN, lanes=lanes)
    words = tuple(cfg.words(layer) for layer in range(cfg.n_layers))
    link = Link(cfg, timeout=100, max_payload=64, check_registers=check_registers)
    runs: list[tuple[int, int, bool]] = []
    for layer, n in enumerate(words):
        last = weight_address(layer, n - 1, lanes - 1, lanes)
        runs += [
            (last, 1, True),
            (last, 2, True),
            (last + 1, 1, False),
            (last - 3, 4, False),
            (weight_address(layer, 0, 0, lanes), lanes, True),
            (weight_address(layer, 0, 1, lanes), lanes, False),
        ]
    runs += [
        (weight_address(len(words), 0, 0, lanes), 1, True),
        (0, 5, False),
        (0, 0x2E, False),
        (0x10, 30, False),
        (0x2D, 2, False),
        (0x0F, 1, False),
        (1, 3, True),
        (0, 1, True),
        (3, 2, True),
        (2, 0, True),
        (0x1000000 | weight_address(0, 0, 0, lanes), 1, False),
        (0xFFFFFF, 1, False),
        (0x0FFFFF, 2, False),
    ]
    rng = random.Random(lanes)
    for _ in range(24):
        layer = rng.randrange(len(words) + 1)
        runs.append((((layer + 1) << 20) | rng.randrange(1 << 12), rng.randrange(1, 15), rng.random() < 0.5))
    frames = [
        proto.write_words(base, [7] * count) if write else proto.read_words(base, count) for base, count, write in runs
    ]
    got = _link_status(link, frames)
    for (base, count, write), status in zip(runs, got):
        want = proto.Status.BAD_ARG if access_error(words, lanes, base, count, write) else proto.Status.OK
        assert status == want, (hex(base), count, write)
    assert proto.Status.BAD_ARG in got and proto.Status.OK in got


# -- end to end ---------------------------------------------------------------------------------------------------
def test_icebreaker_core_over_uart_matches_golden() -> None:
    """The iCEBreaker's own trainer (16-4-2 x4, ``lean`` formats, delay lines in memories, the update unit one
    lane at a time, the event counters in a counter bank, no timing registers: the ice40-up5k preset) behind
    its link: PING names the formats, and the driver trains it to the fixed model's weights and counters in those
    formats."""
    # (threshold 0.01: the lean formats' probabilities have 8 fractional bits; 0.002 would hit only equal outputs)
    cfg = trainer_config("icebreaker", train=TrainConfig(layers=(16, 4, 2), batch=3, threshold=0.01))
    assert cfg.numerics == NUMERICS["lean"] and cfg.lanes == 4 and cfg.arch == PRESETS["ice40-up5k"]
    dut = LinkedTrainer(cfg, DIVISOR, TIMEOUT)
    ser = SimSerial(dut, DIVISOR, read_timeout=30)
    try:
        bt = BoardTrainer(stream=ser)
        assert bt.ping().numerics == "lean"
        x, y = random_set(10, seed=5)
        y = y % 2
        ds = Dataset("blobs", x[:7], y[:7], x[7:], y[7:])
        result = bt.train(cfg.train, ds, epochs=1).as_json()
    finally:
        ser.close()
    fixed = run_training("fixed", cfg.train, ds, 1, numerics="lean").as_json()
    for key in (
        "weights_sha256",
        "accuracy_per_epoch",
        "steps",
        "hits",
        "misses",
        "first_sightings",
        "sequential",
        "updates",
        "numerics",
    ):
        assert result[key] == fixed[key], key
    assert result["hits"] > 0 and result["misses"] > 0


def test_train_over_uart_matches_golden(board) -> None:
    """``BoardTrainer.train`` on the simulated board: same weights, counters and accuracy as the fixed model."""
    dut, ser, bt = board
    x, y = random_set(12, seed=3)
    ds = Dataset("blobs", x[:8], y[:8], x[8:], y[8:])
    info = bt.ping()
    assert info == proto.PingInfo(proto.PROTOCOL_VERSION, 4, (16, 8, 8, 4), 512)

    result = bt.train(TRAIN, ds, epochs=1)
    fixed = run_training("fixed", TRAIN, ds, 1)
    record, golden = result.as_json(), fixed.as_json()
    for key in (
        "weights_sha256",
        "accuracy_per_epoch",
        "steps",
        "hits",
        "misses",
        "first_sightings",
        "sequential",
        "updates",
        "hit_rate",
    ):
        assert record[key] == golden[key], key
    assert record["backend"] == "board" and record["lanes"] == 4
    assert record["cycles"] > 0 and record["board_cycles"] > record["cycles"]
    assert set(record["cycles_per_step"]) == {"hit", "miss", "sequential"}
    json.dumps(record)

    # weights_sha256 above hashes the weights read back over the link: bit-identical to the golden model
    eng = FixedEngine(TRAIN)
    tr = SpeculativeTrainer(eng, log=[])
    tr.train_epoch(ds.train_x, ds.train_y)
    assert eng.weights_sha256() == record["weights_sha256"]
    # inference frames give the golden model's predictions
    for sample in ds.test_x[:2]:
        assert bt.infer(bytes(sample)) == eng.predict(sample[None])[0]
    # one more training step reports the golden model's step kind
    prediction, kind = bt.train_sample(int(ds.test_y[0]), bytes(ds.test_x[0]))
    tr.train_epoch(ds.test_x[:1], ds.test_y[:1])  # epoch_start: a new epoch in the model too
    assert 0 <= prediction < 4 and kind == tr.log[-1]
    assert ser.framing_errors == 0


def snapshot(dut, ctx) -> tuple[list, dict]:
    trainer = dut.trainer
    weights = trainer.peek_weight_words(ctx)
    counters = {name: int(ctx.get(trainer.counters[name])) for name in COUNTERS if name != "cycles"}
    return weights, counters


@pytest.mark.parametrize(
    "board",
    [{"max_payload": MAX_PAYLOAD}, {"max_payload": MAX_PAYLOAD, "arch": {"link_check_registers": True}}],
    indirect=True,
    ids=["comparators", "check-registers"],
)
def test_corrupted_frames_change_nothing(board) -> None:
    """Bad CRC, truncation, unknown command, wrong length, bad argument, framing error: each gets its error
    response, no state changes, and the next good frame works."""
    dut, ser, bt = board
    x, y = random_set(3, seed=5)
    assert bt.train_sample(int(y[0]), bytes(x[0]), epoch_start=True)[1] is StepKind.FIRST_SIGHTING
    before = ser.peek(lambda ctx: snapshot(dut, ctx))
    assert before[1]["steps"] == 1

    good_train = proto.train_sample(int(y[1]), bytes(x[1]))
    good_write = proto.write_words(0x100000, [123456] * 8)  # would overwrite layer-0 weights

    def flip(frame: bytes, index: int) -> bytes:
        return frame[:index] + bytes([frame[index] ^ 0x10]) + frame[index + 1 :]

    def expect(frame_or_none, status: proto.Status, cmd: int) -> None:
        if frame_or_none is not None:
            ser.write(frame_or_none)
        response = proto.Response.parse(proto.read_frame(ser.read))
        assert (response.status, response.cmd) == (status, cmd | proto.RESPONSE)
        assert bt.ping().layers == (16, 8, 8, 4)  # the next good frame works

    expect(flip(good_train, len(good_train) - 1), proto.Status.BAD_CRC, proto.Cmd.TRAIN_SAMPLE)  # CRC byte
    expect(flip(good_train, 9), proto.Status.BAD_CRC, proto.Cmd.TRAIN_SAMPLE)  # a pixel
    expect(flip(good_write, 7), proto.Status.BAD_CRC, proto.Cmd.WRITE_WEIGHTS)
    expect(good_train[:10], proto.Status.TIMEOUT, proto.Cmd.TRAIN_SAMPLE)  # truncated: the link times out
    expect(good_write[:20], proto.Status.TIMEOUT, proto.Cmd.WRITE_WEIGHTS)
    expect(proto.encode_frame(0x42, b"\x01\x02"), proto.Status.UNKNOWN_CMD, 0x42)
    # no flags byte
    expect(proto.encode_frame(proto.Cmd.TRAIN_SAMPLE, bytes(16)), proto.Status.BAD_LENGTH, proto.Cmd.TRAIN_SAMPLE)
    expect(proto.encode_frame(proto.Cmd.WRITE_WEIGHTS, bytes(10)), proto.Status.BAD_LENGTH, proto.Cmd.WRITE_WEIGHTS)
    expect(proto.encode_frame(proto.Cmd.PING, b"\x00"), proto.Status.BAD_LENGTH, proto.Cmd.PING)
    # longer than the receive buffer
    expect(proto.encode_frame(proto.Cmd.WRITE_WEIGHTS, bytes(68)), proto.Status.BAD_LENGTH, proto.Cmd.WRITE_WEIGHTS)
    expect(proto.train_sample(7, bytes(16)), proto.Status.BAD_ARG, proto.Cmd.TRAIN_SAMPLE)  # label >= classes
    expect(proto.set_metric(9), proto.Status.BAD_ARG, proto.Cmd.SET_METRIC)
    expect(proto.encode_frame(proto.Cmd.SET_SPEC, b"\x04"), proto.Status.BAD_ARG, proto.Cmd.SET_SPEC)
    # a UART framing error inside a frame: the link drains the line, then answers FRAMING
    broken = [bit for byte in good_train[:6] for bit in uart_bits(byte)]
    broken[-1] = 0
    ser.write_bits(broken + [1] * 10)
    expect(good_train[6:], proto.Status.FRAMING, proto.Cmd.TRAIN_SAMPLE)
    # stray bytes outside a frame are ignored
    ser.write(b"\x00\x11\x22")
    assert bt.ping().lanes == 4

    after = ser.peek(lambda ctx: snapshot(dut, ctx))
    assert after == before
    # good frames still change state
    assert bt.train_sample(int(y[1]), bytes(x[1]))[1] in (StepKind.HIT, StepKind.FIRST_SIGHTING)
    bt.set_threshold(77)
    assert bt.read_words(0x1, 1) == [77]
    bt.set_spec(False, pipeline=True)  # the mode register: bit 0 speculation, bit 1 pipelined baseline
    assert bt.read_words(0x3, 1) == [2]
    bt.write_words(0x100000, [-5, 6, 7, -8])  # a whole word: committed with its last lane
    assert bt.read_words(0x100000, 4, signed=True) == [-5, 6, 7, -8]
    counters = bt.counters()
    assert counters["steps"] == 2 and counters["cycles"] > 0
    assert ser.framing_errors == 0


class NoisyLine:
    """A byte stream that corrupts a fraction of the frames in each direction (one bit of one byte): requests on
    their way to the board, and the responses coming back. Which frames: two seeded generators, one per
    direction; which bit: a third."""

    def __init__(self, stream, rate: float, seed: int) -> None:
        self.stream, self.rate = stream, rate
        self.requests, self.responses, self.where = (
            random.Random(2 * seed + 1),
            random.Random(2 * seed + 2),
            random.Random(seed),
        )
        self.corrupted = {"requests": 0, "responses": 0}
        self._flip_at: int | None = None  # index of the response byte to corrupt
        self._read = 0

    def write(self, data: bytes) -> int:
        data = bytearray(data)
        if self.requests.random() < self.rate:
            data[self.where.randrange(len(data))] ^= 1 << self.where.randrange(8)
            self.corrupted["requests"] += 1
        self._flip_at = self.where.randrange(7) if self.responses.random() < self.rate else None
        self._read = 0
        return self.stream.write(bytes(data))

    def read(self, n: int) -> bytes:
        data = bytearray(self.stream.read(n))
        if self._flip_at is not None and self._read <= self._flip_at < self._read + len(data):
            data[self._flip_at - self._read] ^= 1 << self.where.randrange(8)
            self.corrupted["responses"] += 1
            self._flip_at = None
        self._read += len(data)
        return bytes(data)


def test_training_survives_a_noisy_line() -> None:
    """1 % of the frames corrupted in each direction: the driver sends rejected frames again, recovers lost
    answers (a training step's from the step counter), and the weights equal a clean run's."""
    x, y = random_set(36, seed=9)
    ds = Dataset("blobs", x[:30], y[:30], x[30:], y[30:])
    dut = LinkedTrainer(CFG, DIVISOR, TIMEOUT)
    # a lost response: the host gives up after 4,000 quiet cycles (the longest answer, a READ_WEIGHTS of the
    # largest layer, comes in about 100 cycles per byte)
    ser = SimSerial(dut, DIVISOR, read_timeout=60, read_cycles=4000)
    try:
        line = NoisyLine(ser, rate=0.01, seed=2)  # (this seed corrupts a request and a response in this run)
        bt = BoardTrainer(stream=line)
        record = bt.train(TRAIN, ds, epochs=1).as_json()
    finally:
        ser.close()
    fixed = run_training("fixed", TRAIN, ds, 1).as_json()
    for key in ("weights_sha256", "accuracy_per_epoch", "steps", "hits", "misses", "first_sightings", "updates"):
        assert record[key] == fixed[key], key
    assert "error" not in record and not record["interrupted"]
    assert line.corrupted["requests"] >= 1 and line.corrupted["responses"] >= 1, line.corrupted
    assert record["link"]["retries"] >= line.corrupted["requests"], record["link"]
    print(f"frames corrupted {line.corrupted}, link {record['link']}, weights {record['weights_sha256'][:16]}")


# -- build and program ---------------------------------------------------------------------------------------
def test_parse_nextpnr_log() -> None:
    log = """Info: Device utilisation:
Info: \t         ICESTORM_LC:   4000/   5280    75%
Info: \t        ICESTORM_RAM:     20/     30    66%
Info: \t        ICESTORM_DSP:      3/      8    37%
Info: Max frequency for clock 'cd_sync_clk12_0__i': 30.00 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock 'cd_sync_clk12_0__i': 31.50 MHz (PASS at 12.00 MHz)
"""
    r = parse_nextpnr_log(log, "icebreaker")
    assert r == {
        "luts": 4000,
        "luts_available": 5280,
        "brams": 20,
        "brams_available": 30,
        "dsps": 3,
        "dsps_available": 8,
        "fmax_mhz": 31.5,
    }


def fake_tool(directory: Path, name: str) -> Path:
    directory.mkdir(exist_ok=True)
    log = directory / f"{name}.args"
    script = directory / name
    script.write_text(f'#!/bin/sh\necho "$@" > "{log}"\n')
    script.chmod(0o755)
    return log


@pytest.mark.parametrize(
    ("board", "tool", "args"),
    [
        ("icebreaker", "iceprog", []),
        ("ulx3s-85f", "openFPGALoader", ["-b", "ulx3s", "-m"]),
    ],
)
def test_program_with_fake_programmer(tmp_path, monkeypatch, board, tool, args) -> None:
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\x00" * 16)
    log = fake_tool(tmp_path / "bin", tool)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv("ICEPROG", raising=False)
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    assert program_bitstream(board, bitstream) == [tool, *args, str(bitstream)]
    assert log.read_text().split() == [*args, str(bitstream)]


def test_program_and_build_errors(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no programmer, no toolchain
    monkeypatch.delenv("ICEPROG", raising=False)
    with pytest.raises(BuildError, match=r"^program: iceprog not found on PATH"):
        program_bitstream("icebreaker", tmp_path / "top.bin")
    monkeypatch.setenv("YOSYS", "no-such-yosys")
    with pytest.raises(BuildError, match=r"^build: no-such-yosys not found") as err:
        build_board("icebreaker", out_dir=str(tmp_path / "b"))
    assert "\n" not in str(err.value)
    with pytest.raises(BuildError, match="unknown board"):
        build_board("de10", out_dir=str(tmp_path / "b"))


@pytest.mark.parametrize(("mhz", "dividers"), [(50.0, (1, 2, 12)), (62.5, (2, 5, 10)), (75.0, (1, 3, 8))])
def test_ecp5_pll_dividers(mhz, dividers) -> None:
    p = ecp5_pll_params(25.0, mhz)
    assert (p.clki_div, p.clkfb_div, p.clkop_div) == dividers
    assert p.out_mhz == pytest.approx(mhz, abs=1e-9) and 400 <= p.vco_mhz <= 800


@pytest.mark.parametrize("mhz", [51.3, 450.0, 1.0])
def test_ecp5_pll_rejects_impossible_clocks(mhz) -> None:
    with pytest.raises(ValueError, match=r"^clock_mhz: "):
        ecp5_pll_params(25.0, mhz)


def test_ulx3s_top_clocks_from_the_pll() -> None:
    """The ULX3S top drives ``sync`` from an EHXPLLL at the board's PLL clock, constrained for nextpnr."""
    spec = BOARDS["ulx3s-85f"]
    cfg = trainer_config("ulx3s-85f", 4, (16, 8, 8, 4))
    plan = spec.make_platform().build(
        BoardTop(cfg, pll_mhz=spec.pll_mhz), name="top", do_build=False, **dict(spec.toolchain_opts)
    )
    il = plan.files["top.il"]
    assert "EHXPLLL" in il and "SGSR" in il
    assert spec.pll_mhz == 80.0  # 25 MHz / 5 * 16, VCO 560 MHz
    assert "parameter \\CLKI_DIV 5" in il and "parameter \\CLKFB_DIV 16" in il and "parameter \\CLKOP_DIV 7" in il
    assert 'FREQUENCY NET "pll.pll_clk" 80000000.0 HZ;' in plan.files["top.lpf"]


def test_build_rejects_bad_clocks(tmp_path) -> None:
    with pytest.raises(BuildError, match=r"^clock_mhz: icebreaker runs from its 12 MHz crystal"):
        build_board("icebreaker", out_dir=str(tmp_path / "b"), clock_mhz=30.0)
    with pytest.raises(BuildError, match=r"^clock_mhz: the ECP5 PLL cannot make exactly 51.3 MHz"):
        build_board("ulx3s-85f", out_dir=str(tmp_path / "b"), clock_mhz=51.3)


@pytest.mark.slow
def test_build_icebreaker(tmp_path) -> None:
    """Synthesise, place and route the iCEBreaker default: a bitstream, timing met at the 12 MHz crystal, the
    MAC arrays' multipliers as the only DSPs."""
    spec = BOARDS["icebreaker"]
    json_path = tmp_path / "report.json"
    report = build_board("icebreaker", out_dir=str(tmp_path / "build"), json_path=str(json_path))
    assert report["lanes"] == spec.lanes and tuple(report["layers"]) == spec.layers
    # the target (nextpnr repeats its result for one netlist and the pinned version)
    assert report["fmax_mhz"] >= 30.0 and report["bitstream_bytes"] > 0
    assert report["spram"] == 2  # the counter bank
    assert Path(report["bitstream"]).stat().st_size == report["bitstream_bytes"]
    assert report["dsps"] == 2 * spec.lanes
    assert report["luts"] <= report["luts_available"] and report["brams"] <= report["brams_available"]
    assert json.loads(json_path.read_text()) == report
