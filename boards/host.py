"""Host driver of a board running the trainer behind its UART link.

:class:`BoardTrainer` speaks :mod:`.protocol` over a serial port (pyserial)
or over any byte-stream object with ``write(bytes)`` and ``read(n) -> bytes``
(``read`` returns fewer bytes, or none, on timeout) -- the tests connect it
to a bit-level simulated UART. :meth:`BoardTrainer.train` runs a whole
training job and returns the same :class:`~specbp_rtl.record.RunResult`
record as the simulation backends (``backend = "board"``).

The trainer's label-state memory, ``seen`` flags and gradient accumulators are
not reachable over the host bus: a reproducible run needs a freshly
configured (or reset) board, and :meth:`BoardTrainer.train` refuses a board
that has already trained (``fresh=False`` overrides).

A noisy line costs nothing: a frame the board rejects (``BAD_CRC``,
``TIMEOUT``, ``FRAMING``: the link changed no state) is sent again, and a
response that is lost or garbled is recovered: the driver resynchronises with
a ``PING``, and a training step whose answer was lost is looked up in the
step counter (run again only if the board did not run it). Every other
command is idempotent and simply sent again. Each request is tried at most
``1 + retries`` times; :attr:`BoardTrainer.link_stats` counts what happened.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from ..config import TrainConfig
from ..data import Dataset
from ..driver import TrainerDriver
from ..gateware.host import COUNTERS, access_error
from ..gateware.layout import TrainerConfig
from ..model.golden import FixedEngine
from ..model.speculation import weights_sha256
from ..numerics import numerics_preset
from ..record import RunResult, hardware_fields
from ..steps import StepKind
from . import protocol as proto

__all__ = ["BoardTrainer", "ByteStream", "BoardError", "RETRY_STATUSES"]

#: statuses of a frame the link rejected without touching any state: safe to send again
RETRY_STATUSES = frozenset({proto.Status.BAD_CRC, proto.Status.TIMEOUT, proto.Status.FRAMING})


def _spans(addrs: np.ndarray) -> list[tuple[int, int]]:
    """``[lo, hi)`` index ranges of ``addrs`` that hold consecutive addresses."""
    if not len(addrs):
        return []
    cuts = (np.flatnonzero(np.diff(addrs.astype(np.int64)) != 1) + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(addrs)]))


class ByteStream(Protocol):
    def write(self, data: bytes) -> Any: ...

    def read(self, n: int) -> bytes: ...


class BoardError(Exception):
    """The board is not usable for the request (wrong topology, not fresh, no pyserial)."""


class BoardTrainer(TrainerDriver):
    """Driver of one board.

    Parameters
    ----------
    port : str or None
        Serial device (``/dev/ttyUSB1``, ``COM3``); needs pyserial.
    baud : int
        Baud rate; must match the bitstream's (``build_board(..., baud=)``).
    stream : ByteStream or None
        Use this byte stream instead of opening ``port``.
    timeout : float
        Seconds to wait for a response byte.
    retries : int
        Times a request is sent again after a rejected frame or a lost
        response (then the error is raised).
    """

    def __init__(
        self,
        port: str | None = None,
        baud: int = 1_000_000,
        *,
        stream: ByteStream | None = None,
        timeout: float = 2.0,
        retries: int = 4,
    ) -> None:
        if not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries: must be an integer >= 0, got {retries!r}")
        if stream is None:
            if port is None:
                raise BoardError("board: give a serial port or a byte stream")
            try:
                import serial
            except ImportError:
                raise BoardError("board: pyserial is not installed (pip install pyserial)") from None
            stream = serial.Serial(port, baud, timeout=timeout)
        self.stream = stream
        self.retries = retries
        self._info: proto.PingInfo | None = None
        #: (PING answer, the design it describes), for the address checks and :attr:`cfg` before :meth:`configure`
        self._pinged: tuple[proto.PingInfo, TrainerConfig] | None = None
        #: the board's step counter as far as this driver knows (``None``: not read yet)
        self._steps: int | None = None
        self._counters: dict[str, int] | None = None
        #: the design as :meth:`configure` set it (``None``: not configured yet)
        self._cfg: TrainerConfig | None = None
        #: frames the board rejected, responses lost or garbled, requests sent again
        self.link_stats = {"rejected": 0, "lost": 0, "retries": 0}

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close:
            close()

    def __enter__(self) -> BoardTrainer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------------------
    def transact(self, frame: bytes) -> proto.Response:
        """Send one request frame and return its (parsed, unchecked) response."""
        self.stream.write(frame)
        return proto.Response.parse(proto.read_frame(self.stream.read))

    def request(self, frame: bytes, recover: Callable[[], bytes | None] | None = None) -> bytes:
        """Send one request frame; return the response data or raise :class:`~.protocol.StatusError`.

        A rejected frame (:data:`RETRY_STATUSES`) is sent again. A lost or
        garbled response raises unless the request may be sent again:
        idempotent commands may; for the others ``recover()`` says, after a
        resynchronisation, whether the board executed the request (it returns
        the response data to use) or not (``None``: send it again).
        """
        cmd = frame[1]
        for attempt in range(self.retries + 1):
            if attempt:
                self.link_stats["retries"] += 1
            try:
                response = self.transact(frame)
                if response.cmd != cmd | proto.RESPONSE:  # a stale answer: its own request's is lost
                    response.check(cmd)
            except proto.ProtocolError:
                self.link_stats["lost"] += 1
                if attempt == self.retries:
                    raise
                self._resync()
                data = recover() if recover is not None else None
                if data is not None:
                    return data
                continue
            if response.status in RETRY_STATUSES and attempt < self.retries:
                self.link_stats["rejected"] += 1
                continue
            return response.check(cmd)
        raise AssertionError("unreachable")

    def _resync(self) -> None:
        """Send PINGs until one good PING response arrives (stale and garbled bytes are read and dropped)."""
        for _ in range(self.retries + 1):
            self.stream.write(proto.ping())
            for _ in range(4):  # stale frames before the PING's answer
                try:
                    response = proto.Response.parse(proto.read_frame(self.stream.read))
                except proto.ProtocolError as exc:
                    if str(exc).startswith("timeout"):
                        break  # nothing more arrives: send another PING
                    continue
                if response.cmd == proto.Cmd.PING | proto.RESPONSE and response.ok:
                    return
        raise proto.ProtocolError("the board does not answer PING after a lost response")

    # -- commands -------------------------------------------------------------------------------------------
    def ping(self) -> proto.PingInfo:
        self._info = proto.PingInfo.parse(self.request(proto.ping()))
        return self._info

    @property
    def info(self) -> proto.PingInfo:
        return self._info or self.ping()

    def _pinged_cfg(self) -> TrainerConfig:
        """The design the board's ``PING`` describes (layers, lanes, formats), derived once per ``PING``."""
        info = self.info
        if self._pinged is None or self._pinged[0] is not info:
            cfg = TrainerConfig(
                train=TrainConfig(layers=info.layers), lanes=info.lanes, numerics=numerics_preset(info.numerics)
            )
            self._pinged = (info, cfg)
        return self._pinged[1]

    def _check_access(self, base: int, count: int, write: bool) -> None:
        """Refuse a run outside the board's address map before it is sent (the link would answer BAD_ARG)."""
        cfg = self._pinged_cfg()
        error = access_error(self._layer_words(cfg), cfg.lanes, base, count, write)
        if error:
            raise ValueError(f"address: {error}")

    def write_words(self, base: int, values) -> None:
        """Host-bus writes to ``base, base + 1, ...``, split to fit the board's receive buffer."""
        values = [int(v) for v in values]
        self._check_access(base, len(values), write=True)
        self._write_run(base, values)

    def read_words(self, base: int, count: int, signed: bool = False) -> list[int]:
        """Host-bus reads of ``base, base + 1, ...`` (``count`` words)."""
        self._check_access(base, count, write=False)
        return self._read_run(base, count, signed)

    def _write_run(self, base: int, values: list[int]) -> None:
        per_frame = (self.info.max_payload - 4) // 4
        for start in range(0, len(values), per_frame):
            self.request(proto.write_words(base + start, values[start : start + per_frame]))

    def _read_run(self, base: int, count: int, signed: bool = False) -> list[int]:
        out: list[int] = []
        while len(out) < count:
            n = min(count - len(out), 1024)
            data = self.request(proto.read_words(base + len(out), n))
            out.extend(struct.unpack(f"<{n}{'i' if signed else 'I'}", data))
        return out

    # -- the transport of TrainerDriver: one WRITE_WEIGHTS/READ_WEIGHTS run per span of consecutive addresses --
    @property
    def cfg(self) -> TrainerConfig:
        """The design behind the link: from :meth:`configure`, else the board's ``PING`` (layers, lanes, formats)."""
        return self._pinged_cfg() if self._cfg is None else self._cfg

    def _bus_write(self, addrs: np.ndarray, values: np.ndarray) -> None:
        for lo, hi in _spans(addrs):
            self._write_run(int(addrs[lo]), values[lo:hi].tolist())

    def _bus_read(self, addrs: np.ndarray) -> np.ndarray:
        out = np.zeros(len(addrs), dtype=np.uint32)
        for lo, hi in _spans(addrs):
            out[lo:hi] = self._read_run(int(addrs[lo]), hi - lo)
        return out

    def train_sample(self, label: int, pixels, epoch_start: bool = False) -> tuple[int | None, StepKind]:
        """One training step; returns ``(prediction, step kind)``.

        When the step's answer was lost on the line and the step counter
        shows the board ran it, the kind comes from the counters and the
        prediction is ``None``.
        """

        def recover() -> bytes | None:
            known = self._counters
            if known is None:
                raise proto.ProtocolError(
                    "a training step's answer was lost and the step counter was not read "
                    "before it: cannot tell whether the board ran the step"
                )
            now = self.counters()
            if now["steps"] == known["steps"]:
                return None  # the board did not run it: send it again
            if now["steps"] != known["steps"] + 1:
                raise BoardError(
                    f"board: the step counter moved from {known['steps']} to {now['steps']} over one training step"
                )
            kind = next(k for k in StepKind if now[k.counter] != known[k.counter])
            return bytes([0xFF, kind.value])

        data = self.request(proto.train_sample(label, pixels, epoch_start), recover)
        if data[0] != 0xFF and self._counters is not None:  # answered: the counters it moved, as the board has them
            c = StepKind(data[1]).counter
            self._counters = self._counters | {"steps": self._counters["steps"] + 1, c: self._counters[c] + 1}
        return (None if data[0] == 0xFF else data[0]), StepKind(data[1])

    def infer(self, pixels) -> int:
        return self.request(proto.infer_sample(pixels))[0]

    def counters(self) -> dict[str, int]:
        """The performance counters (:meth:`TrainerDriver.counters`); remembered for :meth:`train_sample`."""
        self._counters = super().counters()
        return self._counters

    def configure(self, train: TrainConfig) -> None:
        """Check the board's topology (``PING``) against ``train``; program threshold, metric and speculation."""
        info = self.ping()
        if tuple(info.layers) != tuple(train.layers):
            raise BoardError(
                f"layers: the board was built for {','.join(map(str, info.layers))}, "
                f"not {','.join(map(str, train.layers))}"
            )
        self._cfg = TrainerConfig(train=train, lanes=info.lanes, numerics=numerics_preset(info.numerics))
        super().configure(train)

    # -- a whole training job ----------------------------------------------------------------------------------
    def train(
        self,
        config: TrainConfig,
        dataset: Dataset,
        epochs: int,
        progress: Callable[[int, int], Callable[[int], None] | None] | None = None,
        fresh: bool = True,
        write_init: bool = True,
    ) -> RunResult:
        """Train ``epochs`` epochs in file order on the board; test accuracy after each epoch.

        The board starts from the golden model's initial weights for
        ``config.seed`` (written over the link). Test accuracy is computed by
        the golden model's forward pass on the weights read back after each
        epoch (bit-identical to the hardware's); ``write_init=False`` keeps
        the weights the board holds (a fresh bitstream holds the seed-1
        initialisation of its topology). ``cycles`` and
        ``cycles_per_sample`` count the trainer's busy cycles (training steps
        and updates); ``board_cycles`` is the free-running cycle counter,
        which also counts the time spent waiting for the UART; ``link`` counts
        the frames rejected, the responses lost and the requests sent again.

        A link failure after training began (the retries exhausted, the port
        gone) or Ctrl-C ends the run with ``interrupted`` set and, for a
        failure, ``error`` in the record: the completed epochs, the counters
        and the weights the board still reports are kept.
        """
        config.check_dataset(dataset)
        start = time.perf_counter()
        self.configure(config)
        cfg = self.cfg
        before = self.counters()
        if fresh and before["steps"]:
            raise BoardError(
                f"board: it has already trained {before['steps']} steps; its label state and "
                f"gradient accumulators cannot be reset over the link: reprogram or reset it"
            )
        if write_init:
            self.load_weights(FixedEngine(config, cfg.numerics).params)
        result = RunResult(
            "board",
            dataset.name,
            config,
            epochs,
            len(dataset.train_y),
            len(dataset.test_y),
            numerics=self.info.numerics,
        )
        train_time = 0.0
        params: list = []
        error: str | None = None
        try:
            for epoch in range(epochs):
                tick = progress(epoch, len(dataset.train_y)) if progress else None
                t0 = time.perf_counter()
                try:
                    for n, (x, y) in enumerate(zip(dataset.train_x, dataset.train_y)):
                        self.train_sample(int(y), bytes(np.asarray(x, dtype=np.uint8)), epoch_start=n == 0)
                        if tick:
                            tick(1)
                finally:
                    train_time += time.perf_counter() - t0
                params = self.read_weights()
                eng = FixedEngine(config, cfg.numerics)
                for (w, b), (hw, hb) in zip(eng.params, params):
                    w[...] = hw
                    b[...] = hb
                eng._refresh()
                result.accuracy_per_epoch.append(float(np.mean(eng.predict(dataset.test_x) == dataset.test_y)))
        except KeyboardInterrupt:
            result.interrupted = True
        except (proto.ProtocolError, proto.StatusError, BoardError, OSError) as exc:
            # the link failed after training began: keep the completed epochs (and what the board still tells)
            result.interrupted = True
            error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        extra: dict[str, Any] = {"lanes": cfg.lanes, "link": dict(self.link_stats)}
        try:
            c = self.counters()
            c = {k: c[k] - before[k] for k in COUNTERS}
            params = self.read_weights()
        except (proto.ProtocolError, proto.StatusError, OSError) as exc:
            error = error or str(exc).splitlines()[0]
            c = {k: 0 for k in COUNTERS}
        busy = c["sequential_cycles"] + c["hit_cycles"] + c["miss_cycles"] + c["update_cycles"]
        fields = hardware_fields(c | {"cycles": busy})
        result.take_counters(c)
        result.train_seconds = train_time
        result.wall_seconds = time.perf_counter() - start
        result.weights_sha256 = weights_sha256(params, "<i8") if params else ""
        result.extra = fields | extra | {"board_cycles": c["cycles"], "link": dict(self.link_stats)}
        if error is not None:
            result.extra["error"] = error
        return result
