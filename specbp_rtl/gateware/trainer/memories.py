"""The trainer's memories and the engines' ports onto them.

One weight memory and one gradient memory (two banks) for every layer, and
the label-state slots: input bytes (``sx``), hidden pre-activations (``sz``,
one memory per layer and lane group) and softmax outputs (``sp``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amaranth.hdl import signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from .parts import Parts

if TYPE_CHECKING:
    from . import Trainer

__all__ = ["build_memories", "connect_engines"]


def build_memories(trainer: Trainer, t: Parts) -> None:
    """The weight memory, the gradient memory (two banks), and the label-state slots (input bytes,
    hidden pre-activations per lane group, softmax outputs), with their ports."""
    cfg, classes, lanes, m, n_layers, nx, plan = t.cfg, t.classes, t.lanes, t.m, t.n_layers, t.nx, t.plan
    # one weight memory and one gradient memory (two banks of total_words) for all layers, layer l at
    # word w_base(l): the engines, the update unit and the host see no per-layer multiplexers
    total = cfg.total_words
    w_word = data.ArrayLayout(nx.weight.shape, lanes)
    init_words = [list(map(int, row)) for layer in range(n_layers) for row in cfg.to_words(layer, *trainer.init[layer])]
    m.submodules.w = wmem = Memory(shape=w_word, depth=total, init=init_words)
    # The ports are made in a tuple, so that Amaranth names their signals ``$signature...`` as in the
    # measured board netlists (boards/rtlil_digests.json); a port assigned straight to a name would be named
    # after it, which changes the RTLIL (and, on the ECP5, the placement).
    ports = (wmem.read_port(), wmem.read_port(), wmem.write_port())
    wr0, wr1, wwr = ports  # wr0: forward/update/host
    trainer._peek["weights"] = wmem  # Trainer.peek_weights
    g_word = data.ArrayLayout(signed(max(fmt.width for fmt in plan.grad)), lanes)
    # bank b at word b << bank_bits: the bank is the top address bit, no adder in the address path
    bank_bits = max(1, (total - 1).bit_length())
    m.submodules.g = gmem = Memory(shape=g_word, depth=2 << bank_bits, init=[])
    ports = (gmem.read_port(), gmem.write_port())
    grd, gwr = ports
    # slot input bytes (the inference slot's only with a first layer of several passes: cfg.sx_slots)
    sx_scratch = cfg.sx_slots == cfg.slots
    sx = Memory(shape=unsigned(8), depth=cfg.sx_slots * cfg.n_in(0), init=[])
    m.submodules.sx = sx
    # the forward engine reads the input bytes back only in a first layer of several passes
    # (input_read_port_if_used: no read port otherwise)
    if cfg.arch.input_read_port_if_used and not sx_scratch:
        sx_w, sx_r1 = sx.write_port(), sx.read_port()
        sx_r0 = None
    else:
        sx_w, sx_r0, sx_r1 = sx.write_port(), sx.read_port(), sx.read_port()
    # hidden pre-activations: one memory per layer and lane group (cfg.arch.sz_groups), each addressed by its own
    # copies of the engines' address registers
    groups = cfg.arch.sz_groups
    per_group = lanes // groups
    sz_w, sz_r0, sz_r1 = [], [], []
    for layer in range(n_layers - 1):
        sz_w.append([]), sz_r0.append([]), sz_r1.append([])
        for n in range(groups):
            mem = Memory(shape=data.ArrayLayout(nx.act.shape, per_group), depth=cfg.slots * cfg.passes(layer), init=[])
            m.submodules[f"sz{layer}" if groups == 1 else f"sz{layer}_g{n}"] = mem
            sz_w[layer].append(mem.write_port())
            sz_r0[layer].append(mem.read_port())
            sz_r1[layer].append(mem.read_port())
    sp = Memory(shape=nx.prob.shape, depth=cfg.slots * classes, init=[])
    m.submodules.sp = sp
    sp_w, sp_r0, sp_r1 = sp.write_port(), sp.read_port(), sp.read_port()
    t.add(grd=grd, groups=groups, per_group=per_group, sp_r1=sp_r1, sp_w=sp_w, sx_r0=sx_r0, sx_r1=sx_r1)
    t.add(sx_scratch=sx_scratch, sx_w=sx_w, sz_r0=sz_r0, sz_r1=sz_r1, sz_w=sz_w, wr0=wr0, wr1=wr1, sp_r0=sp_r0)
    t.add(bank_bits=bank_bits, gwr=gwr, total=total, w_word=w_word, wwr=wwr)


def connect_engines(trainer: Trainer, t: Parts) -> None:
    """The engines' memory ports onto the memories."""
    bwd, fwd, grd, groups, infer, m, n_layers = t.bwd, t.fwd, t.grd, t.groups, t.infer, t.m, t.n_layers
    per_group, sp_r1, sp_w, sx_r0, sx_r1, sx_scratch = t.per_group, t.sp_r1, t.sp_w, t.sx_r0, t.sx_r1, t.sx_scratch
    sx_w, sz_r0, sz_r1, sz_w, wr0, wr1 = t.sx_w, t.sz_r0, t.sz_r1, t.sz_w, t.wr0, t.wr1
    m.d.comb += [
        sx_w.addr.eq(fwd.sx_waddr),
        sx_w.data.eq(fwd.sx_wdata),
        sx_w.en.eq(fwd.sx_wen & (~infer | sx_scratch)),
        *([sx_r0.addr.eq(fwd.sx_raddr), fwd.sx_rdata.eq(sx_r0.data)] if sx_r0 is not None else []),
        sx_r1.addr.eq(bwd.sx_raddr),
        bwd.sx_rdata.eq(sx_r1.data),
        sp_w.addr.eq(fwd.sp_waddr),
        sp_w.data.eq(fwd.sp_wdata),
        sp_w.en.eq(fwd.sp_wen),
        sp_r1.addr.eq(bwd.sp_raddr),
        bwd.sp_rdata.eq(sp_r1.data),
    ]
    for layer in range(n_layers - 1):
        for n in range(groups):
            w, r0, r1 = sz_w[layer][n], sz_r0[layer][n], sz_r1[layer][n]
            group = range(n * per_group, (n + 1) * per_group)
            m.d.comb += [
                w.addr.eq(getattr(fwd, f"sz{layer}_waddr")[n]),
                *(w.data[j].eq(getattr(fwd, f"sz{layer}_wdata")[lane]) for j, lane in enumerate(group)),
                w.en.eq(getattr(fwd, f"sz{layer}_wen")[n].replicate(len(w.en))),
                r0.addr.eq(getattr(fwd, f"sz{layer}_raddr")[n]),
                *(getattr(fwd, f"sz{layer}_rdata")[lane].eq(r0.data[j]) for j, lane in enumerate(group)),
                r1.addr.eq(getattr(bwd, f"sz{layer}_raddr")[n]),
                *(getattr(bwd, f"sz{layer}_rdata")[lane].eq(r1.data[j]) for j, lane in enumerate(group)),
            ]
    m.d.comb += [
        fwd.w_rdata.eq(wr0.data),
        wr1.addr.eq(bwd.w_raddr),
        bwd.w_rdata.eq(wr1.data),
        bwd.g_rdata.eq(grd.data),
    ]
