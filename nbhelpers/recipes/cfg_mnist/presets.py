"""Notebook 07's models: each variant's settings per profile, seed 003's time input and the UNet they build.

Variants:

* ``"cosine"`` (seed 001 Q5): the image UNet with 4 blocks per pathway (28 → 14 → 7 → 4 → 2),
  residual layers and self-attention in the blocks, class embedding with a null class, the cosine
  schedule with T = 200 and the UNet's sinusoidal time embedding.
* ``"ddpm_paper"`` (seed 003, Ho et al. 2020): the same UNet, the linear schedule β 1e-4 → 0.02 with
  T = 1000, and t = k/T encoded with 10 sinusoid frequencies up to T/2 (20 features) that enter every
  residual block through its own dense layer (:class:`PaperTimeEncoding`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...ddpm import DDPM
from ...models.embeddings import sinusoidal_encoding, sinusoidal_frequencies
from ...models.unet import UNet, UNetConfig
from ...devices import exact, exact_device
from ...layout import PROFILES
from ...training import TrainConfig

__all__ = [
    "VARIANTS", "GPU_SIZES", "NUM_CLASSES", "DIGIT_SHAPE", "PaperTimeEncoding", "MnistCFGPreset", "preset",
    "build_model",
]

VARIANTS = ("cosine", "ddpm_paper")
GPU_SIZES = ("t4", "large")
"""Sizes of the gpu profile: ``t4`` fits a free Colab T4 (attention below 28×28, batch 128 × 5,000 steps),
``large`` is the full-size model for an A100/H100 (attention at every level, batch 256 × 6,000 steps)."""
NUM_CLASSES = 10
DIGIT_SHAPE = (1, 28, 28)


class PaperTimeEncoding(nn.Module):
    """Seed 003's time input: t = k/T ∈ [0, 1] ↦ [sin 2π f_j t, cos 2π f_j t]_{j=1..n_freqs},
    f_j geometric from 1 to T/2 cycles per unit t (T/2 is the Nyquist rate of the grid k/T, so
    neighbouring steps stay distinguishable). Shapes: t ``(B,)`` → ``(B, 2·n_freqs)``. No parameters.
    """

    def __init__(self, T: int, n_freqs: int = 10) -> None:
        super().__init__()
        if isinstance(T, bool) or not isinstance(T, int) or T < 2:
            raise ValueError(f"T must be an integer >= 2, got {T!r}")
        self.T, self.n_freqs, self.dim = T, int(n_freqs), 2 * int(n_freqs)
        self.max_freq = T / 2.0
        # float64 on the CPU, as sinusoidal_encoding computes the angles, and no buffer: model.to(device) would
        # move it to a device without float64 (MPS). One copy where the angles are computed (exact_device), made
        # at the first forward there, so a forward on the GPU builds and uploads nothing.
        self.freqs = sinusoidal_frequencies(self.n_freqs, self.max_freq)
        self._freqs_at: dict[torch.device, torch.Tensor] = {}

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        home = exact_device(t.device)
        if home not in self._freqs_at:
            with exact():
                self._freqs_at[home] = self.freqs.to(home)
        enc = sinusoidal_encoding(t.float(), self.n_freqs, self.max_freq, freqs=self._freqs_at[home])
        return enc.to(device=t.device)

    def extra_repr(self) -> str:
        return f"T={self.T}, n_freqs={self.n_freqs}, max_freq={self.max_freq:g}"


@dataclass(frozen=True)
class MnistCFGPreset:
    """Everything that defines a trained model of notebook 07 (model, process, data, optimisation)."""

    variant: str
    profile: str
    schedule: str
    T: int
    unet: UNetConfig
    n_freqs: int | None  # seed-003 encoding with this many frequencies; None: the UNet's own embedding
    p_uncond: float = 0.1
    batch_size: int = 64
    steps: int = 2500
    lr: float = 2e-3
    ema_decay: float = 0.995
    warmup_steps: int = 100
    amp: bool = False
    channels_last: bool = False
    loss: str = "l2"
    checkpoint_every: int = 0  # steps between resumable checkpoints (0: only the finished model)

    def key(self) -> dict[str, Any]:
        """Description for the checkpoint cache (the :class:`TrainConfig` is keyed separately)."""
        return {"notebook": "07_mnist_cfg", "variant": self.variant, "schedule": self.schedule, "T": self.T,
                "unet": self.unet.key(), "time_input": f"paper-{self.n_freqs}freq" if self.n_freqs else "unet",
                "p_uncond": self.p_uncond, "batch_size": self.batch_size, "loss": self.loss, "data": "MNIST-train",
                "channels_last": self.channels_last}

    def train_config(self, steps: int | None = None, seed: int = 0) -> TrainConfig:
        return TrainConfig(steps=self.steps if steps is None else steps, lr=self.lr, ema_decay=self.ema_decay,
                           warmup_steps=self.warmup_steps, amp=self.amp, grad_clip=1.0,
                           checkpoint_every=self.checkpoint_every, seed=seed)

    def ddpm(self) -> DDPM:
        return DDPM.from_schedule(self.schedule, self.T)

    def describe(self) -> str:
        u = self.unet
        t_in = (f"t/T → {2 * self.n_freqs}-dim sinusoidal encoding ({self.n_freqs} freqs, 1…{self.T // 2})"
                if self.n_freqs else f"t/T → {u.time_embed_dim}-dim sinusoidal embedding")
        return (f"variant {self.variant!r} ({self.profile}): {self.schedule} schedule, T = {self.T}; {t_in}; "
                f"UNet {u.levels} blocks per pathway, channels {list(u.channels)}, {u.res_layers} residual layer(s) per block, "
                f"self-attention at levels {list(u.attention_levels)} ({u.attention_heads} head(s)), {u.norm} norm; "
                f"p_uncond = {self.p_uncond}; batch {self.batch_size}, {self.steps} steps, lr {self.lr:g}, EMA {self.ema_decay}")


def preset(variant: str = "cosine", profile: str = "cpu", gpu_size: str = "t4") -> MnistCFGPreset:
    """The model and training settings of notebook 07 for ``variant`` and ``profile``.

    The smoke profile shortens T five-fold (a code-path check, not a model). Every profile keeps 4 blocks per
    pathway (levels at 28, 14, 7, 4 and a 2×2 bottleneck) with residual layers and self-attention. ``smoke``,
    ``cpu`` and the gpu profile's ``t4`` size skip attention at the 28×28 level, whose 784-token attention alone
    would cost more than the rest of the network there; ``gpu_size="large"`` (gpu profile only) attends at every
    level, at 64/128/128/128 channels, batch 256 × 6,000 steps.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid choices: {', '.join(PROFILES)}")
    if gpu_size not in GPU_SIZES:
        raise ValueError(f"unknown gpu_size {gpu_size!r}; valid choices: {', '.join(GPU_SIZES)}")
    paper = variant == "ddpm_paper"
    schedule, T = ("linear", 1000) if paper else ("cosine", 200)
    if profile == "smoke":  # seconds, every code path; the real profiles keep the seeds' T
        T //= 5
    n_freqs = 10 if paper else None
    if profile == "smoke":
        unet = UNetConfig(base_channels=8, channel_mults=(1, 2, 2, 2), res_layers=1, bottleneck_layers=1, norm="group",
                          norm_groups=4, attention_levels=(1, 2, 3, 4), attention_heads=1, num_classes=NUM_CLASSES,
                          time_embed_dim=2 * n_freqs if paper else 32)
        train = dict(batch_size=16, steps=20, lr=2e-3, ema_decay=0.9, warmup_steps=5)
    elif profile == "cpu":
        unet = UNetConfig(base_channels=16, channel_mults=(1, 2, 4, 4), res_layers=1, bottleneck_layers=1, norm="group",
                          norm_groups=8, attention_levels=(1, 2, 3, 4), attention_heads=1, num_classes=NUM_CLASSES,
                          time_embed_dim=2 * n_freqs if paper else 64)
        train = dict(batch_size=64, steps=2500, lr=2e-3, ema_decay=0.995, warmup_steps=100, checkpoint_every=500,
                     channels_last=True)  # ~11 % faster steps on the CPU too
    elif gpu_size == "t4":  # a free Colab T4 (fp16 autocast): both trainings and every sampling within minutes
        unet = UNetConfig(base_channels=32, channel_mults=(1, 2, 4, 4), res_layers=1, bottleneck_layers=1, norm="group",
                          norm_groups=8, attention_levels=(1, 2, 3, 4), attention_heads=4, num_classes=NUM_CLASSES,
                          time_embed_dim=2 * n_freqs if paper else 128)
        train = dict(batch_size=128, steps=5000, lr=1e-3, ema_decay=0.999, warmup_steps=200, amp=True, channels_last=True,
                     checkpoint_every=1000)
    else:
        unet = UNetConfig(base_channels=64, channel_mults=(1, 2, 2, 2), res_layers=2, bottleneck_layers=2, norm="group",
                          norm_groups=16, attention_levels=(0, 1, 2, 3, 4), attention_heads=4, num_classes=NUM_CLASSES,
                          time_embed_dim=2 * n_freqs if paper else 128)
        train = dict(batch_size=256, steps=6000, lr=1e-3, ema_decay=0.999, warmup_steps=300, amp=True, channels_last=True,
                     checkpoint_every=1000)
    return MnistCFGPreset(variant=variant, profile=profile, schedule=schedule, T=T, unet=unet, n_freqs=n_freqs, **train)


def build_model(p: MnistCFGPreset, device: str | torch.device = "cpu") -> UNet:
    """The UNet of preset ``p`` on ``device``; for the seed-003 variant its time input is
    :class:`PaperTimeEncoding` (20 features, added to every residual block by that block's dense layer)."""
    model = UNet(p.unet)
    if p.n_freqs:
        if p.unet.time_embed_dim != 2 * p.n_freqs:
            raise ValueError(f"the seed-003 encoding has {2 * p.n_freqs} features but time_embed_dim is {p.unet.time_embed_dim}")
        model.time_embed = PaperTimeEncoding(p.T, p.n_freqs)
    model = model.to(device)
    if p.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model
