"""The trainer's performance counters (:data:`specbp_rtl.gateware.host.COUNTERS`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth.hdl import Signal

from ..counters import CounterBank
from ..host import (
    COUNTERS,
    SUM_COUNTERS,
)
from ..layout import COUNTER_MEMORIES
from .parts import Parts

if TYPE_CHECKING:
    from . import Trainer

__all__ = ["build_counters"]


def build_counters(trainer: Trainer, t: Parts) -> None:
    """The performance counters: registers, or the event counters in a counter bank; returns
    nothing but leaves ``count(name)`` in ``t``, which counts one event in the current cycle."""
    bwd, cfg, fwd, m = t.bwd, t.cfg, t.fwd, t.m
    # registers, or (counter_memory) the event counters in a CounterBank at their register index and the
    # three step-cycle sums in registers
    bank = None
    if cfg.arch.counter_memory is not None:
        m.submodules.counter_bank = bank = CounterBank(
            len(COUNTERS), cfg.arch.counter_width, {"ram_style": COUNTER_MEMORIES[cfg.arch.counter_memory]}
        )
    trainer._peek["counter_bank"] = bank
    ctr = {
        name: Signal(cfg.arch.counter_width, name=f"ctr_{name}")
        for name in COUNTERS
        if bank is None or name in SUM_COUNTERS
    }
    trainer._peek["sum_counters"] = {name: ctr[name] for name in SUM_COUNTERS}
    if bank is None:
        for name in COUNTERS:
            m.d.comb += trainer.counters[name].eq(ctr[name])

    def count(name: str) -> None:
        """One event of counter ``name`` in this cycle (under the enclosing conditions)."""
        if bank is None:
            m.d.sync += ctr[name].eq(ctr[name] + 1)
        else:
            m.d.comb += bank.inc[COUNTERS.index(name)].eq(1)

    count("cycles")
    with m.If(fwd.busy):
        count("forward_cycles")
    with m.If(bwd.busy):
        count("backward_cycles")
    t.add(count=count, ctr=ctr, bank=bank)
