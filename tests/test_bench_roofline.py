"""benchmarks.roofline and the prediction arithmetic of benchmarks.dryrun, on networks whose FLOPs are known."""
from __future__ import annotations

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


def test_gemm_peak_counts_2n3():
    out = roofline.gemm_peak(1, sizes=(64,), repeats=1)
    assert out["size"] == 64 and out["threads"] == 1 and out["flops_per_s"] > 0


def test_bad_flags_are_one_line_errors(capsys):
    with pytest.raises(SystemExit):
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
