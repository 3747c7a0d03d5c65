"""The host bus's access to the training state (:attr:`~..microarch.Microarchitecture.host_state_access`).

Besides the weights, a checkpoint needs everything a run carries from one
sample to the next: the live gradient bank, the label-state slots (input
bytes, hidden pre-activations, softmax outputs), the ``seen`` and ping-pong
flags, the batch phase and, in the pipelined mode, the owed backward pass.
This part maps them onto the host bus (the address map of
:mod:`specbp_rtl.gateware.host`), for the host drivers' ``read_state`` and
``write_state`` (:mod:`specbp_rtl.hwstate`).

Reads keep the bus's five-cycle latency: the request cycle registers the
memory address; the next cycle presents it on the backward engine's read
port of that memory (the engines are idle: the bus accesses memories only
then); the cycle after registers the selected value, which the host port's
read pipeline returns in place of a weight. Writes of a word (gradients,
pre-activations) are staged lane by lane as the weights' are; every write
reaches its memory's write port a cycle after the bus write, from registers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth.hdl import Cat, Signal
from amaranth.lib import data

from ..host import (
    REG_CUR,
    REG_PENDING,
    REG_PHASE,
    REG_SEEN,
    REGION_GRAD,
    REGION_GRAD_HIGH,
    REGION_SP,
    REGION_SX,
    REGION_SZ,
)
from .parts import Parts

if TYPE_CHECKING:
    from . import Trainer

__all__ = ["host_state"]


def host_state(trainer: Trainer, t: Parts) -> None:
    """Host reads and writes of the gradient bank, the slots and the speculation registers."""
    bank_bits, cur, fsm_idle, grd, gwr, lanes, live, m = (
        t.bank_bits,
        t.cur,
        t.fsm_idle,
        t.grd,
        t.gwr,
        t.lanes,
        t.live,
        t.m,
    )
    n_layers, p_label, p_slot, pending, phase, seen = t.n_layers, t.p_label, t.p_slot, t.pending, t.phase, t.seen
    sp_r1, sp_w, sx_r1, sx_w, sz_r1, sz_w = t.sp_r1, t.sp_w, t.sx_r1, t.sx_w, t.sz_r1, t.sz_w
    groups, per_group = t.groups, t.per_group
    a_addr, h_lane, h_region, h_word, r0_addr, r1_addr = t.a_addr, t.h_lane, t.h_region, t.h_word, t.r0_addr, t.r1_addr
    reg_value, weight_value = t.reg_value, t.weight_value
    host = trainer.host
    hidden = n_layers - 1
    flat = host.addr[:20]

    # -- registers -------------------------------------------------------------------------------------------
    with m.If(host.we & fsm_idle & (h_region == 0)):
        with m.Switch(flat):
            with m.Case(REG_SEEN):
                m.d.sync += seen.eq(host.wdata)
            with m.Case(REG_CUR):
                m.d.sync += cur.eq(host.wdata)
            with m.Case(REG_PHASE):
                m.d.sync += phase.eq(host.wdata)
            with m.Case(REG_PENDING):
                m.d.sync += [pending.eq(host.wdata[0]), p_slot.eq(host.wdata[8:16]), p_label.eq(host.wdata[16:24])]
    owed = Cat(pending, Signal(7), p_slot, Signal(8 - len(p_slot)), p_label)  # bits 0, 8..15, 16..23
    values = {REG_SEEN: seen, REG_CUR: cur, REG_PHASE: phase, REG_PENDING: owed}
    for reg, value in values.items():
        with m.If(r1_addr.mid_zero & (r1_addr.low == reg)):
            m.d.comb += reg_value.eq(value)

    # -- writes ----------------------------------------------------------------------------------------------
    g_word = grd.data.shape()
    sz_word = [data.ArrayLayout(sz_w[layer][0].data.shape().elem_shape, lanes) for layer in range(hidden)]
    g_stage = Signal(g_word, name="hs_g_stage")
    # gradients wider than the bus: the bits from 32 up are read and written in REGION_GRAD_HIGH, before the low
    # half of the same lane
    high_bits = max(0, g_word.elem_shape.width - 32)
    g_high = Signal(data.ArrayLayout(max(1, high_bits), lanes), name="hs_g_high")
    sz_stage = [Signal(sz_word[layer], name=f"hs_sz{layer}_stage") for layer in range(hidden)]
    writing = host.we & fsm_idle
    last_lane = h_lane == lanes - 1
    # the registered write of each memory: enable, address, data
    g_wen, g_waddr, g_wdata = Signal(name="hs_g_wen"), Signal.like(gwr.addr, name="hs_g_waddr"), Signal(g_word)
    x_wen, x_waddr, x_wdata = Signal(name="hs_sx_wen"), Signal.like(sx_w.addr, name="hs_sx_waddr"), Signal(8)
    p_wen, p_waddr = Signal(name="hs_sp_wen"), Signal.like(sp_w.addr, name="hs_sp_waddr")
    p_wdata = Signal.like(sp_w.data, name="hs_sp_wdata")
    z_wen = [Signal(name=f"hs_sz{layer}_wen") for layer in range(hidden)]
    z_waddr = [Signal.like(sz_w[layer][0].addr, name=f"hs_sz{layer}_waddr") for layer in range(hidden)]
    z_wdata = [Signal(sz_word[layer], name=f"hs_sz{layer}_wdata") for layer in range(hidden)]
    m.d.sync += [g_wen.eq(0), x_wen.eq(0), p_wen.eq(0), *(en.eq(0) for en in z_wen)]
    with m.If(writing):
        with m.Switch(h_region):
            with m.Case(REGION_GRAD):
                # bits 32 and up from the lane's high half, written before
                m.d.sync += g_stage[h_lane].eq(Cat(host.wdata, g_high[h_lane]))
                with m.If(last_lane):
                    m.d.sync += [g_wen.eq(1), g_waddr.eq(Cat(h_word[:bank_bits], live))]
                    m.d.sync += [g_wdata[lane].eq(g_stage[lane]) for lane in range(lanes - 1)]
                    m.d.sync += g_wdata[lanes - 1].eq(Cat(host.wdata, g_high[lanes - 1]))
            if high_bits:
                with m.Case(REGION_GRAD_HIGH):
                    m.d.sync += g_high[h_lane].eq(host.wdata)
            with m.Case(REGION_SX):
                m.d.sync += [x_wen.eq(1), x_waddr.eq(flat), x_wdata.eq(host.wdata)]
            with m.Case(REGION_SP):
                m.d.sync += [p_wen.eq(1), p_waddr.eq(flat), p_wdata.eq(host.wdata)]
            for layer in range(hidden):
                with m.Case(REGION_SZ + layer):
                    m.d.sync += sz_stage[layer][h_lane].eq(host.wdata.as_signed())
                    with m.If(last_lane):
                        m.d.sync += [z_wen[layer].eq(1), z_waddr[layer].eq(h_word)]
                        m.d.sync += [z_wdata[layer][lane].eq(sz_stage[layer][lane]) for lane in range(lanes - 1)]
                        m.d.sync += z_wdata[layer][lanes - 1].eq(host.wdata.as_signed())
    # (these comb assignments come after the engines' and the sequencer's, so they take the ports over)
    with m.If(g_wen):
        m.d.comb += [gwr.addr.eq(g_waddr), gwr.data.eq(g_wdata), gwr.en.eq(g_wen.replicate(len(gwr.en)))]
    with m.If(x_wen):
        m.d.comb += [sx_w.addr.eq(x_waddr), sx_w.data.eq(x_wdata), sx_w.en.eq(1)]
    with m.If(p_wen):
        m.d.comb += [sp_w.addr.eq(p_waddr), sp_w.data.eq(p_wdata), sp_w.en.eq(1)]
    for layer in range(hidden):
        for n in range(groups):
            w = sz_w[layer][n]
            with m.If(z_wen[layer]):
                m.d.comb += [
                    w.addr.eq(z_waddr[layer]),
                    *(w.data[j].eq(z_wdata[layer][n * per_group + j]) for j in range(per_group)),
                    w.en.eq(z_wen[layer].replicate(len(w.en))),
                ]

    # -- reads -----------------------------------------------------------------------------------------------
    # cycle 1: the address, registered with the request
    r_sel = Signal(name="hs_r_sel")
    r_word = Signal.like(h_word, name="hs_r_word")
    r_flat = Signal(20, name="hs_r_flat")
    m.d.sync += [r_sel.eq(host.re & fsm_idle), r_word.eq(h_word), r_flat.eq(flat)]
    region1 = a_addr.region
    with m.If(r_sel & region1.matches(REGION_GRAD, *([REGION_GRAD_HIGH] if high_bits else []))):
        m.d.comb += grd.addr.eq(Cat(r_word[:bank_bits], live))
    with m.If(r_sel & (region1 == REGION_SX)):
        m.d.comb += sx_r1.addr.eq(r_flat)
    with m.If(r_sel & (region1 == REGION_SP)):
        m.d.comb += sp_r1.addr.eq(r_flat)
    for layer in range(hidden):
        with m.If(r_sel & (region1 == REGION_SZ + layer)):
            m.d.comb += [sz_r1[layer][n].addr.eq(r_word) for n in range(groups)]
    # cycle 2: the value, selected by region and lane (r0_addr) into a register
    lane_bits = t.lane_bits
    lane2 = r0_addr.low[:lane_bits]
    value = Signal(32, name="hs_value")
    with m.Switch(r0_addr.region):
        with m.Case(REGION_GRAD):
            m.d.sync += value.eq(grd.data[lane2].as_signed())
        if high_bits:
            with m.Case(REGION_GRAD_HIGH):
                m.d.sync += value.eq(grd.data[lane2].as_signed()[32:].as_signed())
        with m.Case(REGION_SX):
            m.d.sync += value.eq(sx_r1.data)
        with m.Case(REGION_SP):
            m.d.sync += value.eq(sp_r1.data)
        for layer in range(hidden):
            with m.Case(REGION_SZ + layer):
                word = Cat(*(sz_r1[layer][n].data.as_value() for n in range(groups)))
                m.d.sync += value.eq(data.ArrayLayout(sz_word[layer].elem_shape, lanes)(word)[lane2].as_signed())
    # cycle 3: returned by the host port's pipeline in place of a weight
    with m.If(r1_addr.region >= REGION_GRAD):
        m.d.comb += weight_value.eq(value)
