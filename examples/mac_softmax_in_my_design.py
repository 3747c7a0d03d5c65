#!/usr/bin/env python3
"""A MacArray and a Softmax inside your own design, checked against their model() methods.

``TinyClassifier`` is "your" Amaranth component: a 10-class output layer. A
:class:`~specbp_rtl.gateware.MacArray` (10 lanes, broadcast mode) computes
the logits ``z = W x + b`` of one sample (one beat per input pixel, then a
bias beat), a small serialiser of your own hands the 10 logits one by one to
a :class:`~specbp_rtl.gateware.Softmax`, and the probabilities stream out.

The script simulates it in Amaranth's simulator, with seeded random gaps on
the input and back-pressure on the output (:mod:`specbp_rtl.testing`), and
compares the result with the blocks' numpy models chained the same way::

    z = MacArray.model(a, b, first, last, acc_frac=..., out=numerics.act)
    p = Softmax.model(z, numerics)

It prints what it checked and exits with status 1 on a mismatch
(``--inject-error`` perturbs one expected value to show the message).

Run: ``python3 examples/mac_softmax_in_my_design.py [--samples 20] [--seed 1]``
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from specbp_rtl.gateware import MacArray, Softmax
from specbp_rtl.model import golden
from specbp_rtl.numerics import Numerics
from specbp_rtl.testing import StreamSink, assert_matches_model, stream_monitor, stream_source, watchdog


class TinyClassifier(wiring.Component):
    """Logits on a MacArray, probabilities from a Softmax.

    Ports: ``i``, the MacArray's beats (``a``: one weight column, ``b``: the
    pixel, ``first``/``last``); ``o``, the probabilities (``numerics.prob``),
    ``classes`` beats per sample.
    """

    def __init__(self, classes: int = 10, numerics: Numerics | None = None) -> None:
        self.classes = classes
        self.numerics = nx = numerics or Numerics()
        # weight operands have weight_operand_frac fractional bits, pixels input_frac: so has the product
        self.mac = MacArray(
            classes,
            a_width=nx.weight_operand.width,
            b_width=16,
            out=nx.act,
            acc_frac=nx.weight_operand_frac + nx.input_frac,
        )
        self.softmax = Softmax(classes, nx)
        super().__init__(
            {
                "i": In(stream.Signature(self.mac.i.payload.shape())),
                "o": Out(stream.Signature(nx.prob.shape)),
            }
        )

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.mac = mac = self.mac
        m.submodules.softmax = softmax = self.softmax
        wiring.connect(m, wiring.flipped(self.i), mac.i)

        # the serialiser: hold one MAC result (all lanes) and send its lanes to the softmax in order
        logits = Signal(mac.o.payload.shape())
        k = Signal(range(self.classes))
        full = Signal()
        m.d.comb += mac.o.ready.eq(~full)
        with m.If(mac.o.valid & mac.o.ready):
            m.d.sync += [logits.eq(mac.o.payload), full.eq(1), k.eq(0)]
        m.d.comb += [softmax.i.valid.eq(full), softmax.i.payload.eq(logits.value[k])]
        with m.If(softmax.i.valid & softmax.i.ready):
            m.d.sync += k.eq(k + 1)
            with m.If(k == self.classes - 1):
                m.d.sync += full.eq(0)

        wiring.connect(m, softmax.o, wiring.flipped(self.o))
        return m


def make_inputs(rng: np.random.Generator, samples: int, inputs: int, classes: int, nx: Numerics):
    """Random weight operands, biases and pixels, and the MacArray beats that compute ``W x + b``."""
    span = 1 << (nx.weight_operand.width - 3)  # an eighth of the operand range: logits spread, some saturate
    w = rng.integers(-span, span, size=(classes, inputs))
    bias = rng.integers(-span, span, size=classes)
    x = rng.integers(0, 256, size=(samples, inputs))
    a, b, first, last = [], [], [], []
    for n in range(samples):
        for i in range(inputs):
            a.append(w[:, i]), b.append(x[n, i]), first.append(i == 0), last.append(False)
        a.append(bias), b.append(1 << nx.input_frac), first.append(False), last.append(True)  # bias * 1.0
    return w, bias, x, (np.array(a), np.array(b), np.array(first), np.array(last))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--inputs", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--inject-error", action="store_true", help="perturb one expected value (shows a failure)")
    args = parser.parse_args(argv)

    nx = Numerics()
    classes = 10
    rng = np.random.default_rng(args.seed)
    w, bias, x, (a, b, first, last) = make_inputs(rng, args.samples, args.inputs, classes, nx)

    # the models, chained like the hardware
    dut = TinyClassifier(classes, nx)
    z = MacArray.model(a, b, first, last, acc_frac=dut.mac.acc_frac, out=nx.act, acc_width=dut.mac.acc_width)
    assert_matches_model(z, golden.layer_forward(x, w, bias, nx.input_frac, nx), what="MacArray.model vs golden")
    expected = Softmax.model(z, nx)  # (samples, classes)
    if args.inject_error:
        expected[args.samples // 2, 3] += 1

    # the simulation: random input gaps (seed), random output back-pressure (seed + 1), a watchdog
    beats = [
        {"a": [int(v) for v in a[n]], "b": int(b[n]), "first": int(first[n]), "last": int(last[n])}
        for n in range(len(b))
    ]
    sink = StreamSink(dut.o, count=args.samples * classes, seed=args.seed + 1)
    errors: list[str] = []
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(stream_source(dut.i, beats, seed=args.seed))
    sim.add_testbench(sink.testbench)
    sim.add_testbench(stream_monitor(dut.o, errors, "o"), background=True)
    sim.add_testbench(watchdog(12 * len(beats) + 1000, "TinyClassifier", sink.progress), background=True)
    try:
        sim.run()
        assert not errors, errors[:3]
        got = sink.rows().reshape(args.samples, classes)
        assert_matches_model(got, expected, what="probabilities")
    except AssertionError as exc:
        print(f"MISMATCH: {exc}")
        return 1
    print(
        f"checked {args.samples} samples x {classes} classes ({len(beats)} MAC beats, {args.inputs} inputs): "
        "MacArray + Softmax in TinyClassifier match MacArray.model + Softmax.model bit for bit"
    )
    print(f"predictions: {got.argmax(axis=1).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
