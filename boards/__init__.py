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
"""
