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
from .host import StateMap
from .microarch import COUNTER_MEMORIES, Microarchitecture

__all__ = ["COUNTER_MEMORIES", "TrainerConfig"]


@dataclass(frozen=True)
class TrainerConfig:
    """Elaboration parameters of :class:`~specbp_rtl.gateware.trainer.Trainer`.

    ``train`` holds the algorithm (layers, batch, lr, clip, slope, and the
    *reset values* of the runtime threshold and metric registers); ``lanes`` is
    the number of MACs per engine; ``numerics`` the number formats; ``arch``
    how the hardware is built (:class:`~.microarch.Microarchitecture`: options
    that change area, timing or the cycles of some phases, never a result; a
    preset of :data:`~.microarch.PRESETS`, or any combination).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    lanes: int = 16
    numerics: Numerics = field(default_factory=Numerics)
    arch: Microarchitecture = field(default_factory=Microarchitecture)

    def __post_init__(self) -> None:
        if not isinstance(self.lanes, int) or not 1 <= self.lanes <= 64:
            raise ConfigError(f"lanes: must be an integer in 1..64, got {self.lanes!r}")
        if not isinstance(self.arch, Microarchitecture):
            raise ConfigError(f"arch: must be a Microarchitecture, got {self.arch!r}")
        self.arch.check_lanes(self.lanes)
        if self.train.classes > 16:
            raise ConfigError(f"layers: at most 16 output classes (4-bit labels), got {self.train.classes}")
        if max(self.train.layers[1:]) > 4096 or self.train.layers[0] > 65536:
            raise ConfigError(f"layers: too wide for the trainer's counters: {self.train.layers}")
        if self.arch.host_state_access and self.n_layers > 5:
            raise ConfigError(f"layers: host_state_access maps at most 5 layers, got {self.n_layers}")
        nx = self.numerics
        if nx.act.frac_bits < nx.input_frac:
            raise ConfigError(f"numerics.act: needs at least input_frac={nx.input_frac} fractional bits, got {nx.act}")
        self.plan  # noqa: B018 - validates the fixed-point plan (metric, formats)

    @property
    def plan(self) -> Plan:
        return self.numerics.plan(self.train)

    @property
    def update_width(self) -> int:
        """Lanes of the update unit (:attr:`~.microarch.Microarchitecture.update_lanes`, or every lane)."""
        return self.lanes if self.arch.update_lanes is None else self.arch.update_lanes

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
    def state_map(self) -> StateMap | None:
        """Sizes of the host bus's state regions (:attr:`~.microarch.Microarchitecture.host_state_access`),
        or ``None`` without them."""
        if not self.arch.host_state_access:
            return None
        return StateMap(
            grad_words=self.total_words,
            sx=self.sx_slots * self.n_in(0),
            sp=self.slots * self.classes,
            sz=tuple(self.slots * self.passes(layer) for layer in range(self.n_layers - 1)),
        )

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

    @property
    def sx_slots(self) -> int:
        """Slots of the input-byte memory: the inference slot's bytes are only read back by a first layer of
        several passes, so otherwise it has none (784 inputs: 20 slots fit 16K x 1 block RAMs, 21 need a
        cascade multiplexer)."""
        return self.slots if self.passes(0) > 1 else self.scratch_slot

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
