"""The trainer: the whole speculative-backpropagation datapath in hardware.

:class:`Trainer` holds the weight/bias memory and the gradient memory (two
accumulator banks; both memories hold every layer, layer ``l`` from word
``cfg.w_base(l)``), the label-state memory with ping-pong slots, a
:class:`~.forward.ForwardEngine`, a :class:`~.backward.BackwardEngine`, the
:class:`~.comparator.Comparator`, one :class:`~.update.UpdateUnit` shared by the layers
(every lane of a word at once, or :attr:`~.microarch.Microarchitecture.update_lanes` at a time),
the performance counters (registers, or a :class:`~.counters.CounterBank`) and the
:class:`~.host.HostBus`. Its numpy model is
:class:`specbp_rtl.model.golden.FixedEngine` driven by
:class:`specbp_rtl.model.speculation.SpeculativeTrainer`: after any number of
samples the weights are bit-identical, and so are the step counters.

Speculative-update unit (:func:`.control.control_fsm`), per training step with label
``L``:

* the current sample's forward pass writes slot ``new = 2L + !cur[L]``;
* if speculation is on and ``L`` was seen, the backward engine starts at the
  same time from slot ``old = 2L + cur[L]`` (the previous sample with label
  ``L``) through the current weights, writing ``G + g`` into the shadow bank;
* the comparator streams ``(p_old[k], p_new[k])`` as the softmax produces
  ``p_new``; a **hit** commits by swapping the gradient banks (one cycle), a
  **miss** reruns the backward engine from slot ``new`` and then swaps;
* without speculation (first sighting, or ``SPEC_EN = 0``) the backward pass
  runs from slot ``new`` after the forward pass;
* ``cur[L]`` flips and ``seen[L]`` is set (never cleared);
* after step ``i`` with ``i % batch == 0`` (``i`` restarts at a sample flagged
  ``epoch_start``), the layers are updated in turn, word by word:
  ``W -= lr * clip(G_live)`` and ``G_live = 0``.

The package holds the trainer's named parts; :meth:`Trainer.elaborate` runs
them on one module (:class:`.parts.Parts` carries what one part hands the
next), in this order: the run-time registers (:mod:`.control`), the memories
and the engines' ports onto them (:mod:`.memories`), the forward engine's
sample stream and the comparator's feed (:mod:`.control`), the performance
counters (:mod:`.counting`), the speculative-update FSM (:mod:`.control`), the
SGD update's datapath (:mod:`.sequencer`) and the host bus (:mod:`.host_port`, and
:mod:`.host_state` for the training state).
They build the same netlist as the single function they were cut from (the
boards' RTLIL digests).

Ports
-----
sample : In(stream)
    ``pixel`` bytes of one sample, ``n_in(0)`` beats; ``label``, ``infer`` and
    ``epoch_start`` are read from the first beat.
result : Out(stream)
    One beat per sample: ``prediction`` (first maximal logit), ``kind``
    (:class:`~specbp_rtl.steps.StepKind` code).
host : In(HostBus)
    Registers, counters and weights (:mod:`~specbp_rtl.gateware.host`).
counters : Out
    The performance counters as a struct (also readable over ``host``). Absent
    when the event counters are in a counter bank
    (:attr:`~.microarch.Microarchitecture.counter_memory`): read them over ``host``,
    or with :meth:`Trainer.peek_counters` in a simulation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from amaranth.hdl import Module, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...model.golden import FixedEngine
from ...steps import StepKind
from ..backward import BackwardEngine
from ..comparator import Comparator
from ..forward import ForwardEngine
from ..host import COUNTERS, SUM_COUNTERS, HostBus
from ..layout import TrainerConfig
from ..update import UpdateUnit
from .control import control_fsm, control_signals, feed_engine_and_comparator, speculation_registers
from .counting import build_counters
from .host_port import host_port
from .host_state import host_state
from .memories import build_memories, connect_engines
from .parts import Parts
from .sequencer import update_sequencer

__all__ = ["Trainer", "sample_layout", "result_layout"]


def sample_layout(cfg: TrainerConfig) -> data.StructLayout:
    return data.StructLayout(
        {
            "pixel": unsigned(8),
            "label": range(max(cfg.classes, 2)),
            "infer": 1,
            "epoch_start": 1,
        }
    )


def result_layout(cfg: TrainerConfig) -> data.StructLayout:
    return data.StructLayout({"prediction": range(max(cfg.classes, 2)), "kind": StepKind, "infer": 1})


class Trainer(wiring.Component):
    """Speculative-backpropagation trainer; see the module docstring.

    Parameters
    ----------
    cfg : TrainerConfig
        Layers, lanes, formats, hyper-parameters and register reset values.
    init : list of (W, b) or None
        Initial master weights (integers, ``(out, in)`` and ``(out,)``);
        default: the paper's initialisation for ``cfg.train.seed``, exactly as
        the golden model draws it.
    """

    def __init__(self, cfg: TrainerConfig, init: list | None = None) -> None:
        self.cfg = cfg
        if init is None:
            init = FixedEngine(cfg.train, cfg.numerics).params
        self.init = init
        members = {
            "sample": In(stream.Signature(sample_layout(cfg))),
            "result": Out(stream.Signature(result_layout(cfg))),
            "host": In(HostBus()),
            "counters": Out(data.StructLayout({name: unsigned(cfg.arch.counter_width) for name in COUNTERS})),
            "busy": Out(1),
            "idle": Out(1),
        }
        if cfg.arch.counter_memory is not None:
            del members["counters"]
        super().__init__(members)
        #: what the peek methods read, recorded by the parts as :meth:`elaborate` builds them
        self._peek: dict[str, Any] = {}

    # -- peek API: state a simulator testbench reads without the host bus --------------------------------
    def _peeked(self, what: str) -> Any:
        if what not in self._peek:
            raise RuntimeError("peek: elaborate the trainer (put it in a Simulator) before peeking at it")
        return self._peek[what]

    def peek_counters(self, ctx) -> dict[str, int]:
        """The performance counters (:data:`~specbp_rtl.gateware.host.COUNTERS`) in a simulator testbench."""
        bank = self._peeked("counter_bank")
        if bank is None:
            return {name: int(ctx.get(self.counters[name])) for name in COUNTERS}
        values = dict(zip(COUNTERS, bank.peek(ctx)))
        sums = self._peeked("sum_counters")
        values.update({name: int(ctx.get(sums[name])) for name in SUM_COUNTERS})
        return values

    def peek_weight_words(self, ctx) -> list[list[int]]:
        """Every word of the weight memory (layer ``l`` from word ``cfg.w_base(l)``), lane by lane."""
        mem = self._peeked("weights")
        return [[int(v) for v in ctx.get(mem.data[a])] for a in range(self.cfg.total_words)]

    def peek_weights(self, ctx) -> list[tuple[np.ndarray, np.ndarray]]:
        """The master weights ``[(W, b), ...]`` (integers), as the host bus would read them back."""
        words = np.array(self.peek_weight_words(ctx), dtype=np.int64)
        cfg = self.cfg
        return [
            cfg.from_words(layer, words[cfg.w_base(layer) : cfg.w_base(layer) + cfg.words(layer)])
            for layer in range(cfg.n_layers)
        ]

    def elaborate(self, platform) -> Module:
        """The parts in order; each adds its logic to one module and leaves what later parts use in ``t``."""
        cfg, nx, plan = self.cfg, self.cfg.numerics, self.cfg.plan
        lanes, n_layers, classes = cfg.lanes, cfg.n_layers, cfg.classes
        m = Module()
        m.submodules.fwd = fwd = ForwardEngine(cfg)
        m.submodules.bwd = bwd = BackwardEngine(cfg)
        m.submodules.cmp = cmp = Comparator(classes, nx)
        m.submodules.update = upd = UpdateUnit.for_plan(cfg.update_width, plan, cfg.arch.delay_ram_min)
        t = Parts(cfg=cfg, classes=classes, cmp=cmp, m=m, plan=plan, lanes=lanes, n_layers=n_layers, nx=nx)
        t.bwd, t.fwd, t.upd = bwd, fwd, upd
        speculation_registers(self, t)
        build_memories(self, t)
        connect_engines(self, t)
        feed_engine_and_comparator(self, t)
        build_counters(self, t)
        control_signals(self, t)
        control_fsm(self, t)
        update_sequencer(self, t)
        host_port(self, t)
        if cfg.arch.host_state_access:
            host_state(self, t)
        return m
