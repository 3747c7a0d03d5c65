"""Fixed-point formats and the arithmetic primitives shared by RTL and model.

This module is the single definition of what a rounding or a saturation *is*.
Every primitive exists twice, side by side: a numpy function (used by the
golden model, :mod:`specbp_rtl.model.golden`) and an Amaranth function that
builds the same operation in hardware. Tests compare the two bit for bit.

Naming: ``SQ(i, f)`` is a signed two's-complement number with ``i`` integer
bits, ``f`` fractional bits and a sign bit (width ``1 + i + f``); ``UQ(i, f)``
is unsigned (width ``i + f``). A value ``v`` is stored as the integer
``round(v * 2**f)``.

Rounding is **round half up** (``floor(x / 2**k + 1/2)``): add half an LSB,
then shift right arithmetically. Saturation clamps to the format's range.
Constant multiplications by non-power-of-two constants (learning rate, leaky
slope) are exact integer products ``x * m`` followed by a rounding shift; in
hardware the product is built from shifts and adds (canonical signed digits),
so it uses no multiplier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Cat, Const, Mux, Shape, Value, signed, unsigned

__all__ = [
    "Q",
    "SQ",
    "UQ",
    "round_shift",
    "saturate",
    "requantize",
    "mantissa",
    "csd_digits",
    "hdl_round_shift",
    "hdl_saturate",
    "hdl_requantize",
    "hdl_const_mul",
    "hdl_const_mul_parts",
]


@dataclass(frozen=True)
class Q:
    """A fixed-point format: ``int_bits`` integer and ``frac_bits`` fractional bits."""

    int_bits: int
    frac_bits: int
    signed: bool = True

    def __post_init__(self) -> None:
        if self.frac_bits < 0:
            raise ValueError(f"frac_bits: must be >= 0, got {self.frac_bits}")
        if self.width < 1:
            raise ValueError(f"width of {self} must be >= 1")

    @property
    def width(self) -> int:
        return self.int_bits + self.frac_bits + (1 if self.signed else 0)

    @property
    def min(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    @property
    def shape(self) -> Shape:
        return signed(self.width) if self.signed else unsigned(self.width)

    def from_float(self, value: float | np.ndarray) -> np.ndarray:
        """Round half up and saturate a real value into this format."""
        scaled = np.floor(np.asarray(value, dtype=np.float64) * (1 << self.frac_bits) + 0.5)
        return np.clip(scaled, self.min, self.max).astype(np.int64)

    def to_float(self, value: int | np.ndarray) -> np.ndarray:
        return np.asarray(value, dtype=np.float64) / (1 << self.frac_bits)

    def __str__(self) -> str:
        return f"{'S' if self.signed else 'U'}Q({self.int_bits},{self.frac_bits})"


def SQ(int_bits: int, frac_bits: int) -> Q:  # noqa: N802 - the usual notation
    """Signed format: sign + ``int_bits`` + ``frac_bits``."""
    return Q(int_bits, frac_bits, True)


def UQ(int_bits: int, frac_bits: int) -> Q:  # noqa: N802
    """Unsigned format: ``int_bits`` + ``frac_bits``."""
    return Q(int_bits, frac_bits, False)


# -- numpy ---------------------------------------------------------------------


def round_shift(x: np.ndarray | int, k: int) -> np.ndarray:
    """``x / 2**k`` rounded half up (``k > 0``); a left shift for ``k <= 0``."""
    x = np.asarray(x, dtype=np.int64)
    if k > 0:
        return (x + (1 << (k - 1))) >> k
    return x << (-k)


def saturate(x: np.ndarray | int, fmt: Q) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.int64), fmt.min, fmt.max)


def requantize(x: np.ndarray | int, frac_bits: int, fmt: Q) -> np.ndarray:
    """Move ``x`` (with ``frac_bits`` fractional bits) into ``fmt``: round, then saturate."""
    return saturate(round_shift(x, frac_bits - fmt.frac_bits), fmt)


def mantissa(value: float, bits: int = 15) -> tuple[int, int]:
    """Represent ``value > 0`` as ``m * 2**-shift`` with ``2**(bits-1) <= m < 2**bits``.

    Returns ``(m, shift)``. Used for the learning rate and the leaky slope.
    """
    if not value > 0:
        raise ValueError(f"mantissa: value must be positive, got {value}")
    shift = bits - 1 - math.floor(math.log2(value))
    m = math.floor(value * 2.0**shift + 0.5)
    if m >= 1 << bits:  # rounding carried into the next power of two
        shift -= 1
        m = math.floor(value * 2.0**shift + 0.5)
    return int(m), int(shift)


def csd_digits(constant: int) -> list[tuple[int, int]]:
    """Canonical signed-digit form of ``constant``: ``[(shift, ±1), ...]``."""
    digits = []
    n, shift = constant, 0
    while n:
        if n & 1:
            d = 2 - (n & 3)  # +1 if n % 4 == 1, -1 if n % 4 == 3
            digits.append((shift, d))
            n -= d
        n >>= 1
        shift += 1
    return digits


# -- Amaranth ------------------------------------------------------------------


def hdl_round_shift(x: Value, k: int) -> Value:
    """Hardware :func:`round_shift`: add half an LSB, then arithmetic shift."""
    x = Value.cast(x)
    if k > 0:
        return (x + (1 << (k - 1))) >> k
    return x << (-k)


def hdl_saturate(x: Value, fmt: Q) -> Value:
    """Hardware :func:`saturate`: clamp to ``fmt`` and cast to its shape.

    No comparators: ``x`` is in range exactly when the bits from ``fmt``'s
    top bit up (its sign bit for a signed format) are copies of ``x``'s sign,
    which is a reduction of those bits; out of range, ``x``'s sign picks the
    bound.
    """
    x = Value.cast(x)
    xs = x if x.shape().signed else Cat(x, Const(0, 1)).as_signed()  # one sign bit for unsigned values
    w = fmt.width
    top = w - 1 if fmt.signed else w
    if len(xs) <= top:
        xs = Cat(xs, xs[-1].replicate(top + 1 - len(xs))).as_signed()
    high = xs[top:]
    in_range = ~high.any() | (high.all() if fmt.signed else Const(0, 1))
    clamped = Mux(in_range, xs[:w], Mux(xs[-1], fmt.min & ((1 << w) - 1), fmt.max))[:w]
    return clamped.as_signed() if fmt.signed else clamped


def hdl_requantize(x: Value, frac_bits: int, fmt: Q) -> Value:
    """Hardware :func:`requantize`."""
    return hdl_saturate(hdl_round_shift(x, frac_bits - fmt.frac_bits), fmt)


def _signed_tree(items: list[tuple[Value, int]]) -> tuple[Value, int]:
    """Sum of ``sign * value`` terms as a balanced adder tree: ``(total, sign)``, ``sign * total`` the sum."""
    if len(items) == 1:
        return items[0]
    half = (len(items) + 1) // 2
    (a, sa), (b, sb) = _signed_tree(items[:half]), _signed_tree(items[half:])
    if sa > 0:
        return (a + b, 1) if sb > 0 else (a - b, 1)
    return (b - a, 1) if sb > 0 else (a + b, -1)


def hdl_const_mul_parts(x: Value, constant: int, parts: int = 1) -> list[Value]:
    """``x * constant`` from shifts and adds (canonical signed digits), as up to ``parts`` partial sums.

    The partial sums add up to the exact product; each is a balanced tree of
    CSD terms, so a caller can register them and add them in the next stage.
    """
    x = Value.cast(x)
    if constant == 0:
        return [Const(0, 1)]
    if constant < 0:
        return [-part for part in hdl_const_mul_parts(x, -constant, parts)]
    # positive terms first, dealt round-robin: every part starts with a positive term while there are any
    terms = sorted(((x << shift, digit) for shift, digit in csd_digits(constant)), key=lambda t: -t[1])
    out = []
    for chunk in (terms[k::parts] for k in range(min(parts, len(terms)))):
        total, sign = _signed_tree(chunk)
        out.append(total if sign > 0 else -total)
    return out


def hdl_const_mul(x: Value, constant: int) -> Value:
    """Exact ``x * constant`` from shifts and adds (canonical signed digits, no multiplier).

    The signed terms are summed as a balanced tree (depth ``ceil(log2(terms))``
    adders rather than a chain).
    """
    return hdl_const_mul_parts(x, constant, 1)[0]
