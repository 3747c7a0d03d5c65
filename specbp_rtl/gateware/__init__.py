"""Gateware: the trainer's hardware blocks, one ``wiring.Component`` per concept.

Each block documents its parameters, ports, latency and throughput, and names
its numpy model (a ``model()`` static method, or a function of
:mod:`specbp_rtl.model.golden`) that it must match bit for bit.

The public names are importable from this package::

    from specbp_rtl.gateware import MacArray, Softmax, Comparator, Trainer, TrainerConfig

* blocks: :class:`MacArray` (:mod:`.mac_array`), :class:`Activation`
  (:mod:`.activation`), :class:`Softmax` (:mod:`.softmax`),
  :class:`Comparator` and :class:`Metric` (:mod:`.comparator`),
  :class:`UpdateUnit` (:mod:`.update`), :class:`CounterBank`
  (:mod:`.counters`);
* engines: :class:`ForwardEngine` (:mod:`.forward`), :class:`BackwardEngine`
  (:mod:`.backward`);
* the top: :class:`Trainer`, :func:`sample_layout`,
  :func:`result_layout` (:mod:`.trainer`), configured by
  :class:`TrainerConfig` (:mod:`.layout`) and a :class:`Microarchitecture`
  (:mod:`.microarch`, named :data:`PRESETS`), with its exact cycle model
  :class:`CycleModel` (:mod:`.cycles`);
* the host bus: :class:`HostBus`, the register addresses, :data:`COUNTERS`,
  :func:`weight_address`, :func:`spec_en_value` (:mod:`.host`).

The building blocks the engines share (:mod:`.ports`, :mod:`.util`) stay in
their modules.
"""

from ..steps import StepKind
from .activation import Activation
from .backward import BackwardEngine
from .comparator import Comparator, Metric
from .counters import CounterBank
from .cycles import CycleModel
from .forward import ForwardEngine
from .host import COUNTERS, HostBus, access_error, spec_en_value, weight_address
from .layout import COUNTER_MEMORIES, TrainerConfig
from .mac_array import MacArray
from .microarch import PRESETS, Microarchitecture
from .softmax import Softmax
from .trainer import Trainer, result_layout, sample_layout
from .update import UpdateUnit

__all__ = [
    # blocks
    "Activation",
    "Comparator",
    "CounterBank",
    "MacArray",
    "Metric",
    "Softmax",
    "UpdateUnit",
    # engines
    "BackwardEngine",
    "ForwardEngine",
    # the trainer, its configuration and cycle model
    "COUNTER_MEMORIES",
    "CycleModel",
    "StepKind",
    "Trainer",
    "TrainerConfig",
    "Microarchitecture",
    "PRESETS",
    "result_layout",
    "sample_layout",
    # host bus
    "COUNTERS",
    "HostBus",
    "access_error",
    "spec_en_value",
    "weight_address",
]
