"""Programming a trainer through its host bus, over any transport.

The trainer's registers, performance counters and master weights sit on one
address map (:mod:`specbp_rtl.gateware.host`). :class:`TrainerDriver` is the
one place that knows that map from the host side: it writes THRESHOLD, METRIC
and SPEC_EN for a run, loads and reads back the weights, and reads the
counters. A backend subclasses it and supplies the transport, two methods that
move 32-bit words to and from bus addresses:

* :class:`specbp_rtl.sim.verilator.VerilatorTrainer`: ctypes calls into the
  Verilated model (one bus access per clock cycle);
* :class:`specbp_rtl.boards.host.BoardTrainer`: ``WRITE_WEIGHTS`` and
  ``READ_WEIGHTS`` frames over the UART link (:mod:`specbp_rtl.boards.protocol`)
  for each run of consecutive addresses (split to fit the board's frames).

Every access is checked against the address map before it reaches the
transport (:func:`~specbp_rtl.gateware.host.check_addresses`), so a wrong
address is a ``ValueError`` on the host, never a write into the next layer.
"""

from __future__ import annotations

import numpy as np

from .config import TrainConfig
from .gateware.comparator import Metric
from .gateware.host import (
    COUNTERS,
    REG_COUNTERS,
    REG_METRIC,
    REG_SPEC_EN,
    REG_THRESHOLD,
    check_addresses,
    lane_bits,
    spec_en_value,
)
from .gateware.layout import TrainerConfig
from .model.speculation import weights_sha256

__all__ = ["TrainerDriver"]

Params = list[tuple[np.ndarray, np.ndarray]]


class TrainerDriver:
    """Host-side programming of one trainer; subclasses provide :attr:`cfg` and the transport.

    Subclasses implement

    ``cfg`` (attribute or property)
        The :class:`~specbp_rtl.gateware.layout.TrainerConfig` of the design
        behind the bus: its layers, lanes and number formats give the address
        map and the weight encoding.
    ``_bus_write(addrs, values)``
        Write ``values[i]`` (``uint32``) to bus address ``addrs[i]``
        (``uint32``), in order, once the trainer is idle.
    ``_bus_read(addrs) -> np.ndarray``
        Read every address of ``addrs`` in order, once the trainer is idle;
        ``uint32`` values.
    ``_check_design(train)`` (optional)
        Raise ``ValueError`` if ``train`` does not fit the design (called by
        :meth:`configure`; the default checks the layers).
    """

    cfg: TrainerConfig

    def _bus_write(self, addrs: np.ndarray, values: np.ndarray) -> None:
        raise NotImplementedError

    def _bus_read(self, addrs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # -- raw access ----------------------------------------------------------------------------------------
    def _layer_words(self, cfg: TrainerConfig | None = None) -> tuple[int, ...]:
        """Memory words of each layer of ``cfg`` (default :attr:`cfg`): the address map's layer sizes."""
        cfg = self.cfg if cfg is None else cfg
        return tuple(cfg.words(n) for n in range(cfg.n_layers))

    def write_registers(self, addrs: np.ndarray | list[int], values: np.ndarray | list[int]) -> None:
        """Host-bus writes of ``values`` (taken modulo 2**32) to ``addrs``, checked against the address map."""
        a = np.asarray(addrs, dtype=np.int64).reshape(-1)
        v = np.asarray(values, dtype=np.int64).reshape(-1)
        if a.shape != v.shape:
            raise ValueError(f"write: {len(a)} addresses but {len(v)} values")
        check_addresses(self._layer_words(), self.cfg.lanes, a, write=True, state=self.cfg.state_map)
        self._bus_write(a.astype(np.uint32), (v & 0xFFFFFFFF).astype(np.uint32))

    def read_registers(self, addrs: np.ndarray | list[int]) -> np.ndarray:
        """Host-bus reads of ``addrs``, checked against the address map; ``uint32`` values."""
        a = np.asarray(addrs, dtype=np.int64).reshape(-1)
        check_addresses(self._layer_words(), self.cfg.lanes, a, write=False, state=self.cfg.state_map)
        return np.asarray(self._bus_read(a.astype(np.uint32)), dtype=np.uint32)

    # -- run settings --------------------------------------------------------------------------------------
    def set_threshold(self, value: int) -> None:
        """THRESHOLD: the comparator bound in probability LSBs (:attr:`specbp_rtl.numerics.Plan.threshold_int`)."""
        if not isinstance(value, int | np.integer) or not 0 <= value < 1 << 32:
            raise ValueError(f"threshold: register value must be an integer that fits 32 bits, got {value!r}")
        self.write_registers([REG_THRESHOLD], [int(value)])

    def set_metric(self, metric: str | int | Metric) -> None:
        """METRIC: a :class:`~specbp_rtl.gateware.comparator.Metric`, its name (``"max-abs"``) or its code."""
        if isinstance(metric, Metric):
            code = metric.value
        elif isinstance(metric, str):
            code = Metric.from_name(metric).value
        elif isinstance(metric, int | np.integer) and int(metric) in {m.value for m in Metric}:
            code = int(metric)
        else:
            raise ValueError(f"metric: register codes are {', '.join(str(m.value) for m in Metric)}, got {metric!r}")
        self.write_registers([REG_METRIC], [code])

    def set_spec(self, enable: bool, pipeline: bool = False) -> None:
        """SPEC_EN: speculation on or off; bit 1 the pipelined (non-speculative) baseline."""
        self.write_registers([REG_SPEC_EN], [spec_en_value(enable, pipeline)])

    def _check_design(self, train: TrainConfig) -> None:
        if tuple(train.layers) != tuple(self.cfg.train.layers):
            raise ValueError(
                f"layers: the design has {','.join(map(str, self.cfg.train.layers))}, "
                f"not {','.join(map(str, train.layers))}"
            )

    def configure(self, train: TrainConfig) -> None:
        """Program THRESHOLD, METRIC and SPEC_EN for a run of ``train`` (whose design must match :attr:`cfg`)."""
        self._check_design(train)
        plan = self.cfg.numerics.plan(train)
        self.set_threshold(plan.threshold_int if train.speculative else 0)
        self.set_metric(Metric.of_run(train.metric))
        self.set_spec(train.speculative, train.pipeline)

    # -- weights and counters ------------------------------------------------------------------------------
    def weight_addresses(self, layer: int) -> np.ndarray:
        """Bus addresses of layer ``layer``'s master weights, word by word, lane by lane."""
        if not 0 <= layer < self.cfg.n_layers:
            raise ValueError(f"layer: the design has layers 0..{self.cfg.n_layers - 1}, got {layer}")
        words, lanes = self.cfg.words(layer), self.cfg.lanes
        word = np.arange(words, dtype=np.int64)[:, None] << lane_bits(lanes)
        lane = np.arange(lanes, dtype=np.int64)[None, :]
        return (((layer + 1) << 20) | word | lane).reshape(-1)

    def load_weights(self, params: Params) -> None:
        """Write master weights ``[(W, b), ...]`` (integers, ``(out, in)`` and ``(out,)`` per layer)."""
        if len(params) != self.cfg.n_layers:
            raise ValueError(f"weights: the design has {self.cfg.n_layers} layers, got {len(params)}")
        for layer, (w, b) in enumerate(params):
            words = self.cfg.to_words(layer, np.asarray(w), np.asarray(b))
            self.write_registers(self.weight_addresses(layer), words.reshape(-1))

    def read_weights(self) -> Params:
        """Read the master weights back (integers, as :meth:`load_weights` takes them)."""
        params = []
        for layer in range(self.cfg.n_layers):
            raw = self.read_registers(self.weight_addresses(layer)).view(np.int32).astype(np.int64)
            params.append(self.cfg.from_words(layer, raw.reshape(self.cfg.words(layer), self.cfg.lanes)))
        return params

    def weights_sha256(self, params: Params | None = None) -> str:
        """:func:`~specbp_rtl.model.speculation.weights_sha256` of ``params`` (default: read back now)."""
        return weights_sha256(params if params is not None else self.read_weights(), "<i8")

    def counters(self) -> dict[str, int]:
        """The performance counters (:data:`~specbp_rtl.gateware.host.COUNTERS`), each read as its low and
        high 32-bit words; they wrap at ``2**counter_width``
        (:class:`~specbp_rtl.gateware.microarch.Microarchitecture`)."""
        raw = self.read_registers(REG_COUNTERS + np.arange(2 * len(COUNTERS))).astype(np.int64)
        return {name: int(raw[2 * n] | (raw[2 * n + 1] << 32)) for n, name in enumerate(COUNTERS)}
