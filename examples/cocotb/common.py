"""Settings shared by ``run.py`` (which generates the Verilog) and the testbenches (which rebuild the model).

The small trainer is described by the JSON in ``SPECBP_TB_TRAINER`` (default
:data:`DEFAULT_TRAINER`) so that both sides elaborate exactly the same
:class:`~specbp_rtl.gateware.TrainerConfig`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from specbp_rtl.config import TrainConfig
from specbp_rtl.data import load_dataset
from specbp_rtl.gateware import TrainerConfig

#: 64-16-10 on the embedded digits, 4 lanes per engine, speculation on; the labels of the samples trained,
#: in order (repeats make speculative steps: at this threshold 2 misses and 4 hits; the update after step 0 changes
#: the weights).
DEFAULT_TRAINER: dict[str, Any] = {
    "layers": [64, 16, 10],
    "lanes": 4,
    "threshold": 0.002,
    "seed": 1,
    "labels": [0, 1, 0, 1, 0, 2, 2, 1],
}


def trainer_settings() -> dict[str, Any]:
    """The small trainer's settings: ``SPECBP_TB_TRAINER`` (JSON) over :data:`DEFAULT_TRAINER`."""
    return DEFAULT_TRAINER | json.loads(os.environ.get("SPECBP_TB_TRAINER", "{}"))


def trainer_config(settings: dict[str, Any]) -> TrainerConfig:
    train = TrainConfig(layers=tuple(settings["layers"]), threshold=settings["threshold"], seed=settings["seed"])
    return TrainerConfig(train=train, lanes=settings["lanes"])


def trainer_samples(settings: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Digits samples with the requested labels, in order: each label's next unused training sample."""
    data = load_dataset("digits")
    used: set[int] = set()
    picks = []
    for label in settings["labels"]:
        n = next(i for i in range(len(data.train_y)) if data.train_y[i] == label and i not in used)
        used.add(n)
        picks.append(n)
    return data.train_x[picks], data.train_y[picks]


async def offer(dut, valid, ready, payload, bits: int, chance, gap: float) -> None:
    """Drive one stream beat: random idle cycles first (probability ``gap`` each), then ``valid`` with ``payload``
    set to ``bits`` until the DUT's ``ready`` accepts it at a rising edge."""
    from cocotb.triggers import ReadOnly, RisingEdge

    while chance.random() < gap:
        valid.value = 0
        await RisingEdge(dut.clk)
    payload.value = bits
    valid.value = 1
    while True:
        await ReadOnly()
        accepted = int(ready.value)
        await RisingEdge(dut.clk)
        if accepted:
            return
