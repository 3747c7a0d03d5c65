"""``specbp sweep``: a small grid on the embedded digits, on a local Dask cluster."""

from __future__ import annotations

import json

from specbp_rtl.config import TrainConfig
from specbp_rtl.data import load_dataset
from specbp_rtl.gateware.cycles import CycleModel
from specbp_rtl.gateware.layout import TrainerConfig
from specbp_rtl.sim.runner import run_training
from specbp_rtl.sweep import SweepSettings, sweep, wide_datapath_cycles


def test_sweep_grid_resume_and_outputs(tmp_path) -> None:
    out = tmp_path / "sweep"
    records = sweep(
        [0, 0.25], ["mean-abs", "max-abs"], [1], SweepSettings(epochs=1), out, workers=1, progress=False, fmax_mhz=50.0
    )
    assert [r["key"] for r in records] == ["t0_off_s1", "t0.25_mean-abs_s1", "t0.25_max-abs_s1", "pipelined_s1"]
    for name in (
        "results.csv",
        "results.json",
        "summary.csv",
        "accuracy_vs_epoch.png",
        "hit_rate_and_cycles_vs_threshold.png",
        "throughput.png",
    ):
        assert (out / name).stat().st_size > 0, name
    # each grid point is exactly a run_training call, with the cycle model applied to its step counts
    ds = load_dataset("digits")
    cfg = TrainConfig(layers=(64, 16, 16, 10), threshold=0.25, metric="mean-abs", seed=1)
    direct = run_training("fixed", cfg, ds, 1).as_json()
    r = records[1]
    assert r["weights_sha256"] == direct["weights_sha256"] and r["hits"] == direct["hits"]
    model = CycleModel(TrainerConfig(train=cfg))
    assert r["cycles"] == model.total(r["first_sightings"], r["hits"], r["misses"], r["updates"])
    assert r["cycles_per_sample"] < r["baseline_cycles_per_sample"]
    assert wide_datapath_cycles(TrainerConfig(train=cfg)) < model.sequential_step
    # the pipelined equal-multiplier baseline: the sequential weights, fewer cycles, by the pipelined model
    seq, pipe = records[0], records[3]
    assert pipe["pipeline"] and pipe["weights_sha256"] == seq["weights_sha256"]
    assert pipe["accuracy_per_epoch"] == seq["accuracy_per_epoch"] and pipe["sequential"] == seq["sequential"]
    assert 0 < pipe["overlapped"] < pipe["steps"]
    assert pipe["cycles"] == model.total_pipelined(pipe["steps"], pipe["overlapped"], pipe["updates"])
    assert r["cycles_per_sample"] < pipe["cycles_per_sample"] < seq["cycles_per_sample"]
    summary = (out / "summary.csv").read_text().splitlines()
    assert summary[-1].startswith("pipelined,pipelined,0.0,1,")
    # resumable: a finished point is not run again (its file is reused as is)
    marker = out / "runs" / "t0_off_s1.json"
    data = json.loads(marker.read_text())
    data["marker"] = True
    marker.write_text(json.dumps(data))
    again = sweep([0, 0.25], ["mean-abs", "max-abs"], [1], SweepSettings(epochs=1), out, workers=1, progress=False)
    assert again[0].get("marker") is True
