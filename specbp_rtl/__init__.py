"""specbp: speculative backpropagation as FPGA training hardware, in Amaranth HDL.

Layout:

* :mod:`specbp_rtl.config` — :class:`~specbp_rtl.config.TrainConfig`, the run's hyper-parameters;
* :mod:`specbp_rtl.fixed` — fixed-point formats and rounding/saturation primitives (numpy and HDL);
* :mod:`specbp_rtl.numerics` — the trainer's formats and derived integer constants;
* :mod:`specbp_rtl.model` — float64 reference, bit-exact golden model, speculation control;
* :mod:`specbp_rtl.data` — MNIST IDX reader and the embedded digits dataset;
* :mod:`specbp_rtl.sim` — training backends and the run record (``sim/`` in the repository);
* :mod:`specbp_rtl.boards` — board top-levels (``boards/`` in the repository);
* :mod:`specbp_rtl.cli` — the ``specbp`` command.
"""

__version__ = "0.1.0"
