"""The gpu-profile dry run of a whole notebook (06: five trainings, DDPM and DDIM samplers) on this machine."""
from __future__ import annotations

import json
import os

from benchmarks import dryrun as bench
from nbhelpers import dryrun
from nbhelpers.models.two_pixel import TwoPixelUNet
from nbhelpers.runtime import output_root
from nbhelpers.training import count_parameters


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_notebook_06_dry_run_at_gpu_sizes():
    cache = output_root() / "checkpoints"  # where the real model cache is (the suite's temporary output root)
    before = _files(cache)
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
    assert _files(cache) == before
    assert any(p.suffix == ".pt" for p in _files(dryrun.root(1)))


def _row(wall_s, **extra):
    return {"status": "ok", "error": "", "wall_s": wall_s, "device": "cpu", "seed_quote": "", "trainings": [],
            "train_flops": 0, "sample_flops": 0, "sampler_calls": 0, "network_evaluations": 0,
            "predicted_s": {g: (0, 0) for g in ("T4", "A100", "H100")}, **extra}


def test_a_partial_run_keeps_when_and_how_busy_each_row_was():
    cores = {"cpu_count": 2, "torch_threads": 2, "processor": "test CPU"}
    old = {"profile": "gpu", "max_steps": 2, "date": "2026-01-01 09:00", "machine": {**cores, "load_average_1min": 4.5},
           "notebooks": {"01_sdes": _row(100.0), "04_unet_images": _row(400.0)}}
    new = {"profile": "gpu", "max_steps": 2, "date": "2026-01-02 21:00", "machine": {**cores, "load_average_1min": 0.5},
           "notebooks": {"04_unet_images": _row(60.0, measured="2026-01-02 21:00", load_average_1min=0.5)}}
    merged = bench.merge(old, new)
    assert list(merged["notebooks"]) == ["01_sdes", "04_unet_images"]
    assert merged["notebooks"]["04_unet_images"]["wall_s"] == 60.0 and merged["total_wall_s"] == 160.0
    assert merged["notebooks"]["01_sdes"]["measured"] == "2026-01-01 09:00"
    assert merged["notebooks"]["01_sdes"]["load_average_1min"] == 4.5
    text = bench.table(merged)
    assert "rows at 2 times (2026-01-01 09:00, 2026-01-02 21:00" in text and "*busy*" in text
    row01 = next(line for line in text.splitlines() if line.startswith("| 01_sdes"))
    row04 = next(line for line in text.splitlines() if line.startswith("| 04_unet_images"))
    assert "ok, 100 s (2026-01-01 09:00, *busy*)" in row01
    assert "ok, 60 s (2026-01-02 21:00)" in row04 and "busy" not in row04
    # another step cap: nothing of the old run is kept; one run: one date and no marks
    assert list(bench.merge({**old, "max_steps": 3}, new)["notebooks"]) == ["04_unet_images"]
    single = bench.table(bench.stamp({**old, "total_wall_s": 100.0, "notebooks": {"01_sdes": _row(100.0)}, "machine": {**cores, "load_average_1min": 0.5}}))
    assert "Measured 2026-01-01 09:00 on test CPU" in single and "| 01_sdes | ok, 100 s | 0 |" in single


# --------------------------------------------------------------------------- the prediction model, by hand counts
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks.common import AMP_BYTES, BANDWIDTH_UTILISATION, CUDA_CONTEXT_BYTES, GPU_BANDWIDTH, GPU_PEAKS, UTILISATION  # noqa: E402


def test_the_counter_prices_a_convolution_and_an_attention_call_by_hand():
    B, C_in, C_out, H, W, k = 2, 3, 5, 8, 8, 3
    conv = nn.Conv2d(C_in, C_out, k, padding=1, bias=False)
    x = torch.randn(B, C_in, H, W)
    counter, ops = dryrun.flop_counter(), dryrun.OpCounter()
    with counter, ops:
        conv(x)
    assert counter.get_total_flops() == 2 * B * C_out * H * W * C_in * k * k  # one multiply-add per weight per output
    assert ops.memory_bytes == 0 and ops.attention == []  # a convolution is compute, not memory-bound traffic

    heads, L, S, d = 4, 49, 49, 16
    q, kk, v = (torch.randn(B, heads, n, d) for n in (L, S, S))
    counter, ops = dryrun.flop_counter(), dryrun.OpCounter()
    with counter, ops:
        F.scaled_dot_product_attention(q, kk, v)
    assert counter.get_total_flops() == 4 * B * heads * L * S * d  # QKᵀ and the weighted sum of V
    assert ops.attention == [(B * heads, L, S)] and ops.attention_elements() == B * heads * L * S


def test_the_counter_charges_memory_bound_operators_their_bytes_and_views_nothing():
    x = torch.randn(64, 32)
    ops = dryrun.OpCounter()
    with ops:
        y = F.silu(x)  # reads 64·32 floats, writes as many
        y.view(32, 64).t()  # views move nothing
        y.add_(1.0)  # in place: reads and writes y
    n = 64 * 32 * 4
    assert ops.memory_bytes == 2 * n + 2 * n


def test_a_prediction_is_compute_plus_memory_time_and_never_below_the_launches():
    flops, nbytes = 1e15, 1e13
    slow, fast = bench.predict_seconds(flops, 0, "T4", True, nbytes)  # fp16 on a T4
    assert slow == pytest.approx(flops / (65e12 * UTILISATION[0]) + nbytes * AMP_BYTES[0] / (320e9 * BANDWIDTH_UTILISATION[0]))
    assert fast == pytest.approx(flops / (65e12 * UTILISATION[1]) + nbytes * AMP_BYTES[1] / (320e9 * BANDWIDTH_UTILISATION[1]))
    fp32 = bench.predict_seconds(flops, 0, "A100", False, nbytes)  # fp32 code: fp32 at the slow end, TF32 at the fast
    assert fp32[0] == pytest.approx(flops / (GPU_PEAKS["A100"]["fp32"] * UTILISATION[0])
                                    + nbytes / (GPU_BANDWIDTH["A100"] * BANDWIDTH_UTILISATION[0]))
    assert bench.predict_seconds(1.0, 1e6, "H100", True)[0] == pytest.approx(1e6 * 10e-6)  # a million launches


def test_peak_memory_adds_the_score_matrices_only_where_no_fused_kernel_runs(monkeypatch):
    assert bench._dtype("T4", True) == "fp16" and bench._dtype("A100", True) == "bf16" and bench._dtype("T4", False) == "fp32"
    # the dtype each card gets always has a fused kernel (memory-efficient: fp16/fp32 from sm_50, bf16 from sm_80)
    assert all(bench.fused_attention(g, amp) for g in ("T4", "A100", "H100") for amp in (True, False))
    parts = {"weights": 10, "gradients": 10, "optimizer_state": 20, "ema": 10, "batch": 50, "saved_activations": 1000}
    r = {"amp": True, "memory_bytes": parts, "attention_elements_per_step": 10**9}
    lo, hi = bench.predict_memory(r, "T4")
    assert (lo, hi) == (100 + CUDA_CONTEXT_BYTES + 500, 100 + CUDA_CONTEXT_BYTES + 1000)
    # bf16 autocast on a T4 (what choosing bf16 by torch.cuda.is_bf16_supported() would do): the math path saves every score
    monkeypatch.setattr(bench, "_dtype", lambda gpu, amp: "bf16")
    assert not bench.fused_attention("T4", True) and bench.fused_attention("A100", True)
    assert bench.predict_memory(r, "T4")[1] == hi + 10**9 * bench.ATTENTION_BYTES_PER_SCORE


def test_a_run_with_notebook_parameters_gets_rows_of_its_own():
    assert bench.parse_params(["gpu_size=large", "steps=10", "note=a b"]) == {"gpu_size": "large", "steps": 10, "note": "a b"}
    assert bench.row_name("07_mnist_cfg", {"gpu_size": "large"}) == "07_mnist_cfg (gpu_size=large)"
    assert bench.row_name("07_mnist_cfg", {}) == "07_mnist_cfg"
    with pytest.raises(ValueError, match="name=value, got 'large'"):
        bench.parse_params(["large"])


def test_a_dry_run_counts_whole_batches_as_a_gpu_runs_them(monkeypatch, tmp_path):
    """The CPU's cache-sized chunks (nbhelpers.devices.eval_chunk) are off inside a dry run, so a sampler call's
    operators are counted as a GPU launches them; the caller's setting comes back afterwards."""
    from nbhelpers.layout import EVAL_CHUNK_ENV
    from nbhelpers.runner import NotebookResult

    seen = []

    def fake_run(name, profile, device, parameters=None, output_dir=None):
        seen.append(os.environ.get(EVAL_CHUNK_ENV))
        return NotebookResult(name, profile, device, "ok", 1.0, tmp_path / "o.ipynb", "", {}, "cpu")

    monkeypatch.setattr(bench, "run_notebook", fake_run)
    monkeypatch.setenv("NBHELPERS_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv(EVAL_CHUNK_ENV, "64")
    bench.run(["02_paths_schedules"], 1, "gpu", "cpu", keep_cache=False)
    assert seen == ["0"] and os.environ[EVAL_CHUNK_ENV] == "64"
