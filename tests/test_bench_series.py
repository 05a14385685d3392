"""benchmarks.series: the series in order in one shared cache, and its arithmetic floor."""
from __future__ import annotations

import json
import os
import time

import pytest

from benchmarks import common, series
from nbhelpers.runner import NotebookResult
from nbhelpers.runtime import CHECKPOINT_ENV

FLOPS = {"03_flow_matching_2d": {"train_flops": 6e12, "sample_flops": 2e12},
         "04_unet_images": {"train_flops": 30e12, "sample_flops": 12e12}}


def test_floor_is_every_counted_flop_at_the_peak():
    fl = series.floor(FLOPS, 2e11)
    assert fl["per_notebook_s"] == {"03_flow_matching_2d": pytest.approx(40.0), "04_unet_images": pytest.approx(210.0)}
    assert fl["total_s"] == pytest.approx(250.0) and fl["total_flops"] == pytest.approx(50e12)
    assert fl["train_flops"] == pytest.approx(36e12) and fl["sample_flops"] == pytest.approx(14e12)


def test_the_series_shares_one_fresh_cache_in_order(monkeypatch, tmp_path):
    seen = []

    def fake_run(name, profile, device):
        seen.append((name, os.environ.get(CHECKPOINT_ENV)))
        return NotebookResult(name, profile, device, "failed" if name.startswith("04") else "ok", 2.0,
                              tmp_path / "o.ipynb", "boom" if name.startswith("04") else "", {}, "cpu")

    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "mine"))
    monkeypatch.setattr(series, "run_notebook", fake_run)
    out = series.run_series(["03_flow_matching_2d", "04_unet_images", "05_score_sde"], "cpu", "cpu")
    assert [n for n, _ in seen] == ["03_flow_matching_2d", "04_unet_images", "05_score_sde"]  # goes on after a failure
    caches = {c for _, c in seen}
    assert len(caches) == 1 and caches != {str(tmp_path / "mine")}  # one cache, not the user's
    assert os.environ[CHECKPOINT_ENV] == str(tmp_path / "mine")
    assert [r["status"] for r in out["notebooks"]] == ["ok", "failed", "ok"] and out["notebooks"][1]["error"] == "boom"


def test_main_with_recorded_counts_writes_the_table(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(series, "RESULTS", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n")
    monkeypatch.setattr(series, "replace_block", lambda tag, text: common.replace_block(tag, text, readme))
    monkeypatch.setattr("benchmarks.roofline.gemm_peak", lambda n: {"flops_per_s": 2e11, "size": 64, "threads": n})
    monkeypatch.setattr(series, "run_notebook", lambda name, profile, device: NotebookResult(
        name, profile, device, "ok", 500.0 if name.startswith("03") else 1050.0, tmp_path / "o.ipynb", "", {}, "cpu"))
    tag = common.machine_tag(common.machine())
    (tmp_path / f"dryrun__cpu__{tag}.json").write_text(json.dumps({"notebooks": FLOPS}))
    assert series.main(["--notebooks", "03,04", "--reuse-counts"]) == 0
    payload = json.loads((tmp_path / f"series__cpu__{tag}.json").read_text())
    assert payload["floor"]["total_s"] == pytest.approx(250.0)
    assert [r["wall_s"] for r in payload["series"]["notebooks"]] == [500.0, 1050.0]
    text = readme.read_text()
    assert "<!-- series:begin -->" in text and "| 03_flow_matching_2d | ok | 8.33 min | 40 s | 12.5× |" in text
    assert "| 04_unet_images | ok | 17.5 min | 3.5 min | 5.0× |" in text


def test_reused_counts_must_cover_every_notebook(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(series, "RESULTS", tmp_path)
    tag = common.machine_tag(common.machine())
    (tmp_path / f"dryrun__cpu__{tag}.json").write_text(json.dumps({"notebooks": FLOPS}))
    with pytest.raises(SystemExit, match="^2$"):
        series.main(["--notebooks", "03,05", "--reuse-counts", "--no-write"])
    assert "no counts for 05_score_sde" in capsys.readouterr().err


def test_step_comparison_reads_each_trainings_own_timing():
    payload = {"profile": "cpu", "series": {"notebooks": [
        {"notebook": "07_mnist_cfg", "timings": {"cosine/train_seconds": 110.0, "cosine/train_steps": 1000}},
        {"notebook": "05_score_sde", "timings": {"image/score_train_seconds": 130.5}},
        {"notebook": "08_afhq_ddpm", "timings": {}}]}}  # 08 failed before training: no row
    roofline = {"rows": [{"name": "07 attention UNet (CFG MNIST)", "profile": "cpu", "train": {"seconds_per_step": 0.1}},
                         {"name": "05 UNet score (MNIST)", "profile": "cpu", "train": {"seconds_per_step": 0.145}},
                         {"name": "08 AFHQ UNet (DDPM)", "profile": "cpu", "train": {"seconds_per_step": 0.1}},
                         {"name": "03 MLP flow matching", "profile": "cpu", "train": {"seconds_per_step": 0.001}}]}
    rows = {r["training"]: r for r in series.step_comparison(payload, roofline)}
    assert set(rows) == {"07 attention UNet (CFG MNIST)", "05 UNet score (MNIST)"}
    assert rows["07 attention UNet (CFG MNIST)"]["notebook_s"] == pytest.approx(0.11)
    assert rows["07 attention UNet (CFG MNIST)"]["difference"] == pytest.approx(0.10)
    assert rows["05 UNet score (MNIST)"]["steps"] == 900  # the cpu recipe's steps: 05 records only the seconds
    assert rows["05 UNet score (MNIST)"]["difference"] == pytest.approx(130.5 / 900 / 0.145 - 1)


def test_the_roofline_step_is_timed_beside_each_training_notebook(monkeypatch, tmp_path):
    calls = []

    def fake_run(name, profile, device):
        calls.append(("run", name))
        return NotebookResult(name, profile, device, "ok", 3.0, tmp_path / "o.ipynb", "",
                              {"image/score_train_seconds": 28.35}, "cpu")

    def beside(name):
        calls.append(("beside", name))
        time.sleep(0.05)  # time spent beside is not the series' wall time
        if name != "05_score_sde":
            return {}
        return {"05 UNet score (MNIST)": 0.025 if calls.count(("beside", name)) == 1 else 0.035}  # before, after

    monkeypatch.setattr(series, "run_notebook", fake_run)
    out = series.run_series(["04_unet_images", "05_score_sde"], "cpu", "cpu", beside)
    assert calls == [("beside", "04_unet_images"), ("run", "04_unet_images"), ("beside", "04_unet_images"),
                     ("beside", "05_score_sde"), ("run", "05_score_sde"), ("beside", "05_score_sde")]
    assert "roofline_beside" not in out["notebooks"][0]
    assert out["notebooks"][1]["roofline_beside"] == {"05 UNet score (MNIST)": {"before_s": 0.025, "after_s": 0.035}}
    assert out["beside_s"] >= 0.2 and out["total_wall_s"] < out["beside_s"]  # the fake notebooks take no time
    rows = series.step_comparison({"profile": "cpu", "series": out}, None)  # no roofline run recorded
    assert len(rows) == 1 and rows[0]["notebook_s"] == pytest.approx(0.0315) and "roofline_s" not in rows[0]
    assert rows[0]["beside_mean_s"] == pytest.approx(0.03) and rows[0]["difference_beside"] == pytest.approx(0.05)
    text = series.table({"profile": "cpu", "date": "d", "machine": common.machine(), "threads": 2,
                         "floor": series.floor({"05_score_sde": FLOPS["04_unet_images"]}, 2e11),
                         "series": out, "step_comparison": rows})
    assert "| 05 UNet score (MNIST) | 900 | 0.025 / 0.035 | 0.032 | +5.0% | – |" in text


def test_beside_times_the_roofline_case_of_the_notebooks_training(monkeypatch):
    import benchmarks.roofline as roofline

    monkeypatch.setattr(roofline, "step_seconds", lambda case, warmup, timed: (case.name, warmup, timed))
    measure = series.roofline_beside("smoke", "cpu", warmup=1, timed=3)
    assert measure("07_mnist_cfg") == {"07 attention UNet (CFG MNIST)": ("07 attention UNet (CFG MNIST)", 1, 3)}
    assert measure("03_flow_matching_2d") == {}


def test_a_variant_is_kept_apart_and_leaves_the_readme_alone(monkeypatch, tmp_path):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(series, "RESULTS", tmp_path)
    monkeypatch.setattr(series, "replace_block", lambda tag, text: pytest.fail("the README was changed"))
    monkeypatch.setattr("benchmarks.roofline.gemm_peak", lambda n: {"flops_per_s": 2e11, "size": 64, "threads": n})
    tag = common.machine_tag(common.machine())
    (tmp_path / f"dryrun__cpu__{tag}.json").write_text(json.dumps({"notebooks": FLOPS}))
    assert series.main(["--notebooks", "03,04", "--reuse-counts", "--floor-only", "--variant", "whole-batch"]) == 0
    assert json.loads((tmp_path / f"series__cpu__{tag}__whole-batch.json").read_text())["variant"] == "whole-batch"
    with pytest.raises(SystemExit, match="^2$"):
        series.main(["--notebooks", "03", "--reuse-counts", "--floor-only", "--variant", "a/b"])
