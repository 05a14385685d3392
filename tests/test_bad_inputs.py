"""Bad inputs through the Python API: each one stops with one error of the expected type whose
message names the parameter (or the file) and the valid range (or the remedy). Nothing is silently
coerced (``2.5 → 2``, ``True → 1``, ``[1.7, 2.2] → [1, 2]``) and no NaN runs through a sampler.

Every case is ``fn(tmp_path, monkeypatch)``; the table is grouped by class of input.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import struct
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from nbhelpers import files, guidance, layout, runtime, solvers
from nbhelpers._checks import DataError, OutputError
from nbhelpers.data import TensorBatcher, load_mnist, read_idx
from nbhelpers.ddpm import DDPM, GMMEpsOracle
from nbhelpers.distributions import GaussianMixture
from nbhelpers.metrics import fid
from nbhelpers.models.mlp import TimeMLP
from nbhelpers.models.two_pixel import TwoPixelUNet
from nbhelpers.models.unet import UNet, UNetConfig
from nbhelpers.paths import GaussianPath
from nbhelpers.recipes import afhq, cfg_mnist
from nbhelpers.schedules import LinearSchedule, PolynomialSchedule, Schedule, ddpm_betas
from nbhelpers.checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from nbhelpers.training import TrainConfig

NAN, INF = float("nan"), float("inf")
D10 = DDPM.from_schedule("cosine", 10)
X2 = torch.zeros(2, 2)


def zero_eps(x, t, y=None):
    return torch.zeros_like(x)


class ZeroNet(nn.Module):
    """ε = 0 with one parameter (samplers read the device from the parameters)."""

    def __init__(self):
        super().__init__()
        self.p = nn.Parameter(torch.zeros(()))

    def forward(self, x, t, y=None):
        return torch.zeros_like(x)


def labels(*v, dtype=torch.long):
    return torch.tensor(v, dtype=dtype)


# --------------------------------------------------------------------------- schedules
class Swapped(LinearSchedule):
    """α and β exchanged: t = 0 would be data."""

    def alpha(self, t):
        return 1 - t

    def beta(self, t):
        return t.clone()

    def d_alpha(self, t):
        return -torch.ones_like(t)

    def d_beta(self, t):
        return torch.ones_like(t)


class WrongDerivative(LinearSchedule):
    def d_alpha(self, t):
        return 2 * torch.ones_like(t)


class NotMonotone(Schedule):
    def alpha(self, t):
        return torch.sin(math.pi * t / 2) ** 2 + 0.3 * torch.sin(2 * math.pi * t)

    def beta(self, t):
        return 1 - self.alpha(t)

    def d_alpha(self, t):
        return math.pi / 2 * torch.sin(math.pi * t) + 0.6 * math.pi * torch.cos(2 * math.pi * t)

    def d_beta(self, t):
        return -self.d_alpha(t)


class NaNSchedule(LinearSchedule):
    def alpha(self, t):
        return t / (t - 0.5) * (t - 0.5)  # 0/0 at t = 0.5


class NotATensor(LinearSchedule):
    def alpha(self, t):
        return 0.5


# --------------------------------------------------------------------------- files
def _idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write(tmp, name, data: bytes):
    p = tmp / name
    p.write_bytes(data)
    return p


def _ckpt_truncated(tmp):
    p = tmp / "model.pt"
    save_checkpoint(p, {"model": {"w": torch.arange(1000.0)}, "step": 3})
    p.write_bytes(p.read_bytes()[:300])
    return p


def _png(tmp, data: bytes):
    folder = tmp / "cat"
    folder.mkdir(exist_ok=True)
    (folder / "a.png").write_bytes(data)
    return folder


def _good_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buf, format="PNG")
    return buf.getvalue()


def _inception(tmp, mp, data=b"stand-in", folder_mode=0o755, file_mode=0o644, pin=False):
    d = tmp / "weights"
    d.mkdir(exist_ok=True)
    w = d / fid.INCEPTION_FILE
    w.write_bytes(data)
    if pin:
        mp.setattr(fid, "INCEPTION_SHA256", hashlib.sha256(data).hexdigest())
    d.chmod(folder_mode)
    w.chmod(file_mode)
    return fid.inception_weights(weights=w, download=False)


def _archive(tmp, mp, kind):
    archive = tmp / "afhq_v1.zip"
    if kind == "digest":
        with zipfile.ZipFile(archive, "w") as zf:
            zf.writestr("afhq/train/cat/a.png", b"png")
    else:
        archive.write_bytes(b"<html>an error page</html>")
        mp.setitem(afhq.AFHQ_SHA256, "v1", hashlib.sha256(archive.read_bytes()).hexdigest())
    return afhq.download_afhq(tmp)


# --------------------------------------------------------------------------- the table
V = ValueError
CASES = [
    # ---- TrainConfig: integers are integers, numbers are finite and in range
    ("TrainConfig steps=2.5", lambda t, m: TrainConfig(steps=2.5), V, r"steps must be a non-negative integer, got 2.5"),
    ("TrainConfig steps=True", lambda t, m: TrainConfig(steps=True), V, r"steps must be a non-negative integer, got True"),
    ("TrainConfig steps=-1", lambda t, m: TrainConfig(steps=-1), V, r"steps must be a non-negative integer, got -1"),
    ("TrainConfig steps='10'", lambda t, m: TrainConfig(steps="10"), V, r"steps must be a non-negative integer"),
    ("TrainConfig steps=None", lambda t, m: TrainConfig(steps=None), V, r"steps must be a non-negative integer, got None"),
    ("TrainConfig steps=nan", lambda t, m: TrainConfig(steps=NAN), V, r"steps must be a non-negative integer, got nan"),
    ("TrainConfig steps=2.0", lambda t, m: TrainConfig(steps=2.0), V, r"steps must be a non-negative integer, got 2.0"),
    ("TrainConfig steps=np.float64", lambda t, m: TrainConfig(steps=np.float64(3)), V, r"steps must be a non-negative integer"),
    ("TrainConfig steps=float tensor", lambda t, m: TrainConfig(steps=torch.tensor(3.0)), V, r"steps must be a non-negative integer"),
    ("TrainConfig checkpoint_every=1.5", lambda t, m: TrainConfig(steps=5, checkpoint_every=1.5), V, r"checkpoint_every must be a non-negative integer, got 1.5"),
    ("TrainConfig checkpoint_every=-1", lambda t, m: TrainConfig(steps=5, checkpoint_every=-1), V, r"checkpoint_every must be a non-negative integer, got -1"),
    ("TrainConfig checkpoint_every=True", lambda t, m: TrainConfig(steps=5, checkpoint_every=True), V, r"checkpoint_every must be a non-negative integer, got True"),
    ("TrainConfig warmup_steps=-2", lambda t, m: TrainConfig(steps=5, warmup_steps=-2), V, r"warmup_steps must be a non-negative integer, got -2"),
    ("TrainConfig warmup_steps=0.5", lambda t, m: TrainConfig(steps=5, warmup_steps=0.5), V, r"warmup_steps must be a non-negative integer, got 0.5"),
    ("TrainConfig lr=0", lambda t, m: TrainConfig(steps=5, lr=0), V, r"lr must be a finite number > 0, got 0"),
    ("TrainConfig lr<0", lambda t, m: TrainConfig(steps=5, lr=-1e-3), V, r"lr must be a finite number > 0, got -0.001"),
    ("TrainConfig lr=nan", lambda t, m: TrainConfig(steps=5, lr=NAN), V, r"lr must be a finite number > 0, got nan"),
    ("TrainConfig lr=inf", lambda t, m: TrainConfig(steps=5, lr=INF), V, r"lr must be a finite number > 0, got inf"),
    ("TrainConfig lr='1e-3'", lambda t, m: TrainConfig(steps=5, lr="1e-3"), V, r"lr must be a finite number > 0, got '1e-3'"),
    ("TrainConfig ema_decay=1", lambda t, m: TrainConfig(steps=5, ema_decay=1.0), V, r"ema_decay must be a finite number > 0 and < 1"),
    ("TrainConfig ema_decay=0", lambda t, m: TrainConfig(steps=5, ema_decay=0.0), V, r"ema_decay must be a finite number > 0 and < 1"),
    ("TrainConfig ema_decay=nan", lambda t, m: TrainConfig(steps=5, ema_decay=NAN), V, r"ema_decay must be a finite number > 0 and < 1, got nan"),
    ("TrainConfig ema_decay=1.5", lambda t, m: TrainConfig(steps=5, ema_decay=1.5), V, r"ema_decay must be a finite number > 0 and < 1, got 1.5"),
    ("TrainConfig grad_clip=0", lambda t, m: TrainConfig(steps=5, grad_clip=0), V, r"grad_clip must be a finite number > 0"),
    ("TrainConfig grad_clip=-1", lambda t, m: TrainConfig(steps=5, grad_clip=-1.0), V, r"grad_clip must be a finite number > 0"),
    ("TrainConfig grad_clip=nan", lambda t, m: TrainConfig(steps=5, grad_clip=NAN), V, r"grad_clip must be a finite number > 0, got nan"),
    ("TrainConfig weight_decay<0", lambda t, m: TrainConfig(steps=5, weight_decay=-0.1), V, r"weight_decay must be a finite number >= 0"),
    ("TrainConfig weight_decay=nan", lambda t, m: TrainConfig(steps=5, weight_decay=NAN), V, r"weight_decay must be a finite number >= 0, got nan"),
    ("TrainConfig betas one value", lambda t, m: TrainConfig(steps=5, betas=(0.9,)), V, r"betas must be a pair \(beta1, beta2\)"),
    ("TrainConfig betas[1]=1", lambda t, m: TrainConfig(steps=5, betas=(0.9, 1.0)), V, r"betas\[1\] must be a finite number >= 0 and < 1"),
    ("TrainConfig betas[0]=nan", lambda t, m: TrainConfig(steps=5, betas=(NAN, 0.9)), V, r"betas\[0\] must be a finite number >= 0 and < 1"),
    ("TrainConfig betas='ab'", lambda t, m: TrainConfig(steps=5, betas="ab"), V, r"betas must be a pair"),
    ("TrainConfig lr_decay='linear'", lambda t, m: TrainConfig(steps=5, lr_decay="linear"), V, r"unknown lr_decay 'linear'; valid choices: none, cosine"),
    ("TrainConfig lr_decay=None", lambda t, m: TrainConfig(steps=5, lr_decay=None), V, r"unknown lr_decay None; valid choices"),
    ("TrainConfig amp='yes'", lambda t, m: TrainConfig(steps=5, amp="yes"), V, r"amp must be True or False, got 'yes'"),
    ("TrainConfig amp=1", lambda t, m: TrainConfig(steps=5, amp=1), V, r"amp must be True or False, got 1"),
    ("TrainConfig seed=1.5", lambda t, m: TrainConfig(steps=5, seed=1.5), V, r"seed must be an integer, got 1.5"),
    ("TrainConfig seed='0'", lambda t, m: TrainConfig(steps=5, seed="0"), V, r"seed must be an integer, got '0'"),
    # ---- guidance weights: finite, and the right shape
    ("guided_eps w=nan", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), NAN, 3), V, r"guidance weight w must be a finite number, got nan"),
    ("guided_eps w=inf", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), INF, 3), V, r"guidance weight w must be a finite number, got inf"),
    ("guided_eps w=-inf", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), -INF, 3), V, r"guidance weight w must be a finite number, got -inf"),
    ("guided_eps w='2'", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), "2", 3), V, r"guidance weight w must be a finite number, got '2'"),
    ("guided_eps w tensor (3,) for B=2", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), torch.ones(3), 3), V, r"guidance weight w must be a number or a \(2,\) tensor"),
    ("guided_eps w tensor with nan", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), torch.tensor([1.0, NAN]), 3), V, r"guidance weight w must be finite, got 1 NaN/inf"),
    ("guided_eps 0-d nan tensor", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), torch.tensor(NAN), 3), V, r"guidance weight w must be a finite number, got nan"),
    ("CFGModel w=nan", lambda t, m: guidance.CFGModel(ZeroNet(), NAN, 3), V, r"guidance weight w must be a finite number, got nan"),
    ("CFGModel w=inf", lambda t, m: guidance.CFGModel(ZeroNet(), INF, 3), V, r"guidance weight w must be a finite number, got inf"),
    ("CFGModel w='x'", lambda t, m: guidance.CFGModel(ZeroNet(), "x", 3), V, r"guidance weight w must be a finite number, got 'x'"),
    ("CFGModel w=None", lambda t, m: guidance.CFGModel(ZeroNet(), None, 3), V, r"guidance weight w must be a finite number, got None"),
    ("CFGModel num_classes=0", lambda t, m: guidance.CFGModel(ZeroNet(), 1.0, 0), V, r"num_classes must be a positive integer, got 0"),
    ("DDPM.sample CFGModel w=(B,) with a nan", lambda t, m: D10.sample(guidance.CFGModel(zero_eps, torch.tensor([1.0, NAN]), 3), (2, 2), y=labels(0, 1)), V, r"guidance weight w must be finite"),
    ("DDPM.sample CFGModel w of the wrong batch", lambda t, m: D10.sample(guidance.CFGModel(zero_eps, torch.ones(3), 3), (2, 2), y=labels(0, 1)), V, r"guidance weight w must be a number or a \(2,\) tensor, got shape \(3,\)"),
    ("DDPM.sample float labels (no CFGModel)", lambda t, m: D10.sample(zero_eps, (2, 2), y=torch.tensor([0.0, 1.0])), V, r"labels y must be an integer tensor of shape \(2,\), one class per sample, got torch.float32"),
    ("DDPM.sample labels of the wrong batch", lambda t, m: D10.sample(zero_eps, (2, 2), y=labels(0, 1, 1)), V, r"labels y must be an integer tensor of shape \(2,\).*got torch.int64 tensor of shape \(3,\)"),
    ("DDPM.ddim_sample labels not a tensor", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 5, y=[0, 1]), V, r"labels y must be an integer tensor of shape \(2,\).*got list"),
    ("DDPM.p_step CFGModel label out of range", lambda t, m: D10.p_step(guidance.CFGModel(zero_eps, 1.0, 3), X2, 3, y=labels(0, 4)), V, r"labels y must be integer class labels in 0..3"),
    ("DDPM.predict_eps labels of two dimensions", lambda t, m: D10.predict_eps(zero_eps, X2, 3, y=labels(0, 1)[:, None]), V, r"labels y must be an integer tensor of shape \(2,\)"),
    ("generate guidance_w=nan", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1), NAN), V, r"guidance_w must be a finite number >= 0, got nan"),
    ("generate guidance_w=inf", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1), INF), V, r"guidance_w must be a finite number >= 0, got inf"),
    ("generate guidance_w=-1", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1), -1.0), V, r"guidance_w must be a finite number >= 0, got -1"),
    ("generate eta=nan", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1), 1.0, sampler="ddim", n_steps=5, eta=NAN), V, r"eta must be a finite number >= 0, got nan"),
    ("generate chunk=0", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1), 1.0, chunk=0), V, r"chunk must be a positive integer, got 0"),
    ("generate chunk=2.5", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1), 1.0, chunk=2.5), V, r"chunk must be a positive integer, got 2.5"),
    ("generate x_T of another batch", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1), 1.0, x_T=torch.zeros(3, 1, 28, 28)), V, r"x_T must be a tensor \(2, 1, 28, 28\) with one start per label, got Tensor \(3, 1, 28, 28\)"),
    ("edit guidance_w=nan", lambda t, m: cfg_mnist.edit(D10, ZeroNet(), torch.zeros(2, 1, 28, 28), labels(0, 1), 0.5, guidance_w=NAN), V, r"guidance_w must be a finite number, got nan"),
    ("edit t0=1.5", lambda t, m: cfg_mnist.edit(D10, ZeroNet(), torch.zeros(2, 1, 28, 28), labels(0, 1), 1.5), V, r"t0 must be a fraction of T in \[0, 1\]"),
    # ---- DDIM eta, steps and start steps
    ("ddim eta=nan", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 5, eta=NAN), V, r"eta must be a finite number >= 0, got nan"),
    ("ddim eta=-1", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 5, eta=-1.0), V, r"eta must be a finite number >= 0, got -1"),
    ("ddim eta=inf", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 5, eta=INF), V, r"eta must be a finite number >= 0, got inf"),
    ("ddim n_steps=2.5", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 2.5), V, r"n_steps must be an integer in 1..10, got 2.5"),
    ("ddim n_steps=0", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 0), V, r"n_steps must be an integer in 1..10, got 0"),
    ("ddim n_steps=11", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 11), V, r"n_steps must be an integer in 1..10, got 11"),
    ("ddim n_steps=True", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), True), V, r"n_steps must be an integer in 1..10, got True"),
    ("ddim start_step=0", lambda t, m: D10.ddim_sample(zero_eps, (2, 2), 1, start_step=0), V, r"DDIM needs start_step >= 1"),
    ("sample start_step=2.7", lambda t, m: D10.sample(zero_eps, (2, 2), start_step=2.7), V, r"start_step must be an integer in 0..10, got 2.7"),
    ("sample start_step=11", lambda t, m: D10.sample(zero_eps, (2, 2), start_step=11), V, r"start_step must be an integer in 0..10, got 11"),
    ("sample start_step=-1", lambda t, m: D10.sample(zero_eps, (2, 2), start_step=-1), V, r"start_step must be an integer in 0..10, got -1"),
    ("sample start_step=True", lambda t, m: D10.sample(zero_eps, (2, 2), start_step=True), V, r"start_step must be an integer in 0..10, got True"),
    ("sample return_steps=[1.5]", lambda t, m: D10.sample(zero_eps, (2, 2), return_steps=[1.5]), V, r"return_steps entry must be an integer, got 1.5"),
    ("sample return_steps=[20]", lambda t, m: D10.sample(zero_eps, (2, 2), return_steps=[20]), V, r"return_steps must lie in 0..10"),
    ("sample shape with 2.5", lambda t, m: D10.sample(zero_eps, (2, 2.5)), V, r"shape_or_x entry must be a positive integer, got 2.5"),
    ("sample shape with 0", lambda t, m: D10.sample(zero_eps, (0, 2)), V, r"shape_or_x entry must be a positive integer, got 0"),
    ("sample shape=5", lambda t, m: D10.sample(zero_eps, 5), V, r"shape_or_x must be a shape"),
    ("q_sample k=2.7", lambda t, m: D10.q_sample(X2, torch.tensor(2.7)), V, r"k must be an integer step in 0..10"),
    ("q_sample k=11", lambda t, m: D10.q_sample(X2, 11), V, r"step k must lie in 0..10, got 11"),
    ("q_sample k=-1", lambda t, m: D10.q_sample(X2, -1), V, r"step k must lie in 0..10, got -1"),
    ("p_step k=0", lambda t, m: D10.p_step(zero_eps, X2, 0), V, r"step k must lie in 1..10, got 0"),
    ("sample_steps batch=2.5", lambda t, m: D10.sample_steps(2.5), V, r"batch must be a non-negative integer, got 2.5"),
    # ---- DDPM β
    ("DDPM beta=1", lambda t, m: DDPM([0.1, 1.0]), V, r"betas must lie in the open interval \(0, 1\); got min 0.1, max 1.0"),
    ("DDPM beta=0", lambda t, m: DDPM([0.0, 0.1]), V, r"betas must lie in the open interval \(0, 1\)"),
    ("DDPM beta<0", lambda t, m: DDPM([-0.1, 0.1]), V, r"betas must lie in the open interval \(0, 1\)"),
    ("DDPM beta=nan", lambda t, m: DDPM([NAN]), V, r"betas must lie in the open interval \(0, 1\)"),
    ("DDPM beta>1", lambda t, m: DDPM([0.5, 1.5]), V, r"betas must lie in the open interval \(0, 1\)"),
    ("DDPM empty betas", lambda t, m: DDPM([]), V, r"betas must be a non-empty 1-D sequence in \(0, 1\), got shape \(0,\)"),
    ("DDPM 2-D betas", lambda t, m: DDPM([[0.1]]), V, r"betas must be a non-empty 1-D sequence in \(0, 1\), got shape \(1, 1\)"),
    ("DDPM betas='abc'", lambda t, m: DDPM("abc"), V, r"betas must be a non-empty 1-D sequence of numbers in \(0, 1\)"),
    ("from_schedule T=0", lambda t, m: DDPM.from_schedule("cosine", 0), V, r"T must be a positive integer, got 0"),
    ("from_schedule T=2.5", lambda t, m: DDPM.from_schedule("cosine", 2.5), V, r"T must be a positive integer, got 2.5"),
    ("from_schedule T=True", lambda t, m: DDPM.from_schedule("cosine", True), V, r"T must be a positive integer, got True"),
    ("ddpm_betas T=-3", lambda t, m: ddpm_betas("linear", -3), V, r"T must be a positive integer, got -3"),
    ("ddpm_betas start > end", lambda t, m: ddpm_betas("linear", 10, 0.5, 0.1), V, r"need 0 < beta_start <= beta_end < 1"),
    ("ddpm_betas start=nan", lambda t, m: ddpm_betas("linear", 10, NAN, 0.1), V, r"need 0 < beta_start <= beta_end < 1"),
    # ---- class labels
    ("guided_eps float labels", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, torch.tensor([1.7, 2.2]), 1.0, 3), V, r"labels y must be integer class labels in 0..3 \(num_classes = 3.*got dtype torch.float32"),
    ("guided_eps label 5 of 3 classes", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 5), 1.0, 3), V, r"labels y must be integer class labels in 0..3 \(num_classes = 3.*got values in 0..5"),
    ("guided_eps label -1", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(-1, 0), 1.0, 3), V, r"labels y must be integer class labels in 0..3.*got values in -1..0"),
    ("guided_eps labels (2, 1)", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1).reshape(2, 1), 1.0, 3), V, r"labels y must have shape \(2,\), got \(2, 1\)"),
    ("guided_eps 3 labels for B=2", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1, 2), 1.0, 3), V, r"labels y must have shape \(2,\), got \(3,\)"),
    ("guided_eps bool labels", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(1, 0, dtype=torch.bool), 1.0, 3), V, r"labels y must be integer class labels.*got dtype torch.bool"),
    ("guided_eps num_classes=2.5", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), 1.0, 2.5), V, r"num_classes must be a positive integer, got 2.5"),
    ("guided_eps num_classes=True", lambda t, m: guidance.guided_eps(zero_eps, X2, 0.5, labels(0, 1), 1.0, True), V, r"num_classes must be a positive integer, got True"),
    ("drop_labels float labels", lambda t, m: guidance.drop_labels(torch.tensor([1.7, 2.2]), 0.1, 3), V, r"labels y must be integer class labels in 0..3"),
    ("drop_labels p_uncond=1.5", lambda t, m: guidance.drop_labels(labels(0, 1), 1.5, 3), V, r"p_uncond must be a finite number >= 0 and <= 1, got 1.5"),
    ("drop_labels p_uncond=-0.1", lambda t, m: guidance.drop_labels(labels(0, 1), -0.1, 3), V, r"p_uncond must be a finite number >= 0 and <= 1"),
    ("drop_labels p_uncond=nan", lambda t, m: guidance.drop_labels(labels(0, 1), NAN, 3), V, r"p_uncond must be a finite number >= 0 and <= 1, got nan"),
    ("null_labels batch=-1", lambda t, m: guidance.null_labels(-1, 3), V, r"batch must be a non-negative integer, got -1"),
    ("null_labels batch=2.5", lambda t, m: guidance.null_labels(2.5, 3), V, r"batch must be a non-negative integer, got 2.5"),
    ("DDPM.sample label out of range", lambda t, m: D10.sample(guidance.CFGModel(zero_eps, 1.0, 3), (2, 2), y=labels(0, 4)), V, r"labels y must be integer class labels in 0..3 \(num_classes = 3"),
    ("DDPM.sample float labels into a CFGModel", lambda t, m: D10.sample(guidance.CFGModel(zero_eps, 1.0, 3), (2, 2), y=torch.tensor([1.7, 2.2])), V, r"labels y must be an integer tensor"),
    ("generate float labels", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), torch.tensor([1.7, 2.2]), 1.0), V, r"labels must be integer class labels in 0..10 \(num_classes = 10"),
    ("generate label 11", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 11), 1.0), V, r"labels must be integer class labels in 0..10.*got values in 0..11"),
    ("generate labels (1, 2)", lambda t, m: cfg_mnist.generate(D10, ZeroNet(), labels(0, 1).reshape(1, 2), 1.0), V, r"labels must have shape \(B,\), got \(1, 2\)"),
    ("preset train_config steps=2.5", lambda t, m: cfg_mnist.preset("cosine", "smoke").train_config(steps=2.5), V, r"steps must be a non-negative integer, got 2.5"),
    ("class_labels per_class=2.5", lambda t, m: cfg_mnist.class_labels(2.5), V, r"per_class must be a non-negative integer, got 2.5"),
    ("class_labels per_class=-1", lambda t, m: cfg_mnist.class_labels(-1), V, r"per_class must be a non-negative integer, got -1"),
    ("UNet float labels", lambda t, m: _unet()(torch.zeros(2, 1, 8, 8), 0.5, torch.tensor([1.7, 2.2])), V, r"labels y must be integer class labels in 0..3 \(num_classes = 3"),
    ("UNet label 7", lambda t, m: _unet()(torch.zeros(2, 1, 8, 8), 0.5, labels(0, 7)), V, r"labels y must be integer class labels in 0..3.*got values in 0..7"),
    ("UNet labels (2, 2)", lambda t, m: _unet()(torch.zeros(2, 1, 8, 8), 0.5, torch.zeros(2, 2, dtype=torch.long)), V, r"labels y must have shape \(2,\), got \(2, 2\)"),
    ("TimeMLP float labels", lambda t, m: TimeMLP(num_classes=3)(X2, 0.5, torch.tensor([0.5, 1.0])), V, r"labels y must be integer class labels in 0..3"),
    ("TimeMLP label 4", lambda t, m: TimeMLP(num_classes=3)(X2, 0.5, labels(4, 0)), V, r"labels y must be integer class labels in 0..3.*got values in 0..4"),
    ("TwoPixelUNet label 3 of 2", lambda t, m: TwoPixelUNet(num_classes=2)(X2, torch.full((2,), 0.5), labels(3, 0)), V, r"labels y must be integer class labels in 0..2 \(num_classes = 2"),
    ("TwoPixelUNet float labels", lambda t, m: TwoPixelUNet(num_classes=2)(X2, torch.full((2,), 0.5), torch.tensor([1.0, 0.0])), V, r"labels y must be integer class labels in 0..2"),
    ("GMMEpsOracle label 5", lambda t, m: _oracle()(X2, torch.full((2,), 0.5), labels(5, 0)), V, r"labels y must be integer class labels in 0..2 \(num_classes = 2"),
    ("GMMEpsOracle t > 1", lambda t, m: _oracle()(X2, torch.full((2,), 1.5)), V, r"t = k / T must lie in \[0, 1\] \(k in 0..10\)"),
    ("GMMEpsOracle t = nan", lambda t, m: _oracle()(X2, torch.full((2,), NAN)), V, r"t must be a finite scalar or a \(2,\) tensor"),
    # ---- schedules entering a path
    ("GaussianPath α, β swapped", lambda t, m: GaussianPath(Swapped()), V, r"invalid schedule .*alpha\(0\) = 1, must be 0"),
    ("GaussianPath wrong derivative", lambda t, m: GaussianPath(WrongDerivative()), V, r"invalid schedule .*d_alpha\(t\) disagrees with the finite difference"),
    ("GaussianPath non-monotone α", lambda t, m: GaussianPath(NotMonotone()), V, r"invalid schedule .*alpha must be non-decreasing"),
    ("GaussianPath NaN in α", lambda t, m: GaussianPath(NaNSchedule()), V, r"invalid schedule .*alpha\(t\) is not finite everywhere on \[0, 1\]"),
    ("GaussianPath α not a tensor", lambda t, m: GaussianPath(NotATensor()), V, r"alpha\(t\) must return a tensor shaped like t"),
    ("GaussianPath unknown name", lambda t, m: GaussianPath("quadratic"), V, r"unknown schedule 'quadratic'; valid choices: linear, cosine, polynomial"),
    ("GaussianPath.sample t=nan", lambda t, m: GaussianPath("linear").sample(X2, NAN), V, r"t must be a finite number, got nan"),
    ("PolynomialSchedule p=0", lambda t, m: PolynomialSchedule(0), V, r"PolynomialSchedule needs a finite exponent p > 0, got p=0"),
    ("PolynomialSchedule p=nan", lambda t, m: PolynomialSchedule(NAN), V, r"PolynomialSchedule needs a finite exponent p > 0"),
    # ---- solvers
    ("euler n_steps=2.5", lambda t, m: solvers.euler(zero_eps, X2, 0.0, 1.0, 2.5), V, r"n_steps must be a positive integer, got 2.5"),
    ("euler n_steps=0", lambda t, m: solvers.euler(zero_eps, X2, 0.0, 1.0, 0), V, r"n_steps must be a positive integer, got 0"),
    ("euler n_steps=True", lambda t, m: solvers.euler(zero_eps, X2, 0.0, 1.0, True), V, r"n_steps must be a positive integer, got True"),
    ("heun n_steps=-1", lambda t, m: solvers.heun(zero_eps, X2, 0.0, 1.0, -1), V, r"n_steps must be a positive integer, got -1"),
    ("euler t0=nan", lambda t, m: solvers.euler(zero_eps, X2, NAN, 1.0, 4), V, r"t0 must be a finite number, got nan"),
    ("euler_maruyama diffusion=nan", lambda t, m: solvers.euler_maruyama(zero_eps, NAN, X2, 0.0, 1.0, 4), V, r"diffusion must be a finite number, got nan"),
    ("euler_maruyama diffusion tensor inf", lambda t, m: solvers.euler_maruyama(zero_eps, torch.tensor([INF]), X2, 0.0, 1.0, 4), V, r"diffusion must be finite, got 1 NaN/inf"),
    ("sample_from_noise seed=1.5", lambda t, m: solvers.sample_from_noise(zero_eps, 4, (2,), 3, seed=1.5), V, r"seed must be an integer, got 1.5"),
    ("sample_from_noise n=0", lambda t, m: solvers.sample_from_noise(zero_eps, 0, (2,), 3), V, r"n must be a positive integer, got 0"),
    ("sample_from_noise shape=(2.5,)", lambda t, m: solvers.sample_from_noise(zero_eps, 4, (2.5,), 3), V, r"shape entry must be a positive integer, got 2.5"),
    ("sample_from_noise shape=2", lambda t, m: solvers.sample_from_noise(zero_eps, 4, 2, 3), V, r"shape must be a tuple of positive integers"),
    ("sample_from_noise chunk=0", lambda t, m: solvers.sample_from_noise(zero_eps, 4, (2,), 3, chunk=0), V, r"chunk must be a positive integer, got 0"),
    # ---- names of saved outputs
    ("save_samples '../x'", lambda t, m: _run(t, m).save_samples("../x", a=np.zeros(2)), V, r"samples name must be a plain file name .*got '../x'"),
    ("save_samples '../../etc/x'", lambda t, m: _run(t, m).save_samples("../../etc/x", a=np.zeros(2)), V, r"samples name must be a plain file name"),
    ("save_samples 'a/b'", lambda t, m: _run(t, m).save_samples("a/b", a=np.zeros(2)), V, r"samples name must be a plain file name .*got 'a/b'"),
    ("save_samples ''", lambda t, m: _run(t, m).save_samples("", a=np.zeros(2)), V, r"samples name must be a plain file name .*got ''"),
    ("save_samples '..'", lambda t, m: _run(t, m).save_samples("..", a=np.zeros(2)), V, r"samples name must be a plain file name .*got '..'"),
    ("save_samples backslash", lambda t, m: _run(t, m).save_samples("..\\x", a=np.zeros(2)), V, r"samples name must be a plain file name"),
    ("savefig '..'", lambda t, m: _run(t, m).savefig(None, ".."), V, r"figure name must be a plain file name .*got '..'"),
    # ---- data parameters
    ("load_mnist limit=0", lambda t, m: load_mnist(limit=0), V, r"limit must be a positive integer or None, got 0"),
    ("load_mnist limit=2.5", lambda t, m: load_mnist(limit=2.5), V, r"limit must be a positive integer or None, got 2.5"),
    ("TensorBatcher batch_size=0", lambda t, m: TensorBatcher(torch.zeros(4, 1, 2, 2), None, 0), V, r"batch_size must be a positive integer, got 0"),
    ("TensorBatcher batch_size=2.5", lambda t, m: TensorBatcher(torch.zeros(4, 1, 2, 2), None, 2.5), V, r"batch_size must be a positive integer, got 2.5"),
    ("load_folder image_size=0", lambda t, m: afhq.load_folder(_png(t, _good_png()), 0, cache=False), V, r"image_size must be a positive integer, got 0"),
    ("load_folder image_size=2.5", lambda t, m: afhq.load_folder(_png(t, _good_png()), 2.5, cache=False), V, r"image_size must be a positive integer, got 2.5"),
    ("load_folder limit=0", lambda t, m: afhq.load_folder(_png(t, _good_png()), 8, limit=0, cache=False), V, r"limit must be a positive integer or None, got 0"),
    # ---- files: checkpoints
    ("checkpoint empty", lambda t, m: load_checkpoint(_write(t, "model.pt", b"")), CheckpointError, r"model.pt is empty \(0 bytes\); delete it to retrain"),
    ("checkpoint garbage", lambda t, m: load_checkpoint(_write(t, "model.pt", b"garbage" * 10)), CheckpointError, r"model.pt \(70 bytes\) cannot be read: .*delete it to retrain"),
    ("checkpoint truncated", lambda t, m: load_checkpoint(_ckpt_truncated(t)), CheckpointError, r"model.pt \(300 bytes\) cannot be read: .*delete it to retrain"),
    ("checkpoint holds a list", lambda t, m: load_checkpoint(_saved(t, [1, 2])), CheckpointError, r"model.pt holds a list, not a checkpoint dict; delete it to retrain"),
    ("checkpoint with a pickled object", lambda t, m: load_checkpoint(_saved(t, {"opt": np.random.default_rng(0)})), CheckpointError, r"model.pt .*cannot be read: it holds objects that are not plain tensors.*delete it to retrain"),
    ("load_path garbage", lambda t, m: afhq.adopt_checkpoint(_write(t, "other.pt", b"junk"), t / "model.pt", {}, TrainConfig(steps=2)), CheckpointError, r"other.pt \(4 bytes\) cannot be read: .*--load-path must name a checkpoint written by nbhelpers.afhq"),
    ("auto-resume checkpoint garbage", lambda t, m: afhq.adopt_checkpoint(_write(t, "model.pt", b"junk"), t / "model.pt", {}, TrainConfig(steps=2)), CheckpointError, r"model.pt \(4 bytes\) cannot be read: .*delete it to retrain"),
    ("load_path not a training checkpoint", lambda t, m: afhq.adopt_checkpoint(_saved(t, {"w": torch.zeros(1)}), t / "out.pt", {}, TrainConfig(steps=2)), CheckpointError, r"model.pt is not a checkpoint written by nbhelpers.training"),
    ("checkpoint missing", lambda t, m: load_checkpoint(t / "none.pt"), CheckpointError, r"none.pt does not exist"),
    ("checkpoint is a folder", lambda t, m: load_checkpoint(t), CheckpointError, r"does not exist or is not a file"),
    # ---- files: MNIST IDX
    ("IDX empty", lambda t, m: read_idx(_write(t, "train-labels-idx1-ubyte.gz", b"")), DataError, r"train-labels-idx1-ubyte.gz is empty \(0 bytes\); delete it and download it again"),
    ("IDX bad magic", lambda t, m: read_idx(_write(t, "a-idx1-ubyte", b"garbage!")), DataError, r"a-idx1-ubyte is not an IDX file .*delete it and download it again"),
    ("IDX truncated gzip", lambda t, m: read_idx(_write(t, "b.gz", gzip.compress(_idx_bytes(np.random.default_rng(0).integers(0, 255, 500, np.uint8)))[:200])), DataError, r"b.gz cannot be read \(EOFError.*delete it and download it again"),
    ("IDX corrupt gzip", lambda t, m: read_idx(_write(t, "c.gz", b"\x1f\x8b" + b"\x00" * 30)), DataError, r"c.gz cannot be read .*delete it and download it again"),
    ("IDX truncated data", lambda t, m: read_idx(_write(t, "d", _idx_bytes(np.zeros((4, 3), np.uint8))[:-5])), DataError, r"d is truncated: header says \(4, 3\).*delete it and download it again"),
    ("IDX truncated header", lambda t, m: read_idx(_write(t, "e", b"\x00\x00\x08\x03\x00\x00")), DataError, r"e is truncated inside its header.*delete it and download it again"),
    ("IDX missing", lambda t, m: read_idx(t / "nothing.gz"), DataError, r"nothing.gz does not exist"),
    # ---- files: AFHQ images and archive
    ("PNG garbage", lambda t, m: afhq.load_folder(_png(t, b"not a png at all"), 8, cache=False), DataError, r"image .*a.png cannot be decoded .*delete or replace it"),
    ("PNG empty", lambda t, m: afhq.load_folder(_png(t, b""), 8, cache=False), DataError, r"image .*a.png cannot be decoded .*delete or replace it"),
    ("PNG truncated", lambda t, m: afhq.load_folder(_png(t, _good_png()[:40]), 8, cache=False), DataError, r"image .*a.png cannot be decoded .*delete or replace it"),
    ("AFHQ archive with another digest", lambda t, m: _archive(t, m, "digest"), DataError, r"afhq_v1.zip \(the AFHQ v1 archive\) has SHA-256 .* expected 7f63dcc1.*delete it and download it again"),
    ("AFHQ archive not a zip", lambda t, m: _archive(t, m, "notzip"), DataError, r"afhq_v1.zip is not a readable zip archive .*delete it and download it again"),
    # ---- files: Inception weights (TorchScript)
    ("Inception wrong digest", lambda t, m: _inception(t, m), DataError, r"inception-2015-12-05.pt \(Inception weights for FID\) has SHA-256 .* expected f58cb9b6.*delete it and download it again"),
    ("Inception in a world-writable folder", lambda t, m: _inception(t, m, folder_mode=0o777, pin=True), DataError, r"refusing to load the Inception weights .*folder .* is world-writable.*private folder"),
    ("Inception file world-writable", lambda t, m: _inception(t, m, file_mode=0o666, pin=True), DataError, r"refusing to load the Inception weights .*file .* is world-writable"),
    # ---- output folders
    ("lock held by a live run", lambda t, m: _live_lock(t), OutputError, r"in use by another run \(pid \d+ .*wait for it to finish.*delete .*model.pt.lock"),
    ("lock under a file", lambda t, m: runtime.FolderLock(_write(t, "f", b"x") / "model.pt.lock").acquire(), OutputError, r"f .*(not a folder|choose a writable folder)"),
]


def _unet():
    torch.manual_seed(0)
    return UNet(UNetConfig(in_channels=1, base_channels=4, channel_mults=(1, 2), res_layers=1, bottleneck_layers=1,
                           time_embed_dim=8, num_classes=3))


def _oracle():
    gmm = GaussianMixture([0.5, 0.5], [[-1.0, 0.0], [1.0, 0.0]], 0.3)
    return GMMEpsOracle(D10, gmm)


def _run(tmp, mp):
    mp.setattr(layout, "build_dir", lambda: tmp / "build")
    return runtime.NotebookRun("nb", torch.device("cpu"), "smoke", 0, torch.Generator())


def _saved(tmp, obj):
    p = tmp / "model.pt"
    torch.save(obj, p)
    return p


def _live_lock(tmp):
    import json
    import subprocess
    import sys

    lock = tmp / "model.pt.lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a live pid of our own
    try:
        assert runtime.pid_alive(holder.pid)
        lock.write_text(json.dumps({"pid": holder.pid, "host": files._host(), "started": "now"}))
        runtime.FolderLock(lock).acquire()
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("fn, exc, match", [pytest.param(f, e, r, id=i) for i, f, e, r in CASES])
def test_bad_input_gives_one_clear_error(fn, exc, match, tmp_path, monkeypatch):
    with pytest.raises(exc, match=match) as info:
        fn(tmp_path, monkeypatch)
    assert "\n" not in str(info.value)  # one line


def test_the_table_is_wide_and_distinct():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 120


# --------------------------------------------------------------------------- valid inputs still work
@pytest.mark.parametrize("steps", [5, np.int64(5), torch.tensor(5)])
def test_integers_of_every_kind_are_accepted_and_give_the_same_config(steps):
    cfg = TrainConfig(steps=steps, checkpoint_every=np.int32(2), seed=torch.tensor(3))
    assert cfg == TrainConfig(steps=5, checkpoint_every=2, seed=3) and type(cfg.steps) is int


def test_a_0d_tensor_guidance_weight_equals_the_float():
    y = labels(0, 1)
    x = torch.randn(2, 2, generator=torch.Generator().manual_seed(0))

    def net(x, t, y):
        return x * (y[:, None].float() + 1)

    a = guidance.guided_eps(net, x, 0.5, y, torch.tensor(2.0), 3)
    assert torch.equal(a, guidance.guided_eps(net, x, 0.5, y, 2.0, 3))


def test_ddpm_warns_once_when_abar_T_is_not_small():
    import warnings

    from nbhelpers import ddpm as ddpm_mod

    ddpm_mod._warned.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        DDPM.from_schedule("linear", 5)
        DDPM.from_schedule("linear", 5)
    msgs = [str(w.message) for w in caught]
    assert len(msgs) == 1 and "ᾱ_T = 0.9" in msgs[0] and "use more steps T" in msgs[0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        DDPM.from_schedule("linear", 1000)  # ᾱ_T ≈ 4e-5: no warning


def test_gmm_oracle_at_k0_is_zero_noise_not_step_T():
    """At k = 0 x is data: E[ε | x_0] = −√(1 − ᾱ_0) ∇log p = 0 (it used to read ᾱ_T through index −1)."""
    out = _oracle()(torch.tensor([[0.3, -0.2], [1.0, 0.5]]), torch.zeros(2))
    assert torch.equal(out, torch.zeros(2, 2))
