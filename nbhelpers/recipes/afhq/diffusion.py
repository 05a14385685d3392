"""Seed 004's ``Diffusion`` class, the AFHQ ε-network, and the training and sampling pieces around them.

Direction, as in :mod:`nbhelpers.ddpm`: integer step k, k = 0 data and k = T noise; the network
receives the float t = k / T. :class:`Diffusion` is a thin layer over :class:`nbhelpers.ddpm.DDPM` with
the method names of the seed's starter code (``q_sample``, ``p_losses``, ``p_sample``,
``p_sample_loop``, ``sample``): the buffers, the forward process and the reverse step are ``nb.ddpm``'s.
``batch_size`` is the global batch: under ``torchrun`` every rank draws the same global batch (same
seed) and keeps its slice, so a run on N processes follows a 1-process run step for step, to float
rounding (the gradient all-reduce sums in another order; the gloo test allows 1e-5). On CUDA, ``cudnn.benchmark``
lets each process time and pick its own convolution algorithms, whose sums round differently again: the runs
stay close, not bitwise equal, and two runs on one card need not match bitwise either.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...ddpm import DDPM, LOSS_KINDS, SampleResult
from ...devices import autocast as _autocast, randn
from ...training import world
from .data import AFHQImages

__all__ = ["LOSS_TYPES", "Diffusion", "afhq_unet_config", "make_diffusion", "make_batch_fn", "diffusion_loss",
           "as_loss_fn", "autocast", "sample_images"]


LOSS_TYPES: tuple[str, ...] = LOSS_KINDS  # the seed calls them loss types; one tuple for both


class Diffusion(nn.Module):
    """Seed 004's ``Diffusion``: an ε-network plus the cosine-schedule DDPM of :mod:`nbhelpers.ddpm`.

    ``t`` in the method signatures is the integer step k (k = 0 data, k = T noise), an int or an
    int64 ``(B,)`` tensor; the network receives k / T. The schedule buffers (``betas``,
    ``alphas_cumprod``, ``posterior_variance``, …) are those of ``self.ddpm``:
    α_k = clip(ᾱ_k / ᾱ_{k−1}, 0.001, 1), ᾱ_k = f(k)/f(0), f(k) = cos²((k/T + s)/(1 + s) · π/2), s = 0.008.
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        channels: int = 3,
        time_steps: int = 1000,
        loss_type: str = "l1",
        schedule: str = "cosine",
    ) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {loss_type!r}; valid choices: {', '.join(LOSS_TYPES)}")
        self.model = model
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.time_steps = int(time_steps)
        self.loss_type = loss_type
        self.ddpm = DDPM.from_schedule(schedule, self.time_steps)

    def __getattr__(self, name: str) -> Any:
        if name in DDPM.BUFFERS:
            return getattr(self.__dict__["ddpm"], name)
        return super().__getattr__(name)

    @property
    def num_timesteps(self) -> int:
        return self.ddpm.T

    # -- forward process and loss (Alg. 1) --------------------------------------------
    def q_sample(self, x_0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (eq. 15 with ᾱ; t = 0 returns x_0)."""
        return self.ddpm.q_sample(x_0, t, noise, generator)

    def p_losses(self, x_0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The seed's L1 loss ‖ε − ε_θ(x_t, t/T)‖₁ (mean over elements); ``loss_type`` may pick l2 or huber."""
        if noise is None:
            noise = randn(x_0.shape, generator, x_0.device, x_0.dtype)
        if isinstance(t, torch.Tensor) and t.is_cuda and not t.is_floating_point():
            # Without the range check of the steps, which reads them back to the host and would stall
            # the GPU queue on every training step (the steps come from DDPM.sample_steps, in range).
            x_t = self.ddpm.q_sample(x_0, t, noise, check_steps=False)
            t_net = t.to(x_0.dtype) / self.ddpm.T
        else:
            x_t = self.ddpm.q_sample(x_0, t, noise)
            t_net = self.ddpm.time(t, x_0)
        eps = self.model(x_t, t_net)
        if self.loss_type == "l1":
            return F.l1_loss(eps, noise)
        if self.loss_type == "l2":
            return F.mse_loss(eps, noise)
        return F.huber_loss(eps, noise, delta=1.0)

    def forward(self, x_0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Training loss (Alg. 1). Without ``t`` and ``noise`` it draws t ~ U{1..T} then ε ~ N(0, I)
        from ``generator`` in the order of ``DDPM.loss``, so both give the same number."""
        if t is None:
            t = self.ddpm.sample_steps(x_0.shape[0], generator, device=x_0.device)
        return self.p_losses(x_0, t, noise, generator)

    # -- reverse process (Alg. 2) ------------------------------------------------------
    @torch.no_grad()
    def p_sample(self, x: torch.Tensor, t: int | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One step x_t → x_{t−1}: x̂_0 from ε_θ clamped to [−1, 1], posterior mean μ̃_t(x_t, x̂_0) and
        σ_t² = β̃_t of eq. 18, no noise at t = 1 (``DDPM.p_step``)."""
        return self.ddpm.p_step(self.model, x, t, generator=generator, clip_x0=True, sigma="posterior").x_prev

    @torch.no_grad()
    def p_sample_loop(self, shape_or_x: Sequence[int] | torch.Tensor, generator: torch.Generator | None = None,
                      start_step: int | None = None, return_steps: Sequence[int] | None = None) -> SampleResult:
        """Alg. 2 from x_T ~ N(0, I) (a shape) or from a given x at ``start_step`` (default T) down to x_0."""
        return self.ddpm.sample(self.model, shape_or_x, generator=generator, clip_x0=True, sigma="posterior",
                                start_step=start_step, return_steps=return_steps)

    @torch.no_grad()
    def sample(self, batch_size: int = 16, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch_size`` images ``(B, C, S, S)`` in [−1, 1] by Alg. 2."""
        shape = (batch_size, self.channels, self.image_size, self.image_size)
        dev = next(self.model.parameters()).device
        x = randn(shape, generator, dev)
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.p_sample_loop(x, generator=generator).x


def afhq_unet_config(unet_dim: int = 16, channels: int = 3):
    """The ε-network for AFHQ: ``unet_dim`` channels at the first level, ×(1, 2, 4, 8) over four
    levels, two residual layers per level, two in the bottleneck with self-attention, GroupNorm
    (per-sample, so a batch split over processes trains exactly like the whole batch)."""
    from ...models.unet import UNetConfig

    if not isinstance(unet_dim, int) or unet_dim < 1:
        raise ValueError(f"unet_dim must be a positive integer, got {unet_dim!r}")
    return UNetConfig(in_channels=channels, base_channels=unet_dim, channel_mults=(1, 2, 4, 8), res_layers=2,
                      bottleneck_layers=2, norm="group", norm_groups=math.gcd(8, unet_dim), attention_levels=(4,),
                      attention_heads=math.gcd(4, 8 * unet_dim), time_mlp="shared", time_embed_dim=64)


def make_diffusion(image_size: int = 32, time_steps: int = 50, unet_dim: int = 16, channels: int = 3,
                   loss_type: str = "l1", device: str | torch.device = "cpu") -> Diffusion:
    """:class:`Diffusion` around the AFHQ UNet, on ``device`` (channels-last on CUDA)."""
    from ...models.unet import UNet

    diffusion = Diffusion(UNet(afhq_unet_config(unet_dim, channels)), image_size, channels, time_steps, loss_type)
    diffusion = diffusion.to(device)
    if torch.device(device).type == "cuda":
        diffusion = diffusion.to(memory_format=torch.channels_last)
    return diffusion


def make_batch_fn(data: AFHQImages, diffusion: Diffusion, batch_size: int) -> Callable[[torch.Generator], tuple]:
    """``batch_fn(generator) → (x_0, t, ε)`` for :func:`nbhelpers.training.train`.

    Draws the *global* batch (images, flips, steps, noise) and keeps this rank's slice, so that
    every world size sees the same data at the same step (``batch_size`` is global).
    """
    rank, world_size = world()
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes ({world_size})")
    local = batch_size // world_size
    part = slice(rank * local, (rank + 1) * local)
    ddpm = diffusion.ddpm

    def batch_fn(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x0 = data.batch(batch_size, generator)
        t = ddpm.sample_steps(batch_size, generator, device=x0.device)
        noise = randn(x0.shape, generator, x0.device)
        if noise.is_cuda:
            noise = noise.contiguous(memory_format=torch.channels_last)
        return x0[part], t[part], noise[part]

    return batch_fn


def diffusion_loss(model: nn.Module, batch: tuple, generator: torch.Generator) -> torch.Tensor:
    """``loss_fn`` for :func:`nbhelpers.training.train`: ``model`` is the (DDP-wrapped) :class:`Diffusion`."""
    x0, t, noise = batch
    return model(x0, t, noise)


def as_loss_fn(p_losses: Callable[[Diffusion, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
               ) -> Callable[[nn.Module, tuple, torch.Generator], torch.Tensor]:
    """``loss_fn`` for :func:`nbhelpers.training.train` from a function ``p_losses(diffusion, x_0, t, noise)``
    (notebook 08's exercise): the batch of :func:`make_batch_fn` is ``(x_0, t, ε)``. One process only: the
    function is called on the :class:`Diffusion` itself, not through a DDP wrapper."""
    def loss_fn(model: nn.Module, batch: tuple, generator: torch.Generator) -> torch.Tensor:
        x0, t, noise = batch
        return p_losses(model, x0, t, noise)
    return loss_fn


def autocast(device: torch.device):
    """The card's mixed precision for sampling (:func:`nbhelpers.runtime.autocast`: bf16 from sm_80, fp16 on a
    T4, none on the CPU)."""
    return _autocast(device)


@torch.no_grad()
def sample_images(diffusion: Diffusion, n: int, generator: torch.Generator | None = None, batch_size: int = 500) -> torch.Tensor:
    """``n`` samples in [−1, 1] by Alg. 2, in batches of ``batch_size`` (the card's autocast on CUDA).

    A CPU ``generator`` gives the same draws on every device (they are made on the CPU and moved).
    """
    dev = next(diffusion.parameters()).device
    out = []
    with autocast(dev):
        for start in range(0, n, batch_size):
            out.append(diffusion.sample(min(batch_size, n - start), generator=generator).float())
    return torch.cat(out)
