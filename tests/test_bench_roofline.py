"""benchmarks.roofline and the prediction arithmetic of benchmarks.dryrun, on networks whose FLOPs are known."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from benchmarks import dryrun as bench_dryrun
from benchmarks import roofline
from benchmarks.common import GPU_PEAKS, LAUNCH_S, UTILISATION
from nbhelpers.training import TrainConfig


def _linear_case(batch=64, d_in=32, d_out=16):
    torch.manual_seed(0)
    net = nn.Linear(d_in, d_out, bias=False)
    x = torch.randn(batch, d_in)
    return roofline.Case("lin", "cpu", net, lambda m, b, g: m(b).pow(2).mean(), lambda g: torch.randn(batch, d_in, generator=g),
                         TrainConfig(steps=1, lr=1e-3), lambda: net(x), batch)


def test_step_flops_of_a_linear_layer():
    """Forward 2·B·i·o, weight gradient 2·B·i·o; the input needs no gradient."""
    assert roofline.step_flops(_linear_case()) == 2 * (2 * 64 * 32 * 16)


def test_measure_row():
    peaks = {}
    row = roofline.measure(_linear_case(), warmup=1, timed=2, peaks=peaks)
    assert row["parameters"] == 32 * 16 and row["train"]["flops_per_step"] == 4 * 64 * 32 * 16
    assert row["sampler"]["flops_per_eval"] == 2 * 64 * 32 * 16 and row["sampler"]["batch"] == 64
    peak = peaks[torch.get_num_threads()]["flops_per_s"]
    assert peak > 0 and row["train"]["ratio"] == pytest.approx(row["train"]["flops_per_s"] / peak)
    assert "| lin | cpu |" in roofline.table({"machine": {"processor": "x", "cpu_count": 2, "torch_threads": 2},
                                             "date": "d", "timed": 2, "warmup": 1,
                                             "gemm_peaks": {str(k): v for k, v in peaks.items()}, "rows": [row]})


def test_time_breakdown_tells_counted_kernels_from_memory_bound_work():
    torch.manual_seed(0)
    a, b = torch.randn(256, 256), torch.randn(256, 256)
    matmul = roofline.time_breakdown(lambda: a @ b)
    assert matmul["compute_share"] > 0.5
    elementwise = roofline.time_breakdown(lambda: (a.sin() + b).exp())
    assert elementwise["compute_share"] == 0 and {"sin", "add", "exp"} <= set(elementwise["other"])
    assert sum(elementwise["other"].values()) == pytest.approx(1.0)


def test_sampler_rows_time_the_whole_batch_and_the_chunks(monkeypatch):
    """A UNet sampler row: the notebooks' chunked call and the whole batch (`NBHELPERS_EVAL_CHUNK=0`), same FLOPs."""
    from nbhelpers.models.unet import UNet, UNetConfig

    monkeypatch.delenv("NBHELPERS_EVAL_CHUNK", raising=False)
    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=4, channel_mults=(1, 2), time_embed_dim=8))
    x, t = torch.randn(6, 1, 28, 28), torch.rand(6)
    sizes = []
    monkeypatch.setattr(net, "_forward", lambda x_, t_, y_: sizes.append(len(x_)) or x_)
    monkeypatch.setattr("nbhelpers.devices.CPU_EVAL_CHUNK", 4)
    case = roofline.Case("u", "cpu", net, None, None, None, lambda: net(x, t), 6)
    row = roofline.sampler_cost(case, timed=1)
    assert row["seconds_per_eval_whole_batch"] > 0 and row["seconds_per_eval"] > 0
    # FLOP count, timed calls (1 warm-up + 1), whole batch (1 + 1), the profiler's warm-up and profiled call
    assert sizes == [4, 2] * 3 + [6] * 2 + [4, 2] * 2
    assert "NBHELPERS_EVAL_CHUNK" not in __import__("os").environ


def test_gemm_peak_counts_2n3():
    out = roofline.gemm_peak(1, sizes=(64,), repeats=1)
    assert out["size"] == 64 and out["threads"] == 1 and out["flops_per_s"] > 0


def test_bad_flags_are_one_line_errors(capsys):
    with pytest.raises(SystemExit, match=r"^2$"):  # argparse's usage error
        roofline.main(["--only", "99", "--no-write"])
    assert "valid choices: 03, 04, 05, 06, 07, 08" in capsys.readouterr().err


def test_prediction_arithmetic():
    """Compute-bound work: FLOPs / (peak × utilisation); operator-bound work: operators × launch time."""
    slow, fast = bench_dryrun.predict_seconds(1e15, 0, "A100", amp=False)
    assert slow == pytest.approx(1e15 / (GPU_PEAKS["A100"]["fp32"] * UTILISATION[0]))
    assert fast == pytest.approx(1e15 / (GPU_PEAKS["A100"]["tf32"] * UTILISATION[1]))
    slow, fast = bench_dryrun.predict_seconds(1.0, 1e6, "H100", amp=True)
    assert slow == pytest.approx(1e6 * LAUNCH_S[0]) and fast == pytest.approx(1e6 * LAUNCH_S[1])
    assert bench_dryrun.predict_seconds(1e15, 0, "T4", amp=True)[0] > bench_dryrun.predict_seconds(1e15, 0, "H100", amp=True)[0]


def test_every_training_of_the_series_runs_through_the_roofline(capsys):
    """`make bench` starts with the roofline: each training's cpu-sized case runs end to end (one warm-up and
    one timed step, one sampler evaluation), so a recipe change that breaks it fails here, not in a bench run."""
    assert roofline.main(["--warmup", "1", "--timed", "1", "--no-gpu-sizes", "--no-write"]) == 0
    out = capsys.readouterr().out
    for name in ("03 MLP flow matching", "04 UNet velocity (MNIST)", "05 UNet score (MNIST)",
                 "06 two-pixel UNet (CFG)", "07 attention UNet (CFG MNIST)", "08 AFHQ UNet (DDPM)"):
        assert f"| {name} |" in out, f"{name} missing from the roofline table"


def test_benchmarks_refuse_an_absent_device_before_any_work(capsys):
    import benchmarks.__main__ as bench

    with pytest.raises(SystemExit, match=r"^2$") as exc:
        bench.main(["--device", "tpu", "--notebooks", "02", "--no-roofline"])
    assert exc.value.code == 2 and "tpu" in capsys.readouterr().err


def test_a_failed_notebook_keeps_the_good_result_and_exits_non_zero(tmp_path, monkeypatch, capsys):
    import benchmarks.__main__ as bench
    from benchmarks import common
    from nbhelpers.runner import NotebookResult

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    monkeypatch.setattr(bench, "README", tmp_path / "README.md")
    monkeypatch.setattr(bench, "write_result", lambda name, payload: common.write_json(name, payload))
    monkeypatch.setattr(bench, "run_notebook", lambda name, profile, device: NotebookResult(
        name, profile, device, "failed", 1.0, tmp_path / "o.ipynb", "boom", {}, "cpu"))
    tag = common.machine_tag(common.machine())
    good = tmp_path / f"02_paths_schedules__cpu__{tag}.json"
    good.write_text(json.dumps({"kind": "notebook", "notebook": "02_paths_schedules", "profile": "cpu", "status": "ok", "metrics": {}, "wall_s": 5.0, "machine_tag": tag, "machine": common.machine(), "date": "d"}))
    before = good.read_bytes()
    assert bench.main(["--notebooks", "02", "--no-roofline", "--no-notebook-step", "--no-series", "--device", "cpu"]) == 1
    assert good.read_bytes() == before
    assert (tmp_path / f"02_paths_schedules__cpu__{tag}__failed.json").is_file()
    assert "error: 02_paths_schedules failed" in capsys.readouterr().err


def test_the_summary_lists_notebook_runs_only(tmp_path, monkeypatch):
    import benchmarks.__main__ as bench

    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    run = {"kind": "notebook", "notebook": "02_paths_schedules", "profile": "cpu", "status": "ok", "metrics": {},
           "wall_s": 5.0, "machine_tag": "cpu2"}
    (tmp_path / "02_paths_schedules__cpu__cpu2.json").write_text(json.dumps(run))
    for kind in ("series", "notebook_step", "roofline", "dryrun"):  # their own tables: no notebook, no wall_s
        (tmp_path / f"{kind}__cpu2.json").write_text(json.dumps({"kind": kind, "rows": []}))
    text = bench.summarise()
    assert "| 02_paths_schedules | cpu | cpu2 | ok | 5.0 s |" in text and "series" not in text.split("### Notebooks")[1]


def test_mixed_precision_is_priced_at_the_dtype_the_card_gets():
    """A T4 runs amp in fp16 (its tensor cores), the A100 and H100 in bf16 — as nbhelpers.runtime.amp_dtype picks."""
    assert bench_dryrun._peaks("T4", amp=True) == (GPU_PEAKS["T4"]["fp16"],) * 2
    assert bench_dryrun._peaks("A100", amp=True) == (GPU_PEAKS["A100"]["bf16"],) * 2
    assert bench_dryrun._peaks("T4", amp=False) == (GPU_PEAKS["T4"]["fp32"], GPU_PEAKS["T4"]["tf32"])


def test_attention_on_the_cpu_is_counted_by_hand():
    """FlopCounterMode alone counts 0 for the CPU's SDPA kernel; nbhelpers.dryrun.flop_counter counts
    4·B·H·L²·d forward and 2.5× that backward (four products and the recomputed QKᵀ of a flash kernel), the
    formulas PyTorch uses for its CUDA kernels."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from nbhelpers.dryrun import flop_counter

    B, H, L, d = 2, 3, 49, 8
    q, k, v = (torch.randn(B, H, L, d, requires_grad=True) for _ in range(3))
    plain = FlopCounterMode(display=False)
    with plain:
        F.scaled_dot_product_attention(q, k, v)
    counted = flop_counter()
    with counted:
        out = F.scaled_dot_product_attention(q, k, v)
    fwd = counted.get_total_flops()
    with counted:
        out.sum().backward()
    assert plain.get_total_flops() == 0  # what the dry run used to see
    assert fwd == 4 * B * H * L * L * d
    assert counted.get_total_flops() == 5 * fwd // 2  # the counter restarts on entry: the backward alone


def test_a_convolution_is_counted_by_hand():
    conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 4, 7, 7)
    from nbhelpers.dryrun import flop_counter

    counter = flop_counter()
    with counter:
        conv(x)
    assert counter.get_total_flops() == 2 * 2 * 7 * 7 * 8 * 4 * 3 * 3  # 2·B·H·W·C_out·C_in·k²


def test_the_roofline_rows_keep_the_series_order():
    rows = [(c.name[:2], c.profile) for c in roofline.cases()]
    assert rows == [("03", "cpu"), ("03", "gpu"), ("04", "cpu"), ("05", "cpu"), ("06", "cpu"), ("06", "gpu"),
                    ("07", "cpu"), ("08", "cpu")]
