"""The framed host protocol of the board link: single source of truth.

Both the gateware (:class:`~specbp_rtl.boards.link.Link`) and the host driver
(:class:`~specbp_rtl.boards.host.BoardTrainer`) take command codes, status
codes and the CRC from here.

Frame (both directions)::

    SYNC 0xA5 | CMD | LEN (u16 LE) | payload (LEN bytes) | CRC (u16 LE)

``CRC`` is CRC-16/CCITT-FALSE (polynomial 0x1021, initial value 0xFFFF, no
reflection, no final XOR; ``crc16(b"123456789") == 0x29B1``) over ``CMD``,
``LEN`` and the payload. A response has ``CMD = request CMD | 0x80`` and a
payload of one status byte (:class:`Status`) followed by the command's data
(data only when the status is ``OK``). Every frame that starts with ``SYNC``
gets exactly one response; bytes outside a frame are ignored.

Requests (all integers little endian):

=================  ====  ===================================  ===========================================
command            code  request payload                      response data (after ``OK``)
=================  ====  ===================================  ===========================================
``PING``           0x01  --                                   ``"SB"``, version u8, lanes u8, number of
                                                              widths u8, widths u16 each, max_payload u16,
                                                              number formats u8 (index in
                                                              :data:`specbp_rtl.numerics.NUMERICS`)
``WRITE_WEIGHTS``  0x02  base u32, N x value u32              -- (host-bus writes to ``base + i``)
``READ_WEIGHTS``   0x03  base u32, count u16                  count x u32 (host-bus reads of ``base + i``)
``SET_THRESHOLD``  0x04  threshold u32 (probability LSBs)     --
``SET_METRIC``     0x05  metric u8 (0 mean-abs, 1 max-abs,    --
                         2 l1)
``SET_SPEC``       0x06  mode u8 (bit 0 speculation, bit 1    --
                         pipelined baseline)
``TRAIN_SAMPLE``   0x07  flags u8 (bits 0-3 label, bit 7      prediction u8, kind u8 (StepKind)
                         epoch_start), n_in pixels u8
``INFER_SAMPLE``   0x08  n_in pixels u8                       prediction u8
``READ_COUNTERS``  0x09  --                                   one u64 per performance counter, in
                                                              :data:`~specbp_rtl.gateware.host.COUNTERS`
                                                              order
=================  ====  ===================================  ===========================================

``WRITE_WEIGHTS``/``READ_WEIGHTS`` are runs of accesses on the trainer's
:class:`~specbp_rtl.gateware.host.HostBus`, registers too: the host driver
(:class:`~specbp_rtl.driver.TrainerDriver`, shared with the Verilator backend)
programs THRESHOLD, METRIC and SPEC_EN and reads the counters with them.
``SET_THRESHOLD``, ``SET_METRIC``, ``SET_SPEC`` and ``READ_COUNTERS`` do the
same in one short frame each, for tools that speak the protocol by hand. A run must stay
inside the bus's address map
(:func:`~specbp_rtl.gateware.host.access_error`: the readable or the writable
registers, or one layer's weights up to its last word): the host driver
refuses any other before sending it, and a link built with its address check
(:class:`~specbp_rtl.boards.link.Link`'s ``address_check``, the default;
not yet in the board builds: their presets leave
:attr:`~specbp_rtl.gateware.microarch.Microarchitecture.link_address_check` off)
answers it with ``BAD_ARG``. A write run's payload must fit the link's
receive buffer (``max_payload`` bytes, reported by ``PING``). The link executes a request only after its CRC, command,
length and arguments have been checked: a frame with a bad CRC, an unknown
command, a wrong length or a bad argument, or one cut short (no byte for
``timeout`` clock cycles inside a frame) or hit by a UART framing error gets
an error response and changes no state.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ..gateware.host import spec_en_value
from ..numerics import NUMERICS, numerics_preset

__all__ = [
    "SYNC",
    "RESPONSE",
    "PROTOCOL_VERSION",
    "MAGIC",
    "Cmd",
    "Status",
    "ProtocolError",
    "StatusError",
    "crc16",
    "encode_frame",
    "decode_frame",
    "read_frame",
    "Response",
    "PingInfo",
    "ping",
    "write_words",
    "read_words",
    "set_threshold",
    "set_metric",
    "set_spec",
    "train_sample",
    "infer_sample",
    "read_counters",
    "MAX_READ_WORDS",
]

SYNC = 0xA5
#: OR-ed into the command code of a response
RESPONSE = 0x80
#: 2: PING also reports the number formats
PROTOCOL_VERSION = 2
MAGIC = b"SB"
#: most words one READ_WEIGHTS may ask for (the response length must fit 16 bits)
MAX_READ_WORDS = (0xFFFF - 1) // 4


class Cmd(enum.IntEnum):
    PING = 0x01
    WRITE_WEIGHTS = 0x02
    READ_WEIGHTS = 0x03
    SET_THRESHOLD = 0x04
    SET_METRIC = 0x05
    SET_SPEC = 0x06
    TRAIN_SAMPLE = 0x07
    INFER_SAMPLE = 0x08
    READ_COUNTERS = 0x09


class Status(enum.IntEnum):
    OK = 0
    BAD_CRC = 1
    TIMEOUT = 2
    UNKNOWN_CMD = 3
    BAD_LENGTH = 4
    BAD_ARG = 5
    FRAMING = 6


class ProtocolError(Exception):
    """A malformed response (bad sync, bad CRC, short read)."""


class StatusError(Exception):
    """The board answered with an error status."""

    def __init__(self, cmd: int, status: int) -> None:
        self.cmd, self.status = cmd, status
        try:
            name = Status(status).name
        except ValueError:
            name = f"status {status}"
        try:
            cmd_name = Cmd(cmd & ~RESPONSE).name
        except ValueError:
            cmd_name = f"command 0x{cmd & ~RESPONSE:02x}"
        super().__init__(f"board: {cmd_name} failed: {name}")


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
        table.append(crc & 0xFFFF)
    return table


_TABLE = _crc_table()


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (continue from ``crc``)."""
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[((crc >> 8) ^ byte) & 0xFF]
    return crc


def crc16_bitwise(crc: int, byte: int) -> int:
    """One byte of the CRC, bit by bit: exactly the gateware's unrolled update."""
    crc ^= byte << 8
    for _ in range(8):
        crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def encode_frame(cmd: int, payload: bytes = b"") -> bytes:
    """A complete frame: ``SYNC CMD LEN payload CRC``."""
    if len(payload) > 0xFFFF:
        raise ValueError(f"payload: at most 65535 bytes, got {len(payload)}")
    body = bytes([cmd]) + struct.pack("<H", len(payload)) + bytes(payload)
    return bytes([SYNC]) + body + struct.pack("<H", crc16(body))


def decode_frame(frame: bytes) -> tuple[int, bytes]:
    """``(cmd, payload)`` of one complete frame; raises :class:`ProtocolError`."""
    if len(frame) < 6 or frame[0] != SYNC:
        raise ProtocolError(f"not a frame: {frame[:8].hex()}")
    (length,) = struct.unpack_from("<H", frame, 2)
    if len(frame) != 6 + length:
        raise ProtocolError(f"frame length {len(frame)} does not match LEN {length}")
    body = frame[1 : 4 + length]
    (crc,) = struct.unpack_from("<H", frame, 4 + length)
    if crc16(body) != crc:
        raise ProtocolError(f"bad CRC in response: got 0x{crc:04x}, computed 0x{crc16(body):04x}")
    return frame[1], frame[4 : 4 + length]


def read_frame(read: Callable[[int], bytes]) -> bytes:
    """Read one frame with ``read(n)`` (which may return fewer bytes on timeout).

    Bytes before ``SYNC`` are skipped. Raises :class:`ProtocolError` on a timeout.
    """

    def exactly(n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = read(n - len(out))
            if not chunk:
                raise ProtocolError(f"timeout: got {len(out)} of {n} bytes")
            out += chunk
        return out

    while True:
        first = exactly(1)
        if first[0] == SYNC:
            break
    head = exactly(3)
    (length,) = struct.unpack_from("<H", head, 1)
    return first + head + exactly(length + 2)


@dataclass(frozen=True)
class Response:
    cmd: int
    status: int
    data: bytes

    @classmethod
    def parse(cls, frame: bytes) -> Response:
        cmd, payload = decode_frame(frame)
        if not cmd & RESPONSE or not payload:
            raise ProtocolError(f"not a response: cmd 0x{cmd:02x}, {len(payload)} payload bytes")
        return cls(cmd, payload[0], payload[1:])

    @property
    def ok(self) -> bool:
        return self.status == Status.OK

    def check(self, cmd: int | None = None) -> bytes:
        """The data; raises :class:`StatusError` unless OK (and :class:`ProtocolError` on a wrong echo)."""
        if cmd is not None and self.cmd != (cmd | RESPONSE):
            raise ProtocolError(f"response to 0x{self.cmd & ~RESPONSE:02x}, expected 0x{cmd:02x}")
        if not self.ok:
            raise StatusError(self.cmd, self.status)
        return self.data


@dataclass(frozen=True)
class PingInfo:
    version: int
    lanes: int
    layers: tuple[int, ...]
    max_payload: int
    #: the trainer's number formats, a :data:`specbp_rtl.numerics.NUMERICS` name
    numerics: str = "standard"

    @classmethod
    def parse(cls, data: bytes) -> PingInfo:
        if data[:2] != MAGIC:
            raise ProtocolError(f"PING: bad magic {data[:2]!r}")
        if len(data) < 5:
            raise ProtocolError(f"PING: {len(data)}-byte reply is too short")
        version, lanes, n = data[2], data[3], data[4]
        if version != PROTOCOL_VERSION:
            raise ProtocolError(
                f"PING: the board speaks protocol version {version}, this host {PROTOCOL_VERSION}: "
                f"rebuild the bitstream with this version of specbp"
            )
        try:
            layers = struct.unpack_from(f"<{n}H", data, 5)
            max_payload, formats = struct.unpack_from("<HB", data, 5 + 2 * n)
        except struct.error:
            raise ProtocolError(f"PING: {len(data)}-byte reply is too short") from None
        names = tuple(NUMERICS)
        if formats >= len(names):
            raise ProtocolError(f"PING: unknown number formats {formats}")
        return cls(version, lanes, tuple(layers), max_payload, names[formats])

    def encode(self) -> bytes:
        numerics_preset(self.numerics)  # an unknown name fails naming ``numerics``
        return (
            MAGIC
            + bytes([self.version, self.lanes, len(self.layers)])
            + struct.pack(f"<{len(self.layers)}H", *self.layers)
            + struct.pack("<HB", self.max_payload, tuple(NUMERICS).index(self.numerics))
        )


# -- request builders -----------------------------------------------------------------------------------------
def ping() -> bytes:
    return encode_frame(Cmd.PING)


def write_words(base: int, values) -> bytes:
    """Host-bus writes of ``values`` (signed or unsigned, 32 bits) to ``base``, ``base + 1``, ..."""
    vals = [int(v) & 0xFFFF_FFFF for v in values]
    return encode_frame(Cmd.WRITE_WEIGHTS, struct.pack(f"<I{len(vals)}I", base, *vals))


def read_words(base: int, count: int) -> bytes:
    if not 0 <= count <= MAX_READ_WORDS:
        raise ValueError(f"count: at most {MAX_READ_WORDS} words per read, got {count}")
    return encode_frame(Cmd.READ_WEIGHTS, struct.pack("<IH", base, count))


def set_threshold(value: int) -> bytes:
    return encode_frame(Cmd.SET_THRESHOLD, struct.pack("<I", value))


def set_metric(code: int) -> bytes:
    return encode_frame(Cmd.SET_METRIC, bytes([code]))


def set_spec(on: bool, pipeline: bool = False) -> bytes:
    return encode_frame(Cmd.SET_SPEC, bytes([spec_en_value(on, pipeline)]))


def train_sample(label: int, pixels, epoch_start: bool = False) -> bytes:
    if not 0 <= label < 16:
        raise ValueError(f"label: must be in 0..15, got {label}")
    return encode_frame(Cmd.TRAIN_SAMPLE, bytes([label | (0x80 if epoch_start else 0)]) + bytes(pixels))


def infer_sample(pixels) -> bytes:
    return encode_frame(Cmd.INFER_SAMPLE, bytes(pixels))


def read_counters() -> bytes:
    return encode_frame(Cmd.READ_COUNTERS)
