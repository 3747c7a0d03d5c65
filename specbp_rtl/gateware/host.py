"""Host interface of the trainer: a small register/memory bus.

:class:`HostBus` is driven by the host side (the board's UART bridge, or a
simulation driver). A read takes five cycles: assert ``re`` with ``addr`` for
one cycle, ``rvalid`` pulses with ``rdata`` five cycles later (reads pipeline:
one may start every cycle; unmapped registers read 0). With the event
counters in a counter bank
(:attr:`~specbp_rtl.gateware.layout.TrainerConfig.counter_memory`), a read of
one of them is answered 4 to ``2 * len(COUNTERS) + 3`` cycles later instead,
when the bank visits the counter: wait for ``rvalid`` before the next read. A write takes one
cycle (``we``, ``addr``, ``wdata``). Access memories only while the trainer is
idle (``STATUS.busy == 0``).

Address map (24-bit word addresses, 32-bit data):

=========================  ====  ==========================================================
address                    r/w   contents
=========================  ====  ==========================================================
``0x000000``               r     STATUS: bit 0 busy
``0x000001``               rw    THRESHOLD: comparator bound in probability LSBs
                                 (:attr:`specbp_rtl.numerics.Plan.threshold_int`)
``0x000002``               rw    METRIC: 0 mean-abs, 1 max-abs, 2 l1
``0x000003``               rw    SPEC_EN: bit 0 speculation on, bit 1 pipelined baseline
                                 (:attr:`specbp_rtl.config.TrainConfig.pipeline`; a write
                                 drops an owed backward pass)
``0x000004``               r     LANES
``0x000010 + 2 k (+1)``    r     performance counter ``k`` (:data:`COUNTERS`), low (high) 32 bits
``(l + 1) << 20 | word <<
lane_bits | lane``         rw    master weight of layer ``l`` (sign-extended); writes are
                                 staged per lane in one staging word (shared by the
                                 layers) and the word is committed when its last lane
                                 (``lanes - 1``) is written: write a word's lanes in order
=========================  ====  ==========================================================
"""

from __future__ import annotations

from amaranth.hdl import unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["COUNTERS", "HostBus", "REG_STATUS", "REG_THRESHOLD", "REG_METRIC", "REG_SPEC_EN", "REG_LANES",
           "REG_COUNTERS", "SPEC_EN_MAX", "SUM_COUNTERS", "spec_en_value", "weight_address"]

REG_STATUS = 0x0
REG_THRESHOLD = 0x1
REG_METRIC = 0x2
REG_SPEC_EN = 0x3
REG_LANES = 0x4
REG_COUNTERS = 0x10
#: Largest SPEC_EN value (bit 0 speculation, bit 1 pipelined baseline).
SPEC_EN_MAX = 0b11


def spec_en_value(speculate: bool, pipeline: bool = False) -> int:
    """The SPEC_EN register value of a mode."""
    return int(bool(speculate)) | int(bool(pipeline)) << 1

#: Hardware performance counters, in register order.
COUNTERS: tuple[str, ...] = (
    "cycles",
    "steps",
    "sequential",
    "first_sightings",
    "hits",
    "misses",
    "updates",
    "update_cycles",
    "forward_cycles",
    "backward_cycles",
    "hit_cycles",
    "miss_cycles",
    "sequential_cycles",
    "inferences",
    "overlapped",
)

#: The counters that add a step's cycles (the others count events): registers even where the event counters are
#: in a memory (:attr:`~specbp_rtl.gateware.layout.TrainerConfig.counter_memory`).
SUM_COUNTERS: tuple[str, ...] = ("hit_cycles", "miss_cycles", "sequential_cycles")


def weight_address(layer: int, word: int, lane: int, lanes: int) -> int:
    """Bus address of one master weight."""
    return ((layer + 1) << 20) | (word << max(1, (lanes - 1).bit_length())) | lane


class HostBus(wiring.Signature):
    """Host-driven register bus (members from the host's point of view)."""

    def __init__(self) -> None:
        super().__init__({
            "addr": Out(unsigned(24)),
            "wdata": Out(unsigned(32)),
            "we": Out(1),
            "re": Out(1),
            "rdata": In(unsigned(32)),
            "rvalid": In(1),
        })
