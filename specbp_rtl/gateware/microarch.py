"""Microarchitecture options of the trainer and its board link, and named presets.

Every option here changes how the hardware is built (area, timing, cycles of
some phases) and never what it computes: the weights after any run are the
same bit for bit, and the cycle model
(:class:`~specbp_rtl.gateware.cycles.CycleModel`) follows every option.
Each field switches one mechanism. :data:`PRESETS` bundles them per target;
:class:`~specbp_rtl.boards.top.BoardSpec` names one. What each preset costs
and saves, as measured, is in ``docs/boards.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from ..config import ConfigError

__all__ = ["COUNTER_MEMORIES", "Microarchitecture", "PRESETS", "check_delay_ram_min", "preset_name"]

#: :attr:`Microarchitecture.counter_memory` values, and the Yosys ``ram_style`` of each memory kind.
COUNTER_MEMORIES: dict[str | None, str | None] = {None: None, "block": "block", "spram": "huge"}


def check_delay_ram_min(value: object) -> int:
    """``value`` if it is a valid ``ram_min`` of :func:`~specbp_rtl.gateware.util.delay` (``0``: never a
    memory line, else the shortest line that is one, ``>= 2``); otherwise a :class:`ConfigError` naming
    ``delay_ram_min``."""
    if isinstance(value, bool) or not isinstance(value, int) or value == 1 or value < 0:
        raise ConfigError(f"delay_ram_min: must be 0 or an integer >= 2, got {value!r}")
    return value


@dataclass(frozen=True)
class Microarchitecture:
    """How the trainer (and the board link around it) is built; the defaults are the fastest, largest build.

    Trainer
    -------
    counter_width : int
        Bits of every performance counter (16..64); they wrap at ``2**counter_width``.
    counter_memory : None, "block" or "spram"
        ``None``: every counter is a register with its own adder. Otherwise the counters that count events
        (all but the three step-cycle sums) live in a :class:`~specbp_rtl.gateware.counters.CounterBank` in
        block RAM or an iCE40 UltraPlus SPRAM, one adder for all; host reads of them wait for the bank's visit
        (:mod:`specbp_rtl.gateware.host`) and the trainer has no ``counters`` port.
    delay_ram_min : int
        The long delay lines (pre-activations, gradient and update addresses, the update unit's old weights)
        of at least this many cycles are memories, not flip-flops (:func:`~specbp_rtl.gateware.util.delay`);
        ``0``: never. For FPGAs without distributed RAM.
    sz_groups : int
        The hidden pre-activation memories are split into this many lane groups (a divisor of the lanes),
        each with its own copies of the engines' address registers, so no address register drives every
        lane's memory cells.
    update_lanes : int or None
        Lanes of the SGD update unit (a divisor of the lanes; ``None``: every lane). With fewer, a weight
        word passes through it in ``lanes // update_lanes`` beats and an update takes that many times the
        words in cycles.
    backward_operand_registers : bool
        The backward engine registers the weight word and the delta word before its MAC operand registers.
        ``False`` reads the weights a cycle later straight into the operand register and selects the delta
        word at the MAC's input (same cycles).
    backward_gradient_registers : bool
        The gradient read-modify-write registers its operands (the old word, the MAC result) before the adder.
        ``False`` adds them as they arrive and writes a cycle earlier (same cycles per pass).
    mac_output_registers : bool
        The backward MAC array registers its sums (:class:`~specbp_rtl.gateware.mac_array.MacArray`'s
        ``output_registers``; latency 4, else 2: the backward pass is two cycles shorter per layer).
    forward_weight_register : bool
        The forward engine registers the weight word before its operand register. ``False`` reads the
        weights a cycle later straight into the operand register (same cycles).
    host_read_word_register : bool
        A host read of a weight registers the whole word from the block RAMs and selects the lane after.
        ``False`` selects the lane at the block RAMs' output (fewer flip-flops; same latency).
    input_read_port_if_used : bool
        The slots' input bytes get the forward engine's read port only when it reads them back (a first
        layer of several passes). ``False`` always builds it.
    softmax_exp_one_in_logic : bool
        The softmax's exp LUT stores every entry but the first (1.0, the only one with the top bit), which is
        logic (:class:`~specbp_rtl.gateware.softmax.Softmax`'s ``lut_top_in_logic``): one bit narrower.
    softmax_serial_multiplier : bool
        The softmax's normalising multiplier works one bit per cycle (``Softmax``'s ``serial_multiplier``):
        ``classes * (quotient_bits - 1)`` cycles more per forward pass.
    host_state_access : bool
        The host bus reads and writes the whole training state besides the weights: the live gradient bank,
        the label-state slots, the ``seen`` and ping-pong flags, the batch phase and an owed backward pass
        (:mod:`~specbp_rtl.gateware.host`), so that a run can be checkpointed and resumed exactly
        (:mod:`specbp_rtl.hwstate`). Costs multiplexers on the backward engine's read ports and the slot
        memories' write ports, and staging registers; at most 5 layers.

    Board link
    ----------
    link_register_host : bool
        The link's host-bus requests pass through a register (:class:`~specbp_rtl.boards.link.LinkedTrainer`).
    link_check_registers : bool
        The link's state machine reads its comparisons from flip-flops (:class:`~specbp_rtl.boards.link.Link`).
    link_address_check : bool
        The link answers ``WRITE_WEIGHTS``/``READ_WEIGHTS`` runs outside the host bus's address map with
        ``BAD_ARG`` (:class:`~specbp_rtl.boards.link.Link`'s ``address_check``); without it the host driver
        alone refuses them.
    """

    counter_width: int = 48
    counter_memory: str | None = None
    delay_ram_min: int = 0
    sz_groups: int = 1
    update_lanes: int | None = None
    backward_operand_registers: bool = True
    backward_gradient_registers: bool = True
    mac_output_registers: bool = True
    forward_weight_register: bool = True
    host_read_word_register: bool = True
    input_read_port_if_used: bool = False
    softmax_exp_one_in_logic: bool = False
    softmax_serial_multiplier: bool = False
    host_state_access: bool = True
    link_register_host: bool = True
    link_check_registers: bool = False
    link_address_check: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.type == "bool" and not isinstance(getattr(self, f.name), bool):
                raise ConfigError(f"{f.name}: must be a boolean, got {getattr(self, f.name)!r}")
        width = self.counter_width
        if isinstance(width, bool) or not isinstance(width, int) or not 16 <= width <= 64:
            raise ConfigError(f"counter_width: must be an integer in 16..64, got {width!r}")
        if self.counter_memory not in COUNTER_MEMORIES:
            raise ConfigError(
                f"counter_memory: must be one of {', '.join(map(repr, COUNTER_MEMORIES))}, got {self.counter_memory!r}"
            )
        check_delay_ram_min(self.delay_ram_min)
        if isinstance(self.sz_groups, bool) or not isinstance(self.sz_groups, int) or self.sz_groups < 1:
            raise ConfigError(f"sz_groups: must be a positive integer, got {self.sz_groups!r}")
        if self.update_lanes is not None and (
            isinstance(self.update_lanes, bool) or not isinstance(self.update_lanes, int) or self.update_lanes < 1
        ):
            raise ConfigError(f"update_lanes: must be a positive integer or None, got {self.update_lanes!r}")

    def check_lanes(self, lanes: int) -> None:
        """Raise :class:`ConfigError` unless ``sz_groups`` and ``update_lanes`` divide ``lanes``."""
        if lanes % self.sz_groups:
            raise ConfigError(f"sz_groups: must be a positive divisor of lanes={lanes}, got {self.sz_groups!r}")
        if self.update_lanes is not None and lanes % self.update_lanes:
            raise ConfigError(f"update_lanes: must be a positive divisor of lanes={lanes}, got {self.update_lanes!r}")


#: Named microarchitectures. ``default``: every timing register, nothing traded (simulation, tests);
#: ``ecp5-80mhz``: the ULX3S's ECP5-85F at 80 MHz (pre-activation memories in four lane groups; the link
#: without its address check); ``ice40-up5k``: the iCEBreaker's UP5K, every trade that saves logic cells or
#: block RAMs (32-bit counters in SPRAM, delay lines in block RAM, a one-lane update unit, no timing
#: registers, the softmax's serial multiplier and exp LUT trim; the link's comparisons from flip-flops). Neither
#: board preset has the host's access to the training state yet (``host_state_access``).
PRESETS: dict[str, Microarchitecture] = {
    "default": Microarchitecture(),
    "ecp5-80mhz": Microarchitecture(sz_groups=4, host_state_access=False, link_address_check=False),
    "ice40-up5k": Microarchitecture(
        counter_width=32,
        counter_memory="spram",
        delay_ram_min=3,
        update_lanes=1,
        backward_operand_registers=False,
        backward_gradient_registers=False,
        mac_output_registers=False,
        forward_weight_register=False,
        host_read_word_register=False,
        input_read_port_if_used=True,
        softmax_exp_one_in_logic=True,
        softmax_serial_multiplier=True,
        host_state_access=False,
        link_check_registers=True,
        link_address_check=False,
    ),
}


def preset_name(arch: Microarchitecture) -> str | None:
    """The :data:`PRESETS` name of ``arch``, or ``None`` when it is no preset."""
    return next((name for name, preset in PRESETS.items() if preset == arch), None)
