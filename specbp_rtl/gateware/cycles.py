"""Exact cycle model of the :class:`~specbp_rtl.gateware.trainer.Trainer`.

The trainer's schedule does not depend on the data (as long as the sample
stream delivers one pixel per cycle), so its cycle counts are closed formulas
of the configuration. The tests check them, cycle for cycle, against the
hardware performance counters in simulation; the experiments use them to turn
the step counts of a golden-model run into hardware cycles.

With ``L`` layers, ``beats_f = sum_l passes(l) * (n_in(l) + 1)``:

* forward pass ``F = beats_f + 3 * classes + 8 * L + quotient_bits + 4``
  (MAC beats, per-layer pipeline drains, softmax: load, exp, reciprocal,
  normalise), plus ``classes * (quotient_bits - 1)`` with
  :attr:`~.microarch.Microarchitecture.softmax_serial_multiplier`;
* backward pass ``B = classes + beats_f + sum_{l>=1} passes(l) * n_in(l) + (9 + M) * L - 2``
  (output error, gradient words, error propagation, drains; ``M`` the backward MAC array's latency:
  4, or 2 without :attr:`~.microarch.Microarchitecture.mac_output_registers`);
* sequential step ``F + B + 4``; hit step ``max(F + 7, B + 3)`` (the comparator
  decides 7 cycles after the forward pass); miss step ``max(F + 7, B + 3) + B + 2``;
* update ``beats * sum_l words(l) + UpdateUnit.LATENCY + 4`` (the layers in turn through one pipelined
  update unit, ``beats`` = :attr:`~.layout.TrainerConfig.update_beats` lane groups per word);
* pipelined mode (:attr:`~specbp_rtl.config.TrainConfig.pipeline`): a step whose forward pass overlaps
  the previous step's backward pass ``max(F + 2, B + 3)``, a step with nothing to overlap ``F + 2``,
  and a step after which the update is due runs its own backward pass at once: ``+ B + 3``;
* plus one idle cycle per sample between steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from .layout import TrainerConfig
from .mac_array import MacArray
from .update import UpdateUnit

__all__ = ["CycleModel"]


@dataclass(frozen=True)
class CycleModel:
    """Clock cycles of a :class:`~specbp_rtl.gateware.trainer.Trainer` elaborated with ``cfg``.

    Every property is a count of cycles, the closed formulas of the module docstring;
    :meth:`total` adds them up for a run's step and update counts.
    """

    cfg: TrainerConfig

    @property
    def _quotient_bits(self) -> int:
        return self.cfg.numerics.prob.frac_bits + 1

    @property
    def forward(self) -> int:
        """One forward pass ``F`` (MAC beats, per-layer pipeline drains, softmax)."""
        cfg = self.cfg
        beats = sum(cfg.words(layer) for layer in range(cfg.n_layers))
        # the softmax's serial multiplier takes quotient_bits cycles per probability, not one
        serial = cfg.classes * (self._quotient_bits - 1) if cfg.arch.softmax_serial_multiplier else 0
        return beats + 3 * cfg.classes + 8 * cfg.n_layers + self._quotient_bits + 4 + serial

    @property
    def backward(self) -> int:
        """One backward pass ``B`` (output error, gradient words, error propagation, drains)."""
        cfg = self.cfg
        beats = cfg.classes + sum(cfg.words(layer) for layer in range(cfg.n_layers))
        beats += sum(cfg.passes(layer) * cfg.n_in(layer) for layer in range(1, cfg.n_layers))
        return beats + (9 + MacArray.latency_for(cfg.arch.mac_output_registers)) * cfg.n_layers - 2

    @property
    def sequential_step(self) -> int:
        """A sequential step (speculation off, or a first sighting), ``F + B + 4``."""
        return self.forward + self.backward + 4

    @property
    def hit_step(self) -> int:
        """A step whose speculative backward pass is kept, ``max(F + 7, B + 3)``."""
        return max(self.forward + 7, self.backward + 3)

    @property
    def miss_step(self) -> int:
        """A step whose speculative backward pass is discarded and run again, ``max(F + 7, B + 3) + B + 2``."""
        return self.hit_step + self.backward + 2

    @property
    def update(self) -> int:
        """One weight update over every layer, ``beats * sum_l words(l) + UpdateUnit.LATENCY + 4``."""
        cfg = self.cfg
        return cfg.update_beats * sum(cfg.words(layer) for layer in range(cfg.n_layers)) + UpdateUnit.LATENCY + 4

    @property
    def pipelined_step(self) -> int:
        """Pipelined mode, one step (the forward pass of this sample with the backward pass of the previous one)."""
        return max(self.forward + 2, self.backward + 3)

    @property
    def pipelined_first_step(self) -> int:
        """Pipelined mode, a forward pass with no backward pass owed (after an update, or the first step)."""
        return self.forward + 2

    @property
    def flush(self) -> int:
        """Pipelined mode, the backward pass a step runs before an update."""
        return self.backward + 3

    def total(self, sequential: int, hits: int, misses: int, updates: int) -> int:
        """Cycles of a run with these step and update counts (first sightings are sequential steps)."""
        steps = sequential + hits + misses
        return (
            sequential * self.sequential_step
            + hits * self.hit_step
            + misses * self.miss_step
            + updates * self.update
            + steps
        )

    def total_pipelined(self, steps: int, overlapped: int, updates: int) -> int:
        """Cycles of a pipelined-mode run (every update is preceded by a flush)."""
        return (
            overlapped * self.pipelined_step
            + (steps - overlapped) * self.pipelined_first_step
            + updates * (self.flush + self.update)
            + steps
        )

    def run_total(self, counters: dict[str, int], pipeline: bool) -> int:
        """:meth:`total` or :meth:`total_pipelined` of a run's step counters.

        ``counters`` holds the fields of :class:`specbp_rtl.model.speculation.Counters`.
        """
        c = counters
        if pipeline:
            return self.total_pipelined(c["steps"], c["overlapped"], c["updates"])
        return self.total(c["sequential"] + c["first_sightings"], c["hits"], c["misses"], c["updates"])

    @property
    def macs_per_sample(self) -> int:
        """Multiply-accumulates of one sequential step (forward, gradients, error propagation)."""
        layers = self.cfg.layers
        fwd = sum(a * b for a, b in zip(layers[:-1], layers[1:]))
        return 2 * fwd + sum(a * b for a, b in zip(layers[1:-1], layers[2:]))
