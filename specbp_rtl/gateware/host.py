"""Host interface of the trainer: a small register/memory bus.

:class:`HostBus` is driven by the host side (the board's UART bridge, or a
simulation driver). A read takes five cycles: assert ``re`` with ``addr`` for
one cycle, ``rvalid`` pulses with ``rdata`` five cycles later (reads pipeline:
one may start every cycle; unmapped registers read 0). With the event
counters in a counter bank
(:attr:`~specbp_rtl.gateware.microarch.Microarchitecture.counter_memory`), a read of
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
``0x000005``               rw*   SEEN: bit ``k`` set once label ``k`` was trained on
``0x000006``               rw*   CUR: bit ``k`` the ping-pong pointer of label ``k`` (its
                                 latest forward state is in slot ``2 k + CUR[k]``)
``0x000007``               rw*   PHASE: the next training sample's step index modulo the
                                 batch (0: an update follows it)
``0x000008``               rw*   PENDING: bit 0 a backward pass is owed (pipelined mode),
                                 bits 8..15 its slot, bits 16..23 its label
``0x000010 + 2 k (+1)``    r     performance counter ``k`` (:data:`COUNTERS`), low (high) 32 bits
:func:`weight_address`     rw    ``(l + 1) << 20 | word << lane_bits | lane``: the
                                 master weight of layer ``l`` (sign-extended); writes are
                                 staged per lane in one staging word (shared by the
                                 layers) and the word is committed when its last lane
                                 (``lanes - 1``) is written: write a word's lanes in order
:func:`state_address`      rw*   the training state (:class:`StateMap`): region 8 the live
                                 gradient bank (``word << lane_bits | lane``, words in the
                                 weights' shared layout, sign-extended, staged like the
                                 weights; region 15 bits 32 and up, written before the low
                                 half), 9 the slots' input bytes (``slot * n_in + i``),
                                 10 their softmax outputs (``slot * classes + k``), ``11 + l``
                                 hidden layer ``l``'s pre-activations (``(slot * passes +
                                 pass) << lane_bits | lane``, sign-extended, staged)
=========================  ====  ==========================================================

The accesses marked * exist only with
:attr:`~specbp_rtl.gateware.microarch.Microarchitecture.host_state_access` (for
checkpoints: :mod:`specbp_rtl.hwstate`); without it the registers read 0 and
the regions are outside the map.

:func:`access_error` states which runs of accesses the map holds: the host
drivers refuse anything else before it reaches the bus, and the board's link
answers it with ``BAD_ARG`` (the bus itself has no error response: a write
outside the map would otherwise land in the next layer's words).
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = [
    "COUNTERS",
    "HostBus",
    "access_error",
    "check_addresses",
    "lane_bits",
    "REG_STATUS",
    "REG_THRESHOLD",
    "REG_METRIC",
    "REG_SPEC_EN",
    "REG_LANES",
    "REG_COUNTERS",
    "REG_SEEN",
    "REG_CUR",
    "REG_PHASE",
    "REG_PENDING",
    "REGION_GRAD",
    "REGION_GRAD_HIGH",
    "REGION_SX",
    "REGION_SP",
    "REGION_SZ",
    "StateMap",
    "state_address",
    "READ_REGISTER_RUNS",
    "STATE_WRITE_REGISTER_RUN",
    "WRITE_REGISTER_RUN",
    "SPEC_EN_MAX",
    "SUM_COUNTERS",
    "spec_en_value",
    "weight_address",
]

REG_STATUS = 0x0
REG_THRESHOLD = 0x1
REG_METRIC = 0x2
REG_SPEC_EN = 0x3
REG_LANES = 0x4
REG_SEEN = 0x5
REG_CUR = 0x6
REG_PHASE = 0x7
REG_PENDING = 0x8
REG_COUNTERS = 0x10
#: State regions (:attr:`~specbp_rtl.gateware.microarch.Microarchitecture.host_state_access`): the live gradient
#: bank, the slots' input bytes, softmax outputs, and hidden layer ``l``'s pre-activations at ``REGION_SZ + l``.
REGION_GRAD, REGION_SX, REGION_SP, REGION_SZ = 8, 9, 10, 11
#: Bits 32 and up of the live gradient bank's lanes (formats wider than the bus), as :data:`REGION_GRAD`; a write
#: sets the lane's high bits for the next write of its low half.
REGION_GRAD_HIGH = 15
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
#: in a memory (:attr:`~specbp_rtl.gateware.microarch.Microarchitecture.counter_memory`).
SUM_COUNTERS: tuple[str, ...] = ("hit_cycles", "miss_cycles", "sequential_cycles")


def lane_bits(lanes: int) -> int:
    """Address bits of the lane field (at least one)."""
    return max(1, (lanes - 1).bit_length())


def weight_address(layer: int, word: int, lane: int, lanes: int) -> int:
    """Bus address of one master weight."""
    return ((layer + 1) << 20) | (word << lane_bits(lanes)) | lane


@dataclass(frozen=True)
class StateMap:
    """Sizes of the state regions of a trainer built with ``host_state_access`` (:func:`state_address`).

    ``grad_words``: words of the gradient bank (``total_words``); ``sx``: input bytes of the slots; ``sp``:
    softmax outputs of the slots; ``sz``: words of each hidden layer's pre-activation memory.
    """

    grad_words: int
    sx: int
    sp: int
    sz: tuple[int, ...]

    def words(self, region: int) -> tuple[int, bool] | None:
        """``(size, by_lane)`` of a state region (``by_lane``: words of ``lanes`` values), ``None`` if none."""
        if region in (REGION_GRAD, REGION_GRAD_HIGH):
            return self.grad_words, True
        if region == REGION_SX:
            return self.sx, False
        if region == REGION_SP:
            return self.sp, False
        if REGION_SZ <= region < min(REGION_SZ + len(self.sz), REGION_GRAD_HIGH):
            return self.sz[region - REGION_SZ], True
        return None


def state_address(region: int, index: int, lane: int, lanes: int) -> int:
    """Bus address in a state region: word ``index``'s ``lane`` (by-lane regions) or element ``index``."""
    if region in (REGION_SX, REGION_SP):
        return (region << 20) | index
    return (region << 20) | (index << lane_bits(lanes)) | lane


#: register runs that reads may cover (the register file's span; its unmapped addresses read 0), and writes
#: (``[first, last]``; :data:`STATE_WRITE_REGISTER_RUN` with ``host_state_access``)
READ_REGISTER_RUNS: tuple[tuple[int, int], ...] = ((REG_STATUS, REG_COUNTERS + 2 * len(COUNTERS) - 1),)
WRITE_REGISTER_RUN: tuple[int, int] = (REG_THRESHOLD, REG_SPEC_EN)
STATE_WRITE_REGISTER_RUN: tuple[int, int] = (REG_THRESHOLD, REG_PENDING)


def access_error(
    words: tuple[int, ...], lanes: int, base: int, count: int, write: bool, state: StateMap | None = None
) -> str | None:
    """Why the accesses ``base, base + 1, ..., base + count - 1`` are outside the address map, or ``None``.

    ``words`` holds each layer's number of memory words
    (:meth:`~specbp_rtl.gateware.layout.TrainerConfig.words`); ``state`` the
    state regions' sizes of a trainer with ``host_state_access`` (``None``:
    it has none). A run must stay within one region: the readable registers
    (0..8, or the counters), the writable ones (THRESHOLD..SPEC_EN, or
    ..PENDING with ``state``), one layer's weights up to its last word, or
    one state region up to its end; with a lane count that is not a power of
    two, a run of words stays within one word and its ``lanes`` lanes.
    :class:`~specbp_rtl.boards.link.Link` computes the same rule in gateware
    (without ``state``).
    """
    if count == 0:
        return None
    end = base + count - 1
    if base < 0 or end >= 1 << 24:
        return f"addresses 0x{base:x}..0x{end:x} are outside the 24-bit bus"
    region, end_region = base >> 20, end >> 20
    what = f"{'write' if write else 'read'} of {count} words at 0x{base:06x}"
    if region != end_region:
        return f"{what} crosses from region {region} into region {end_region}"
    if region == 0:
        runs = ((STATE_WRITE_REGISTER_RUN if state else WRITE_REGISTER_RUN),) if write else READ_REGISTER_RUNS
        if not any(first <= base and end <= last for first, last in runs):
            allowed = ", ".join(f"0x{a:x}..0x{b:x}" for a, b in runs)
            return f"{what} is outside the {'writable' if write else 'readable'} registers ({allowed})"
        return None
    bits = lane_bits(lanes)
    if region > len(words):
        found = state.words(region) if state is not None else None
        if found is None:
            return f"{what}: there is no layer {region - 1} (the trainer has {len(words)})"
        size, by_lane = found
        if not by_lane:
            if end & 0xFFFFF >= size:
                return f"{what} goes past the end of state region {region} ({size} entries)"
            return None
        name, last_word = f"state region {region}", size - 1
    else:
        name, last_word = f"layer {region - 1}", words[region - 1] - 1
    end_word = (end & 0xFFFFF) >> bits
    if end_word > last_word:
        return f"{what} goes past {name}'s last word ({last_word}) to word {end_word}"
    if lanes != 1 << bits and ((base >> bits) != (end >> bits) or end & ((1 << bits) - 1) >= lanes):
        return f"{what} leaves its word's {lanes} lanes (with {lanes} lanes, one word per run)"
    return None


class HostBus(wiring.Signature):
    """Host-driven register bus (members from the host's point of view)."""

    def __init__(self) -> None:
        super().__init__(
            {
                "addr": Out(unsigned(24)),
                "wdata": Out(unsigned(32)),
                "we": Out(1),
                "re": Out(1),
                "rdata": In(unsigned(32)),
                "rvalid": In(1),
            }
        )


def check_addresses(words: tuple[int, ...], lanes: int, addrs, write: bool, state: StateMap | None = None) -> None:
    """Raise ``ValueError`` (naming the first bad one) unless every address in ``addrs`` is in the map.

    The host drivers of the simulators call it before their bus accesses, as
    the board's link refuses a run outside the map with ``BAD_ARG``.
    """
    for addr in sorted({int(a) for a in addrs}):
        error = access_error(words, lanes, addr, 1, write, state)
        if error:
            raise ValueError(f"host bus: {error}")
