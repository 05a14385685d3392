"""The AFHQ trainer under torchrun: two gloo processes on the CPU against one process at the same
global batch (both ranks finish, one checkpoint is written, the losses and weights agree)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nbhelpers.recipes.afhq import main
from nbhelpers.runtime import ROOT
from nbhelpers.checkpoints import load_checkpoint

pytestmark = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")

LR = 1e-3
FLAGS = ["--learning_rate", str(LR), "--image_size", "8", "--batch_size", "4", "--time_steps", "5", "--unet_dim", "4", "--device", "cpu",
         "--train_steps", "3", "--save_and_sample_every", "2", "--no_progress"]


def _data(root: Path) -> Path:
    folder = root / "afhq" / "train" / "cat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(10):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(folder / f"c{i}.png")
    return root / "afhq" / "train"


def test_two_gloo_processes_match_one_process(tmp_path):
    data = _data(tmp_path)
    ddp_dir, single_dir = tmp_path / "ddp", tmp_path / "single"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "nbhelpers.afhq", "--data_path", str(data), "--save_folder", str(ddp_dir), *FLAGS]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]  # torchrun exits 0 only when every rank did
    assert proc.stdout.count("nbhelpers.afhq config:") == 1 and "world_size             2" in proc.stdout
    assert sorted(p.name for p in ddp_dir.iterdir() if p.suffix == ".pt") == ["model.pt"]
    assert not [p for p in ddp_dir.iterdir() if p.name.endswith(".tmp")]

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["--data_path", str(data), "--save_folder", str(single_dir), *FLAGS]) == 0
    finally:
        torch.set_num_threads(n)
    two, one = load_checkpoint(ddp_dir / "model.pt"), load_checkpoint(single_dir / "model.pt")
    assert two["step"] == one["step"] == 3 and two["finished"]
    np.testing.assert_allclose(two["losses"].numpy(), one["losses"].numpy(), rtol=1e-5)
    # Adam divides each gradient element by its own magnitude, so an element whose per-sample terms nearly
    # cancel turns the all-reduce's different summation order into a difference of a few % of one step (lr),
    # not of float eps. A wrong gradient average or batch split would move most weights by ~lr.
    tol = 0.05 * LR
    for name, p in one["model"].items():
        assert torch.allclose(two["model"][name], p, atol=tol), (name, float((two["model"][name] - p).abs().max()))
