"""Waveforms people can open: which trainer signals to show, and GTKWave save files that show them.

Both simulating backends write a GTKWave save file (``.gtkw``) next to the
waveform that opens with the same signals, grouped:

* :data:`WAVES` -- the one list of "signals worth seeing": the sample and
  result streams, the control state of the speculative-update unit, the
  engines' busy flags and states, and the performance counters. Each signal is
  named by its path in the :class:`~specbp_rtl.gateware.trainer.Trainer`'s
  hierarchy (``"fwd.busy"``: signal ``busy`` of submodule ``fwd``), the name
  Amaranth gives it in a simulation and in the Verilog alike.
* :func:`vcd_variables` reads a VCD's declarations, :func:`gtkw_traces` finds
  :data:`WAVES` among them, and :func:`write_gtkw` writes the save file. The
  trainer's scope is ``bench.top`` in Amaranth's VCD (:data:`PYSIM_SCOPE`) and
  ``trainer.trainer`` in Verilator's (:data:`RTL_SCOPE`); the names below it are
  the same. Writing the save file from the VCD header, after the VCD, means
  it never names a signal the waveform does not have.

:func:`estimate_trace` predicts the size of a trace window from the exact
cycle model (:class:`~specbp_rtl.gateware.cycles.CycleModel`) before a run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..gateware.cycles import CycleModel
from ..gateware.host import COUNTERS
from ..gateware.layout import TrainerConfig

__all__ = [
    "DECIMAL",
    "PYSIM_SCOPE",
    "RTL_SCOPE",
    "WAVES",
    "TraceEstimate",
    "VcdVariable",
    "design_variables",
    "estimate_trace",
    "gtkw_path",
    "gtkw_signals",
    "gtkw_traces",
    "vcd_variables",
    "write_gtkw",
]

#: The signals worth seeing, in groups: ``(group, (path, ...))``; a path is a signal of the trainer
#: (``"fsm_state"``) or of one of its submodules (``"fwd.busy"``). A struct signal brings its fields.
#: Signals a design does not have (the event counters of a counter bank, say) are left out.
WAVES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("sample stream", ("sample__valid", "sample__ready", "sample__payload")),
    ("result stream", ("result__valid", "result__ready", "result__payload")),
    (
        "control",
        (
            "fsm_state",  # the speculation FSM: IDLE RUN FLUSH RECOMPUTE FINISH UPDATE
            "in_step",
            "busy",
            "idle",
            "label",
            "infer",
            "new",
            "old",  # the step: its label and label-state slots
            "speculating",
            "piping",
            "overlap",
            "pending",
            "p_slot",
            "p_label",  # speculation, owed backward pass
            "live",  # the live gradient bank (the other one is the shadow bank)
            "kind",
            "prediction",
            "update_due",
            "phase",
            "step_cycles",
            "seen",
            "cur",
            "spec_en",
            "pipe_en",
            "threshold",
            "metric",
        ),
    ),
    (
        "engines",
        (
            "fwd.start",
            "fwd.busy",
            "fwd.done",
            "fwd.fsm_state",
            "bwd.start",
            "bwd.busy",
            "bwd.done",
            "bwd.fsm_state",
            "cmp.o__valid",
            "cmp.o__payload",
            "upd_active",
            "upd_layer",
            "upd_addr",
            "upd_drain",
        ),
    ),
    ("counters", tuple(f"ctr_{name}" for name in COUNTERS)),
)

#: Signals GTKWave shows in decimal (the others in hexadecimal): counts, indices, labels.
DECIMAL: frozenset[str] = frozenset(
    {
        "label",
        "prediction",
        "new",
        "old",
        "p_slot",
        "p_label",
        "phase",
        "step_cycles",
        "upd_layer",
        "upd_addr",
        "upd_drain",
        *(f"ctr_{name}" for name in COUNTERS),
    }
)

#: Verilator's scope of the trainer module (the ``trainer`` wrapper, then the ``trainer`` module).
RTL_SCOPE: tuple[str, ...] = ("trainer", "trainer")
#: Amaranth's scope of the simulated toplevel.
PYSIM_SCOPE: tuple[str, ...] = ("bench", "top")


def gtkw_path(waveform: str | os.PathLike) -> Path:
    """The GTKWave save file written next to ``waveform`` (``run.vcd`` -> ``run.gtkw``)."""
    return Path(waveform).with_suffix(".gtkw")


# -- rtl (Verilator) -----------------------------------------------------------------


@dataclass(frozen=True)
class VcdVariable:
    """One ``$var`` of a VCD header."""

    scope: tuple[str, ...]
    name: str
    width: int
    #: the bit range Verilator writes after the name (``"[13:0]"``), or ``""``
    range: str

    @property
    def gtkw_name(self) -> str:
        """The name GTKWave gives it in a save file (``trainer.trainer.sample__payload[13:0]``).

        A vector declared without a range (pyvcd writes none) gets ``[width-1:0]``, as GTKWave names it.
        """
        rng = self.range or (f"[{self.width - 1}:0]" if self.width > 1 else "")
        return ".".join((*self.scope, self.name)) + rng


def vcd_variables(path: str | os.PathLike) -> list[VcdVariable]:
    """The variables declared in a VCD file's header (it reads up to ``$enddefinitions``)."""
    scope: list[str] = []
    out: list[VcdVariable] = []
    with open(path) as f:
        for line in f:
            words = line.split()
            if not words:
                continue
            if words[0] == "$scope":
                scope.append(words[2])
            elif words[0] == "$upscope":
                scope.pop()
            elif words[0] == "$var":
                # $var <type> <width> <id> <name> [<range>] $end
                rng = words[5] if len(words) > 6 and words[5].startswith("[") else ""
                out.append(VcdVariable(tuple(scope), words[4], int(words[2]), rng))
            elif words[0] == "$enddefinitions":
                break
    return out


def design_variables(design: Any, scope: tuple[str, ...] = RTL_SCOPE) -> list[VcdVariable]:
    """The variables a Verilator waveform of ``design`` declares, as far as the Amaranth design tells.

    Every named signal of every module, under ``scope`` (struct fields left
    out): for an FST waveform, whose header :func:`vcd_variables` cannot read.
    Verilator may drop a few (signals the Verilog does not need).

    Parameters
    ----------
    design : amaranth.hdl.Design
        ``Fragment.get(trainer, None).prepare()`` of the Verilated trainer.
    scope : tuple of str
        Verilator's scope of the top module.
    """
    out = []
    for fragment_info in design.fragments.values():
        path = (*scope, *fragment_info.name[1:])
        for signal, name in fragment_info.signal_names.items():
            width = len(signal)
            if width:
                out.append(VcdVariable(path, name, width, f"[{width - 1}:0]" if width > 1 else ""))
    return out


def gtkw_traces(variables: Iterable[VcdVariable], scope: tuple[str, ...]) -> list[tuple[str, list[tuple[str, str]]]]:
    """:data:`WAVES` as the GTKWave names of a waveform's variables: ``[(group, [name, ...]), ...]``.

    Parameters
    ----------
    variables : iterable of VcdVariable
        The waveform's declarations (:func:`vcd_variables`, :func:`design_variables`).
    scope : tuple of str
        The trainer's scope in it (:data:`PYSIM_SCOPE`, :data:`RTL_SCOPE`).

    Returns
    -------
    list of (str, list of (str, str))
        The groups of :data:`WAVES` with the names of their signals and their
        display formats (``"hex"``, ``"dec"``: :data:`DECIMAL`); a signal the
        waveform does not have is left out, a struct signal is followed by its
        fields (``sample__payload.pixel``; Amaranth writes ``\\sample__payload.pixel``).
    """
    index: dict[tuple[tuple[str, ...], str], VcdVariable] = {}
    fields: dict[tuple[tuple[str, ...], str], list[VcdVariable]] = {}
    for var in variables:
        index.setdefault((var.scope, var.name), var)
        base, dot, field = var.name.removeprefix("\\").partition(".")
        if dot and re.fullmatch(r"[A-Za-z_]\w*", field):  # one level of struct fields, not array elements
            fields.setdefault((var.scope, base), []).append(var)
    groups: list[tuple[str, list[tuple[str, str]]]] = []
    for group, paths in WAVES:
        names = []
        for path in paths:
            *sub, name = path.split(".")
            key = ((*scope, *sub), name)
            if key in index:
                fmt = "dec" if path in DECIMAL else "hex"
                names.append((index[key].gtkw_name, fmt))
                names += [(var.gtkw_name, fmt) for var in fields.get(key, [])]
        if names:
            groups.append((group, names))
    return groups


def write_gtkw(
    path: str | os.PathLike,
    dumpfile: str | os.PathLike,
    groups: list[tuple[str, list[tuple[str, str]]]],
    treeopen: str = "",
) -> None:
    """Write a GTKWave save file that opens ``dumpfile`` showing ``groups`` of signals.

    Parameters
    ----------
    path : str or os.PathLike
        The save file (``.gtkw``).
    dumpfile : str or os.PathLike
        The waveform it opens (written as given; GTKWave resolves a relative path from where it starts).
    groups : list of (str, list of (str, str))
        Group names, and the GTKWave names (``top.sub.name[7:0]``) and display
        formats (``"hex"``, ``"dec"``, ``"bin"``) of their signals (:func:`gtkw_traces`).
    treeopen : str
        A scope to open in the signal tree (``"trainer.trainer."``).
    """
    from vcd.gtkw import GTKWSave

    dump = Path(dumpfile)
    with open(path, "w") as f:
        save = GTKWSave(f)
        save.dumpfile(str(dump))
        if dump.is_file():
            save.dumpfile_size(dump.stat().st_size)
        save.savefile(str(path))
        if treeopen:
            save.treeopen(treeopen)
        for group, names in groups:
            with save.group(group):
                for name, fmt in names:
                    save.trace(name, datafmt=fmt)


def gtkw_signals(path: str | os.PathLike) -> list[str]:
    """The signal names a GTKWave save file shows (its trace lines; group markers and flags left out)."""
    names = []
    for line in Path(path).read_text().splitlines():
        if line and line[0] not in "@[*-":
            names.append(line.strip())
    return names


# -- size ----------------------------------------------------------------------------


#: VCD bytes per declared variable: its declaration and initial value (header and ``$dumpvars``), and per
#: clock cycle traced (its changes). Measured on pysim (Amaranth/pyvcd) traces: 34 + 15..21 bytes per
#: variable; per variable and cycle 1.00..1.08 bytes (16-8-4 on 4 lanes, speculating) and 0.78 (64-16-16-10
#: on 16 lanes, speculation off): estimates are good to about 25%.
BYTES_PER_VAR = {"pysim": 50.0}
BYTES_PER_VAR_CYCLE = {"pysim": 0.9}


@dataclass(frozen=True)
class TraceEstimate:
    """How large a trace window will be."""

    samples: int
    cycles: int
    bytes: int

    def describe(self) -> str:
        """``"10 samples, ~3,000 cycles, ~12 MB"``."""
        return f"{self.samples} samples, ~{self.cycles:,} cycles, ~{_megabytes(self.bytes)}"


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def estimate_trace(cfg: TrainerConfig, samples: int, variables: int, backend: str = "pysim") -> TraceEstimate:
    """Estimate a trace window of ``samples`` training samples from the cycle model.

    Every step is counted as a sequential one (a hit step is shorter, a miss
    step longer) plus its share of the weight updates (one every
    ``cfg.train.batch`` samples); the bytes are :data:`BYTES_PER_VAR` per
    variable plus :data:`BYTES_PER_VAR_CYCLE` per variable and cycle.

    Parameters
    ----------
    cfg : TrainerConfig
        The design.
    samples : int
        Samples in the window (those the run really streams).
    variables : int
        Variables the waveform declares (:meth:`~.pysim.PysimTrainer.vcd_variables`).
    backend : str
        The simulator that writes it (``"pysim"``).

    Returns
    -------
    TraceEstimate
        Samples, cycles and bytes of the window.
    """
    model = CycleModel(cfg)
    updates = -(-samples // max(cfg.train.batch, 1))
    cycles = samples * (model.sequential_step + 1) + updates * model.update
    size = variables * (BYTES_PER_VAR[backend] + cycles * BYTES_PER_VAR_CYCLE[backend]) if samples else 0
    return TraceEstimate(samples, cycles, int(size))
