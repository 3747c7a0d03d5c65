"""ECP5 PLL clocking: the board crystal multiplied up to the trainer's clock.

:func:`ecp5_pll_params` picks the ``EHXPLLL`` dividers for an exact output
frequency (feedback from ``CLKOP``, so ``f_out = f_in / CLKI_DIV * CLKFB_DIV``
and the VCO runs at ``f_out * CLKOP_DIV``); :class:`ECP5PLL` instantiates it
on the platform's default clock. The caller drives a reset-less ``sync``
domain from :attr:`ECP5PLL.clk`, as Amaranth's own ECP5 default domain is
reset-less: every flip-flop starts from its initial value by the global
set/reset, which is held (through two flip-flops on the new clock and
``SGSR``) until the PLL reports lock.
"""

from __future__ import annotations

from dataclasses import dataclass

from amaranth.hdl import Elaboratable, Instance, Module, Signal
from amaranth.lib import io

__all__ = ["ECP5PLL", "PLLParams", "ecp5_pll_params"]

#: EHXPLLL operating ranges (ECP5 family data sheet, sysCLOCK PLL timing), MHz
_PFD_MHZ = (3.125, 400.0)
_VCO_MHZ = (400.0, 800.0)
_OUT_MHZ = (3.125, 400.0)


@dataclass(frozen=True)
class PLLParams:
    """Dividers of one ``EHXPLLL`` configuration."""

    clki_div: int
    clkfb_div: int
    clkop_div: int
    in_mhz: float

    @property
    def out_mhz(self) -> float:
        return self.in_mhz / self.clki_div * self.clkfb_div

    @property
    def vco_mhz(self) -> float:
        return self.out_mhz * self.clkop_div


def ecp5_pll_params(in_mhz: float, out_mhz: float) -> PLLParams:
    """Dividers giving exactly ``out_mhz`` from ``in_mhz`` (the VCO nearest 600 MHz among exact ones).

    Raises ``ValueError`` naming ``clock_mhz`` when no divider setting gives the frequency exactly.
    """
    if not _OUT_MHZ[0] <= out_mhz <= _OUT_MHZ[1]:
        raise ValueError(f"clock_mhz: {out_mhz:g} MHz is outside the ECP5 PLL's {_OUT_MHZ[0]:g}-{_OUT_MHZ[1]:g} MHz")
    best: PLLParams | None = None
    for clki_div in range(1, 129):
        if not _PFD_MHZ[0] <= in_mhz / clki_div <= _PFD_MHZ[1]:
            continue
        for clkfb_div in range(1, 81):
            p = PLLParams(clki_div, clkfb_div, 1, in_mhz)
            if abs(p.out_mhz - out_mhz) > 1e-9 * out_mhz:
                continue
            for clkop_div in range(1, 129):
                q = PLLParams(clki_div, clkfb_div, clkop_div, in_mhz)
                if _VCO_MHZ[0] <= q.vco_mhz <= _VCO_MHZ[1] and (
                    best is None or abs(q.vco_mhz - 600) < abs(best.vco_mhz - 600)
                ):
                    best = q
    if best is None:
        raise ValueError(f"clock_mhz: the ECP5 PLL cannot make exactly {out_mhz:g} MHz from {in_mhz:g} MHz")
    return best


class ECP5PLL(Elaboratable):
    """An ``EHXPLLL`` making ``out_mhz`` from the platform's default clock, and the global reset until lock.

    Parameters
    ----------
    out_mhz : float
        Output frequency; :attr:`clk` gets a clock constraint of its own (nextpnr times the design at it).

    Attributes
    ----------
    clk : Signal
        The PLL output (drive the ``sync`` domain's clock with it).
    locked : Signal
        The PLL's lock output.
    """

    def __init__(self, out_mhz: float) -> None:
        self.out_mhz = out_mhz
        self.clk = Signal(name="pll_clk")
        self.locked = Signal()

    def elaborate(self, platform) -> Module:
        m = Module()
        in_mhz = platform.default_clk_frequency / 1e6
        p = ecp5_pll_params(in_mhz, self.out_mhz)
        m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        clk = self.clk
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{in_mhz:g}",
            a_FREQUENCY_PIN_CLKOP=f"{p.out_mhz:g}",
            p_PLLRST_ENA="DISABLED",
            p_INTFB_WAKE="DISABLED",
            p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED",
            p_OUTDIVIDER_MUXA="DIVA",
            p_CLKI_DIV=p.clki_div,
            p_CLKFB_DIV=p.clkfb_div,
            p_FEEDBK_PATH="CLKOP",
            p_CLKOP_ENABLE="ENABLED",
            p_CLKOP_DIV=p.clkop_div,
            p_CLKOP_CPHASE=p.clkop_div // 2,
            p_CLKOP_FPHASE=0,
            i_CLKI=clk_buf.i,
            i_CLKFB=clk,
            o_CLKOP=clk,
            o_LOCK=self.locked,
            i_RST=0,
            i_STDBY=0,
            i_PHASESEL0=0,
            i_PHASESEL1=0,
            i_PHASEDIR=0,
            i_PHASESTEP=0,
            i_PHASELOADREG=0,
            i_PLLWAKESYNC=0,
            i_ENCLKOP=0,
        )
        # global set/reset (active low) held until lock, released synchronously to the new clock
        gsr0, gsr1 = Signal(), Signal()
        m.submodules += [
            Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clk, i_D=self.locked, o_Q=gsr0),
            Instance("FD1S3AX", p_GSR="DISABLED", i_CK=clk, i_D=gsr0, o_Q=gsr1),
            Instance("SGSR", i_CLK=clk, i_GSR=gsr1),
        ]
        platform.add_clock_constraint(clk, p.out_mhz * 1e6)
        return m
