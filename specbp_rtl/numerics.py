"""The trainer's number formats: one source of truth for RTL and golden model.

:class:`Numerics` picks a :class:`~specbp_rtl.fixed.Q` format for every stored
or streamed quantity; :meth:`Numerics.plan` derives, for one
:class:`~specbp_rtl.config.TrainConfig`, the per-layer formats and the integer
constants (learning rate, leaky slope, clip bound, comparator threshold, exp
LUT) that the RTL is elaborated with and the golden model computes with.

Default formats (chosen from the ranges the float reference reaches on MNIST:
``|W| < 1.8``, ``|z| < 47``, 99th percentile of ``|z|`` below 25):

=====================  ===========  ===============================================
quantity               format       notes
=====================  ===========  ===============================================
input pixel            UQ(0,8)      ``byte / 256`` (float model: ``/ 255``)
master weight / bias   SQ(2,21)     what the update unit writes
MAC weight operand     SQ(2,13)     master weight rounded; 16-bit multiplier input
pre-activation, act.   SQ(5,10)     hidden ``z``, ``a`` and the logits
output error           SQ(0,15)     ``p - onehot``, +1 saturates to ``1 - 2**-15``
hidden delta           SQ(1,14)     after the leaky-ReLU derivative
probability            UQ(1,15)     softmax output, exp LUT entries, reciprocal
gradient accumulator   per layer    exact: ``frac = delta frac + input frac``; wide
                                    enough that ``batch`` samples never overflow
=====================  ===========  ===============================================

Every MAC operand is at most 16 bits signed so that one multiplier per lane maps
onto an iCE40 ``SB_MAC16`` or an ECP5 ``MULT18X18D``.

Differences from the float reference, all deliberate and documented: inputs are
``/256``; ``lr`` and ``slope`` are 15-bit mantissas (relative error < 2**-15);
softmax uses ``exp`` from a LUT indexed by ``-(z - max)`` rounded to
``2**-exp_lut_frac`` and a floor reciprocal; the predicted class is the first
maximum of the saturated logits; the comparator tests ``sum |dp| <= T * N``
with ``T * N * 2**15`` floored to an integer. The ``cross-entropy`` metric has no
hardware comparator and is float-only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .config import ConfigError, TrainConfig
from .fixed import SQ, UQ, Q, mantissa

__all__ = ["Numerics", "Plan", "HW_METRICS", "NUMERICS", "numerics_name", "numerics_preset"]

#: Metrics the hardware comparator implements.
HW_METRICS: tuple[str, ...] = ("mean-abs", "max-abs", "l1")

#: Widest signed operand a lane multiplier accepts (SB_MAC16: 16x16).
MAX_OPERAND_WIDTH = 16


@dataclass(frozen=True)
class Numerics:
    """Format choices; every field is validated and named in errors."""

    input_frac: int = 8
    weight: Q = SQ(2, 21)
    weight_operand_frac: int = 13
    act: Q = SQ(5, 10)
    out_delta: Q = SQ(0, 15)
    delta: Q = SQ(1, 14)
    prob: Q = UQ(1, 15)
    exp_lut_frac: int = 7
    exp_range: int = 12
    const_bits: int = 15
    max_lut_entries: int = 4096

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"{name}: {msg}")

        need(1 <= self.input_frac <= 8, "input_frac", f"must be in 1..8 (pixels are bytes), got {self.input_frac}")
        need(self.weight.signed, "weight", "must be a signed format")
        need(
            0 <= self.weight_operand_frac <= self.weight.frac_bits,
            "weight_operand_frac",
            f"must be in 0..{self.weight.frac_bits} (the master weight's), got {self.weight_operand_frac}",
        )
        need(
            self.weight_operand.width <= MAX_OPERAND_WIDTH,
            "weight_operand_frac",
            f"operand {self.weight_operand} is {self.weight_operand.width} bits, multipliers take {MAX_OPERAND_WIDTH}",
        )
        for name in ("act", "out_delta", "delta"):
            fmt = getattr(self, name)
            need(fmt.signed, name, "must be a signed format")
            need(
                fmt.width <= MAX_OPERAND_WIDTH, name, f"{fmt} is {fmt.width} bits, multipliers take {MAX_OPERAND_WIDTH}"
            )
        need(self.out_delta.int_bits >= 0, "out_delta", "must hold -1")
        need(not self.prob.signed and self.prob.int_bits >= 1, "prob", "must be unsigned and hold 1.0")
        need(
            self.prob.frac_bits == self.out_delta.frac_bits,
            "prob",
            f"frac bits ({self.prob.frac_bits}) must equal out_delta's ({self.out_delta.frac_bits})",
        )
        # the MACs' activation operand is 16 bits: pixels shifted up to act.frac_bits, and the bias beat's one
        need(
            self.act.frac_bits - self.input_frac <= 7,
            "act",
            f"pixels shifted to {self.act.frac_bits} fractional bits need more than the 16-bit MAC operand "
            f"(at most input_frac + 7 = {self.input_frac + 7})",
        )
        need(
            self.act.frac_bits <= 14,
            "act",
            f"the bias beat's 1.0 needs {self.act.frac_bits + 2} bits, more than the 16-bit MAC operand "
            f"(at most 14 fractional bits)",
        )
        need(self.exp_lut_frac >= 0, "exp_lut_frac", f"must be >= 0, got {self.exp_lut_frac}")
        need(
            self.exp_lut_frac <= self.act.frac_bits,
            "exp_lut_frac",
            f"must not exceed act's frac bits ({self.act.frac_bits}), got {self.exp_lut_frac}",
        )
        need(self.exp_range >= 1, "exp_range", f"must be >= 1, got {self.exp_range}")
        need(
            self.exp_lut_size <= self.max_lut_entries,
            "exp_lut_frac",
            f"exp LUT of {self.exp_lut_size} entries exceeds max_lut_entries={self.max_lut_entries}",
        )
        need(4 <= self.const_bits <= MAX_OPERAND_WIDTH, "const_bits", f"must be in 4..16, got {self.const_bits}")

    @property
    def weight_operand(self) -> Q:
        return SQ(self.weight.int_bits, self.weight_operand_frac)

    @property
    def exp_lut_size(self) -> int:
        return self.exp_range << self.exp_lut_frac

    def exp_lut(self) -> np.ndarray:
        """``round(exp(-i / 2**exp_lut_frac) * 2**prob.frac)`` for each index ``i``."""
        i = np.arange(self.exp_lut_size, dtype=np.float64)
        return self.prob.from_float(np.exp(-i / (1 << self.exp_lut_frac)))

    def plan(self, config: TrainConfig) -> Plan:
        return Plan(self, config)


#: Named format sets. ``standard`` is :class:`Numerics`'s defaults (the table above). ``compact`` is for
#: small FPGAs (the iCEBreaker's iCE40UP5K): 16-bit master weights that are also the MAC operand
#: (``SQ(2,13)``), 12-bit activations ``SQ(3,8)``, output error ``SQ(0,11)``, delta ``SQ(1,10)``,
#: probabilities ``UQ(1,11)``, a 768-entry exp LUT and 11-bit constants. It costs accuracy: digits 64-16-10,
#: seed 1, 5 epochs, threshold 0.1 (``specbp train --numerics compact --layers 64,16,10 --epochs 5
#: --threshold 0.1``): 85.83 % against 86.94 % with ``standard``; but its activations saturate at +-8, and
#: longer runs collapse (10 epochs, threshold 0, ``--seed 2``: 85.6 % after epoch 5, 35.8 % after epoch 10;
#: ``--seed 3``: 83.9 %, then 46.4 %). ``lean`` is the iCEBreaker's (four lanes per engine on the UP5K):
#: 16-bit master weights, 11-bit activations ``SQ(4,6)`` with 6-bit inputs (``byte >> 2``), output
#: error ``SQ(0,8)``, delta ``SQ(1,7)``, probabilities ``UQ(1,8)``, a 384-entry exp LUT and 9-bit
#: constants: 90.00 % (hit rate 88.1 %) in the run above, and 89.7 / 89.2 % after 10 epochs with seeds 2
#: and 3, still rising.
NUMERICS: dict[str, Numerics] = {
    "standard": Numerics(),
    "compact": Numerics(
        weight=SQ(2, 13),
        weight_operand_frac=13,
        act=SQ(3, 8),
        out_delta=SQ(0, 11),
        delta=SQ(1, 10),
        prob=UQ(1, 11),
        exp_lut_frac=6,
        const_bits=11,
    ),
    "lean": Numerics(
        weight=SQ(2, 13),
        weight_operand_frac=13,
        act=SQ(4, 6),
        input_frac=6,
        out_delta=SQ(0, 8),
        delta=SQ(1, 7),
        prob=UQ(1, 8),
        exp_lut_frac=5,
        const_bits=9,
    ),
}


def numerics_preset(name: str) -> Numerics:
    """The :data:`NUMERICS` format set called ``name``; an unknown name fails naming ``numerics``."""
    try:
        return NUMERICS[name]
    except KeyError:
        raise ConfigError(f"numerics: unknown format set {name!r} (choose from {', '.join(NUMERICS)})") from None


@dataclass(frozen=True)
class Plan:
    """Per-configuration formats and integer constants.

    ``in_frac[l]``: fractional bits of layer ``l``'s input; ``delta_fmt[l]``:
    format of layer ``l``'s error term; ``grad[l]``: the exact gradient
    accumulator format of layer ``l`` (weights and bias share it).
    """

    numerics: Numerics
    config: TrainConfig
    in_frac: tuple[int, ...] = field(init=False)
    delta_fmt: tuple[Q, ...] = field(init=False)
    grad: tuple[Q, ...] = field(init=False)
    lr_m: int = field(init=False)
    lr_shift: int = field(init=False)
    slope_m: int = field(init=False)
    slope_shift: int = field(init=False)

    def __post_init__(self) -> None:
        nx, cfg = self.numerics, self.config
        layers = len(cfg.layers) - 1
        in_frac = tuple([nx.input_frac] + [nx.act.frac_bits] * (layers - 1))
        delta_fmt = tuple([nx.delta] * (layers - 1) + [nx.out_delta])
        grads = []
        for layer in range(layers):
            in_max = 1.0 if layer == 0 else -nx.act.min / (1 << nx.act.frac_bits)
            d_max = -delta_fmt[layer].min / (1 << delta_fmt[layer].frac_bits)
            bound = cfg.batch * d_max * max(in_max, 1.0)  # the bias input is 1.0
            frac = delta_fmt[layer].frac_bits + in_frac[layer]
            int_bits = max(0, math.ceil(math.log2(bound)))
            grads.append(SQ(int_bits, frac))
        if cfg.metric not in HW_METRICS and cfg.threshold > 0:
            raise ConfigError(
                f"metric: {cfg.metric} has no fixed-point comparator (use one of {', '.join(HW_METRICS)}, "
                "or the float backend)"
            )
        lr_m, lr_shift = mantissa(cfg.lr, nx.const_bits)
        slope_m, slope_shift = mantissa(cfg.slope, nx.const_bits) if cfg.slope > 0 else (0, 0)
        if not 2**-24 <= cfg.lr <= 2**8:
            raise ConfigError(f"lr: {cfg.lr} is outside the fixed-point range [2**-24, 2**8]")
        if cfg.slope > 0 and cfg.slope < 2**-24:
            raise ConfigError(f"slope: {cfg.slope} is below the fixed-point resolution 2**-24 (use 0 for ReLU)")
        if cfg.clip > 2**12:
            raise ConfigError(f"clip: {cfg.clip} exceeds the fixed-point range (at most 4096)")
        if cfg.threshold > 2**12:
            raise ConfigError(f"threshold: {cfg.threshold} exceeds the comparator's range (at most 4096)")
        s = object.__setattr__
        s(self, "in_frac", in_frac)
        s(self, "delta_fmt", delta_fmt)
        s(self, "grad", tuple(grads))
        s(self, "lr_m", lr_m)
        s(self, "lr_shift", lr_shift)
        s(self, "slope_m", slope_m)
        s(self, "slope_shift", slope_shift)

    def clip_int(self, layer: int) -> int:
        """The clip bound in layer ``layer``'s gradient format."""
        return int(math.floor(self.config.clip * (1 << self.grad[layer].frac_bits)))

    def update_shift(self, layer: int) -> int:
        """Right shift from ``clip(G) * lr_m`` to the master weight format."""
        return self.grad[layer].frac_bits + self.lr_shift - self.numerics.weight.frac_bits

    @property
    def threshold_int(self) -> int:
        """Comparator bound on the integer distance (``prob`` LSBs)."""
        cfg, scale = self.config, 1 << self.numerics.prob.frac_bits
        n = cfg.classes if cfg.metric == "mean-abs" else 1
        return int(math.floor(cfg.threshold * n * scale))

    def init_weights(self, hundredths: np.ndarray) -> np.ndarray:
        """The paper's ``k / 100`` initial values in the master weight format."""
        f = self.numerics.weight.frac_bits
        # round half up of k * 2**f / 100, exactly in integers
        return (hundredths.astype(np.int64) * (1 << (f + 1)) + 100) // 200


def numerics_name(numerics: Numerics) -> str:
    """The :data:`NUMERICS` name of a format set; one that is not there fails naming ``numerics``."""
    for name, preset in NUMERICS.items():
        if preset == numerics:
            return name
    raise ConfigError(
        f"numerics: not one of the named format sets ({', '.join(NUMERICS)}); a board's link "
        f"reports its formats by name"
    )
