"""Numpy side of :mod:`specbp_rtl.fixed`: formats, rounding, saturation, constants.

(The Amaranth ``hdl_*`` primitives are tested against these elsewhere.)
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from specbp_rtl.fixed import SQ, UQ, Q, csd_digits, hdl_saturate, mantissa, requantize, round_shift, saturate


def half_up(x: Fraction) -> int:
    """Round half up, exactly: floor(x + 1/2)."""
    return math.floor(x + Fraction(1, 2))


# -- formats -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "width", "lo", "hi", "shape", "text"),
    [
        (SQ(2, 13), 16, -32768, 32767, signed(16), "SQ(2,13)"),
        (SQ(5, 10), 16, -32768, 32767, signed(16), "SQ(5,10)"),
        (SQ(2, 21), 24, -(1 << 23), (1 << 23) - 1, signed(24), "SQ(2,21)"),
        (SQ(0, 15), 16, -32768, 32767, signed(16), "SQ(0,15)"),
        (UQ(1, 15), 16, 0, 65535, unsigned(16), "UQ(1,15)"),
        (UQ(0, 8), 8, 0, 255, unsigned(8), "UQ(0,8)"),
        (Q(0, 0, True), 1, -1, 0, signed(1), "SQ(0,0)"),
        (UQ(1, 0), 1, 0, 1, unsigned(1), "UQ(1,0)"),
    ],
)
def test_format_ranges(fmt: Q, width: int, lo: int, hi: int, shape, text: str) -> None:
    assert fmt.width == width
    assert fmt.min == lo and fmt.max == hi
    assert fmt.shape == shape
    assert str(fmt) == text
    # real range: [min, max] / 2**frac
    assert fmt.to_float(fmt.min) == lo / 2**fmt.frac_bits
    assert fmt.to_float(fmt.max) == hi / 2**fmt.frac_bits


def test_sq_range_in_real_units() -> None:
    fmt = SQ(2, 13)  # [-4, 4 - 2**-13]
    assert fmt.to_float(fmt.min) == -4.0
    assert fmt.to_float(fmt.max) == 4.0 - 2.0**-13
    out = UQ(1, 15)  # [0, 2 - 2**-15]: holds probability 1.0 exactly
    assert out.from_float(1.0) == 1 << 15


@pytest.mark.parametrize("args", [(0, -1, True), (2, -3, False), (0, 0, False)])
def test_invalid_formats(args) -> None:
    with pytest.raises(ValueError):
        Q(*args)


def test_from_float_rounds_half_up_and_saturates() -> None:
    fmt = SQ(2, 13)
    lsb = 2.0**-13
    values = [0.5 * lsb, -0.5 * lsb, 1.5 * lsb, -1.5 * lsb, 0.49 * lsb, -0.51 * lsb, 4.0, -4.0 - lsb, 1e9, -1e9]
    expected = [1, 0, 2, -1, 0, -1, 32767, -32768, 32767, -32768]
    got = fmt.from_float(np.array(values))
    assert got.dtype == np.int64
    assert got.tolist() == expected
    u = UQ(0, 8)
    assert u.from_float([-0.3, 0.0, 255 / 256, 1.0]).tolist() == [0, 0, 255, 255]


def test_from_float_to_float_round_trip() -> None:
    fmt = SQ(5, 10)
    ints = np.arange(fmt.min, fmt.max + 1, 97)
    assert np.array_equal(fmt.from_float(fmt.to_float(ints)), ints)


# -- round_shift -----------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 3, 7, 13])
def test_round_shift_is_round_half_up(k: int) -> None:
    x = np.arange(-3000, 3001)
    got = round_shift(x, k)
    assert got.dtype == np.int64
    expected = [half_up(Fraction(int(v), 1 << k)) for v in x]
    assert got.tolist() == expected


def test_round_shift_ties_go_up_for_both_signs() -> None:
    assert round_shift(3, 1) == 2  # 1.5 -> 2
    assert round_shift(-3, 1) == -1  # -1.5 -> -1 (half *up*, not away from zero)
    assert round_shift(-1, 1) == 0  # -0.5 -> 0
    assert round_shift(1, 1) == 1  # 0.5 -> 1
    assert round_shift(-5, 2) == -1  # -1.25 -> -1
    assert round_shift(-6, 2) == -1  # -1.5 -> -1
    assert round_shift(-7, 2) == -2  # -1.75 -> -2


def test_round_shift_zero_and_left_shifts() -> None:
    x = np.array([-5, -1, 0, 1, 7])
    assert round_shift(x, 0).tolist() == x.tolist()
    assert round_shift(x, -3).tolist() == (x * 8).tolist()


def test_round_shift_large_int64() -> None:
    big = np.array([(1 << 62) - 1, -(1 << 62)], dtype=np.int64)
    assert round_shift(big, 20).tolist() == [half_up(Fraction(int(v), 1 << 20)) for v in big]


# -- saturate / requantize ---------------------------------------------------------


def test_saturate() -> None:
    fmt = SQ(0, 15)
    x = np.array([-100000, -32769, -32768, -1, 0, 32767, 32768, 10**12])
    assert saturate(x, fmt).tolist() == [-32768, -32768, -32768, -1, 0, 32767, 32767, 32767]
    assert saturate(x, UQ(1, 15)).tolist() == [0, 0, 0, 0, 0, 32767, 32768, 65535]
    assert saturate(5, fmt).dtype == np.int64


def test_requantize_rounds_then_saturates() -> None:
    fmt = SQ(2, 13)
    # from 20 fractional bits to 13: shift by 7, half up
    x = np.array(
        [64, 63, -64, -65, 3 << 7, (fmt.max << 7) + 63, (fmt.max << 7) + 64, (fmt.min << 7) - 64, (fmt.min << 7) - 65]
    )
    assert requantize(x, 20, fmt).tolist() == [1, 0, 0, -1, 3, fmt.max, fmt.max, fmt.min, fmt.min]
    # rounding *then* saturation: rounding up past max saturates
    assert requantize((fmt.max << 7) + 64, 20, fmt) == fmt.max
    # to more fractional bits: exact left shift, then saturate
    assert requantize(np.array([3, -3, 1 << 14]), 10, fmt).tolist() == [24, -24, fmt.max]


def test_requantize_matches_exact_arithmetic() -> None:
    rng = np.random.default_rng(1)
    fmt = SQ(5, 10)
    x = rng.integers(-(1 << 30), 1 << 30, size=5000)
    got = requantize(x, 23, fmt)
    expected = [min(max(half_up(Fraction(int(v), 1 << 13)), fmt.min), fmt.max) for v in x]
    assert got.tolist() == expected


# -- mantissa ------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [0.01, 0.001, 0.1, 0.3, 0.5, 0.99, 1.0, 1.5, 3.75, 1e-6, 123.456, 65535.0, 1 - 2.0**-20, 131071.0]
)
@pytest.mark.parametrize("bits", [8, 15, 16])
def test_mantissa_normalised_and_accurate(value: float, bits: int) -> None:
    m, shift = mantissa(value, bits)
    assert isinstance(m, int) and isinstance(shift, int)
    assert 1 << (bits - 1) <= m < 1 << bits
    approx = Fraction(m) / Fraction(2) ** shift
    # relative error at most half an LSB of the mantissa
    assert abs(approx - Fraction(value)) / Fraction(value) <= Fraction(1, 1 << bits)


def test_mantissa_known_values() -> None:
    assert mantissa(0.01) == (20972, 21)  # 0.01 * 2**21 = 20971.52 -> 20972
    assert mantissa(0.25) == (1 << 14, 16)  # powers of two are exact
    assert mantissa(1.0) == (1 << 14, 14)
    assert mantissa(2.0**20) == (1 << 14, -6)
    # rounding carries into the next power of two: renormalised
    assert mantissa(1 - 2.0**-20) == (1 << 14, 14)
    assert mantissa(131071.0) == (1 << 14, -3)


@pytest.mark.parametrize("value", [0.0, -0.01, float("nan")])
def test_mantissa_rejects_non_positive(value: float) -> None:
    with pytest.raises(ValueError, match="mantissa"):
        mantissa(value)


def test_mantissa_rounds_half_up_for_large_values() -> None:
    """The module's rule is round half up everywhere.

    65538 = 16384.5 * 2**2: half up gives m = 16385. The negative-shift branch of
    mantissa() uses Python's round() (half to even) and returns 16384.
    """
    assert mantissa(65538.0) == (16385, -2)
    assert mantissa(0.5 + 2.0**-15, 15) == (16385, 15)  # the same tie on the positive-shift branch


# -- csd_digits ------------------------------------------------------------------


def _csd_value(digits: list[tuple[int, int]]) -> int:
    return sum(d * (1 << s) for s, d in digits)


def test_csd_digits_exhaustive_16_bit() -> None:
    for c in range(1 << 16):
        digits = csd_digits(c)
        assert _csd_value(digits) == c
        shifts = [s for s, _ in digits]
        assert shifts == sorted(shifts)
        assert all(d in (1, -1) for _, d in digits)
        # canonical: no two adjacent non-zero digits
        assert all(b - a >= 2 for a, b in zip(shifts, shifts[1:]))
        # never more digits than the plain binary form
        assert len(digits) <= bin(c).count("1")


def test_csd_digits_examples() -> None:
    assert csd_digits(0) == []
    assert csd_digits(1) == [(0, 1)]
    assert csd_digits(7) == [(0, -1), (3, 1)]  # 8 - 1
    assert csd_digits(0b0101_0101) == [(0, 1), (2, 1), (4, 1), (6, 1)]
    assert _csd_value(csd_digits(20972)) == 20972


@pytest.mark.parametrize("c", [-1, -3, -7, -100, -20972])
def test_csd_digits_negative(c: int) -> None:
    assert _csd_value(csd_digits(c)) == c


@pytest.mark.parametrize("fmt", [SQ(1, 2), UQ(1, 2), SQ(0, 3)])
@pytest.mark.parametrize("shape", [signed(2), signed(4), signed(7), unsigned(3), unsigned(4), unsigned(6)])
def test_hdl_saturate_exhaustive(fmt: Q, shape) -> None:
    """The comparator-free hardware saturation equals :func:`saturate` for every input value."""
    x = Signal(shape)
    y = hdl_saturate(x, fmt)
    assert y.shape() == fmt.shape
    lo, hi = (-(1 << (shape.width - 1)), 1 << (shape.width - 1)) if shape.signed else (0, 1 << shape.width)
    got: list[int] = []

    async def bench(ctx) -> None:
        for v in range(lo, hi):
            ctx.set(x, v)
            got.append(ctx.get(y))

    sim = Simulator(Module())
    sim.add_testbench(bench)
    sim.run()
    np.testing.assert_array_equal(got, saturate(np.arange(lo, hi), fmt))
