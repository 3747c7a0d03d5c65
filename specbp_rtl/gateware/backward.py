"""Backward engine: gradients and error terms from a stored forward state.

:class:`BackwardEngine` runs one backward pass from a label-state slot (the
current sample's, or, speculatively, the previous sample with the same label)
through the *current* weights, and writes ``G + g`` for every gradient word
into the shadow accumulator bank. Its numpy model is
:meth:`specbp_rtl.model.golden.FixedEngine.accumulate` (per layer:
:func:`~specbp_rtl.model.golden.output_error`,
:func:`~specbp_rtl.model.golden.outer_accumulate`,
:func:`~specbp_rtl.model.golden.backprop_delta`).

Schedule, from the output layer down, with its own :class:`MacArray`:

* ``LOAD``: ``delta = saturate(p - onehot(label))`` from the slot's softmax
  output (``classes`` cycles);
* ``GRAD l``: one beat per gradient word (``words(l)``): lane ``j`` computes
  ``delta[p * lanes + j] * x_i`` exactly (``x_i`` the slot's layer input, or
  ``1.0`` for the bias word); the accumulator word read from the live bank is
  added and written to the shadow bank (read-modify-write across banks, so no
  hazard);
* ``DELTA l`` (``l >= 1``): for each input ``i`` of layer ``l``, ``passes(l)``
  beats of ``W[j, i] * delta[j]`` per lane, summed across lanes, requantised to
  the hidden-delta format and multiplied by the leaky-ReLU derivative of the
  slot's pre-activation.

Cycles: ``classes + sum_l words(l) + sum_{l>=1} passes(l) * n_in(l)`` beats
plus per-phase drains (operand registers, the MAC array, the two-level lane
sum, rounding, saturation and the derivative register); the exact count is
:attr:`.cycles.CycleModel.backward`.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..fixed import hdl_round_shift, hdl_saturate
from .activation import Activation
from .layout import TrainerConfig
from .mac_array import MacArray
from .ports import read_port, write_port
from .slots import slot_addressing
from .util import delay, tree_sum, weight_operands

__all__ = ["BackwardEngine"]


class BackwardEngine(wiring.Component):
    """One backward pass per ``start`` pulse.

    Ports
    -----
    start, slot, label : In
        Pulse ``start`` with the source ``slot`` and its ``label``.
    busy, done : Out
        ``busy`` from ``start`` to ``done`` (a one-cycle pulse at the end).
    sp_*, sx_*, sz{l}_*, w_* :
        Read ports of the slot's softmax output, input bytes, hidden
        pre-activations, and the weights used to propagate the error (word
        ``w_base(l) + word`` for layer ``l``, as in the forward engine).
    g_* :
        Gradient accumulators of all layers, ``max(plan.grad)`` bits per lane
        (a layer's value sign-extended from its own format), word
        ``w_base(l) + word``: word addresses only; the trainer maps reads to
        the live bank and writes to the shadow bank.
    """

    def __init__(self, cfg: TrainerConfig) -> None:
        self.cfg = cfg
        nx, plan = cfg.numerics, cfg.plan
        lanes = cfg.lanes
        members = {
            "start": In(1),
            "slot": In(range(cfg.slots)),
            "label": In(range(max(cfg.classes, 2))),
            "busy": Out(1),
            "done": Out(1),
        }
        members |= read_port("sp", cfg.slots * cfg.classes, nx.prob.shape)
        members |= read_port("sx", cfg.slots * cfg.n_in(0), unsigned(8))
        for layer in range(cfg.n_layers - 1):
            members |= read_port(
                f"sz{layer}",
                cfg.slots * cfg.passes(layer),
                data.ArrayLayout(nx.act.shape, lanes),
                copies=cfg.arch.sz_groups,
            )
        members |= read_port("w", cfg.total_words, data.ArrayLayout(nx.weight.shape, lanes))
        word = data.ArrayLayout(signed(max(fmt.width for fmt in plan.grad)), lanes)
        members |= read_port("g", cfg.total_words, word) | write_port("g", cfg.total_words, word)
        super().__init__(members)

    def elaborate(self, platform) -> Module:
        cfg, nx, plan = self.cfg, self.cfg.numerics, self.cfg.plan
        lanes, n_layers, classes = cfg.lanes, cfg.n_layers, cfg.classes
        m = Module()
        m.submodules.mac = mac = MacArray(
            lanes, broadcast=False, acc_width=cfg.backward_acc_width, output_registers=cfg.arch.mac_output_registers
        )
        m.submodules.act = act = Activation(1, plan, latency=1)
        m.d.comb += mac.o.ready.eq(1)
        # cycles from the issue of a beat (its stage-1 registers) to o.valid of its result
        lat = mac.latency + 3

        slot = Signal.like(self.slot)
        label = Signal.like(self.label)
        deltas = [
            Signal(data.ArrayLayout(plan.delta_fmt[layer].shape, cfg.passes(layer) * lanes), name=f"delta{layer}")
            for layer in range(n_layers)
        ]

        max_in = max(cfg.layers[:-1])
        # slot base addresses of the label-state memories, and the element index with the slot memories'
        # addresses (sx: base + element, sz: base + word) in registers
        bases, idx = slot_addressing(cfg)
        i, lane_i = idx.i, idx.lane
        # i at the end of the phase's walk (GRAD: the bias word, i == n_in; DELTA: the last input, i == n_in - 1),
        # kept in a register beside the index
        i_end = Signal()
        p = Signal(range(max(cfg.passes(lay) for lay in range(n_layers)) + 1))
        addr = Signal(range(cfg.total_words + 1))  # word in the shared weight/gradient layout
        out_i = Signal(range(max_in + 2))
        k = Signal(range(classes + 1))

        # issue-side beat description, one cycle before the MAC sees it
        s1_valid, s1_first, s1_last = Signal(), Signal(), Signal()
        s1_bias = Signal()
        s1_p = Signal.like(p)
        s1_lane = Signal.like(lane_i)
        s1_layer = Signal(range(n_layers))
        s1_grad = Signal()  # GRAD beat (else DELTA beat)
        m.d.sync += s1_valid.eq(0)

        # -- operands ----------------------------------------------------------
        # stage 1: memory data of the beat issued in the previous cycle, selected by layer, lane and pass
        sz_rdata = [getattr(self, f"sz{layer}_rdata") for layer in range(n_layers - 1)]
        z_sel = Signal(nx.act.shape)  # selected hidden pre-activation of the slot
        with m.Switch(s1_layer):
            for layer in range(1, n_layers):
                with m.Case(layer):
                    m.d.comb += z_sel.eq(sz_rdata[layer - 1][s1_lane])
        w_raw = self.w_rdata

        def select_delta(layer_sel: Value, p_sel: Value, name: str) -> Signal:
            """The delta word of pass ``p_sel`` of layer ``layer_sel``."""
            word = Signal(data.ArrayLayout(16, lanes), name=name)
            with m.Switch(layer_sel):
                for layer in range(n_layers):
                    with m.Case(layer):
                        dl = deltas[layer]
                        with m.Switch(p_sel):
                            for q in range(cfg.passes(layer)):
                                with m.Case(q):
                                    for lane in range(lanes):
                                        m.d.comb += word[lane].eq(dl[q * lanes + lane])
            return word

        # stage 2: registered raw operands (no path from a memory read through the activation into the MACs).
        # Without backward_operand_registers, the weights are read a cycle later (straight into the stage-3 operand
        # register) and the delta word is selected at stage 3 from the delta registers.
        s2_valid, s2_first, s2_last, s2_grad, s2_bias = Signal(), Signal(), Signal(), Signal(), Signal()
        s2_layer = Signal.like(s1_layer)
        s2_x = Signal(8)
        s2_z = Signal(nx.act.shape)
        stage2 = [
            s2_valid.eq(s1_valid),
            s2_first.eq(s1_first),
            s2_last.eq(s1_last),
            s2_grad.eq(s1_grad),
            s2_bias.eq(s1_bias),
            s2_layer.eq(s1_layer),
            s2_x.eq(self.sx_rdata),
            s2_z.eq(z_sel),
        ]
        if cfg.arch.backward_operand_registers:
            delta_word = select_delta(s1_layer, s1_p, "delta_word")
            s2_w = Signal.like(w_raw)
            s2_delta = Signal.like(delta_word)
            stage2 += [s2_w.eq(w_raw), s2_delta.eq(delta_word)]
        else:
            s2_w = w_raw
            s2_p = delay(m, s1_p, 1, "s2_p")
        m.d.sync += stage2
        # stage 2 -> 3: leaky ReLU of the layer input (registered inside the unit); weights requantised
        m.d.comb += act.z[0].eq(s2_z)
        stage3 = [
            (s2_valid, "valid"),
            (s2_first, "first"),
            (s2_last, "last"),
            (s2_grad, "grad"),
            (s2_bias, "bias"),
            (s2_layer, "layer"),
            (s2_x, "x"),
        ]
        if cfg.arch.backward_operand_registers:
            stage3.append((s2_delta, "delta"))
        else:
            stage3.append((s2_p, "p"))
        s3_valid, s3_first, s3_last, s3_grad, s3_bias, s3_layer, s3_x, s3_dsel = (
            delay(m, v, 1, f"s3_{name}") for v, name in stage3
        )
        # s3_dsel: the registered delta word, or (no backward_operand_registers) the pass whose word is selected here
        s3_delta = s3_dsel if cfg.arch.backward_operand_registers else select_delta(s3_layer, s3_dsel, "s3_delta")
        s3_w = weight_operands(m, s2_w, nx, lanes, "s3_w")
        # stage 3: the MAC beat
        grad_in = Signal(16)  # the broadcast input x_i of a GRAD beat
        with m.Switch(s3_layer):
            for layer in range(n_layers):
                with m.Case(layer):
                    one = Const(1 << plan.in_frac[layer], 16)
                    x = s3_x if layer == 0 else act.a[0]
                    with m.If(s3_bias):
                        m.d.comb += grad_in.eq(one)
                    with m.Else():
                        m.d.comb += grad_in.eq(x)
        m.d.comb += [
            mac.i.valid.eq(s3_valid),
            mac.i.payload.first.eq(s3_first),
            mac.i.payload.last.eq(s3_last),
        ]
        for lane in range(lanes):
            with m.If(s3_grad):
                m.d.comb += [mac.i.payload.a[lane].eq(s3_delta[lane]), mac.i.payload.b[lane].eq(grad_in)]
            with m.Else():
                m.d.comb += [mac.i.payload.a[lane].eq(s3_w[lane]), mac.i.payload.b[lane].eq(s3_delta[lane])]

        # -- gradient write-back: G read issued LATENCY cycles after the beat ------
        g_issue = Signal()
        g_addr = Signal.like(addr)
        g_layer = Signal(range(n_layers))
        g_valid_d = delay(m, g_issue, lat, "g_valid")
        g_tag = delay(m, Cat(g_addr, g_layer), lat, "g_tag", ram_min=cfg.arch.delay_ram_min)
        g_addr_d, g_layer_d = g_tag[: len(g_addr)], g_tag[len(g_addr) :]
        # the G word of the layer and the MAC result are registered, added (in the layer's format) into a
        # register, and written from it a cycle later: no adder between the flip-flops and the block RAMs (the
        # backward pass ends three cycles after the last write, GDRAIN). Without backward_gradient_registers, the
        # word and the result are added as they arrive, and the write is a cycle earlier.
        if cfg.arch.backward_gradient_registers:
            g_valid_w = delay(m, g_valid_d, 3, "g_valid_w")
            g_addr_w = delay(m, g_addr_d, 3, "g_addr_w")
            g_layer_w = delay(m, g_layer_d, 2, "g_layer_w")
            g_width = max(fmt.width for fmt in plan.grad)
            g_old = [Signal(signed(g_width), name=f"g_old{lane}", reset_less=True) for lane in range(lanes)]
            g_new = [Signal(signed(mac.acc_width), name=f"g_new{lane}", reset_less=True) for lane in range(lanes)]
            m.d.sync += [g_new[lane].eq(mac.o.payload.value[lane]) for lane in range(lanes)]
            m.d.sync += [g_old[lane].eq(self.g_rdata[lane]) for lane in range(lanes)]
        else:
            g_valid_w = delay(m, g_valid_d, 2, "g_valid_w")
            g_addr_w = delay(m, g_addr_d, 2, "g_addr_w")
            g_layer_w = delay(m, g_layer_d, 1, "g_layer_w")
            g_old = [self.g_rdata[lane] for lane in range(lanes)]
            g_new = [mac.o.payload.value[lane] for lane in range(lanes)]
        m.d.comb += [self.g_raddr.eq(g_addr_d), self.g_waddr.eq(g_addr_w), self.g_wen.eq(g_valid_w)]
        g_wdata = Signal.like(self.g_wdata, name="g_wdata_r")
        m.d.comb += self.g_wdata.eq(g_wdata)
        for lane in range(lanes):
            g_sum = g_old[lane] + g_new[lane]
            # in the layer's own format (which holds every sum: exact accumulators), sign-extended
            with m.Switch(g_layer_w):
                for layer in range(n_layers):
                    with m.Case(layer):
                        m.d.sync += g_wdata[lane].eq(g_sum[: plan.grad[layer].width].as_signed())

        # -- delta results: lane sum, requantise, derivative ------------------------
        # Stages after the MAC output: P (lane sums of four), S (lane sum), R (rounded), Q (saturated),
        # D (derivative, registered inside the activation unit) -> delta register. No more than two adders
        # between registers. The beat's tag (valid, layer, input index, pre-activation) follows by delays.
        d_layer_d = delay(m, s1_layer, lat, "d_layer")
        d_grad_d = delay(m, s1_grad, lat, "d_grad")
        tag_valid = mac.o.valid & ~d_grad_d
        with m.If(tag_valid):
            m.d.sync += out_i.eq(out_i + 1)
        sum_valid = delay(m, tag_valid, 2, "sum_valid")
        sum_layer = delay(m, d_layer_d, 2, "sum_layer")
        sum_idx = delay(m, out_i, 2, "sum_idx")

        values = [mac.o.payload.value[lane] for lane in range(lanes)]
        parts = [Signal(signed(mac.acc_width + 3), name=f"lane_part{n}") for n in range(0, lanes, 4)]
        lane_sum = Signal(signed(mac.acc_width + lanes.bit_length()))
        m.d.sync += [
            *(part.eq(tree_sum(values[4 * n : 4 * n + 4])) for n, part in enumerate(parts)),
            lane_sum.eq(tree_sum(parts)),
        ]
        # requantise into the hidden-delta format: rounded (per layer) into one register, saturated into the next
        rounded = Signal(signed(len(lane_sum) + 1))
        with m.Switch(sum_layer):
            for layer in range(1, n_layers):
                with m.Case(layer):
                    frac = plan.delta_fmt[layer].frac_bits + nx.weight_operand_frac
                    m.d.comb += rounded.eq(hdl_round_shift(lane_sum, frac - nx.delta.frac_bits))
        rnd = Signal.like(rounded)
        q_s = Signal(nx.delta.shape)
        m.d.sync += [rnd.eq(rounded), q_s.eq(hdl_saturate(rnd, nx.delta))]
        # the derivative at the beat's pre-activation, then the delta register
        q_z = delay(m, z_sel, lat + 4, "q_z", ram_min=cfg.arch.delay_ram_min)
        m.d.comb += [act.delta_in[0].eq(q_s), act.delta_z[0].eq(q_z)]
        r_valid = delay(m, sum_valid, 3, "r_valid")
        r_layer = delay(m, sum_layer, 3, "r_layer")
        r_idx = delay(m, sum_idx, 3, "r_idx")
        with m.If(r_valid):
            with m.Switch(r_layer):
                for layer in range(1, n_layers):
                    with m.Case(layer):
                        m.d.sync += deltas[layer - 1][r_idx].eq(act.delta_out[0])

        # -- sequencer ----------------------------------------------------------------
        last = n_layers - 1
        out_delta = nx.out_delta
        m.d.comb += [self.done.eq(0), self.sp_raddr.eq(bases["sp"] + k)]
        # read addresses straight from the counters, in every state (no state decoding in front of the
        # memories; a read outside GRAD/DELTA is never used)
        m.d.comb += self.sx_raddr.eq(idx.addr["sx"])
        if cfg.arch.backward_operand_registers:
            m.d.comb += self.w_raddr.eq(addr)
        else:  # the weights a cycle later, read straight into the stage-3 operand register
            m.d.comb += self.w_raddr.eq(delay(m, addr, 1, "w_raddr"))
        for layer in range(n_layers - 1):
            m.d.comb += [getattr(self, f"sz{layer}_raddr")[n].eq(reg) for n, reg in enumerate(idx.copies[f"sz{layer}"])]
        # LOAD: p_k read (cycle 1), registered (cycle 2), delta_k = saturate(p_k - onehot) written (cycle 3)
        p_label = Signal(range(classes + 1))
        p_valid = Signal()
        m.d.sync += [p_valid.eq(0), p_label.eq(k)]
        p_valid2, is_label2 = Signal(), Signal()
        sel2 = Signal(classes)  # one-hot write select of delta_k
        p_k = Signal(nx.prob.shape)
        m.d.sync += [
            p_valid2.eq(p_valid),
            is_label2.eq(label == p_label),
            sel2.eq(Const(1, classes) << p_label),
            p_k.eq(self.sp_rdata),
        ]
        # saturate(p_k - onehot) without an adder: softmax outputs are <= 1.0 (e_k <= 2**f, r <= 2**(2f) / S,
        # S >= e_k), so p_k - 1.0 keeps the f fraction bits and is negative unless p_k == 1.0, and p_k alone
        # only exceeds out_delta (when it has no integer bit) at exactly 1.0
        f = nx.prob.frac_bits
        minus_one = Cat(p_k[:f], (~p_k[f]).replicate(out_delta.width - f)).as_signed()
        as_delta = Mux(p_k[f], out_delta.max, p_k[:f]) if out_delta.int_bits == 0 else p_k[: f + 1]
        for j in range(classes):
            with m.If(p_valid2 & sel2[j]):
                m.d.sync += deltas[last][j].eq(Mux(is_label2, minus_one, as_delta))

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    bases.load(m, self.slot)
                    m.d.sync += [slot.eq(self.slot), label.eq(self.label), k.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                # classes reads, then one more cycle for the last delta to land before GRAD reads it
                m.d.comb += self.busy.eq(1)
                m.d.sync += [p_valid.eq(k < classes), k.eq(k + 1)]
                with m.If(k == classes):
                    idx.restart(m)
                    m.d.sync += [p.eq(0), addr.eq(cfg.w_base(last)), i_end.eq(0)]
                    m.next = f"GRAD{last}"
            for layer in range(last, -1, -1):
                n_in, passes = cfg.n_in(layer), cfg.passes(layer)
                with m.State(f"GRAD{layer}"):
                    m.d.comb += self.busy.eq(1)
                    m.d.sync += [
                        s1_valid.eq(1),
                        s1_first.eq(1),
                        s1_last.eq(1),
                        s1_bias.eq(i_end),
                        s1_p.eq(p),
                        s1_lane.eq(lane_i),
                        s1_layer.eq(layer),
                        s1_grad.eq(1),
                    ]
                    m.d.comb += [g_issue.eq(1), g_addr.eq(addr), g_layer.eq(layer)]
                    m.d.sync += addr.eq(addr + 1)
                    with m.If(i_end):
                        idx.restart(m)
                        m.d.sync += i_end.eq(0)
                        m.d.sync += p.eq(p + 1)
                        with m.If(p == passes - 1):
                            # G writes of this layer drain while the next phase runs
                            m.d.sync += [addr.eq(cfg.w_base(layer)), out_i.eq(0), p.eq(0), i_end.eq(n_in == 1)]
                            m.next = f"DELTA{layer}" if layer else "GDRAIN"
                    with m.Else():
                        idx.step(m)
                        m.d.sync += i_end.eq(i == n_in - 1)
                if layer == 0:
                    with m.State("GDRAIN"):
                        m.d.comb += self.busy.eq(1)
                        # the last G write happens lat + 3 cycles after the last issue, in the cycle that moves to DONE
                        drain = Signal(range(lat + 4), name="gdrain")
                        m.d.sync += drain.eq(drain + 1)
                        with m.If(drain == lat + 2):
                            m.d.sync += drain.eq(0)
                            m.next = "DONE"
                if layer:
                    with m.State(f"DELTA{layer}"):
                        m.d.comb += self.busy.eq(1)
                        m.d.sync += [
                            s1_valid.eq(1),
                            s1_first.eq(p == 0),
                            s1_last.eq(p == passes - 1),
                            s1_bias.eq(0),
                            s1_p.eq(p),
                            s1_lane.eq(lane_i),
                            s1_layer.eq(layer),
                            s1_grad.eq(0),
                        ]
                        with m.If(p == passes - 1):
                            idx.step(m)
                            m.d.sync += [
                                p.eq(0),
                                addr.eq(i + (cfg.w_base(layer) + 1)),
                                i_end.eq((i == n_in - 2) if n_in >= 2 else 0),
                            ]
                            with m.If(i_end):
                                m.next = f"DDRAIN{layer}"
                        with m.Else():
                            m.d.sync += [p.eq(p + 1), addr.eq(addr + n_in + 1)]
                    with m.State(f"DDRAIN{layer}"):
                        m.d.comb += self.busy.eq(1)
                        with m.If(r_valid & (r_idx == n_in - 1)):
                            idx.restart(m)
                            m.d.sync += [p.eq(0), addr.eq(cfg.w_base(layer - 1)), i_end.eq(0)]
                            m.next = f"GRAD{layer - 1}"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
                m.next = "IDLE"
        return m
