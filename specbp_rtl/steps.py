"""The kinds of a training step: one definition for the models, the RTL and every host driver.

A speculative-backpropagation step is one of four kinds. The golden models log
them (:attr:`specbp_rtl.model.speculation.SpeculativeTrainer.log`), the
trainer's result stream carries them as a 2-bit code
(:func:`specbp_rtl.gateware.trainer.result_layout`), and the pysim, rtl and
board backends decode that code into the same members, so the logs of all
backends compare with ``==``.
"""

from __future__ import annotations

from amaranth.lib import enum

__all__ = ["StepKind"]


class StepKind(enum.Enum, shape=2):
    """Kind of a training step; the value is the code on the result stream.

    ``SEQUENTIAL``
        Speculation off: the backward pass runs after the forward pass.
    ``FIRST_SIGHTING``
        Speculation on, but no earlier sample had this label: run as ``SEQUENTIAL``.
    ``HIT``
        The speculative backward pass of the previous same-label sample was kept.
    ``MISS``
        It was discarded and the backward pass ran again from this sample.
    """

    SEQUENTIAL = 0
    FIRST_SIGHTING = 1
    HIT = 2
    MISS = 3

    @property
    def label(self) -> str:
        """Lower-case name (``"first_sighting"``), as traces and messages print it."""
        return self.name.lower()

    @property
    def counter(self) -> str:
        """The step counter this kind increments (``"hits"``; :data:`specbp_rtl.gateware.host.COUNTERS`)."""
        return _COUNTERS[self]


_COUNTERS = {
    StepKind.SEQUENTIAL: "sequential",
    StepKind.FIRST_SIGHTING: "first_sightings",
    StepKind.HIT: "hits",
    StepKind.MISS: "misses",
}
