"""Memory-port members for engine signatures.

Engines do not own the trainer's memories: they expose plain address/data
members, and the trainer multiplexes each physical memory port between the
engines, the update sequencer and the host. These helpers name the members
consistently: ``<name>_raddr``/``<name>_rdata`` for a synchronous read port
(data one cycle after the address), ``<name>_raddr_next``/``<name>_rdata`` for
one whose address is given a cycle ahead (the trainer registers it, after its
multiplexer, right in front of the memory: data two cycles after
``<name>_raddr_next``), and ``<name>_waddr``/``<name>_wdata``/``<name>_wen``
for a write port. With ``copies``, a port's address (and a write port's
enable, one bit each) is an array of that many equal copies, one per lane
group of a memory split by lanes (each group's memory takes its own copy).
"""

from __future__ import annotations

from amaranth.hdl import Shape, ShapeLike
from amaranth.lib import data
from amaranth.lib.wiring import In, Out

__all__ = ["read_port", "read_port_ahead", "write_port"]


def _addr(depth: int, copies: int | None) -> ShapeLike:
    bits = Shape.cast(range(max(depth, 2)))
    return bits if copies is None else data.ArrayLayout(bits, copies)


def read_port(name: str, depth: int, shape: ShapeLike, copies: int | None = None) -> dict:
    return {f"{name}_raddr": Out(_addr(depth, copies)), f"{name}_rdata": In(shape)}


def read_port_ahead(name: str, depth: int, shape: ShapeLike) -> dict:
    return {f"{name}_raddr_next": Out(range(max(depth, 2))), f"{name}_rdata": In(shape)}


def write_port(name: str, depth: int, shape: ShapeLike, copies: int | None = None) -> dict:
    return {
        f"{name}_waddr": Out(_addr(depth, copies)),
        f"{name}_wdata": Out(shape),
        f"{name}_wen": Out(1 if copies is None else copies),
    }
