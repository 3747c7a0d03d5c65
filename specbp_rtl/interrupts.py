"""Ctrl-C as a request to stop between two units of work, not as an exception inside a simulator.

A ``KeyboardInterrupt`` raised inside Amaranth's simulator unwinds its
coroutines half-way (and Python then reports "exception ignored" for each).
:func:`interrupt_flag` turns SIGINT into an event that a testbench polls
between two samples, so the simulation ends cleanly and the work done is kept.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["interrupt_flag"]


@contextmanager
def interrupt_flag(flag: threading.Event) -> Iterator[threading.Event]:
    """Within the block, SIGINT sets ``flag`` instead of raising ``KeyboardInterrupt``.

    A second SIGINT while the flag is set raises ``KeyboardInterrupt`` as
    usual (an impatient user still gets out). Outside the main thread, where
    Python cannot install signal handlers, the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame) -> None:
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
