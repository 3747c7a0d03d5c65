"""What the trainer's parts share while it elaborates.

:meth:`specbp_rtl.gateware.trainer.Trainer.elaborate` calls its parts in a
fixed order (registers, memories, engine wiring, comparator feed, counters,
control, update sequencer, host port). Each adds its logic to the one module
``t.m`` and leaves in ``t`` the signals, memory ports and helpers that later
parts use; every part unpacks what it needs by name at its top, so what one
part takes from another is written in one line.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Parts"]


class Parts:
    """A namespace of the trainer's shared signals, ports and helpers, filled part by part."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    def add(self, **values: Any) -> None:
        """Leave ``values`` for the later parts (``t.add(new=new)``: ``t.new``)."""
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"trainer part: {name!r} is used before the part that makes it ran")
