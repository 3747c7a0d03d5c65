"""Models of the network: the oracles every hardware backend is checked against.

* :mod:`.reference` -- :class:`FloatEngine`, the paper-faithful float64
  reference (``--backend float``), and the shared initialisation
  :func:`init_integers`;
* :mod:`.golden` -- :class:`FixedEngine`, the bit-exact fixed-point golden
  model (``--backend fixed``); its functions (``golden.layer_forward``,
  ``golden.softmax``, ``golden.comparator``, ...) are the ``model()`` of one
  hardware block each, so they stay in that module;
* :mod:`.speculation` -- :class:`SpeculativeTrainer`, the speculation control
  that drives either engine, its :class:`Counters`, and
  :func:`weights_sha256` (the ``weights_sha256`` of the JSON record).

Example::

    from specbp_rtl.config import TrainConfig
    from specbp_rtl.model import FixedEngine, SpeculativeTrainer

    trainer = SpeculativeTrainer(FixedEngine(TrainConfig(layers=(64, 16, 10))))
    trainer.train_epoch(x, y)  # uint8 pixels (n, 64), labels (n,)
    print(trainer.counters.hits, trainer.engine.weights_sha256())
"""

from . import golden, reference, speculation
from .golden import FixedEngine
from .reference import FloatEngine, distance, init_integers
from .speculation import (
    STEP_COUNTERS,
    Counters,
    Engine,
    ForwardState,
    SpeculativeTrainer,
    weights_sha256,
)

__all__ = [
    "STEP_COUNTERS",
    "Counters",
    "Engine",
    "FixedEngine",
    "FloatEngine",
    "ForwardState",
    "SpeculativeTrainer",
    "distance",
    "golden",
    "init_integers",
    "reference",
    "speculation",
    "weights_sha256",
]
