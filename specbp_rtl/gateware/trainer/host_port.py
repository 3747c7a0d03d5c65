"""The trainer's side of the host bus (:mod:`specbp_rtl.gateware.host`): writes and the read pipeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth.hdl import Array, Cat, Mux, Signal
from amaranth.lib import data

from ..host import (
    COUNTERS,
    REG_COUNTERS,
    REG_LANES,
    REG_METRIC,
    REG_SPEC_EN,
    REG_STATUS,
    REG_THRESHOLD,
    SUM_COUNTERS,
)
from ..util import delay
from .parts import Parts

if TYPE_CHECKING:
    from . import Trainer

__all__ = ["host_port"]


def host_port(trainer: Trainer, t: Parts) -> None:
    """The host bus: register writes, staged weight writes, and the five-cycle read pipeline."""
    bank, cfg, ctr, fsm_idle, fwd, lanes, m = t.bank, t.cfg, t.ctr, t.fsm_idle, t.fwd, t.lanes, t.m
    metric, n_layers, nx, pending, pipe_en, spec_en = t.metric, t.n_layers, t.nx, t.pending, t.pipe_en, t.spec_en
    threshold, total, upd_addr_next, upd_sel_next = t.threshold, t.total, t.upd_addr_next, t.upd_sel_next
    w_waddr, w_wdata, w_wen, w_word, wr0 = t.w_waddr, t.w_wdata, t.w_wen, t.w_word, t.wr0
    host = trainer.host
    lane_bits = max(1, (lanes - 1).bit_length())
    h_region = host.addr[20:24]
    h_word = host.addr[lane_bits:20]
    h_lane = host.addr[:lane_bits]
    stage = Signal(w_word, name="stage")  # lanes 0 .. lanes-2 of the word being written
    h_addr = Signal(range(total))  # the word of a weight access in the shared layout
    with m.Switch(h_region):
        for layer in range(n_layers):
            with m.Case(layer + 1):
                m.d.comb += h_addr.eq(h_word + cfg.w_base(layer))
    with m.If(host.we & fsm_idle):
        with m.Switch(h_region):
            with m.Case(0):
                with m.Switch(host.addr[:20]):
                    with m.Case(REG_THRESHOLD):
                        m.d.sync += threshold.eq(host.wdata)
                    with m.Case(REG_METRIC):
                        m.d.sync += metric.as_value().eq(host.wdata[:2])
                    with m.Case(REG_SPEC_EN):
                        # a mode change drops an owed backward pass (its gradient was never accumulated)
                        m.d.sync += [spec_en.eq(host.wdata[0]), pipe_en.eq(host.wdata[1]), pending.eq(0)]
            with m.Case(*range(1, n_layers + 1)):
                m.d.sync += stage[h_lane].eq(host.wdata)
                with m.If(h_lane == lanes - 1):
                    m.d.sync += [w_wen.eq(1), w_waddr.eq(h_addr)]
                    m.d.sync += [w_wdata[lane].eq(stage[lane]) for lane in range(lanes - 1)]
                    m.d.sync += w_wdata[lanes - 1].eq(host.wdata)
    # reads: cycle 1 registers the request and the word address of a weight read (no path from the bus
    # through the address decode into the block RAMs); cycle 2 presents that address; cycle 3 registers
    # the word read (straight from the block RAMs into flip-flops); cycle 4 selects (registers: a parallel
    # case on the address; weights: the lane of the word) into two registers; cycle 5 returns the data
    # (the address travels as its region, its low bits and whether the bits between are zero: registers
    # and lanes are decoded from those)
    low_bits = max(lane_bits, (REG_COUNTERS + 2 * len(COUNTERS) - 1).bit_length())
    addr_layout = data.StructLayout({"low": low_bits, "mid_zero": 1, "region": 4})
    a_valid = Signal()
    a_addr = Signal(addr_layout)
    a_mem_next = Signal()
    m.d.comb += a_mem_next.eq(host.re & fsm_idle & (h_region != 0))
    m.d.sync += [
        a_valid.eq(host.re),
        a_addr.low.eq(host.addr[:low_bits]),
        a_addr.mid_zero.eq(host.addr[low_bits:20] == 0),
        a_addr.region.eq(h_region),
    ]
    ctr_bits = (len(COUNTERS) - 1).bit_length()
    a_ctr = Signal(ctr_bits)
    m.d.sync += a_ctr.eq((host.addr[1 : 1 + ctr_bits] - (REG_COUNTERS >> 1))[:ctr_bits])
    a_bank = Signal()  # a read of a counter in the counter bank: answered by the bank, not by the pipeline
    if bank is not None:
        in_bank = [
            REG_COUNTERS + 2 * k + half
            for k, name in enumerate(COUNTERS)
            if name not in SUM_COUNTERS
            for half in (0, 1)
        ]
        low = host.addr[:low_bits]
        m.d.sync += a_bank.eq(host.re & (h_region == 0) & (host.addr[low_bits:20] == 0) & low.matches(*in_bank))
    r0_valid = Signal()
    r0_addr = Signal(addr_layout)
    r1_valid = Signal()
    r1_addr = Signal(addr_layout)
    # the word read, or (without host_read_word_register) its lane, selected at the block RAMs' output
    r1_word = (
        Signal(w_word, name="r1_word")
        if cfg.arch.host_read_word_register
        else Signal(nx.weight.shape, name="r1_weight")
    )
    m.d.sync += [
        r0_valid.eq(a_valid & ~a_bank),
        r0_addr.eq(a_addr),
        r1_valid.eq(r0_valid),
        r1_addr.eq(r0_addr),
        r1_word.eq(wr0.data if cfg.arch.host_read_word_register else wr0.data[r0_addr.low[:lane_bits]]),
    ]
    # the weight memory's shared read port (forward engine, update sequencer, host) gets its address from
    # a register: the multiplexer works on the sources' next values, a cycle ahead (no multiplexer between
    # the register and the block RAMs)
    w0_addr = Signal(range(total), name="w0_addr")
    # (without forward_weight_register the forward engine's address a cycle later: its weights go straight into its
    # operand register)
    fwd_w_addr = fwd.w_raddr_next if cfg.arch.forward_weight_register else delay(m, fwd.w_raddr_next, 1, "fwd_w_addr")
    m.d.sync += w0_addr.eq(Mux(a_mem_next, h_addr, Mux(upd_sel_next, upd_addr_next, fwd_w_addr)))
    m.d.comb += wr0.addr.eq(w0_addr)
    r_region = r1_addr.region
    r_lane = r1_addr.low[:lane_bits]
    # counters in two steps: the counter into a register in cycle 3, its half in cycle 4 (loaded every cycle;
    # a plain multiplexer whose index, address / 2 less the first counter's, is registered with the request
    # and carried with it; the value is only used for an address in the counter range)
    r0_ctr = Signal(ctr_bits)
    m.d.sync += r0_ctr.eq(a_ctr)
    r1_ctr = Signal(cfg.arch.counter_width)
    m.d.sync += r1_ctr.eq(Array([ctr.get(name, 0) for name in COUNTERS])[r0_ctr])
    reg_value = Signal(32)
    with m.Switch(Mux(r1_addr.mid_zero, r1_addr.low, 1 << low_bits)):  # 1 << low_bits: no register
        with m.Case(REG_STATUS):
            m.d.comb += reg_value.eq(~fsm_idle)
        with m.Case(REG_THRESHOLD):
            m.d.comb += reg_value.eq(threshold)
        with m.Case(REG_METRIC):
            m.d.comb += reg_value.eq(metric.as_value())
        with m.Case(REG_SPEC_EN):
            m.d.comb += reg_value.eq(Cat(spec_en, pipe_en))
        with m.Case(REG_LANES):
            m.d.comb += reg_value.eq(lanes)
        with m.Case(*range(REG_COUNTERS, REG_COUNTERS + 2 * len(COUNTERS))):
            m.d.comb += reg_value.eq(Mux(r1_addr.low[0], r1_ctr[32:], r1_ctr[:32]))
    weight_value = Signal(32)
    with m.If((r_region != 0) & (r_region <= n_layers)):
        m.d.comb += weight_value.eq(r1_word[r_lane].as_signed() if cfg.arch.host_read_word_register else r1_word)
    r2_valid, r2_is_reg = Signal(), Signal()
    r2_reg, r2_weight = Signal(32), Signal(32)
    m.d.sync += [
        r2_valid.eq(r1_valid),
        r2_is_reg.eq(r_region == 0),
        r2_reg.eq(reg_value),
        r2_weight.eq(weight_value),
        host.rvalid.eq(r2_valid),
    ]
    with m.If(r2_valid):
        m.d.sync += host.rdata.eq(Mux(r2_is_reg, r2_reg, r2_weight))
    # for the training state's accesses (host_state.py)
    t.add(a_addr=a_addr, h_lane=h_lane, h_region=h_region, h_word=h_word, lane_bits=lane_bits, r0_addr=r0_addr)
    t.add(r1_addr=r1_addr, reg_value=reg_value, weight_value=weight_value, low_bits=low_bits)
    if bank is not None:
        # the bank answers its counters' reads (the host waits for rvalid, one read at a time)
        b_half = Signal()
        m.d.comb += [bank.read.valid.eq(a_bank), bank.read.payload.eq(a_ctr), bank.value.ready.eq(1)]
        with m.If(a_bank):
            m.d.sync += b_half.eq(a_addr.low[0])
        with m.If(bank.value.valid):
            value = bank.value.payload
            m.d.sync += [host.rvalid.eq(1), host.rdata.eq(Mux(b_half, value[32:], value[:32]))]
