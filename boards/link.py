"""Gateware side of the framed host protocol (:mod:`.protocol`).

:class:`Link` sits between the UART byte streams and the
:class:`~specbp_rtl.gateware.trainer.Trainer`: it parses request frames,
checks them completely (CRC, command, length, arguments) and only then
executes them on the trainer (host-bus writes and reads, samples into the
``sample`` stream, results out of the ``result`` stream), and answers every
frame with one response frame. :class:`LinkedTrainer` is the Trainer with
its UARTs and link: the part of a board top-level that does not depend on the
board (and what the end-to-end simulation drives bit by bit).
"""

from __future__ import annotations

import enum

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..gateware.host import (
    COUNTERS,
    READ_REGISTER_RUNS,
    REG_COUNTERS,
    REG_METRIC,
    REG_SPEC_EN,
    REG_THRESHOLD,
    SPEC_EN_MAX,
    WRITE_REGISTER_RUN,
    HostBus,
    lane_bits,
)
from ..gateware.layout import TrainerConfig
from ..gateware.trainer import Trainer, result_layout, sample_layout
from ..numerics import numerics_name
from .protocol import MAX_READ_WORDS, PROTOCOL_VERSION, RESPONSE, SYNC, Cmd, PingInfo, Status
from .uart import UARTRx, UARTTx

__all__ = ["Link", "LinkedTrainer", "crc16_update", "default_max_payload"]


class _Op(enum.IntEnum):
    """Data that follows the status byte of a response."""

    NONE = 0
    PING = 1
    READ = 2
    TRAIN = 3
    INFER = 4


def _crc16_matrix() -> list[tuple[list[int], list[int]]]:
    """For each output bit of one CRC byte step: the CRC bits and byte bits it is the XOR of."""
    bits = [{i} for i in range(16)]  # variables 0..15: CRC bits, 16..23: byte bits
    for i in range(8):
        bits[8 + i] = bits[8 + i] ^ {16 + i}
    for _ in range(8):
        top = bits[15]
        bits = [set()] + bits[:15]
        for i in (0, 5, 12):  # polynomial 0x1021
            bits[i] = bits[i] ^ top
    return [(sorted(v for v in b if v < 16), sorted(v - 16 for v in b if v >= 16)) for b in bits]


_CRC16_MATRIX = _crc16_matrix()


def crc16_update(crc: Value, byte: Value) -> Value:
    """CRC-16/CCITT-FALSE of one more byte as a 16-bit XOR network.

    The byte step is linear, so each output bit is the XOR of a fixed set of
    CRC and byte bits (derived by unrolling the bitwise update of
    :func:`.protocol.crc16_bitwise`, which the tests compare against).
    """
    out = []
    for crc_bits, byte_bits in _CRC16_MATRIX:
        terms = [crc[i] for i in crc_bits] + [byte[i] for i in byte_bits]
        out.append(Cat(*terms).xor() if terms else Const(0, 1))
    return Cat(*out)


def default_max_payload(cfg: TrainerConfig) -> int:
    """Receive-buffer size: the next power of two holding a training frame and >= 64 weight writes."""
    need = max(cfg.n_in(0) + 1, 4 + 4 * 64)
    return 1 << (need - 1).bit_length()


class Link(wiring.Component):
    """Frame parser, command executor and response generator.

    Parameters
    ----------
    cfg : TrainerConfig
        The trainer's configuration (input width, classes, lanes, for checks and ``PING``).
    timeout : int
        Inter-byte timeout in clock cycles: a frame with no new byte for this
        long (plus two cycles) is dropped with a ``TIMEOUT`` response.
    max_payload : int or None
        Receive-buffer bytes (block RAM); default :func:`default_max_payload`.
    check_registers : bool
        The state machine reads the comparisons it acts on from flip-flops:
        the timer's expiry (a cycle later), the payload's last byte and room,
        the frame checks (no counter comparator in front of its next-state
        logic: the iCEBreaker's critical path). Off by default: the ULX3S
        build's measured netlist does not have them (with them it routed at
        75.45 MHz instead of 81.02, its critical path elsewhere).
    address_check : bool
        ``WRITE_WEIGHTS`` and ``READ_WEIGHTS`` runs outside the host bus's
        address map (:func:`~specbp_rtl.gateware.host.access_error`) are
        answered ``BAD_ARG`` and change nothing. On by default; the board
        builds leave it off for now (:attr:`~specbp_rtl.gateware.microarch.Microarchitecture.link_address_check`:
        measured, it cost the ULX3S its 80 MHz clock and the iCEBreaker its
        fit), and there the host driver's own check is the only one.

    Ports
    -----
    rx : In(stream.Signature(8))
        Bytes from the UART receiver, at least two cycles apart (a UART's are
        ten bit times apart); ``rx_error`` is its framing-error pulse.
    tx : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    sample, result, host
        To the trainer's ``sample``, ``result`` and ``host`` ports.
    trainer_idle : In(1)
        The trainer's ``idle``: commands wait for it before they touch the trainer.
    error : Out(1)
        The last response carried an error status (for a LED).
    in_frame : Out(1)
        A frame is being received, executed or answered.

    The protocol is strictly request/response: the host sends the next frame
    only after the previous response. Bytes that arrive while a frame is being
    executed or answered are not read (the UART keeps only the last one).

    Latency: a request is executed once its last CRC byte has arrived (and the
    trainer is idle); the response starts right after execution, one byte per
    UART byte time. Throughput is bound by the UART: a training frame of
    ``n_in + 7`` bytes and its 8-byte response take ``10 * divisor * (n_in + 15)``
    cycles, far more than a training step.
    """

    def __init__(
        self,
        cfg: TrainerConfig,
        timeout: int,
        max_payload: int | None = None,
        check_registers: bool = False,
        address_check: bool = True,
    ) -> None:
        if not isinstance(timeout, int) or timeout < 2:
            raise ValueError(f"timeout: must be an integer number of cycles >= 2, got {timeout!r}")
        max_payload = default_max_payload(cfg) if max_payload is None else max_payload
        if not isinstance(max_payload, int) or not cfg.n_in(0) + 1 <= max_payload <= 0xFFFF:
            raise ValueError(
                f"max_payload: must hold a training frame ({cfg.n_in(0) + 1} bytes) "
                f"and fit 16 bits, got {max_payload!r}"
            )
        self.cfg, self.timeout, self.max_payload = cfg, timeout, max_payload
        self.check_registers = check_registers
        self.address_check = address_check
        self.info = PingInfo(PROTOCOL_VERSION, cfg.lanes, tuple(cfg.layers), max_payload, numerics_name(cfg.numerics))
        super().__init__(
            {
                "rx": In(stream.Signature(8)),
                "rx_error": In(1),
                "tx": Out(stream.Signature(8)),
                "sample": Out(stream.Signature(sample_layout(cfg))),
                "result": In(stream.Signature(result_layout(cfg))),
                "host": Out(HostBus()),
                "trainer_idle": In(1),
                "error": Out(1),
                "in_frame": Out(1),
            }
        )

    def elaborate(self, platform) -> Module:
        cfg, m = self.cfg, Module()
        n_in, classes = cfg.n_in(0), cfg.classes

        m.submodules.buf = buf = Memory(shape=8, depth=self.max_payload, init=[])
        buf_w, buf_r = buf.write_port(), buf.read_port()

        cmd = Signal(8)
        length = Signal(16)
        count = Signal(16)  # payload bytes received; later: bytes/words left
        crc = Signal(16, init=0xFFFF)
        rx_crc_lo = Signal(8)
        arg = Signal(48)  # the first 6 payload bytes
        timer = Signal(range(self.timeout + 1))
        status = Signal(8)
        resp_len = Signal(16)
        ptr = Signal(range(self.max_payload + 1))
        addr = Signal(24)
        word = Signal(32)
        # the buffer's read data, registered (a weight-write byte reaches `word` from a flip-flop, not from the
        # block RAM's output through the byte select)
        buf_byte = Signal(8)
        m.d.sync += buf_byte.eq(buf_r.data)
        k = Signal(2)
        prediction = Signal(8)
        kind = Signal(8)
        op = Signal(range(len(_Op)))  # what follows the status byte

        rom_bytes = self.info.encode()
        rom = Array(Const(b, 8) for b in rom_bytes)
        rom_idx = Signal(range(len(rom_bytes)))

        rx_take = Signal()  # an accepted rx byte this cycle
        rx_byte = self.rx.payload
        m.d.comb += rx_take.eq(self.rx.valid & self.rx.ready)

        # transmitter: states set tx_data/tx_go (tx_crc: the byte is covered by the CRC)
        tx_data, tx_go, tx_crc, tx_done = Signal(8), Signal(), Signal(), Signal()
        tcrc = Signal(16, init=0xFFFF)
        m.d.comb += [self.tx.payload.eq(tx_data), self.tx.valid.eq(tx_go), tx_done.eq(tx_go & self.tx.ready)]
        with m.If(tx_done & tx_crc):
            m.d.sync += tcrc.eq(crc16_update(tcrc, tx_data))

        def emit(value, crc_covered: bool = True) -> None:
            m.d.comb += [tx_data.eq(value), tx_go.eq(1), tx_crc.eq(int(crc_covered))]

        host = self.host
        label = arg[:4]
        epoch_start = arg[7]

        def respond(code) -> None:
            m.d.sync += status.eq(code)
            m.next = "R_SYNC"

        # check_registers: comparisons the state machine acts on, from registers into flip-flops (no counter
        # comparator in front of its next-state logic): the timer has expired (it stops there; a cycle later than
        # the comparison), the payload byte about to arrive is the last one, it still fits the buffer (rx bytes are
        # at least two cycles apart: a UART's are ten bit times), and the frame checks (command, length and
        # arguments are final from the last payload byte on, two bytes before CHECK)
        regs = self.check_registers
        if regs:
            expired, pay_last, pay_room = Signal(), Signal(), Signal()
            m.d.sync += [
                expired.eq(timer == self.timeout),
                pay_last.eq(count == length - 1),
                pay_room.eq(count < self.max_payload),
            ]
            chk_known, chk_length, chk_arg = Signal(), Signal(), Signal()
            known, length_ok, arg_ok = Signal(), Signal(), Signal(init=1)
            m.d.sync += [chk_known.eq(known), chk_length.eq(length_ok), chk_arg.eq(arg_ok)]

        def timed_out() -> Value:
            return expired if regs else timer == self.timeout

        # the address map (gateware.host.access_error): a WRITE_WEIGHTS or READ_WEIGHTS run must stay inside one
        # region. Two register stages from `arg` and `length` (final from the last payload byte on, at least
        # four cycles before CHECK reads `in_map`): the run's last address within its region (bit 20: it
        # crosses into the next region), then the verdict.
        in_map = None
        if self.address_check:
            run_words = Mux(cmd == Cmd.WRITE_WEIGHTS, (length - 4)[2:], arg[32:48])
            run_base, run_end, run_empty, in_map = arg[:20], Signal(21), Signal(), Signal()
            m.d.sync += [run_end.eq((run_base + run_words - 1)[:21]), run_empty.eq(run_words == 0)]
            bits = lane_bits(cfg.lanes)
            region, end_word = arg[20:24], run_end[bits:20]
            (w_first, w_last), ((r_first, r_last),) = WRITE_REGISTER_RUN, READ_REGISTER_RUNS
            registers_ok = (region == 0) & Mux(
                cmd == Cmd.WRITE_WEIGHTS,
                (run_base >= w_first) & (run_end[:20] <= w_last),
                (run_base >= r_first) & (run_end[:20] <= r_last),
            )
            layer_ok = []
            for layer in range(cfg.n_layers):
                ok = (region == layer + 1) & (end_word < cfg.words(layer))
                if cfg.lanes != 1 << bits:  # a run stays inside one word and its lanes
                    ok &= (run_base[bits:20] == end_word) & (run_end[:bits] < cfg.lanes)
                layer_ok.append(ok)
            m.d.sync += in_map.eq(
                run_empty | ((arg[24:32] == 0) & ~run_end[20] & (registers_ok | Cat(*layer_ok).any()))
            )

        def checks() -> list:
            """``(commands, length check, argument check or None)`` of each command."""
            return [
                ((Cmd.PING, Cmd.READ_COUNTERS), length == 0, None),
                ((Cmd.WRITE_WEIGHTS,), (length >= 4) & (length <= self.max_payload) & (length[:2] == 0), in_map),
                (
                    (Cmd.READ_WEIGHTS,),
                    length == 6,
                    arg[32:48] <= MAX_READ_WORDS if in_map is None else (arg[32:48] <= MAX_READ_WORDS) & in_map,
                ),
                ((Cmd.SET_THRESHOLD,), length == 4, None),
                ((Cmd.SET_METRIC,), length == 1, arg[:8] <= 2),
                ((Cmd.SET_SPEC,), length == 1, arg[:8] <= SPEC_EN_MAX),
                ((Cmd.TRAIN_SAMPLE,), length == n_in + 1, ~(arg[:8] & 0x70).any() & (label < classes)),
                ((Cmd.INFER_SAMPLE,), length == n_in, None),
            ]

        if regs:
            with m.Switch(cmd):
                for codes, length_check, arg_check in checks():
                    with m.Case(*codes):
                        m.d.comb += [known.eq(1), length_ok.eq(length_check)]
                        if arg_check is not None:
                            m.d.comb += arg_ok.eq(arg_check)

        def count_time() -> None:
            """The timer counts (with check_registers: up to the timeout, and stays there)."""
            if regs:
                with m.If(~expired):
                    m.d.sync += timer.eq(timer + 1)
            else:
                m.d.sync += timer.eq(timer + 1)

        def guard() -> None:
            """Inter-byte timeout and UART framing errors inside a frame (last, so it wins)."""
            with m.If(self.rx_error):
                m.d.sync += [status.eq(Status.FRAMING), timer.eq(0)]
                m.next = "DRAIN"
            with m.Elif(rx_take):
                m.d.sync += timer.eq(0)
            with m.Elif(timed_out()):
                m.d.sync += status.eq(Status.TIMEOUT)
                m.next = "R_SYNC"
            with m.Else():
                count_time()

        # the sample stream: valid and the per-sample fields are flip-flops (set in S_PRIME, epoch_start
        # cleared after the first pixel), only the pixel comes from the buffer memory
        s_valid, s_infer, s_epoch = Signal(), Signal(), Signal()
        s_label = Signal.like(self.sample.payload.label)
        m.d.comb += [
            self.sample.valid.eq(s_valid),
            self.sample.payload.pixel.eq(buf_r.data),
            self.sample.payload.label.eq(s_label),
            self.sample.payload.infer.eq(s_infer),
            self.sample.payload.epoch_start.eq(s_epoch),
        ]
        # results are always accepted (a constant ready: the trainer's step completion depends on no
        # link state); one arrives only in S_RESULT, after the link has sent the sample's last pixel
        m.d.comb += self.result.ready.eq(1)
        with m.FSM() as fsm:
            # ---- receive -----------------------------------------------------------------
            with m.State("HUNT"):
                m.d.comb += self.rx.ready.eq(1)
                m.d.sync += [timer.eq(0), crc.eq(0xFFFF), cmd.eq(0), count.eq(0), op.eq(_Op.NONE), resp_len.eq(1)]
                if regs:
                    m.d.sync += expired.eq(0)
                with m.If(rx_take & (rx_byte == SYNC)):
                    m.next = "CMD"

            with m.State("CMD"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    m.d.sync += [cmd.eq(rx_byte), crc.eq(crc16_update(crc, rx_byte))]
                    m.next = "LEN0"
                guard()
            with m.State("LEN0"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    m.d.sync += [length[:8].eq(rx_byte), crc.eq(crc16_update(crc, rx_byte))]
                    m.next = "LEN1"
                guard()
            with m.State("LEN1"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    m.d.sync += [length[8:].eq(rx_byte), crc.eq(crc16_update(crc, rx_byte))]
                    with m.If((rx_byte == 0) & (length[:8] == 0)):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"
                guard()
            with m.State("PAYLOAD"):
                m.d.comb += self.rx.ready.eq(1)
                m.d.comb += [
                    buf_w.addr.eq(count),
                    buf_w.data.eq(rx_byte),
                    buf_w.en.eq(rx_take & (pay_room if regs else count < self.max_payload)),
                ]
                with m.If(rx_take):
                    m.d.sync += [count.eq(count + 1), crc.eq(crc16_update(crc, rx_byte))]
                    for i in range(6):
                        with m.If(count == i):
                            m.d.sync += arg[8 * i : 8 * i + 8].eq(rx_byte)
                    with m.If(pay_last if regs else count == length - 1):
                        m.next = "CRC0"
                guard()
            with m.State("CRC0"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    m.d.sync += rx_crc_lo.eq(rx_byte)
                    m.next = "CRC1"
                guard()
            with m.State("CRC1"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    with m.If((rx_byte != crc[8:]) | (rx_crc_lo != crc[:8])):
                        respond(Status.BAD_CRC)
                    with m.Else():
                        m.next = "CHECK"
                guard()

            with m.State("DRAIN"):  # discard bytes until the line has been quiet for `timeout` cycles
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    m.d.sync += timer.eq(0)
                with m.Elif(timed_out()):
                    m.next = "R_SYNC"
                with m.Else():
                    count_time()

            # ---- check: a complete frame with a good CRC --------------------------------
            with m.State("CHECK"):
                # the counters each command loads before it executes
                loads = {
                    Cmd.WRITE_WEIGHTS: [count.eq((length - 4)[2:]), ptr.eq(4), addr.eq(arg[:24]), k.eq(0)],
                    Cmd.TRAIN_SAMPLE: [count.eq(n_in), ptr.eq(1)],
                    Cmd.INFER_SAMPLE: [count.eq(n_in), ptr.eq(0)],
                }
                if regs:
                    with m.If(~chk_known):
                        respond(Status.UNKNOWN_CMD)
                    with m.Elif(~chk_length):
                        respond(Status.BAD_LENGTH)
                    with m.Elif(~chk_arg):
                        respond(Status.BAD_ARG)
                    with m.Else():
                        with m.Switch(cmd):
                            for code, load in loads.items():
                                with m.Case(code):
                                    m.d.sync += load
                        m.next = "EXEC"
                else:
                    with m.Switch(cmd):
                        for codes, length_ok, arg_ok in checks():
                            with m.Case(*codes):
                                with m.If(~length_ok):
                                    respond(Status.BAD_LENGTH)
                                if arg_ok is not None:
                                    with m.Elif(~arg_ok):
                                        respond(Status.BAD_ARG)
                                with m.Else():
                                    m.d.sync += loads.get(codes[0], [])
                                    m.next = "EXEC"
                        with m.Default():
                            respond(Status.UNKNOWN_CMD)

            # ---- execute (only frames that passed every check) --------------------------
            with m.State("EXEC"):
                m.d.sync += status.eq(Status.OK)
                with m.If(self.trainer_idle):
                    with m.Switch(cmd):
                        with m.Case(Cmd.PING):
                            m.d.sync += [op.eq(_Op.PING), resp_len.eq(1 + len(rom_bytes)), rom_idx.eq(0)]
                            m.next = "R_SYNC"
                        with m.Case(Cmd.READ_COUNTERS):
                            n = 2 * len(COUNTERS)
                            m.d.sync += [op.eq(_Op.READ), addr.eq(REG_COUNTERS), count.eq(n), resp_len.eq(1 + 4 * n)]
                            m.next = "R_SYNC"
                        with m.Case(Cmd.READ_WEIGHTS):
                            m.d.sync += [
                                op.eq(_Op.READ),
                                addr.eq(arg[:24]),
                                count.eq(arg[32:48]),
                                resp_len.eq(1 + (arg[32:48] << 2)),
                            ]
                            m.next = "R_SYNC"
                        with m.Case(Cmd.SET_THRESHOLD, Cmd.SET_METRIC, Cmd.SET_SPEC):
                            reg = Mux(
                                cmd == Cmd.SET_THRESHOLD,
                                REG_THRESHOLD,
                                Mux(cmd == Cmd.SET_METRIC, REG_METRIC, REG_SPEC_EN),
                            )
                            value = Mux(cmd == Cmd.SET_THRESHOLD, arg[:32], arg[:8])
                            m.d.comb += [host.we.eq(1), host.addr.eq(reg), host.wdata.eq(value)]
                            m.next = "R_SYNC"
                        with m.Case(Cmd.WRITE_WEIGHTS):
                            with m.If(count == 0):
                                m.next = "R_SYNC"
                            with m.Else():
                                m.next = "WR_ADDR"
                        with m.Case(Cmd.TRAIN_SAMPLE):
                            m.d.sync += [op.eq(_Op.TRAIN), resp_len.eq(3)]
                            m.next = "S_PRIME"
                        with m.Case(Cmd.INFER_SAMPLE):
                            m.d.sync += [op.eq(_Op.INFER), resp_len.eq(2)]
                            m.next = "S_PRIME"

            with m.State("WR_ADDR"):
                m.d.comb += buf_r.addr.eq(ptr)
                m.next = "WR_WAIT"
            with m.State("WR_WAIT"):  # the byte goes from the buffer's read port into buf_byte
                m.next = "WR_BYTE"
            with m.State("WR_BYTE"):
                m.d.sync += [word.word_select(k, 8).eq(buf_byte), ptr.eq(ptr + 1), k.eq(k + 1)]
                with m.If(k == 3):
                    m.next = "WR_WRITE"
                with m.Else():
                    m.next = "WR_ADDR"
            with m.State("WR_WRITE"):
                m.d.comb += [host.we.eq(1), host.addr.eq(addr), host.wdata.eq(word)]
                m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                with m.If(count == 1):
                    m.next = "R_SYNC"
                with m.Else():
                    m.next = "WR_ADDR"

            with m.State("S_PRIME"):
                m.d.comb += buf_r.addr.eq(ptr)
                m.d.sync += [
                    s_valid.eq(1),
                    s_label.eq(Mux(cmd == Cmd.TRAIN_SAMPLE, label, 0)),
                    s_infer.eq(cmd == Cmd.INFER_SAMPLE),
                    s_epoch.eq((cmd == Cmd.TRAIN_SAMPLE) & epoch_start),
                ]
                m.next = "S_STREAM"
            with m.State("S_STREAM"):
                m.d.comb += buf_r.addr.eq(Mux(self.sample.ready, ptr + 1, ptr))
                with m.If(self.sample.ready):
                    m.d.sync += [ptr.eq(ptr + 1), count.eq(count - 1), s_epoch.eq(0)]
                    with m.If(count == 1):
                        m.d.sync += s_valid.eq(0)
                        m.next = "S_RESULT"
            with m.State("S_RESULT"):
                with m.If(self.result.valid):
                    m.d.sync += [
                        prediction.eq(self.result.payload.prediction),
                        kind.eq(self.result.payload.kind.as_value()),
                    ]
                    m.next = "R_SYNC"

            # ---- respond ------------------------------------------------------------------------
            with m.State("R_SYNC"):
                emit(SYNC, crc_covered=False)
                with m.If(status != Status.OK):
                    m.d.sync += resp_len.eq(1)
                with m.If(tx_done):
                    m.d.sync += tcrc.eq(0xFFFF)
                    m.next = "R_CMD"
            with m.State("R_CMD"):
                emit(cmd | RESPONSE)
                with m.If(tx_done):
                    m.next = "R_LEN0"
            with m.State("R_LEN0"):
                emit(resp_len[:8])
                with m.If(tx_done):
                    m.next = "R_LEN1"
            with m.State("R_LEN1"):
                emit(resp_len[8:])
                with m.If(tx_done):
                    m.next = "R_STATUS"
            with m.State("R_STATUS"):
                emit(status)
                with m.If(tx_done):
                    with m.If(status != Status.OK):
                        m.next = "R_CRC0"
                    with m.Else():
                        with m.Switch(op):
                            with m.Case(_Op.PING):
                                m.next = "R_ROM"
                            with m.Case(_Op.READ):
                                with m.If(count == 0):
                                    m.next = "R_CRC0"
                                with m.Else():
                                    m.next = "R_RD_ISSUE"
                            with m.Case(_Op.TRAIN, _Op.INFER):
                                m.next = "R_PRED"
                            with m.Default():
                                m.next = "R_CRC0"
            with m.State("R_ROM"):
                emit(rom[rom_idx])
                with m.If(tx_done):
                    m.d.sync += rom_idx.eq(rom_idx + 1)
                    with m.If(rom_idx == len(rom_bytes) - 1):
                        m.next = "R_CRC0"
            with m.State("R_RD_ISSUE"):
                m.d.comb += [host.re.eq(1), host.addr.eq(addr)]
                m.next = "R_RD_WAIT"
            with m.State("R_RD_WAIT"):
                with m.If(host.rvalid):
                    m.d.sync += [word.eq(host.rdata), k.eq(0)]
                    m.next = "R_RD_EMIT"
            with m.State("R_RD_EMIT"):
                emit(word.word_select(k, 8))
                with m.If(tx_done):
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == 3):
                        m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                        with m.If(count == 1):
                            m.next = "R_CRC0"
                        with m.Else():
                            m.next = "R_RD_ISSUE"
            with m.State("R_PRED"):
                emit(prediction)
                with m.If(tx_done):
                    with m.If(op == _Op.TRAIN):
                        m.next = "R_KIND"
                    with m.Else():
                        m.next = "R_CRC0"
            with m.State("R_KIND"):
                emit(kind)
                with m.If(tx_done):
                    m.next = "R_CRC0"
            with m.State("R_CRC0"):
                emit(tcrc[:8], crc_covered=False)
                with m.If(tx_done):
                    m.next = "R_CRC1"
            with m.State("R_CRC1"):
                emit(tcrc[8:], crc_covered=False)
                with m.If(tx_done):
                    m.d.sync += self.error.eq(status != Status.OK)
                    m.next = "HUNT"

        m.d.comb += self.in_frame.eq(~fsm.ongoing("HUNT"))
        return m


class LinkedTrainer(wiring.Component):
    """A :class:`~specbp_rtl.gateware.trainer.Trainer` behind a UART and a :class:`Link`.

    Parameters
    ----------
    cfg : TrainerConfig
        Trainer configuration; its :attr:`~specbp_rtl.gateware.layout.TrainerConfig.arch` also sets the
        link's options (:class:`Link`'s ``check_registers`` and ``address_check``) and whether the link's
        host-bus requests are registered on their way into the trainer (``link_register_host``: one cycle
        more per access, for timing on large devices).
    divisor : int
        UART clock cycles per bit (:func:`.uart.divisor_for`).
    timeout : int
        Link inter-byte timeout in cycles.
    max_payload : int or None
        Link receive buffer (default :func:`default_max_payload`).
    init : list of (W, b) or None
        Initial weights of the trainer (default: the golden model's for ``cfg.train.seed``).

    Ports
    -----
    rx : In(1), tx : Out(1)
        The serial lines (idle high).
    busy : Out(1)
        The trainer is in a training step.
    error : Out(1)
        The last response was an error.
    in_frame : Out(1)
        The link is handling a frame.
    """

    def __init__(
        self,
        cfg: TrainerConfig,
        divisor: int,
        timeout: int,
        max_payload: int | None = None,
        init: list | None = None,
    ) -> None:
        arch = cfg.arch
        self.cfg, self.register_host = cfg, arch.link_register_host
        self.uart_rx = UARTRx(divisor)
        self.uart_tx = UARTTx(divisor)
        self.link = Link(cfg, timeout, max_payload, arch.link_check_registers, arch.link_address_check)
        self.trainer = Trainer(cfg, init)
        super().__init__(
            {
                "rx": In(1, init=1),
                "tx": Out(1, init=1),
                "busy": Out(1),
                "error": Out(1),
                "in_frame": Out(1),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.uart_rx = rx = self.uart_rx
        m.submodules.uart_tx = tx = self.uart_tx
        m.submodules.link = link = self.link
        m.submodules.trainer = trainer = self.trainer
        wiring.connect(m, rx.o, link.rx)
        wiring.connect(m, link.tx, tx.i)
        wiring.connect(m, link.sample, trainer.sample)
        wiring.connect(m, trainer.result, link.result)
        # the host bus requests are registered on their way into the trainer (the link's decode and the
        # trainer's write decode are far apart on a large device) unless register_host is off; replies come
        # straight back
        m.d[("sync" if self.register_host else "comb")] += [
            trainer.host.addr.eq(link.host.addr),
            trainer.host.wdata.eq(link.host.wdata),
            trainer.host.we.eq(link.host.we),
            trainer.host.re.eq(link.host.re),
        ]
        m.d.comb += [link.host.rdata.eq(trainer.host.rdata), link.host.rvalid.eq(trainer.host.rvalid)]
        m.d.comb += [
            rx.rx.eq(self.rx),
            self.tx.eq(tx.tx),
            link.rx_error.eq(rx.framing_error),
            link.trainer_idle.eq(trainer.idle),
            self.busy.eq(trainer.busy),
            self.error.eq(link.error),
            self.in_frame.eq(link.in_frame),
        ]
        return m
