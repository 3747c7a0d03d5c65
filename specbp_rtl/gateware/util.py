"""Small gateware helpers shared by the engines."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Signal, Value
from amaranth.lib import data

from ..fixed import hdl_requantize
from ..numerics import Numerics

__all__ = ["SlotBases", "delay", "step_element", "tree_sum", "weight_operands"]


def delay(m: Module, value: Value, cycles: int, name: str) -> Value:
    """``value`` delayed by ``cycles`` clock cycles (a shift register; signals keep their shape)."""
    out = value
    for n in range(cycles):
        # a Signal (or a data.View of one) keeps its shape; any other value is cast first
        reg = Signal.like(out if isinstance(out, (Signal, data.View)) else Value.cast(out), name=f"{name}_d{n + 1}")
        m.d.sync += reg.eq(out)
        out = reg
    return out


def tree_sum(values: list[Value]) -> Value:
    """Sum of ``values`` as a balanced adder tree."""
    while len(values) > 1:
        values = [values[n] + values[n + 1] if n + 1 < len(values) else values[n] for n in range(0, len(values), 2)]
    return values[0]


def step_element(m: Module, i: Signal, word_i: Signal, lane_i: Signal, lanes: int) -> None:
    """Advance the element index ``i`` and its position ``(word_i, lane_i) = divmod(i, lanes)`` by one."""
    m.d.sync += i.eq(i + 1)
    with m.If(lane_i == lanes - 1):
        m.d.sync += [lane_i.eq(0), word_i.eq(word_i + 1)]
    with m.Else():
        m.d.sync += lane_i.eq(lane_i + 1)



class SlotBases:
    """Registers ``name -> slot * sizes[name]`` for the slot-major label-state memories.

    :meth:`load` (called where the engine latches its slot) looks the
    products up in a ``slots``-entry constant table (one logic level per
    bit, no carry chain after the slot selection); memory addresses are then
    ``base + index``, one adder after a register, with no constant
    multiplication in the address path. ``sizes[name]`` is the words per slot
    of memory ``name``; the registers hold up to ``slots * size``.
    """

    def __init__(self, sizes: dict[str, int], slots: int) -> None:
        self.sizes, self.slots = dict(sizes), slots
        self.regs = {name: Signal(range(slots * size + 1), name=f"{name}_base") for name, size in sizes.items()}

    def __getitem__(self, name: str) -> Signal:
        return self.regs[name]

    def load(self, m: Module, slot: Value) -> None:
        for name, size in self.sizes.items():
            reg = self.regs[name]
            table = Array(Const(n * size, len(reg)) for n in range(self.slots))
            m.d.sync += reg.eq(table[slot])


def weight_operands(m: Module, word: Value, nx: Numerics, lanes: int, name: str) -> Signal:
    """A word of master weights requantised to the MAC operand format, registered (one cycle)."""
    out = Signal(data.ArrayLayout(nx.weight_operand.shape, lanes), name=name)
    m.d.sync += [out[lane].eq(hdl_requantize(word[lane], nx.weight.frac_bits, nx.weight_operand))
                 for lane in range(lanes)]
    return out
