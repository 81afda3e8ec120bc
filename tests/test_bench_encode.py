"""benchmarks/bench_encode.py on a toy configuration: it runs, compares with the study setting on
every photo, keeps the study setting's photos in its cache, and writes the figures issue 16 asks for."""

import json
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("one_thread")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_bench_encode_reports_steps_ratios_and_steps_between_photos(tmp_path, capsys):
    import bench_encode

    args = ["--device", "cpu", "--preset", "tiny", "--resolution", "32", "--photos", "8", "--batch", "4",
            "--study-steps", "6", "--steps", "6", "--set", "steps_key=4", "--set", "steps_fill=2",
            "--set", "polish_first=3", "--latents", str(tmp_path / "ws.pt"),
            "--study-cache", str(tmp_path / "study.json"), "--json", str(tmp_path / "out.json")]
    result = bench_encode.main(args)
    out = capsys.readouterr().out
    assert "study setting: 0 of 8 photos cached, 8 to encode" in out and "optimiser steps per photo" in out
    saved = json.loads((tmp_path / "out.json").read_text())
    d, cmp = saved["defaults"], saved["comparison"]
    assert d["options"]["init"] == "interpolate" and d["chain_heads"] == [0]  # keys 0 and 7: one chain
    steps = d["photo_steps"]
    assert 6 + 3 <= steps["0"] < 6 + 3 + 25 and all(steps[str(i)] == 2 for i in range(1, 7))
    assert 4 <= steps["7"] < 4 + 25
    assert d["photo_steps_per_photo"] == pytest.approx(sum(steps.values()) / 8)
    assert d["step_rms_where_chains_meet"] is None and d["step_rms_largest"] >= d["step_rms_within_chains"] > 0
    assert cmp["photos"] == list(range(8)) and cmp["max_ratio"] >= cmp["median_ratio"] > 0
    assert cmp["over_1_10"] == sum(r > 1.10 for r in cmp["ratios"].values())
    assert result["study"]["photo_steps_per_photo"] == 6
    import torch

    saved_ws = torch.load(tmp_path / "ws.pt")  # the defaults' latents, for analysis: the same steps
    ws = saved_ws["ws"]
    assert ws.shape[0] == 8 and saved_ws["losses"] == {int(k): v for k, v in d["losses"].items()}
    rms = float(ws.diff(dim=0).square().mean().sqrt() / saved_ws["w_std"])
    assert rms == pytest.approx(d["step_rms"], rel=1e-6)
    again = bench_encode.main(args + ["--set", "smooth_key=0"])  # an ablation: the study photos come from the cache
    assert "study setting: 8 of 8 photos cached, 0 to encode" in capsys.readouterr().out
    assert again["study"]["losses"] == result["study"]["losses"] and again["defaults"]["options"]["smooth_key"] == 0
    with pytest.raises(SystemExit, match="not an option field"):
        bench_encode.main(args + ["--set", "nonsense=1"])
