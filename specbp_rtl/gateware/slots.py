"""Addressing of the label-state slots, shared by the forward and the backward engine.

Each engine reads and writes the slots' input bytes (``sx``), softmax outputs
(``sp``) and hidden pre-activations (``sz<layer>``) at a slot's base address
plus an element index: :func:`slot_addressing` builds both from the
trainer's configuration.
"""

from __future__ import annotations

from .layout import TrainerConfig
from .util import ElementIndex, SlotBases

__all__ = ["slot_addressing"]


def slot_addressing(cfg: TrainerConfig) -> tuple[SlotBases, ElementIndex]:
    """An engine's slot base registers (input bytes, softmax outputs, hidden pre-activations) and its element
    index with the registered input-byte (``base + element``) and pre-activation (``base + word``) addresses."""
    n_layers = cfg.n_layers
    bases = SlotBases(
        {"sx": cfg.n_in(0), "sp": cfg.classes, **{f"sz{layer}": cfg.passes(layer) for layer in range(n_layers - 1)}},
        cfg.slots,
    )
    idx = ElementIndex(
        max(cfg.layers[:-1]),
        cfg.lanes,
        bases,
        by_element=("sx",),
        by_word=tuple(f"sz{layer}" for layer in range(n_layers - 1)),
        word_copies=cfg.arch.sz_groups,
    )
    return bases, idx
