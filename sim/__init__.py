"""Simulation and training backends (installed as ``specbp_rtl.sim``).

* :mod:`.runner` — trains any backend and produces the JSON record of
  ``specbp train``; today's backends are ``float`` (the paper-faithful float64
  reference) and ``fixed`` (the bit-exact golden model). Cycle-accurate
  backends (Amaranth's simulator, Verilator) plug in here.
"""
