"""The update sequencer's datapath: every weight word through the shared update unit."""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth.hdl import Array, Cat, Mux, Signal, Value

from ..util import delay
from .parts import Parts

if TYPE_CHECKING:
    from . import Trainer

__all__ = ["update_sequencer"]


def update_sequencer(trainer: Trainer, t: Parts) -> None:
    """The update sequencer's datapath: weights and gradients word by word through the update unit,
    the results into the weight memory's write register (shared with the host port), the gradient
    memory's port multiplexers."""
    bank_bits, beats, bwd, cfg, fsm_update, grd = t.bank_bits, t.beats, t.bwd, t.cfg, t.fsm_update, t.grd
    gwr, lanes, live, m, total, upd, upd_active = t.gwr, t.lanes, t.live, t.m, t.total, t.upd, t.upd_active
    upd_addr, upd_layer, upd_part, upd_word_done = t.upd_addr, t.upd_layer, t.upd_part, t.upd_word_done
    w_word, wr0, wwr = t.w_word, t.wr0, t.wwr
    valid1 = delay(m, upd_active, 1, "upd_v")
    addr1 = delay(m, upd_addr, 1, "upd_a")
    layer1 = delay(m, upd_layer, 1, "upd_l")
    # the result of a beat presented in cycle c is valid in cycle c + LATENCY + 1
    addr_out = delay(m, addr1, upd.LATENCY + 1, "upd_ao", ram_min=cfg.arch.delay_ram_min)
    m.d.comb += [upd.i.valid.eq(valid1), upd.i.payload.layer.eq(layer1), upd.o.ready.eq(1)]
    width = cfg.update_width
    if beats == 1:
        m.d.comb += upd.i.payload.w.eq(wr0.data)
        m.d.comb += [upd.i.payload.g[lane].eq(grd.data[lane]) for lane in range(lanes)]
        last1 = Signal(init=1)  # every beat is a whole word
    else:
        # lane group part1 of the word read (the memories' data hold while the address does); the results
        # come back in order, one group per cycle, into the write data register, and the word is written
        # when its last group is in
        part1 = delay(m, upd_part, 1, "upd_p")
        last1 = delay(m, upd_word_done, 1, "upd_last")
        for j in range(width):
            m.d.comb += [
                upd.i.payload.w[j].eq(Array(wr0.data[g * width + j] for g in range(beats))[part1]),
                upd.i.payload.g[j].eq(Array(grd.data[g * width + j] for g in range(beats))[part1]),
            ]
        out_part = Signal(range(beats))
        with m.If(upd.o.valid):
            m.d.sync += out_part.eq(Mux(out_part == beats - 1, 0, out_part + 1))
    # weight writes (update results, host words) go through one register stage: the write enable,
    # address and data are flip-flops next to the memory
    w_waddr = Signal(range(total), name="w_waddr")
    w_wdata = Signal(w_word, name="w_wdata")
    w_wen = Signal(name="w_wen")
    m.d.sync += w_wen.eq(0)
    m.d.comb += [wwr.addr.eq(w_waddr), wwr.data.eq(w_wdata), wwr.en.eq(w_wen.replicate(len(wwr.en)))]

    def g_addr(word: Value, bank: Value) -> Value:
        return Cat(word[:bank_bits], bank)

    with m.If(fsm_update):
        m.d.sync += w_waddr.eq(addr_out)
        if beats == 1:
            m.d.sync += [w_wdata.eq(upd.o.payload.w), w_wen.eq(upd.o.valid)]
        else:
            m.d.sync += w_wen.eq(upd.o.valid & (out_part == beats - 1))
            with m.If(upd.o.valid):
                with m.Switch(out_part):
                    for g in range(beats):
                        with m.Case(g):
                            m.d.sync += [w_wdata[g * width + j].eq(upd.o.payload.w[j]) for j in range(width)]
        m.d.comb += [
            grd.addr.eq(g_addr(upd_addr, live)),
            # G_live = 0 one cycle after its last lane group was read
            gwr.addr.eq(g_addr(addr1, live)),
            gwr.data.eq(0),
            gwr.en.eq((valid1 & last1).replicate(len(gwr.en))),
        ]
    with m.Else():
        m.d.comb += [
            grd.addr.eq(g_addr(bwd.g_raddr, live)),
            gwr.addr.eq(g_addr(bwd.g_waddr, ~live)),
            gwr.data.eq(bwd.g_wdata),
            gwr.en.eq(bwd.g_wen.replicate(len(gwr.en))),
        ]
    t.add(w_waddr=w_waddr, w_wdata=w_wdata, w_wen=w_wen)
