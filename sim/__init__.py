"""Simulation and training backends (installed as ``specbp_rtl.sim``).

* :mod:`.runner` -- :func:`run_training` trains any backend and returns the
  :class:`RunResult` whose ``as_json()`` is the record of ``specbp train``;
  :data:`BACKENDS` lists them: ``float`` (the paper-faithful float64
  reference), ``fixed`` (the bit-exact golden model), ``pysim`` and ``rtl``;
  :func:`make_engine` builds a numpy model engine;
* :mod:`.pysim` -- :class:`PysimTrainer`, the Trainer RTL in Amaranth's
  simulator (``pysim``), and the host-bus testbench helpers
  :func:`host_read` / :func:`host_write`;
* :mod:`.verilator` -- :class:`VerilatorTrainer` and :func:`run_rtl`, the
  Trainer's Verilog in Verilator (``rtl``; :func:`build_library` builds and
  caches the C++ harness in :func:`cache_root`), with :class:`ToolError` and
  :class:`SimulationError`.

Example::

    from specbp_rtl.config import TrainConfig
    from specbp_rtl.data import load_dataset
    from specbp_rtl.sim import run_training

    result = run_training("fixed", TrainConfig(layers=(64, 16, 10)), load_dataset("digits"), epochs=2)
    print(result.accuracy_per_epoch, result.weights_sha256)

The names are imported on first use (``__getattr__``): importing this package
loads neither Amaranth's simulator nor the Verilator toolchain.
"""

from __future__ import annotations

from ..lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "BACKENDS": "runner",
    "RunResult": "runner",
    "make_engine": "runner",
    "run_training": "runner",
    "PysimTrainer": "pysim",
    "host_read": "pysim",
    "host_write": "pysim",
    "BuildInfo": "verilator",
    "SimulationError": "verilator",
    "ToolError": "verilator",
    "VerilatorTrainer": "verilator",
    "build_library": "verilator",
    "cache_root": "verilator",
    "canonical_config": "verilator",
    "elaborate": "verilator",
    "run_rtl": "verilator",
}
_SUBMODULES = ("pysim", "runner", "verilator")

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
