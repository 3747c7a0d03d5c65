"""Forward pipeline: MAC array, activation and softmax for every layer.

:class:`ForwardEngine` runs one forward pass of the MLP and writes the forward
state (input bytes, hidden pre-activations, softmax output) into a label-state
slot. Its numpy model is :meth:`specbp_rtl.model.golden.FixedEngine.forward`.

Schedule (``lanes`` = output neurons): for each layer, for each pass ``p``
(``ceil(n_out / lanes)``), one MAC beat per input element ``i`` and one bias
beat (input ``1.0``): the input element is broadcast to every lane, lane ``j``
multiplies it by ``W[p * lanes + j, i]`` (the weight memory word
``p * (n_in + 1) + i``, rounded to the operand format). Layer 0 pass 0 takes
its inputs straight from the ``pixel`` stream (and stores them in the slot);
later passes read them back from the slot. Hidden layers read the previous
layer's pre-activations from the slot and apply the leaky ReLU on the fly.
Inputs are scaled to the activation's fractional bits (``x << (act.frac -
input_frac)``) so that every layer shares one accumulator format; the
requantised result is bit-identical to the golden model's.

Cycles: ``sum_l passes(l) * (n_in(l) + 1)`` beats, plus a pipeline drain of
``MacArray.LATENCY + 4`` cycles per layer (three operand registers: memory
data, activation / requantised weights, the MAC's own), plus the softmax; one
beat per cycle while the pixel stream keeps up. The exact count is
:attr:`.cycles.CycleModel.forward`.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .activation import Activation
from .layout import TrainerConfig
from .mac_array import MacArray
from .ports import read_port, read_port_ahead, write_port
from .slots import slot_addressing
from .softmax import Softmax
from .util import delay, next_value, register_copies, weight_operands

__all__ = ["ForwardEngine"]

# source of a forward beat's broadcast operand
SRC_PIXEL, SRC_SX, SRC_SZ, SRC_BIAS = 0, 1, 2, 3


class ForwardEngine(wiring.Component):
    """One forward pass per ``start`` pulse.

    Ports
    -----
    start, slot : In
        Pulse ``start`` with the label-state ``slot`` to fill.
    busy, done : Out
        ``busy`` from ``start`` to ``done`` (a one-cycle pulse at the end).
    prediction : Out
        Index of the first maximal logit, valid from ``done`` on.
    pixel : In(stream)
        The sample's ``n_in(0)`` input bytes, in order.
    prob_valid, prob_index, prob_data : Out
        Each softmax output as it is written to the slot (feeds the comparator).
    w_*, sx_*, sz{l}_*, sp_* :
        Memory ports (see :mod:`.ports`): weights of all layers (read, word
        ``w_base(l) + word`` for layer ``l``; the address is given a cycle
        ahead, ``w_raddr_next``, and the trainer registers it), slot
        inputs (write, read), hidden pre-activations (write, read), softmax
        outputs (write).
    """

    def __init__(self, cfg: TrainerConfig) -> None:
        self.cfg = cfg
        nx = cfg.numerics
        lanes = cfg.lanes
        members = {
            "start": In(1),
            "slot": In(range(cfg.slots)),
            "busy": Out(1),
            "done": Out(1),
            "prediction": Out(range(max(cfg.classes, 2))),
            "pixel": In(stream.Signature(unsigned(8))),
            "prob_valid": Out(1),
            "prob_index": Out(range(max(cfg.classes, 2))),
            "prob_data": Out(nx.prob.shape),
        }
        members |= read_port_ahead("w", cfg.total_words, data.ArrayLayout(nx.weight.shape, lanes))
        sx_depth = cfg.slots * cfg.n_in(0)
        members |= write_port("sx", sx_depth, unsigned(8)) | read_port("sx", sx_depth, unsigned(8))
        for layer in range(cfg.n_layers - 1):
            depth = cfg.slots * cfg.passes(layer)
            word = data.ArrayLayout(nx.act.shape, lanes)
            members |= write_port(f"sz{layer}", depth, word, copies=cfg.arch.sz_groups) | read_port(
                f"sz{layer}", depth, word, copies=cfg.arch.sz_groups
            )
        members |= write_port("sp", cfg.slots * cfg.classes, nx.prob.shape)
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        cfg, nx, plan = self.cfg, self.cfg.numerics, self.cfg.plan
        lanes, n_layers = cfg.lanes, cfg.n_layers
        m = Module()
        act_frac = nx.act.frac_bits
        acc_frac = nx.weight_operand_frac + act_frac
        m.submodules.mac = mac = MacArray(
            lanes, broadcast=True, acc_width=cfg.forward_acc_width, acc_frac=acc_frac, out=nx.act
        )
        m.submodules.act = act = Activation(1, plan, latency=1)
        m.submodules.softmax = softmax = Softmax(
            cfg.classes,
            nx,
            lut_top_in_logic=cfg.arch.softmax_exp_one_in_logic,
            serial_multiplier=cfg.arch.softmax_serial_multiplier,
        )
        m.d.comb += mac.o.ready.eq(1)

        slot = Signal.like(self.slot)
        # slot base addresses of the label-state memories, and the element index with the slot memories'
        # addresses (sx: base + element, sz: base + word) in registers
        bases, idx = slot_addressing(cfg)
        i, lane_i = idx.i, idx.lane  # element within the pass (n_in = bias beat)
        at_bias = Signal()  # i == n_in of the layer being issued, kept in a register beside the index
        p = Signal(range(max(cfg.passes(lay) for lay in range(n_layers)) + 1))
        waddr = Signal(range(cfg.total_words + 1))  # the layers' words in order: no reset between layers
        out_pass = Signal.like(p)  # passes whose MAC result has come back

        # stage 1: the memory data of the beat issued in the previous cycle
        s1_valid = Signal()
        s1_first = Signal()
        s1_last = Signal()
        s1_src = Signal(2)  # 0 pixel, 1 slot input bytes, 2 hidden act, 3 bias
        s1_pixel = Signal(8)
        s1_lane = Signal.like(lane_i)
        s1_layer = Signal(range(n_layers))

        in_shift = act_frac - nx.input_frac
        one = Const(1 << act_frac, 16)
        sz_rdata = [getattr(self, f"sz{layer}_rdata") for layer in range(n_layers - 1)]

        # stage 1 -> 2: the raw operands (memory data selected by layer and lane) are registered, so that
        # no path runs from a memory read through the activation or the requantiser into the MACs
        hidden = Signal(nx.act.shape)
        with m.Switch(s1_layer):
            for layer in range(1, n_layers):
                with m.Case(layer):
                    m.d.comb += hidden.eq(sz_rdata[layer - 1][s1_lane])
        weights = self.w_rdata
        s2_valid, s2_first, s2_last = Signal(), Signal(), Signal()
        s2_src = Signal.like(s1_src)
        s2_pixel = Signal(8)
        s2_sx = Signal(8)  # slot input byte, straight from the memory into a flip-flop
        s2_hidden = Signal(nx.act.shape)
        # (without forward_weight_register the trainer reads the weights a cycle later, straight into the operand
        # register)
        s2_w = Signal.like(weights, name="s2_w") if cfg.arch.forward_weight_register else weights
        m.d.sync += [
            s2_valid.eq(s1_valid),
            s2_first.eq(s1_first),
            s2_last.eq(s1_last),
            s2_src.eq(s1_src),
            s2_pixel.eq(s1_pixel),
            s2_sx.eq(self.sx_rdata),
            s2_hidden.eq(hidden),
            *([s2_w.eq(weights)] if cfg.arch.forward_weight_register else []),
        ]

        # stage 2 -> 3: leaky ReLU of the hidden input (registered inside the unit); weights requantised
        # to the MAC operand
        m.d.comb += act.z[0].eq(s2_hidden)
        s3_valid, s3_first, s3_last, s3_src, s3_byte = (
            delay(m, v, 1, name)
            for v, name in (
                (s2_valid, "s3_valid"),
                (s2_first, "s3_first"),
                (s2_last, "s3_last"),
                (s2_src, "s3_src"),
                (Mux(s2_src == SRC_PIXEL, s2_pixel, s2_sx), "s3_byte"),
            )
        )
        s3_a = weight_operands(m, s2_w, nx, lanes, "s3_a")

        # stage 3: the MAC beat
        b = Signal(16)
        with m.Switch(s3_src):
            with m.Case(SRC_PIXEL, SRC_SX):
                m.d.comb += b.eq(s3_byte << in_shift)
            with m.Case(SRC_SZ):
                m.d.comb += b.eq(act.a[0])
            with m.Case(SRC_BIAS):
                m.d.comb += b.eq(one)
        m.d.comb += [
            mac.i.valid.eq(s3_valid),
            mac.i.payload.a.eq(s3_a),
            mac.i.payload.b.eq(b),
            mac.i.payload.first.eq(s3_first),
            mac.i.payload.last.eq(s3_last),
        ]
        m.d.sync += s1_valid.eq(0)

        # logits of the output layer, gathered pass by pass
        classes = cfg.classes
        logits = Signal(data.ArrayLayout(nx.act.shape, cfg.passes(n_layers - 1) * lanes))
        k = Signal(range(classes + 1))
        best = Signal(nx.act.shape)
        # prediction: the first maximal logit, compared a cycle after the logit is sent to the softmax
        # (the softmax takes far longer than that before the forward pass is done)
        cand_valid = Signal()
        cand_k = Signal.like(k)
        cand_z = Signal(nx.act.shape)
        z_out = Signal(nx.act.shape)  # logits[k], registered ahead: the softmax feed comes from a flip-flop
        m.d.sync += cand_valid.eq(0)
        with m.If(cand_valid & ((cand_k == 0) | (cand_z > best))):
            m.d.sync += [best.eq(cand_z), self.prediction.eq(cand_k)]
        written = Signal(range(classes + 1))

        m.d.comb += self.done.eq(0)
        # read addresses straight from the counters, in every state (no state decoding in front of the
        # memories; a read outside ISSUE is never used)
        waddr_next = next_value(m, waddr)
        m.d.comb += [self.w_raddr_next.eq(waddr_next), self.sx_raddr.eq(idx.addr["sx"])]
        # pixels are written to the slot's input bytes a cycle after they arrive, from flip-flops (no path
        # from the sample stream's source into the memory)
        sxw_en = Signal()
        sxw_addr = Signal.like(self.sx_waddr)
        sxw_data = Signal.like(self.sx_wdata)
        m.d.sync += [sxw_en.eq(0), sxw_addr.eq(idx.addr["sx"]), sxw_data.eq(self.pixel.payload)]
        m.d.comb += [self.sx_waddr.eq(sxw_addr), self.sx_wdata.eq(sxw_data), self.sx_wen.eq(sxw_en)]
        for layer in range(n_layers - 1):
            m.d.comb += [getattr(self, f"sz{layer}_raddr")[n].eq(reg) for n, reg in enumerate(idx.copies[f"sz{layer}"])]
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    bases.load(m, self.slot)
                    idx.restart(m, self.slot)
                    m.d.sync += at_bias.eq(0)
                    m.d.sync += [slot.eq(self.slot), p.eq(0)]
                    m.d.comb += waddr_next.eq(0)
                    m.next = "ISSUE0"
            for layer in range(n_layers):
                n_in, passes = cfg.n_in(layer), cfg.passes(layer)
                with m.State(f"ISSUE{layer}"):
                    m.d.comb += self.busy.eq(1)
                    from_pixels = Signal(name=f"from_pixels{layer}")
                    if layer == 0:
                        m.d.comb += from_pixels.eq((p == 0) & ~at_bias)
                    fire = Signal(name=f"fire{layer}")
                    m.d.comb += fire.eq(~from_pixels | self.pixel.valid)
                    m.d.comb += self.pixel.ready.eq(from_pixels)
                    if layer == 0:
                        m.d.sync += sxw_en.eq(from_pixels & self.pixel.valid)
                    # the beat's description is registered every cycle (it matters only with s1_valid), so
                    # that these registers need no enable from the pixel handshake
                    m.d.sync += [
                        s1_first.eq(i == 0),
                        s1_last.eq(at_bias),
                        s1_pixel.eq(self.pixel.payload),
                        s1_lane.eq(lane_i),
                        s1_layer.eq(layer),
                    ]
                    with m.If(at_bias):
                        m.d.sync += s1_src.eq(SRC_BIAS)
                    with m.Elif(from_pixels):
                        m.d.sync += s1_src.eq(SRC_PIXEL)
                    with m.Else():
                        m.d.sync += s1_src.eq(SRC_SX if layer == 0 else SRC_SZ)
                    with m.If(fire):
                        m.d.sync += s1_valid.eq(1)
                        m.d.comb += waddr_next.eq(waddr + 1)
                        with m.If(at_bias):
                            idx.restart(m)
                            m.d.sync += at_bias.eq(0)
                            m.d.sync += p.eq(p + 1)
                            with m.If(p == passes - 1):
                                m.next = f"DRAIN{layer}"
                        with m.Else():
                            idx.step(m)
                            m.d.sync += at_bias.eq(i == n_in - 1)
                with m.State(f"DRAIN{layer}"):
                    m.d.comb += self.busy.eq(1)
                    with m.If(mac.o.valid & (out_pass == passes - 1)):
                        idx.restart(m)
                        m.d.sync += at_bias.eq(0)
                        m.d.sync += p.eq(0)
                        m.next = f"ISSUE{layer + 1}" if layer + 1 < n_layers else "SOFTMAX"
                        if layer == n_layers - 1:  # logit 0 for the softmax feed (written now if one pass)
                            m.d.sync += z_out.eq(mac.o.payload.value[0] if passes == 1 else logits[0])
            with m.State("SOFTMAX"):
                m.d.comb += [self.busy.eq(1), softmax.i.valid.eq(1), softmax.i.payload.eq(z_out)]
                with m.If(softmax.i.ready):
                    m.d.sync += [cand_valid.eq(1), cand_k.eq(k), cand_z.eq(z_out), z_out.eq(logits[k + 1])]
                    m.d.sync += k.eq(k + 1)
                    with m.If(k == classes - 1):
                        m.next = "NORMALIZE"
            with m.State("NORMALIZE"):
                m.d.comb += self.busy.eq(1)
                with m.If(softmax.o.valid & (written == classes - 1)):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += k.eq(0)
                    m.next = "IDLE"

        # MAC results: hidden layers go to the slot, the output layer to the logits. The memories' write
        # addresses and enables and the logits' enables come from flip-flops, one copy per lane group
        # (cfg.arch.sz_groups): they are registered in the cycle before the result, when out_layer and out_pass
        # already hold its layer and pass (the previous result came at least two cycles earlier: a pass has at
        # least two beats), from a flag that a result is due. The MAC never stalls (o.ready is high), so a
        # result comes exactly MacArray.LATENCY + 1 cycles after the beat with `last` is offered.
        out_layer = Signal(range(n_layers))
        result_ahead = delay(m, s3_valid & s3_last, MacArray.LATENCY, "result_ahead")
        groups = cfg.arch.sz_groups
        for layer in range(n_layers - 1):
            waddr, wen = getattr(self, f"sz{layer}_waddr"), getattr(self, f"sz{layer}_wen")
            for n, (addr_r, en_r) in enumerate(
                zip(
                    register_copies(f"sz{layer}_waddr_r", len(waddr[0]), groups),
                    register_copies(f"sz{layer}_wen_r", 1, groups),
                )
            ):
                m.d.sync += [addr_r.eq(bases[f"sz{layer}"] + out_pass), en_r.eq(result_ahead & (out_layer == layer))]
                m.d.comb += [waddr[n].eq(addr_r), wen[n].eq(en_r)]
        logit_en = [Signal(name=f"logit_en{q}") for q in range(cfg.passes(n_layers - 1))]
        m.d.sync += [
            en.eq(result_ahead & (out_layer == n_layers - 1) & (out_pass == q)) for q, en in enumerate(logit_en)
        ]
        for q, en in enumerate(logit_en):
            with m.If(en):
                m.d.sync += [logits[q * lanes + lane].eq(mac.o.payload.value[lane]) for lane in range(lanes)]
        with m.If(self.start):
            m.d.sync += out_layer.eq(0)
        for layer in range(n_layers):
            passes = cfg.passes(layer)
            with m.If(mac.o.valid & (out_layer == layer)):
                with m.If(out_pass == passes - 1):
                    m.d.sync += [out_pass.eq(0), out_layer.eq(layer + 1 if layer + 1 < n_layers else 0)]
                with m.Else():
                    m.d.sync += out_pass.eq(out_pass + 1)

        m.d.comb += [getattr(self, f"sz{layer}_wdata").eq(mac.o.payload.value) for layer in range(n_layers - 1)]

        # softmax results into the slot and out to the comparator
        m.d.comb += [
            softmax.o.ready.eq(1),
            self.sp_waddr.eq(bases["sp"] + written),
            self.sp_wdata.eq(softmax.o.payload),
            self.sp_wen.eq(softmax.o.valid),
            self.prob_valid.eq(softmax.o.valid),
            self.prob_index.eq(written),
            self.prob_data.eq(softmax.o.payload),
        ]
        with m.If(softmax.o.valid):
            m.d.sync += written.eq(Mux(written == classes - 1, 0, written + 1))
        return m
