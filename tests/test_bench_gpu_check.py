"""benchmarks.gpu_check, the prepared device check, on the CPU at the smoke presets (the same code paths)."""
from __future__ import annotations

import pytest
import torch

from benchmarks import gpu_check


def test_the_device_check_runs_every_training_on_the_cpu(capsys):
    assert gpu_check.main(["--device", "cpu", "--profile", "smoke", "--warmup", "1", "--timed", "1", "--no-write"]) == 0
    out = capsys.readouterr().out
    for name in ("03 MLP flow matching", "04 UNet velocity (MNIST)", "05 UNet score (MNIST)", "06 two-pixel UNet (CFG)",
                 "07 attention UNet (CFG MNIST)", "08 AFHQ UNet (DDPM)"):
        assert f"| {name} | float32 |" in out, out


def test_rows_carry_flops_and_a_prediction_for_a_priced_card(monkeypatch):
    case = next(c for c in gpu_check.preset_cases("smoke") if c.name.startswith("08"))
    row = gpu_check.time_training(case, torch.device("cpu"), warmup=1, timed=1)
    assert row["flops"] > 0 and row["seconds"] > 0 and row["dtype"] == "float32" and row["peak_gb"] is None
    assert row["ops"] > 0 and row["memory_bound_bytes"] > 0
    slow, fast = gpu_check.predicted(row, "T4", amp=True)
    assert slow > fast > 0
    assert gpu_check.predicted(row, None, amp=True) is None


@pytest.mark.parametrize("name,card", [("Tesla T4", "T4"), ("NVIDIA A100-SXM4-40GB", "A100"),
                                       ("NVIDIA H100 80GB HBM3", "H100"), ("NVIDIA GeForce RTX 4090", None)])
def test_the_card_is_read_from_its_name(monkeypatch, name, card):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert gpu_check.card_of(torch.device("cuda", 0)) == card
    assert gpu_check.card_of(torch.device("cpu")) is None


def test_asking_for_an_absent_card_is_one_line(capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the error raised where CUDA is absent")
    assert gpu_check.main(["--no-write"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
