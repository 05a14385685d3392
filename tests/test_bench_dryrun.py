"""The gpu-profile dry run of a whole notebook (06: five trainings, DDPM and DDIM samplers) on this machine."""
from __future__ import annotations

import json

from benchmarks import dryrun as bench
from nbhelpers import dryrun
from nbhelpers.models.two_pixel import TwoPixelUNet
from nbhelpers.runtime import ROOT
from nbhelpers.training import count_parameters


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_notebook_06_dry_run_at_gpu_sizes():
    before = _files(ROOT / "checkpoints")
    payload = bench.run(["06_two_pixel_ddpm_cfg"], max_steps=1, profile="gpu", device="cpu", keep_cache=False)
    r = payload["notebooks"]["06_two_pixel_ddpm_cfg"]
    assert r["status"] == "ok", r["error"]
    assert r["metrics_dry_run_max_steps"] == 1
    # the notebook says so where its reader looks
    out = json.loads((dryrun.root(1) / "notebooks" / "06_two_pixel_ddpm_cfg.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in out["cells"] for o in c.get("outputs", []))
    assert "DRY RUN" in text
    # five trainings at the gpu profile's sizes: batch 1024, 4000 steps; parameters of the notebook's networks
    trainings = r["trainings"]
    assert len(trainings) == 5
    net = dict(channels=(64, 128), embed_dim=64, fourier_scale=4.0)
    assert {t["parameters"] for t in trainings} == {count_parameters(TwoPixelUNet(num_classes=0, **net)),
                                                   count_parameters(TwoPixelUNet(num_classes=2, **net))}
    for t in trainings:
        assert t["batch_shapes"][0] == [1024, 2] and t["full_steps"] == 4000
        assert t["flops_per_step"] > 0 and t["memory_estimate_bytes"] > 4 * 4 * t["parameters"]
        slow, fast = t["predicted_s"]["T4"]
        assert slow >= fast > 0
    assert r["sampler_calls"] > 0 and r["network_evaluations"] > r["sampler_calls"]
    # capped models stay in build/dryrun; the real cache is untouched
    assert _files(ROOT / "checkpoints") == before
    assert any(p.suffix == ".pt" for p in _files(dryrun.root(1)))
