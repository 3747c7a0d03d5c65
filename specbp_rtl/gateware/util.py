"""Small gateware helpers shared by the engines."""

from __future__ import annotations

from amaranth.hdl import Array, Const, Module, Mux, ShapeLike, Signal, Value, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from ..fixed import hdl_requantize
from ..numerics import Numerics

__all__ = [
    "ElementIndex",
    "SlotBases",
    "delay",
    "next_value",
    "tree_sum",
    "weight_operands",
]


def delay(m: Module, value: Value, cycles: int, name: str, ram_min: int = 0, en: Value | None = None) -> Value:
    """``value`` delayed by ``cycles`` clock cycles, or by ``cycles`` cycles with ``en`` high (signals keep their
    shape).

    A shift register of flip-flops; or, when ``ram_min`` is set and ``cycles >= max(ram_min, 2)``, a
    ``cycles``-word memory written every cycle at a wrapping pointer and read one word ahead of it (the word
    written ``cycles - 1`` cycles before; the read port's register adds the last cycle). On iCE40, which has
    no distributed RAM, that is one block RAM instead of a logic cell per delayed bit. The memory line's
    words start at 0 (in simulation; undefined in a block RAM after configuration) and it has no reset, so
    only delay data whose consumers are qualified by a flip-flop delay (a valid). Its memory is named
    ``{name}_line``: the port pair never meets at one word (the iCEBreaker build tells Yosys so,
    :data:`specbp_rtl.toolchain.DELAY_LINE_COLLISIONS_UNDEFINED`).
    """
    step = Const(1) if en is None else en
    if ram_min > 0 and cycles >= max(ram_min, 2):
        src = Value.cast(value)
        m.submodules[f"{name}_line"] = line = Memory(shape=unsigned(len(src)), depth=cycles, init=[])
        wr, rd = line.write_port(), line.read_port()
        ptr = Signal(range(cycles), name=f"{name}_ptr")
        ahead = Signal(range(cycles), name=f"{name}_ahead", init=1)  # ptr + 1 (mod cycles)
        with m.If(step):
            m.d.sync += [ptr.eq(ahead), ahead.eq(Mux(ahead == cycles - 1, 0, ahead + 1))]
        m.d.comb += [wr.addr.eq(ptr), wr.data.eq(src), wr.en.eq(step), rd.addr.eq(ahead), rd.en.eq(step)]
        out = Signal.like(value if isinstance(value, (Signal, data.View)) else src, name=f"{name}_d{cycles}")
        m.d.comb += Value.cast(out).eq(rd.data)
        return out
    out = value
    for n in range(cycles):
        # a Signal (or a data.View of one) keeps its shape; any other value is cast first
        reg = Signal.like(out if isinstance(out, (Signal, data.View)) else Value.cast(out), name=f"{name}_d{n + 1}")
        with m.If(step):
            m.d.sync += reg.eq(out)
        out = reg
    return out


def register_copies(name: str, shape: ShapeLike, copies: int) -> list[Signal]:
    """``copies`` equal registers for one consumer each: ``name`` alone, or ``<name>_copy<n>`` (the names that
    :data:`specbp_rtl.toolchain.REGISTER_COPIES_KEPT` keeps apart)."""
    if copies == 1:
        return [Signal(shape, name=name)]
    return [Signal(shape, name=f"{name}_copy{n}") for n in range(copies)]


def next_value(m: Module, reg: Signal) -> Signal:
    """``reg``'s D input as a signal: assign it in ``m.d.comb`` (default: hold) instead of assigning ``reg`` in
    ``m.d.sync``, and read it to act on the value ``reg`` will hold in the next cycle."""
    nxt = Signal.like(reg, name=f"{reg.name}_next")
    m.d.comb += nxt.eq(reg)
    m.d.sync += reg.eq(nxt)
    return nxt


def tree_sum(values: list[Value]) -> Value:
    """Sum of ``values`` as a balanced adder tree."""
    while len(values) > 1:
        values = [values[n] + values[n + 1] if n + 1 < len(values) else values[n] for n in range(0, len(values), 2)]
    return values[0]


class SlotBases:
    """Registers ``name -> slot * sizes[name]`` for the slot-major label-state memories.

    :meth:`load` (called where the engine latches its slot) looks the
    products up in a ``slots``-entry constant table (one logic level per
    bit, no carry chain after the slot selection); memory addresses are then
    ``base + index`` (kept in registers by :class:`ElementIndex` where an
    index walks a pass), with no constant multiplication in the address path.
    ``sizes[name]`` is the words per slot of memory ``name``; the registers
    hold up to ``slots * size``.
    """

    def __init__(self, sizes: dict[str, int], slots: int) -> None:
        self.sizes, self.slots = dict(sizes), slots
        self.regs = {name: Signal(range(slots * size + 1), name=f"{name}_base") for name, size in sizes.items()}

    def __getitem__(self, name: str) -> Signal:
        return self.regs[name]

    def lookup(self, name: str, slot: Value) -> Value:
        """``slot * sizes[name]`` from the constant table (what :meth:`load` registers)."""
        reg = self.regs[name]
        return Array(Const(n * self.sizes[name], len(reg)) for n in range(self.slots))[slot]

    def load(self, m: Module, slot: Value) -> None:
        for name in self.sizes:
            m.d.sync += self.regs[name].eq(self.lookup(name, slot))


class ElementIndex:
    """The element index ``i`` of a pass, its ``lane = i % lanes``, and registered slot addresses.

    ``addr[name]`` is ``bases[name] + i`` for the memories in ``by_element`` and
    ``bases[name] + i // lanes`` for those in ``by_word``, kept in step with the
    index in flip-flops: the memories' read (and write) addresses come straight
    from registers, with no adder in front of them. ``copies[name]`` holds
    ``word_copies`` equal registers of each ``by_word`` address (one per lane
    group of a memory split by lanes; ``addr[name]`` is the first), named
    ``<name>_addr_copy<n>`` when there are several (builds keep them apart:
    :data:`specbp_rtl.toolchain.REGISTER_COPIES_KEPT`).
    """

    def __init__(
        self,
        max_in: int,
        lanes: int,
        bases: SlotBases,
        by_element: tuple[str, ...] = (),
        by_word: tuple[str, ...] = (),
        word_copies: int = 1,
    ) -> None:
        self.lanes, self.bases, self.by_element, self.by_word = lanes, bases, tuple(by_element), tuple(by_word)
        self.i = Signal(range(max_in + 2), name="i")
        self.lane = Signal(range(lanes), name="lane_i")
        self.copies = {
            name: register_copies(
                f"{name}_addr",
                range(bases.slots * bases.sizes[name] + max_in + 2),
                word_copies if name in self.by_word else 1,
            )
            for name in self.by_element + self.by_word
        }
        self.addr = {name: regs[0] for name, regs in self.copies.items()}

    def restart(self, m: Module, slot: Value | None = None) -> None:
        """Element 0; with ``slot``, also the bases being loaded for it in the same cycle."""
        m.d.sync += [self.i.eq(0), self.lane.eq(0)]
        for name, regs in self.copies.items():
            m.d.sync += [reg.eq(self.bases[name] if slot is None else self.bases.lookup(name, slot)) for reg in regs]

    def step(self, m: Module) -> None:
        """Advance by one element."""
        m.d.sync += self.i.eq(self.i + 1)
        m.d.sync += [reg.eq(reg + 1) for name in self.by_element for reg in self.copies[name]]
        with m.If(self.lane == self.lanes - 1):
            m.d.sync += self.lane.eq(0)
            m.d.sync += [reg.eq(reg + 1) for name in self.by_word for reg in self.copies[name]]
        with m.Else():
            m.d.sync += self.lane.eq(self.lane + 1)


def weight_operands(m: Module, word: Value, nx: Numerics, lanes: int, name: str) -> Signal:
    """A word of master weights requantised to the MAC operand format, registered (one cycle)."""
    out = Signal(data.ArrayLayout(nx.weight_operand.shape, lanes), name=name)
    m.d.sync += [
        out[lane].eq(hdl_requantize(word[lane], nx.weight.frac_bits, nx.weight_operand)) for lane in range(lanes)
    ]
    return out
