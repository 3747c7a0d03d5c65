"""The hardware's training state, and its exchange with the golden model's.

A checkpoint (:mod:`specbp_rtl.checkpoint`) holds the golden model's training
state (:meth:`~specbp_rtl.model.speculation.SpeculativeTrainer.state`), so one
file resumes on ``fixed``, ``rtl`` or ``board`` alike. The hardware keeps the
same state in its own layout, readable and writable over the host bus of a
trainer built with
:attr:`~specbp_rtl.gateware.microarch.Microarchitecture.host_state_access`:

* the live gradient bank, in the weights' word layout;
* per label, the latest of its two ping-pong slots (``2 L + CUR[L]``): input
  bytes, hidden pre-activations and softmax output. The hardware keeps no
  logits (the backward pass starts from the softmax output), so the state's
  ``slots.pre`` entry of the output layer reads back as zeros, and the
  activations ``slots.inputs.{l > 0}`` are recomputed from the pre-activations
  (the leaky ReLU, as the engines do);
* SEEN, CUR, PHASE (the step index modulo the batch) and PENDING.

One difference is not of layout: in the pipelined mode, a group that ended
without an update leaves the last step's backward pass owed. The golden
model has already added its gradient (``pending`` only tells that the next
step overlaps), the hardware adds it with the next forward pass. Reading the
state back, :func:`to_golden` adds it, computed by the golden model from the
slot and weights the hardware would use; :func:`from_golden` takes it out
again (the sums are exact integers, so the result is exact) and sets PENDING,
so a resumed hardware run overlaps that step exactly as an uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .gateware import host as bus
from .gateware.host import state_address
from .gateware.layout import TrainerConfig
from .model.golden import FixedEngine, leaky_relu
from .model.speculation import STEP_COUNTERS, ForwardState, SpeculativeTrainer

__all__ = [
    "HardwareState",
    "from_golden",
    "golden_trainer",
    "group_ends",
    "read_state",
    "restore_trainer",
    "to_golden",
    "write_state",
]

Params = list[tuple[np.ndarray, np.ndarray]]
#: the state's registers, in the order read_state and write_state move them
_REGISTERS = [bus.REG_SEEN, bus.REG_CUR, bus.REG_PHASE, bus.REG_PENDING]


@dataclass
class HardwareState:
    """The training state in the hardware's layout (every array int64).

    ``grad``: the live gradient bank, ``(total_words, lanes)``; ``inputs``:
    the latest input bytes of each label, ``(classes, n_in)``; ``pre``: each
    hidden layer's latest pre-activations per label, ``(classes, passes *
    lanes)``; ``p``: the latest softmax output per label, ``(classes,
    classes)``; ``seen`` and ``cur``: the flag bits; ``phase``, ``pending``,
    ``p_slot``, ``p_label``: the registers.
    """

    grad: np.ndarray
    inputs: np.ndarray
    pre: list[np.ndarray]
    p: np.ndarray
    seen: int
    cur: int
    phase: int
    pending: bool
    p_slot: int
    p_label: int


def _slot_addresses(cfg: TrainerConfig, slots: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """Bus addresses of the input bytes, pre-activations and softmax outputs of ``slots`` (one per label)."""
    lanes, classes, n_in = cfg.lanes, cfg.classes, cfg.n_in(0)
    s = slots[:, None]
    sx = state_address(bus.REGION_SX, 0, 0, lanes) + s * n_in + np.arange(n_in)[None, :]
    sp = state_address(bus.REGION_SP, 0, 0, lanes) + s * classes + np.arange(classes)[None, :]
    sz = []
    for layer in range(cfg.n_layers - 1):
        passes = cfg.passes(layer)
        word = s * passes + np.arange(passes)[None, :]
        addr = [
            state_address(bus.REGION_SZ + layer, int(w), lane, lanes) for w in word.reshape(-1) for lane in range(lanes)
        ]
        sz.append(np.array(addr, dtype=np.int64).reshape(classes, passes * lanes))
    return sx, sz, sp


def _grad_addresses(cfg: TrainerConfig, region: int = bus.REGION_GRAD) -> np.ndarray:
    return np.array(
        [state_address(region, w, lane, cfg.lanes) for w in range(cfg.total_words) for lane in range(cfg.lanes)],
        dtype=np.int64,
    )


def _wide_gradients(cfg: TrainerConfig) -> bool:
    """The gradient lanes are wider than the bus (bits 32 and up: ``REGION_GRAD_HIGH``)."""
    return max(fmt.width for fmt in cfg.plan.grad) > 32


def _signed(raw: np.ndarray) -> np.ndarray:
    return np.asarray(raw, dtype=np.uint32).view(np.int32).astype(np.int64)


def read_state(driver) -> HardwareState:
    """The training state of the trainer behind ``driver`` (a :class:`~specbp_rtl.driver.TrainerDriver`)."""
    cfg = driver.cfg
    regs = driver.read_registers(_REGISTERS).astype(np.int64)
    seen, cur, phase, owed = (int(v) for v in regs)
    labels = np.arange(cfg.classes)
    slots = 2 * labels + ((cur >> labels) & 1)
    sx, sz, sp = _slot_addresses(cfg, slots)
    grad = _signed(driver.read_registers(_grad_addresses(cfg)))
    if _wide_gradients(cfg):
        high = _signed(driver.read_registers(_grad_addresses(cfg, bus.REGION_GRAD_HIGH)))
        grad = (high << 32) | (grad & 0xFFFFFFFF)
    grad = grad.reshape(cfg.total_words, cfg.lanes)
    return HardwareState(
        grad=grad,
        inputs=driver.read_registers(sx.reshape(-1)).astype(np.int64).reshape(sx.shape),
        pre=[_signed(driver.read_registers(a.reshape(-1))).reshape(a.shape) for a in sz],
        p=driver.read_registers(sp.reshape(-1)).astype(np.int64).reshape(sp.shape),
        seen=seen,
        cur=cur,
        phase=phase,
        pending=bool(owed & 1),
        p_slot=(owed >> 8) & 0xFF,
        p_label=(owed >> 16) & 0xFF,
    )


def write_state(driver, hw: HardwareState) -> None:
    """Write ``hw`` into the trainer behind ``driver`` (idle, with ``host_state_access``)."""
    cfg = driver.cfg
    labels = np.arange(cfg.classes)
    slots = 2 * labels + ((hw.cur >> labels) & 1)
    sx, sz, sp = _slot_addresses(cfg, slots)
    grad = np.asarray(hw.grad, dtype=np.int64).reshape(cfg.total_words, cfg.lanes)
    low = _grad_addresses(cfg).reshape(grad.shape)
    if _wide_gradients(cfg):  # word by word, the high halves first: each low half's write takes its lane's
        high = _grad_addresses(cfg, bus.REGION_GRAD_HIGH).reshape(grad.shape)
        addrs, values = np.concatenate([high, low], axis=1), np.concatenate([grad >> 32, grad], axis=1)
        driver.write_registers(addrs.reshape(-1), values.reshape(-1))
    else:
        driver.write_registers(low.reshape(-1), grad.reshape(-1))
    driver.write_registers(sx.reshape(-1), hw.inputs.reshape(-1))
    for addrs, values in zip(sz, hw.pre):
        driver.write_registers(addrs.reshape(-1), values.reshape(-1))
    driver.write_registers(sp.reshape(-1), hw.p.reshape(-1))
    owed = int(hw.pending) | hw.p_slot << 8 | hw.p_label << 16
    driver.write_registers(_REGISTERS, [hw.seen, hw.cur, hw.phase, owed])


def _slots_state(cfg: TrainerConfig, hw: HardwareState) -> ForwardState:
    """The golden model's per-label forward state from the hardware's slots."""
    plan = cfg.plan
    pre = [z[:, : cfg.n_out(layer)].copy() for layer, z in enumerate(hw.pre)]
    inputs = [hw.inputs.copy(), *(leaky_relu(z, plan) for z in pre)]
    logits = np.zeros((cfg.classes, cfg.classes), dtype=np.int64)  # not kept by the hardware
    return ForwardState(inputs, [*pre, logits], hw.p.copy())


def _owed_gradient(cfg: TrainerConfig, params: Params, slots: ForwardState, label: int) -> list[np.ndarray]:
    """The gradient words (per layer, ``(words, lanes)``) of a backward pass of ``label``'s slot."""
    engine = FixedEngine(cfg.train, cfg.numerics)
    engine.load_state(
        {f"{k}{layer}": v for layer, (w, b) in enumerate(params) for k, v in (("w", w), ("b", b))}
        | {f"g{k}{layer}": np.zeros_like(v) for layer, (w, b) in enumerate(params) for k, v in (("w", w), ("b", b))}
    )
    engine.accumulate(slots.take(np.array([label])), np.array([label]))
    return [cfg.to_words(layer, g_w, g_b) for layer, (g_w, g_b) in enumerate(engine.grads)]


def to_golden(
    cfg: TrainerConfig,
    hw: HardwareState,
    params: Params,
    counters: dict[str, int],
    position: int,
    epochs_done: int,
    last_label: int,
) -> dict[str, np.ndarray]:
    """The golden model's :meth:`~specbp_rtl.model.speculation.SpeculativeTrainer.state` of a hardware state.

    ``params`` are the master weights read back; ``counters`` the step counters
    of the whole run (:data:`~specbp_rtl.model.speculation.STEP_COUNTERS`);
    ``last_label`` the label of the run's last training step (-1: none).
    """
    slots = _slots_state(cfg, hw)
    grad = hw.grad.copy()
    if hw.pending:  # the owed backward pass's gradient, as the golden model has it already
        owed = np.concatenate(_owed_gradient(cfg, params, slots, hw.p_label))
        grad += owed
    st: dict[str, np.ndarray] = {}
    for layer, (w, b) in enumerate(params):
        g_w, g_b = cfg.from_words(layer, grad[cfg.w_base(layer) : cfg.w_base(layer) + cfg.words(layer)])
        st |= {f"engine.w{layer}": w, f"engine.b{layer}": b, f"engine.gw{layer}": g_w, f"engine.gb{layer}": g_b}
    for layer, a in enumerate(slots.inputs):
        st[f"slots.inputs.{layer}"] = a
    for layer, z in enumerate(slots.pre):
        st[f"slots.pre.{layer}"] = z
    st["slots.p"] = slots.p
    st["seen"] = np.array([(hw.seen >> k) & 1 for k in range(cfg.classes)], dtype=bool)
    st["pending"] = np.array(hw.pending)
    st["last_label"] = np.array(last_label, dtype=np.int64)
    for name in STEP_COUNTERS:
        st[f"counters.{name}"] = np.array(counters[name], dtype=np.int64)
    st["position"] = np.array(position, dtype=np.int64)
    st["epochs_done"] = np.array(epochs_done, dtype=np.int64)
    return st


def from_golden(cfg: TrainerConfig, state: dict[str, np.ndarray]) -> tuple[HardwareState, Params]:
    """The hardware state and master weights of a golden training state (see :func:`to_golden`).

    Every label's state goes into its first slot (``CUR = 0``); PHASE is the
    state's position modulo the batch. A pending backward pass needs the
    state's ``last_label``; without one (a state from before it was kept) the
    pass is not owed again: the weights come out the same, and the resumed
    run's first step is not counted as overlapped.
    """
    classes, lanes = cfg.classes, cfg.lanes
    params = [
        (np.asarray(state[f"engine.w{layer}"]), np.asarray(state[f"engine.b{layer}"])) for layer in range(cfg.n_layers)
    ]
    grad = np.concatenate(
        [
            cfg.to_words(layer, np.asarray(state[f"engine.gw{layer}"]), np.asarray(state[f"engine.gb{layer}"]))
            for layer in range(cfg.n_layers)
        ]
    )
    pre = []
    for layer in range(cfg.n_layers - 1):
        z = np.zeros((classes, cfg.passes(layer) * lanes), dtype=np.int64)
        z[:, : cfg.n_out(layer)] = np.asarray(state[f"slots.pre.{layer}"])
        pre.append(z)
    seen = np.asarray(state["seen"], dtype=bool)
    last = int(np.asarray(state.get("last_label", -1)))
    pending = bool(np.asarray(state["pending"])) and last >= 0
    hw = HardwareState(
        grad=grad,
        inputs=np.asarray(state["slots.inputs.0"], dtype=np.int64),
        pre=pre,
        p=np.asarray(state["slots.p"], dtype=np.int64),
        seen=int(sum(1 << k for k in range(classes) if seen[k])),
        cur=0,
        phase=int(np.asarray(state["position"])) % cfg.train.batch,
        pending=pending,
        p_slot=2 * last if pending else 0,
        p_label=last if pending else 0,
    )
    if pending:
        hw.grad = hw.grad - np.concatenate(_owed_gradient(cfg, params, _slots_state(cfg, hw), last))
    return hw, params


def golden_trainer(
    driver, counters: dict[str, int], position: int, epochs_done: int, last_label: int
) -> SpeculativeTrainer:
    """A golden-model trainer holding the training state read from the hardware behind ``driver``.

    For :func:`~specbp_rtl.checkpoint.save_checkpoint`; loading the state into
    it also checks every entry (shapes, formats).
    """
    cfg = driver.cfg
    state = to_golden(cfg, read_state(driver), driver.read_weights(), counters, position, epochs_done, last_label)
    trainer = SpeculativeTrainer(FixedEngine(cfg.train, cfg.numerics))
    trainer.load_state(state)
    return trainer


def restore_trainer(driver, trainer: SpeculativeTrainer) -> None:
    """Write a golden-model trainer's state (a restored checkpoint) into the hardware behind ``driver``.

    Program the run's registers first (:meth:`~specbp_rtl.driver.TrainerDriver.configure`: a SPEC_EN write
    drops an owed backward pass).
    """
    hw, params = from_golden(driver.cfg, trainer.state())
    driver.load_weights(params)
    write_state(driver, hw)


def group_ends(start: int, samples: int, batch: int, size: int = 1024) -> list[int]:
    """Ends of the pieces an epoch is trained in from ``start``: group boundaries (an update after the
    first sample, then every ``batch``), about ``size`` samples apart, and the epoch's end.

    Between two pieces the hardware's state is consistent, so a Ctrl-C there can be checkpointed.
    """
    step = batch * max(1, size // batch)
    ends = [e for e in range(1, samples, step) if e > start]
    return [*ends, samples] if start < samples else []
