"""Board support: UART link, host protocol, board top-levels, bitstreams (installed as ``specbp_rtl.boards``).

* :mod:`.uart` -- 8N1 UART receiver/transmitter with ``lib.stream`` byte ports;
* :mod:`.protocol` -- the framed host protocol (SYNC, CMD, LEN, payload,
  CRC-16/CCITT-FALSE): command and status codes, the CRC, frame encoding and
  decoding; the single source of truth for the gateware and the host;
* :mod:`.link` -- :class:`~.link.Link` (frames to trainer operations and
  responses) and :class:`~.link.LinkedTrainer` (Trainer + UARTs + Link);
* :mod:`.top` -- :class:`~.top.BoardTop` and :data:`~.top.BOARDS`
  (iCEBreaker iCE40UP5K, ULX3S ECP5-85F);
* :mod:`.pll` -- :class:`~.pll.ECP5PLL` and :func:`~.pll.ecp5_pll_params`:
  the ULX3S trainer clock (80 MHz by default) from its 25 MHz crystal;
* :mod:`.build` -- :func:`~.build.build_board`: YoWASP bitstream builds,
  fmax/utilisation reports, programming (iceprog, openFPGALoader);
* :mod:`.host` -- :class:`~.host.BoardTrainer`, the host driver over pyserial
  or any byte stream;
* :mod:`.simserial` -- :class:`~.simserial.SimSerial`, a byte stream backed by
  a bit-level UART into Amaranth's simulator (tests, debugging without a board).

Status: both boards build. The iCEBreaker holds a small trainer (16-4-2, four
lanes per engine, ``lean`` number formats) at 97 % of its logic cells; see
:data:`~.top.BOARDS` for the measured trades.

The public names of the submodules are importable from this package, e.g.
``from specbp_rtl.boards import BOARDS, BoardTop, build_board, BoardTrainer``.
They are imported on first use (``__getattr__``): importing this package
elaborates nothing and loads neither the link's gateware nor pyserial.
"""

from __future__ import annotations

from ..lazy import lazy_exports

#: Public name -> the submodule that defines it.
_EXPORTS: dict[str, str] = {
    "UARTRx": "uart",
    "UARTTx": "uart",
    "divisor_for": "uart",
    "PROTOCOL_VERSION": "protocol",
    "Cmd": "protocol",
    "PingInfo": "protocol",
    "ProtocolError": "protocol",
    "Response": "protocol",
    "Status": "protocol",
    "StatusError": "protocol",
    "crc16": "protocol",
    "decode_frame": "protocol",
    "encode_frame": "protocol",
    "read_frame": "protocol",
    "Link": "link",
    "LinkedTrainer": "link",
    "BOARDS": "top",
    "BoardSpec": "top",
    "BoardTop": "top",
    "DEFAULT_BAUD": "top",
    "trainer_config": "top",
    "ECP5PLL": "pll",
    "PLLParams": "pll",
    "ecp5_pll_params": "pll",
    "YOWASP_TOOLS": "build",
    "BuildError": "build",
    "build_board": "build",
    "format_report": "build",
    "parse_nextpnr_log": "build",
    "program_bitstream": "build",
    "BoardError": "host",
    "BoardTrainer": "host",
    "ByteStream": "host",
    "SimSerial": "simserial",
    "uart_bits": "simserial",
}
_SUBMODULES = ("build", "host", "link", "pll", "protocol", "simserial", "top", "uart")

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, globals(), _EXPORTS, _SUBMODULES)
