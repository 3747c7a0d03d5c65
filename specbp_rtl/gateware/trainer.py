"""The trainer: the whole speculative-backpropagation datapath in hardware.

:class:`Trainer` holds the weight/bias memory and the gradient memory (two
accumulator banks; both memories hold every layer, layer ``l`` from word
``cfg.w_base(l)``), the label-state memory with ping-pong slots, a
:class:`~.forward.ForwardEngine`, a :class:`~.backward.BackwardEngine`, the
:class:`~.comparator.Comparator`, one :class:`~.update.UpdateUnit` shared by the layers
(every lane of a word at once, or :attr:`~.microarch.Microarchitecture.update_lanes` at a time),
the performance counters (registers, or a :class:`~.counters.CounterBank`) and the
:class:`~.host.HostBus`. Its numpy model is
:class:`specbp_rtl.model.golden.FixedEngine` driven by
:class:`specbp_rtl.model.speculation.SpeculativeTrainer`: after any number of
samples the weights are bit-identical, and so are the step counters.

Speculative-update unit (the control FSM below), per training step with label
``L``:

* the current sample's forward pass writes slot ``new = 2L + !cur[L]``;
* if speculation is on and ``L`` was seen, the backward engine starts at the
  same time from slot ``old = 2L + cur[L]`` (the previous sample with label
  ``L``) through the current weights, writing ``G + g`` into the shadow bank;
* the comparator streams ``(p_old[k], p_new[k])`` as the softmax produces
  ``p_new``; a **hit** commits by swapping the gradient banks (one cycle), a
  **miss** reruns the backward engine from slot ``new`` and then swaps;
* without speculation (first sighting, or ``SPEC_EN = 0``) the backward pass
  runs from slot ``new`` after the forward pass;
* ``cur[L]`` flips and ``seen[L]`` is set (never cleared);
* after step ``i`` with ``i % batch == 0`` (``i`` restarts at a sample flagged
  ``epoch_start``), the layers are updated in turn, word by word:
  ``W -= lr * clip(G_live)`` and ``G_live = 0``.

Ports
-----
sample : In(stream)
    ``pixel`` bytes of one sample, ``n_in(0)`` beats; ``label``, ``infer`` and
    ``epoch_start`` are read from the first beat.
result : Out(stream)
    One beat per sample: ``prediction`` (first maximal logit), ``kind``
    (:class:`~specbp_rtl.steps.StepKind` code).
host : In(HostBus)
    Registers, counters and weights (:mod:`~specbp_rtl.gateware.host`).
counters : Out
    The performance counters as a struct (also readable over ``host``). Absent
    when the event counters are in a counter bank
    (:attr:`~.microarch.Microarchitecture.counter_memory`): read them over ``host``,
    or with :meth:`Trainer.peek_counters` in a simulation.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..model.golden import FixedEngine
from ..steps import StepKind
from .backward import BackwardEngine
from .comparator import Comparator, Metric
from .counters import CounterBank
from .forward import ForwardEngine
from .host import (
    COUNTERS,
    REG_COUNTERS,
    REG_LANES,
    REG_METRIC,
    REG_SPEC_EN,
    REG_STATUS,
    REG_THRESHOLD,
    SUM_COUNTERS,
    HostBus,
)
from .layout import COUNTER_MEMORIES, TrainerConfig
from .update import UpdateUnit
from .util import SlotBases, delay, next_value

__all__ = ["Trainer", "sample_layout", "result_layout"]


def sample_layout(cfg: TrainerConfig) -> data.StructLayout:
    return data.StructLayout(
        {
            "pixel": unsigned(8),
            "label": range(max(cfg.classes, 2)),
            "infer": 1,
            "epoch_start": 1,
        }
    )


def result_layout(cfg: TrainerConfig) -> data.StructLayout:
    return data.StructLayout({"prediction": range(max(cfg.classes, 2)), "kind": StepKind, "infer": 1})


class Trainer(wiring.Component):
    """Speculative-backpropagation trainer; see the module docstring.

    Parameters
    ----------
    cfg : TrainerConfig
        Layers, lanes, formats, hyper-parameters and register reset values.
    init : list of (W, b) or None
        Initial master weights (integers, ``(out, in)`` and ``(out,)``);
        default: the paper's initialisation for ``cfg.train.seed``, exactly as
        the golden model draws it.
    """

    def __init__(self, cfg: TrainerConfig, init: list | None = None) -> None:
        self.cfg = cfg
        if init is None:
            init = FixedEngine(cfg.train, cfg.numerics).params
        self.init = init
        members = {
            "sample": In(stream.Signature(sample_layout(cfg))),
            "result": Out(stream.Signature(result_layout(cfg))),
            "host": In(HostBus()),
            "counters": Out(data.StructLayout({name: unsigned(cfg.arch.counter_width) for name in COUNTERS})),
            "busy": Out(1),
            "idle": Out(1),
        }
        if cfg.arch.counter_memory is not None:
            del members["counters"]
        super().__init__(members)
        self.counter_bank: CounterBank | None = None  # set by elaborate()

    def peek_counters(self, ctx) -> dict[str, int]:
        """The performance counters, in a simulator testbench (``ctx``) of an elaborated trainer."""
        if self.counter_bank is None:
            return {name: int(ctx.get(self.counters[name])) for name in COUNTERS}
        values = dict(zip(COUNTERS, self.counter_bank.peek(ctx)))
        values.update({name: int(ctx.get(self._sum_counters[name])) for name in SUM_COUNTERS})
        return values

    def elaborate(self, platform) -> Module:
        cfg, nx, plan = self.cfg, self.cfg.numerics, self.cfg.plan
        lanes, n_layers, classes = cfg.lanes, cfg.n_layers, cfg.classes
        m = Module()
        m.submodules.fwd = fwd = ForwardEngine(cfg)
        m.submodules.bwd = bwd = BackwardEngine(cfg)
        m.submodules.cmp = cmp = Comparator(classes, nx)
        m.submodules.update = upd = UpdateUnit.for_plan(cfg.update_width, plan, cfg.arch.delay_ram_min)

        # -- registers -------------------------------------------------------------
        threshold = Signal(32, init=plan.threshold_int)
        metric = Signal(Metric, init=Metric.of_run(cfg.train.metric))
        spec_en = Signal(init=int(cfg.train.speculative))
        pipe_en = Signal(init=int(cfg.train.pipeline))  # the pipelined (non-speculative) baseline
        pending = Signal()  # pipelined: the previous training sample's backward pass is owed
        p_slot = Signal(range(cfg.slots))
        p_label = Signal(range(classes))
        live = Signal()  # live gradient bank
        infer = Signal()  # the current sample is an inference
        seen = Signal(classes)
        cur = Signal(classes)  # ping-pong pointer per label
        phase = Signal(range(cfg.train.batch + 1))  # step index within the batch
        m.d.comb += [cmp.threshold.eq(threshold), cmp.metric.eq(metric)]

        # -- memories ----------------------------------------------------------------
        # one weight memory and one gradient memory (two banks of total_words) for all layers, layer l at
        # word w_base(l): the engines, the update unit and the host see no per-layer multiplexers
        total = cfg.total_words
        w_word = data.ArrayLayout(nx.weight.shape, lanes)
        init_words = [
            list(map(int, row)) for layer in range(n_layers) for row in cfg.to_words(layer, *self.init[layer])
        ]
        m.submodules.w = wmem = Memory(shape=w_word, depth=total, init=init_words)
        wr0, wr1, wwr = wmem.read_port(), wmem.read_port(), wmem.write_port()  # wr0: forward/update/host
        g_word = data.ArrayLayout(signed(max(fmt.width for fmt in plan.grad)), lanes)
        # bank b at word b << bank_bits: the bank is the top address bit, no adder in the address path
        bank_bits = max(1, (total - 1).bit_length())
        m.submodules.g = gmem = Memory(shape=g_word, depth=2 << bank_bits, init=[])
        grd, gwr = gmem.read_port(), gmem.write_port()
        # slot input bytes; the inference slot's are only read back by a first layer of several passes, so
        # otherwise it has none (784 inputs: 20 slots fit 16K x 1 block RAMs, 21 need a cascade multiplexer)
        sx_scratch = cfg.passes(0) > 1
        sx = Memory(shape=unsigned(8), depth=(cfg.slots if sx_scratch else cfg.scratch_slot) * cfg.n_in(0), init=[])
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
                mem = Memory(
                    shape=data.ArrayLayout(nx.act.shape, per_group), depth=cfg.slots * cfg.passes(layer), init=[]
                )
                m.submodules[f"sz{layer}" if groups == 1 else f"sz{layer}_g{n}"] = mem
                sz_w[layer].append(mem.write_port())
                sz_r0[layer].append(mem.read_port())
                sz_r1[layer].append(mem.read_port())
        sp = Memory(shape=nx.prob.shape, depth=cfg.slots * classes, init=[])
        m.submodules.sp = sp
        sp_w, sp_r0, sp_r1 = sp.write_port(), sp.read_port(), sp.read_port()

        # -- engine wiring -------------------------------------------------------------
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

        # -- sample stream into the forward engine --------------------------------------
        m.d.comb += [
            fwd.pixel.valid.eq(self.sample.valid),
            fwd.pixel.payload.eq(self.sample.payload.pixel),
            self.sample.ready.eq(fwd.pixel.ready),
        ]

        # -- comparator: p_old[k] read as p_new[k] comes out of the softmax -------------
        old = Signal(range(cfg.slots))
        new = Signal(range(cfg.slots))
        speculating = Signal()
        piping = Signal()  # this step runs in the pipelined mode
        overlap = Signal()  # pipelined: the backward engine runs the previous sample during this forward pass
        old_base = SlotBases({"sp": classes}, cfg.slots)
        m.d.comb += sp_r0.addr.eq(old_base["sp"] + fwd.prob_index)
        # p_old[k] is read from the slot while the softmax emits p_new[k]; both are registered once more
        # before the comparator (no path from a memory read into its subtractor)
        prob_d = delay(m, fwd.prob_data, 2, "prob")
        prob_valid_d = delay(m, fwd.prob_valid & speculating, 2, "prob_valid")
        m.d.comb += [
            cmp.i.valid.eq(prob_valid_d),
            cmp.i.payload.stored.eq(delay(m, sp_r0.data, 1, "p_old")),
            cmp.i.payload.current.eq(prob_d),
            cmp.o.ready.eq(1),
        ]

        # -- counters ----------------------------------------------------------------------
        # registers, or (counter_memory) the event counters in a CounterBank at their register index and the
        # three step-cycle sums in registers
        bank = None
        if cfg.arch.counter_memory is not None:
            m.submodules.counter_bank = bank = CounterBank(
                len(COUNTERS), cfg.arch.counter_width, {"ram_style": COUNTER_MEMORIES[cfg.arch.counter_memory]}
            )
        self.counter_bank = bank
        ctr = {
            name: Signal(cfg.arch.counter_width, name=f"ctr_{name}")
            for name in COUNTERS
            if bank is None or name in SUM_COUNTERS
        }
        self._sum_counters = {name: ctr[name] for name in SUM_COUNTERS}
        if bank is None:
            for name in COUNTERS:
                m.d.comb += self.counters[name].eq(ctr[name])

        def count(name: str) -> None:
            """One event of counter ``name`` in this cycle (under the enclosing conditions)."""
            if bank is None:
                m.d.sync += ctr[name].eq(ctr[name] + 1)
            else:
                m.d.comb += bank.inc[COUNTERS.index(name)].eq(1)

        count("cycles")
        with m.If(fwd.busy):
            count("forward_cycles")
        with m.If(bwd.busy):
            count("backward_cycles")

        # -- control: the speculative-update unit -------------------------------------------
        label = Signal.like(self.sample.payload.label)
        kind = Signal(StepKind)
        f_done, b_done, c_done, hit = Signal(), Signal(), Signal(), Signal()
        update_due = Signal()
        step_cycles = Signal(cfg.arch.counter_width)
        prediction = Signal.like(fwd.prediction)
        with m.If(fwd.done):
            m.d.sync += [f_done.eq(1), prediction.eq(fwd.prediction)]
        with m.If(bwd.done):
            m.d.sync += b_done.eq(1)
        with m.If(cmp.o.valid):
            m.d.sync += [c_done.eq(1), hit.eq(cmp.o.payload.hit)]

        upd_addr = Signal(range(cfg.total_words + 1))
        upd_addr_next = next_value(m, upd_addr)  # for the registered weight-memory address
        upd_layer = Signal(range(max(n_layers, 2)))
        upd_active = Signal()
        # lane group of the word going into the update unit (update_beats groups per word, one per cycle)
        beats = cfg.update_beats
        upd_part = Signal(range(beats))
        upd_word_done = Signal()  # the last (or only) group of the word: the next cycle reads the next word
        m.d.comb += upd_word_done.eq(upd_part == beats - 1)
        upd_lat = upd.LATENCY + 1
        upd_drain = Signal(range(upd_lat + 4))

        payload = self.sample.payload
        in_step = Signal()
        m.d.comb += self.busy.eq(in_step)
        with m.If(in_step):
            m.d.sync += step_cycles.eq(step_cycles + 1)

        # registered state flags for the memory-port selects (no state decoding in front of the memories'
        # address and data multiplexers): every transition goes through goto()
        idle_sel = Signal(init=1)
        upd_sel = Signal()
        upd_sel_next = next_value(m, upd_sel)  # for the registered weight-memory address

        def goto(state: str) -> None:
            m.next = state
            m.d.sync += idle_sel.eq(state == "IDLE")
            m.d.comb += upd_sel_next.eq(state == "UPDATE")

        def finish_step(kind_value):
            m.d.sync += kind.eq(kind_value)
            goto("FINISH")

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.sample.valid):
                    lab = payload.label
                    is_seen = seen.bit_select(lab, 1)
                    pointer = cur.bit_select(lab, 1)
                    pipe = pipe_en & ~payload.infer
                    spec = spec_en & ~pipe_en & is_seen & ~payload.infer
                    new_slot = Mux(payload.infer, cfg.scratch_slot, (lab << 1) | ~pointer)
                    old_slot = (lab << 1) | pointer
                    idx = Mux(payload.epoch_start, 0, phase)
                    old_base.load(m, old_slot)
                    m.d.sync += [
                        label.eq(lab),
                        infer.eq(payload.infer),
                        new.eq(new_slot),
                        old.eq(old_slot),
                        speculating.eq(spec),
                        piping.eq(pipe),
                        overlap.eq(pipe & pending),
                        f_done.eq(0),
                        b_done.eq(0),
                        c_done.eq(0),
                        hit.eq(0),
                        step_cycles.eq(1),
                        update_due.eq(~payload.infer & (idx == 0)),
                    ]
                    with m.If(~payload.infer):
                        m.d.sync += phase.eq(Mux(idx == cfg.train.batch - 1, 0, idx + 1))
                    m.d.comb += [fwd.start.eq(1), fwd.slot.eq(new_slot)]
                    m.d.comb += [
                        bwd.start.eq(spec | (pipe & pending)),
                        bwd.slot.eq(Mux(pipe, p_slot, old_slot)),
                        bwd.label.eq(Mux(pipe, p_label, lab)),
                    ]
                    m.d.sync += in_step.eq(1)
                    goto("RUN")
            with m.State("RUN"):
                with m.If(infer):
                    with m.If(f_done):
                        finish_step(StepKind.SEQUENTIAL)
                with m.Elif(piping):
                    # the previous sample's gradient (if owed) commits with this forward pass; this sample's
                    # backward pass runs with the next forward pass, or now when the update is due
                    with m.If(f_done & (b_done | ~overlap)):
                        with m.If(overlap):
                            m.d.sync += live.eq(~live)
                        m.d.sync += kind.eq(StepKind.SEQUENTIAL)
                        with m.If(update_due):
                            m.d.sync += pending.eq(0)
                            goto("FLUSH")
                        with m.Else():
                            m.d.sync += [pending.eq(1), p_slot.eq(new), p_label.eq(label)]
                            goto("FINISH")
                with m.Elif(speculating):
                    with m.If(f_done & b_done & c_done):
                        with m.If(hit):
                            m.d.sync += live.eq(~live)
                            finish_step(StepKind.HIT)
                        with m.Else():
                            m.d.comb += [bwd.start.eq(1), bwd.slot.eq(new), bwd.label.eq(label)]
                            m.d.sync += [b_done.eq(0), kind.eq(StepKind.MISS)]
                            goto("RECOMPUTE")
                with m.Elif(f_done):
                    m.d.comb += [bwd.start.eq(1), bwd.slot.eq(new), bwd.label.eq(label)]
                    with m.If(spec_en):
                        m.d.sync += kind.eq(StepKind.FIRST_SIGHTING)
                    with m.Else():
                        m.d.sync += kind.eq(StepKind.SEQUENTIAL)
                    goto("RECOMPUTE")
            with m.State("FLUSH"):
                m.d.comb += [bwd.start.eq(1), bwd.slot.eq(new), bwd.label.eq(label)]
                m.d.sync += b_done.eq(0)
                goto("RECOMPUTE")
            with m.State("RECOMPUTE"):
                with m.If(b_done):
                    m.d.sync += live.eq(~live)
                    goto("FINISH")
            with m.State("FINISH"):
                m.d.comb += [
                    self.result.valid.eq(1),
                    self.result.payload.prediction.eq(prediction),
                    self.result.payload.kind.eq(kind),
                    self.result.payload.infer.eq(infer),
                ]
                with m.If(self.result.ready):
                    m.d.sync += in_step.eq(0)
                    with m.If(infer):
                        count("inferences")
                        goto("IDLE")
                    with m.Else():
                        m.d.sync += [
                            cur.bit_select(label, 1).eq(~cur.bit_select(label, 1)),
                            seen.bit_select(label, 1).eq(1),
                        ]
                        count("steps")
                        with m.If(overlap):
                            count("overlapped")
                        with m.Switch(kind):
                            with m.Case(StepKind.SEQUENTIAL):
                                count("sequential")
                                m.d.sync += ctr["sequential_cycles"].eq(ctr["sequential_cycles"] + step_cycles)
                            with m.Case(StepKind.FIRST_SIGHTING):
                                count("first_sightings")
                                m.d.sync += ctr["sequential_cycles"].eq(ctr["sequential_cycles"] + step_cycles)
                            with m.Case(StepKind.HIT):
                                count("hits")
                                m.d.sync += ctr["hit_cycles"].eq(ctr["hit_cycles"] + step_cycles)
                            with m.Case(StepKind.MISS):
                                count("misses")
                                m.d.sync += ctr["miss_cycles"].eq(ctr["miss_cycles"] + step_cycles)
                        with m.If(update_due):
                            m.d.sync += [upd_layer.eq(0), upd_active.eq(1), upd_drain.eq(0), upd_part.eq(0)]
                            m.d.comb += upd_addr_next.eq(0)
                            goto("UPDATE")
                        with m.Else():
                            goto("IDLE")
            with m.State("UPDATE"):
                count("update_cycles")
                with m.If(upd_active):
                    # every word of the shared layout in order through the one update unit; upd_layer
                    # selects the unit's per-layer clip and rounding
                    if beats > 1:
                        m.d.sync += upd_part.eq(Mux(upd_word_done, 0, upd_part + 1))
                    with m.If(upd_word_done):
                        m.d.comb += upd_addr_next.eq(upd_addr + 1)
                    with m.Switch(upd_layer):
                        for layer in range(n_layers):
                            with m.Case(layer):
                                with m.If((upd_addr == cfg.w_base(layer + 1) - 1) & upd_word_done):
                                    if layer == n_layers - 1:
                                        m.d.sync += upd_active.eq(0)
                                    else:
                                        m.d.sync += upd_layer.eq(layer + 1)
                with m.Else():
                    m.d.sync += upd_drain.eq(upd_drain + 1)
                    with m.If(upd_drain == upd_lat + 2):
                        count("updates")
                        goto("IDLE")
        fsm_update, fsm_idle = upd_sel, idle_sel
        m.d.comb += self.idle.eq(fsm_idle)
        self.weight_memory = wmem  # for simulators that peek at the weights (layer l at word cfg.w_base(l))

        # -- update sequencer datapath ----------------------------------------------------
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

        # -- host bus ----------------------------------------------------------------------
        host = self.host
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
        fwd_w_addr = (
            fwd.w_raddr_next if cfg.arch.forward_weight_register else delay(m, fwd.w_raddr_next, 1, "fwd_w_addr")
        )
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
        if bank is not None:
            # the bank answers its counters' reads (the host waits for rvalid, one read at a time)
            b_half = Signal()
            m.d.comb += [bank.read.valid.eq(a_bank), bank.read.payload.eq(a_ctr), bank.value.ready.eq(1)]
            with m.If(a_bank):
                m.d.sync += b_half.eq(a_addr.low[0])
            with m.If(bank.value.valid):
                value = bank.value.payload
                m.d.sync += [host.rvalid.eq(1), host.rdata.eq(Mux(b_half, value[32:], value[:32]))]
        return m
