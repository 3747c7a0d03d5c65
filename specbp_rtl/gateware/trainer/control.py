"""Speculation control of the trainer: its run-time registers, the comparator's feed and the step FSM.

:func:`control_fsm` is the speculative-update unit of the module docstring of
:mod:`specbp_rtl.gateware.trainer`: per training step it starts the forward
pass, and the backward pass of the previous same-label sample when speculation
is on, commits a hit by swapping the gradient banks, reruns the backward pass
on a miss, and runs the SGD update after every ``batch`` steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from amaranth.hdl import Mux, Signal

from ...steps import StepKind
from ..comparator import Metric
from ..util import SlotBases, delay, next_value
from .parts import Parts

if TYPE_CHECKING:
    from . import Trainer

__all__ = [
    "speculation_registers",
    "feed_engine_and_comparator",
    "control_signals",
    "control_fsm",
    "finish_and_update_states",
]


def speculation_registers(trainer: Trainer, t: Parts) -> None:
    """The run-time registers (THRESHOLD, METRIC, SPEC_EN and the pipelined mode) and the speculation
    state: the live gradient bank, the per-label ``seen`` flags and ping-pong pointers, the batch phase."""
    cfg, classes, cmp, m, plan = t.cfg, t.classes, t.cmp, t.m, t.plan
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
    t.add(infer=infer, cur=cur, live=live, p_label=p_label, p_slot=p_slot, pending=pending, phase=phase)
    t.add(pipe_en=pipe_en, seen=seen, spec_en=spec_en, metric=metric, threshold=threshold)


def feed_engine_and_comparator(trainer: Trainer, t: Parts) -> None:
    """The sample stream into the forward engine; the step's slot and mode registers (``old``, ``new``,
    ``speculating``, ``piping``, ``overlap``, which the FSM loads); the comparator fed ``p_old[k]``, read
    from the previous same-label slot, as the softmax emits ``p_new[k]``."""
    cfg, classes, cmp, fwd, m, sp_r0 = t.cfg, t.classes, t.cmp, t.fwd, t.m, t.sp_r0
    m.d.comb += [
        fwd.pixel.valid.eq(trainer.sample.valid),
        fwd.pixel.payload.eq(trainer.sample.payload.pixel),
        trainer.sample.ready.eq(fwd.pixel.ready),
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
    t.add(new=new, old=old, old_base=old_base, overlap=overlap, piping=piping, speculating=speculating)


def control_signals(trainer: Trainer, t: Parts) -> None:
    """The step's completion flags and result registers, and the update sequencer's address, layer and beat
    registers."""
    bwd, cfg, cmp, fwd, m, n_layers, upd = t.bwd, t.cfg, t.cmp, t.fwd, t.m, t.n_layers, t.upd
    label = Signal.like(trainer.sample.payload.label)
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

    payload = trainer.sample.payload
    in_step = Signal()
    m.d.comb += trainer.busy.eq(in_step)
    with m.If(in_step):
        m.d.sync += step_cycles.eq(step_cycles + 1)
    t.add(b_done=b_done, beats=beats, c_done=c_done, f_done=f_done, hit=hit, in_step=in_step, kind=kind)
    t.add(label=label, payload=payload, prediction=prediction, step_cycles=step_cycles, upd_active=upd_active)
    t.add(upd_addr=upd_addr, upd_addr_next=upd_addr_next, upd_drain=upd_drain, upd_lat=upd_lat, upd_layer=upd_layer)
    t.add(upd_part=upd_part, upd_word_done=upd_word_done, update_due=update_due)


def control_fsm(trainer: Trainer, t: Parts) -> None:
    """The speculative-update unit: one training step (forward, speculative or sequential backward,
    hit or miss) and the SGD update after every ``batch`` steps, as a state machine."""
    b_done, bwd, c_done, cfg, cur, f_done, fwd = t.b_done, t.bwd, t.c_done, t.cfg, t.cur, t.f_done, t.fwd
    hit, in_step, infer, kind, label, live, m, new = t.hit, t.in_step, t.infer, t.kind, t.label, t.live, t.m, t.new
    old, old_base, overlap, p_label, p_slot, payload = t.old, t.old_base, t.overlap, t.p_label, t.p_slot, t.payload
    pending, phase, pipe_en, piping, seen, spec_en = t.pending, t.phase, t.pipe_en, t.piping, t.seen, t.spec_en
    speculating, step_cycles, update_due = t.speculating, t.step_cycles, t.update_due

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
            with m.If(trainer.sample.valid):
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
        finish_and_update_states(trainer, t, goto)
    fsm_update, fsm_idle = upd_sel, idle_sel
    m.d.comb += trainer.idle.eq(fsm_idle)
    t.add(fsm_update=fsm_update, fsm_idle=fsm_idle, upd_sel_next=upd_sel_next)


def finish_and_update_states(trainer: Trainer, t: Parts, goto: Callable[[str], None]) -> None:
    """The step FSM's last states (inside its ``with m.FSM()``): FINISH hands the result beat out and counts
    the step by kind; UPDATE runs every weight word through the update unit, then drains it."""
    beats, cfg, count, ctr, cur, in_step, infer = t.beats, t.cfg, t.count, t.ctr, t.cur, t.in_step, t.infer
    kind, label, m, n_layers, overlap, prediction = t.kind, t.label, t.m, t.n_layers, t.overlap, t.prediction
    seen, step_cycles, upd_active, upd_addr = t.seen, t.step_cycles, t.upd_active, t.upd_addr
    upd_addr_next, upd_drain, upd_lat, upd_layer = t.upd_addr_next, t.upd_drain, t.upd_lat, t.upd_layer
    upd_part, upd_word_done, update_due = t.upd_part, t.upd_word_done, t.update_due
    with m.State("FINISH"):
        m.d.comb += [
            trainer.result.valid.eq(1),
            trainer.result.payload.prediction.eq(prediction),
            trainer.result.payload.kind.eq(kind),
            trainer.result.payload.infer.eq(infer),
        ]
        with m.If(trainer.result.ready):
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
