"""Trainer configuration and memory layout.

:class:`TrainerConfig` fixes everything the trainer is elaborated with; its
derived properties describe how each layer is laid out in memory:

* lanes are output neurons: layer ``l`` with ``n_in`` inputs and ``n_out``
  outputs takes ``passes(l) = ceil(n_out / lanes)`` passes;
* weights, biases and gradients of layer ``l`` are ``words(l) =
  passes(l) * (n_in + 1)`` words of ``lanes`` values. Word
  ``p * (n_in + 1) + i`` holds ``W[p * lanes + lane, i]`` for ``i < n_in`` and
  the bias ``b[p * lanes + lane]`` for ``i == n_in``; lanes past ``n_out`` are
  zero padding. Forward (read word ``i``), gradient accumulation
  (read-modify-write word ``i``) and update (word ``i``) walk the same layout;
* the layers share one weight memory and one gradient memory (per bank), one
  after another: layer ``l`` starts at word ``w_base(l)``; no per-layer
  memories, so no layer multiplexers on the memories' data;
* the label-state memory has ``2 * classes`` ping-pong slots (two per label)
  plus one scratch slot for inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..config import ConfigError, TrainConfig
from ..numerics import Numerics, Plan
from .util import check_delay_ram_min

__all__ = ["COUNTER_MEMORIES", "TrainerConfig"]

#: :attr:`TrainerConfig.counter_memory` values, and the Yosys ``ram_style`` of each memory kind.
COUNTER_MEMORIES: dict[str | None, str | None] = {None: None, "block": "block", "spram": "huge"}


@dataclass(frozen=True)
class TrainerConfig:
    """Elaboration parameters of :class:`~specbp_rtl.gateware.trainer.Trainer`.

    ``train`` holds the algorithm (layers, batch, lr, clip, slope, and the
    *reset values* of the runtime threshold and metric registers); ``lanes`` is
    the number of MACs per engine; ``numerics`` the number formats;
    ``counter_width`` the width of the performance counters (they wrap at
    ``2**counter_width``; 48 bits last 32 days at 100 MHz, 32 bits 6 minutes
    at 12 MHz); ``delay_ram_min``: the long delay lines of the backward engine
    and the update path (pre-activations, gradient addresses, update
    addresses, the update unit's old weights), when at least this many cycles
    long, are memories rather than
    flip-flops (:func:`~.util.delay`; ``0``: never; the iCEBreaker's iCE40 has
    no distributed RAM and spends a logic cell on every delayed bit);
    ``sz_groups``: the hidden pre-activation memories (``sz``) are split into
    this many lane groups (a divisor of ``lanes``), each memory with its own
    copies of the engines' read and write address registers, so that no
    address register drives every lane's memory cells (on the 16-lane ECP5
    build one register's route to 128 distributed-RAM cells spread over the
    die beside their lanes' MACs was the critical path). Behaviour and cycle
    counts do not depend on it. ``update_lanes``: lanes of the SGD update
    unit (a divisor of ``lanes``; ``None``: ``lanes``). With fewer, each weight
    word goes through the unit in ``lanes // update_lanes`` beats, one lane
    group per cycle (:attr:`update_beats`), and an update takes that many times
    the words in cycles (:attr:`.cycles.CycleModel.update`): the iCEBreaker's
    UP5K trades the update's speed (a few hundred cycles every ``batch``
    samples) for about a thousand logic cells. Results do not depend on it.
    ``counter_memory``: ``None`` keeps every performance counter in a register
    with its own adder; ``"block"`` (block RAM) or ``"spram"`` (an iCE40
    UltraPlus single-port RAM) keeps the counters that count events (all but
    the three step-cycle sums) in a :class:`~.counters.CounterBank`, one adder
    for all. Counter reads over the host bus then wait for the counter's visit
    (:mod:`~specbp_rtl.gateware.host`), and the trainer has no ``counters`` port.
    ``timing_registers``: the backward engine registers memory data before
    using it, for the ECP5's timing: the gradient read-modify-write's operands
    (the old word from the block RAM, the MAC result) before their adder, the
    weights a stage before their operand register, the delta word before the
    MAC's operand register. ``False`` (for the iCE40) adds the gradient
    operands as they arrive, reads the weights a cycle later straight into the
    operand register, selects the delta word at the MAC's input and takes the
    MAC array's sums straight from its accumulators (``MacArray``'s
    ``output_registers``): fewer registers per lane and bit. The forward
    engine's weights, too, are read a cycle later straight into its operand
    register, and a host read of a weight selects its lane at the block RAMs'
    output. Results do not depend on it; the backward pass is two cycles
    shorter per layer (:attr:`.cycles.CycleModel.backward`).
    ``area_trims`` (for the iCE40): no forward read port on the slots' input
    bytes when the first layer has one pass (the engine never reads them
    back), and the softmax's exp LUT without its first entry (1.0, the only
    one with the top bit: :class:`~.softmax.Softmax`'s ``lut_top_in_logic``),
    which save a block RAM each on the UP5K; the softmax's multiplier one bit
    per cycle (``serial_multiplier``: about 250 logic cells fewer, and
    ``classes * (quotient_bits - 1)`` cycles more per forward pass,
    :attr:`.cycles.CycleModel.forward`). Results do not depend on them. The
    ECP5 build leaves them off: its routed netlist is the measured one, and
    a netlist with the first two routed at 61.95 MHz instead of 81.02
    (placement, not logic depth).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    lanes: int = 16
    numerics: Numerics = field(default_factory=Numerics)
    counter_width: int = 48
    delay_ram_min: int = 0
    sz_groups: int = 1
    update_lanes: int | None = None
    counter_memory: str | None = None
    timing_registers: bool = True
    area_trims: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.lanes, int) or not 1 <= self.lanes <= 64:
            raise ConfigError(f"lanes: must be an integer in 1..64, got {self.lanes!r}")
        if (
            isinstance(self.counter_width, bool)
            or not isinstance(self.counter_width, int)
            or not 16 <= self.counter_width <= 64
        ):
            raise ConfigError(f"counter_width: must be an integer in 16..64, got {self.counter_width!r}")
        check_delay_ram_min(self.delay_ram_min)
        if (
            isinstance(self.sz_groups, bool)
            or not isinstance(self.sz_groups, int)
            or self.sz_groups < 1
            or self.lanes % self.sz_groups
        ):
            raise ConfigError(f"sz_groups: must be a positive divisor of lanes={self.lanes}, got {self.sz_groups!r}")
        if self.update_lanes is not None and (
            isinstance(self.update_lanes, bool)
            or not isinstance(self.update_lanes, int)
            or self.update_lanes < 1
            or self.lanes % self.update_lanes
        ):
            raise ConfigError(
                f"update_lanes: must be a positive divisor of lanes={self.lanes}, got {self.update_lanes!r}"
            )
        if self.counter_memory not in COUNTER_MEMORIES:
            raise ConfigError(
                f"counter_memory: must be one of {', '.join(map(repr, COUNTER_MEMORIES))}, got {self.counter_memory!r}"
            )
        if not isinstance(self.timing_registers, bool):
            raise ConfigError(f"timing_registers: must be a boolean, got {self.timing_registers!r}")
        if not isinstance(self.area_trims, bool):
            raise ConfigError(f"area_trims: must be a boolean, got {self.area_trims!r}")
        if self.train.classes > 16:
            raise ConfigError(f"layers: at most 16 output classes (4-bit labels), got {self.train.classes}")
        if max(self.train.layers[1:]) > 4096 or self.train.layers[0] > 65536:
            raise ConfigError(f"layers: too wide for the trainer's counters: {self.train.layers}")
        nx = self.numerics
        if nx.act.frac_bits < nx.input_frac:
            raise ConfigError(f"numerics.act: needs at least input_frac={nx.input_frac} fractional bits, got {nx.act}")
        self.plan  # noqa: B018 - validates the fixed-point plan (metric, formats)

    @property
    def plan(self) -> Plan:
        return self.numerics.plan(self.train)

    @property
    def update_width(self) -> int:
        """Lanes of the update unit (:attr:`update_lanes`, or every lane)."""
        return self.lanes if self.update_lanes is None else self.update_lanes

    @property
    def update_beats(self) -> int:
        """Beats (cycles) per weight word through the update unit: ``lanes // update_width``."""
        return self.lanes // self.update_width

    @property
    def layers(self) -> tuple[int, ...]:
        return self.train.layers

    @property
    def n_layers(self) -> int:
        return len(self.train.layers) - 1

    def n_in(self, layer: int) -> int:
        return self.train.layers[layer]

    def n_out(self, layer: int) -> int:
        return self.train.layers[layer + 1]

    @property
    def forward_acc_width(self) -> int:
        """Forward MAC accumulator bits: a sum of ``n_in + 1`` products (inputs, bias) of a weight operand and
        an activation operand never overflows it."""
        terms = max(self.layers[:-1]) + 1
        return max(32, self.numerics.weight_operand.width + self._act_operand_bits + (terms - 1).bit_length())

    @property
    def backward_acc_width(self) -> int:
        """Backward MAC accumulator bits: a lane's sum of ``passes`` weight x delta products (delta beats), or
        one delta x activation-operand product (gradient beats), never overflows it."""
        nx = self.numerics
        delta = max(nx.delta.width, nx.out_delta.width)
        terms = max(self.passes(layer) for layer in range(self.n_layers))
        return max(32, nx.weight_operand.width + delta + (terms - 1).bit_length(), delta + self._act_operand_bits)

    @property
    def _act_operand_bits(self) -> int:
        """Signed bits of the engines' activation-side MAC operand: hidden activations, pixels (raw, or
        shifted up to ``act.frac_bits`` in the forward engine) and the bias beats' one (``1 << in_frac``)."""
        nx = self.numerics
        return max(nx.act.width, nx.act.frac_bits + 2, nx.input_frac + 2, 9 + nx.act.frac_bits - nx.input_frac)

    def passes(self, layer: int) -> int:
        return math.ceil(self.n_out(layer) / self.lanes)

    def words(self, layer: int) -> int:
        return self.passes(layer) * (self.n_in(layer) + 1)

    def w_base(self, layer: int) -> int:
        """First word of ``layer`` in the weight and gradient memories (the layers one after another)."""
        return sum(self.words(lay) for lay in range(layer))

    @property
    def total_words(self) -> int:
        """Words of all layers: the depth of the weight memory and of one gradient bank."""
        return self.w_base(self.n_layers)

    @property
    def classes(self) -> int:
        return self.train.classes

    @property
    def slots(self) -> int:
        """Label-state slots: two per class (ping-pong) and one inference scratch slot."""
        return 2 * self.classes + 1

    @property
    def scratch_slot(self) -> int:
        return 2 * self.classes

    # -- layout conversion (host side) ----------------------------------------
    def to_words(self, layer: int, w: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``(out, in)`` weights and ``(out,)`` biases to ``(words, lanes)`` memory words."""
        n_in, n_out, lanes = self.n_in(layer), self.n_out(layer), self.lanes
        padded = np.zeros((self.passes(layer) * lanes, n_in + 1), dtype=np.int64)
        padded[:n_out, :n_in] = w
        padded[:n_out, n_in] = b
        # word p*(n_in+1)+i, lane -> padded[p*lanes+lane, i]
        return padded.reshape(self.passes(layer), lanes, n_in + 1).transpose(0, 2, 1).reshape(-1, lanes)

    def from_words(self, layer: int, words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inverse of :meth:`to_words`."""
        n_in, n_out, lanes = self.n_in(layer), self.n_out(layer), self.lanes
        padded = np.asarray(words).reshape(self.passes(layer), n_in + 1, lanes).transpose(0, 2, 1)
        padded = padded.reshape(-1, n_in + 1)
        return padded[:n_out, :n_in].copy(), padded[:n_out, n_in].copy()
