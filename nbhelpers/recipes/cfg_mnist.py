"""Class-conditional DDPM with classifier-free guidance on MNIST: notebook 07_mnist_cfg's recipe.

Model presets per profile and variant, the guided training loss and the cached training, guided sampling in
chunks, seed 003's partial-diffusion editing, the "when does each pixel settle" measurement, seed 003's
forward process on digits, the scores (with standard errors) that compare the two variants, the guidance
explorer, and the notebook's sweeps (guidance weight, editing t₀, DDIM step counts) with their scores,
tables, recorded numbers and figures. The digits are scored by :func:`nbhelpers.recipes.mnist.mnist_evaluator`.

Direction (as in :mod:`nbhelpers.ddpm`): integer step k = 0 is data, k = T is noise, and the
network receives the float t = k / T. Guidance (as in :mod:`nbhelpers.guidance`):
ε̄ = (w + 1)·ε(x, t, y) − w·ε(x, t, ∅) with ∅ = ``num_classes``; w = 0 is plain conditional sampling.

Variants:

* ``"cosine"`` (seed 001 Q5): the image UNet with 4 blocks per pathway (28 → 14 → 7 → 4 → 2),
  residual layers and self-attention in the blocks, class embedding with a null class, the cosine
  schedule with T = 200 and the UNet's sinusoidal time embedding.
* ``"ddpm_paper"`` (seed 003, Ho et al. 2020): the same UNet, the linear schedule β 1e-4 → 0.02 with
  T = 1000, and t = k/T encoded with 10 sinusoid frequencies up to T/2 (20 features) that enter every
  residual block through its own dense layer (:class:`PaperTimeEncoding`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from .._checks import check_float, check_int, check_labels
from ..dryrun import budget
from ..runtime import PROFILES, autocast
from ..ddpm import DDPM, SAMPLERS, SampleResult, guided_sample
from ..guidance import CFGModel, drop_labels
from ..metrics.stats import binomial_se, max_binomial_se
from ..models.embeddings import sinusoidal_encoding, sinusoidal_frequencies
from ..models.unet import UNet, UNetConfig
from ..plotting import class_grid_figure, tile_images
from ..runtime import exact, exact_device, randn
from ..training import TrainConfig
from ..widgets import show_explorer

__all__ = [
    "VARIANTS", "SAMPLERS", "NUM_CLASSES", "PaperTimeEncoding", "MnistCFGPreset", "preset", "build_model",
    "cfg_loss", "class_labels", "device_generator", "generate", "edit", "settle_steps", "SettleSummary",
    "settle_summary", "rms_distance", "class_grid_figure",
    "forward_process", "forward_process_figure", "binomial_se", "verdict", "VariantScore", "score_variant",
    "draw_guidance_explorer", "guidance_explorer",
    "train_cfg_model", "schedule_and_time_input_figure", "GuidanceSweep", "guidance_sweep", "first_per_class",
    "SWEEP_METRICS", "score_samples", "sweep_metrics", "sweep_table", "diversity_figure", "diversity_text",
    "guidance_tradeoff_figure", "trajectory_figure", "settling_figure", "edit_sweep", "real_pair_distances",
    "score_edits", "edit_metrics", "edit_table", "edits_figure", "edit_distance_figure", "ddim_and_ancestral_sets",
    "score_sets", "sets_metrics", "sets_table", "ddim_vs_ancestral_figure", "sample_and_score_variant",
]

VARIANTS = ("cosine", "ddpm_paper")
GPU_SIZES = ("t4", "large")
"""Sizes of the gpu profile: ``t4`` fits a free Colab T4 (attention below 28×28, batch 128 × 5,000 steps),
``large`` is the full-size model for an A100/H100 (attention at every level, batch 256 × 6,000 steps)."""
NUM_CLASSES = 10
DIGIT_SHAPE = (1, 28, 28)


# --------------------------------------------------------------------------- the seed-003 time input
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


# --------------------------------------------------------------------------- presets
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


# --------------------------------------------------------------------------- training
def cfg_loss(ddpm: DDPM, p_uncond: float, num_classes: int = NUM_CLASSES, kind: str = "l2",
             channels_last: bool = False) -> Callable[[nn.Module, Any, torch.Generator], torch.Tensor]:
    """``loss_fn(model, batch, generator)`` for ``nb.training.train``: the labels of ``batch``
    (``.x``, ``.y``) are replaced by ∅ with probability ``p_uncond`` (:func:`nb.guidance.drop_labels`),
    then Ho et al.'s ε-loss (Algorithm 1) is taken with the kept or dropped labels."""

    def loss_fn(model: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        x = batch.x.contiguous(memory_format=torch.channels_last) if channels_last else batch.x
        y = drop_labels(batch.y, p_uncond, num_classes, generator)
        return ddpm.loss(model, x, y, kind=kind, generator=generator)

    return loss_fn


# --------------------------------------------------------------------------- sampling
def class_labels(per_class: int, num_classes: int = NUM_CLASSES, device: str | torch.device = "cpu") -> torch.Tensor:
    """``[0]*per_class + [1]*per_class + …``: int64 ``(per_class · num_classes,)``, ordered by class."""
    per_class = check_int("per_class", per_class, min=0)
    num_classes = check_int("num_classes", num_classes, min=1)
    return torch.arange(num_classes, device=device).repeat_interleave(per_class)


def device_generator(device: str | torch.device, seed: int) -> torch.Generator:
    """A generator on ``device`` seeded with ``seed`` (draws on the device avoid host round trips)."""
    return torch.Generator(device=torch.device(device)).manual_seed(check_int("seed", seed))


def generate(
    ddpm: DDPM,
    model: nn.Module,
    labels: torch.Tensor,
    guidance_w: float,
    *,
    sampler: str = "ancestral",
    n_steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    return_steps: Sequence[int] | None = None,
    chunk: int = 1000,
    amp: bool = False,
    num_classes: int = NUM_CLASSES,
) -> SampleResult:
    """Guided digits ``(B, 1, 28, 28)`` for ``labels`` with weight ``guidance_w``: :func:`nbhelpers.ddpm.guided_sample`
    (ancestral with all T steps, or DDIM with ``n_steps`` and ``eta``; ``chunk`` labels at a time; w = 0 skips the
    unconditional pass; states and x̂₀ at ``return_steps`` kept on the CPU). ``x_T`` fixes the starting noise;
    otherwise it is drawn with ``generator``. Returns a :class:`nb.ddpm.SampleResult` (``x`` on the CPU, float32).
    """
    return guided_sample(ddpm, model, labels, guidance_w, num_classes, shape=DIGIT_SHAPE, sampler=sampler,
                         n_steps=n_steps, eta=eta, generator=generator, x_T=x_T, return_steps=return_steps,
                         chunk=chunk, amp=amp)


@torch.no_grad()
def edit(
    ddpm: DDPM,
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    t0: float,
    guidance_w: float = 0.0,
    generator: torch.Generator | None = None,
    amp: bool = False,
    num_classes: int = NUM_CLASSES,
) -> torch.Tensor:
    """Seed 003's partial diffusion: diffuse ``images`` to k₀ = round(t0 · T),
    x_{k₀} ~ q(x_{k₀} | x₀) = N(√ᾱ_{k₀} x₀, (1 − ᾱ_{k₀}) I), then denoise k₀ → 0 ancestrally with
    ``labels`` (guided with ``guidance_w``). t0 = 0 returns the images unchanged; t0 = 1 is a fresh sample.
    Shapes: images ``(B, 1, 28, 28)``, labels ``(B,)`` → ``(B, 1, 28, 28)`` on the CPU.
    """
    if isinstance(t0, bool) or not isinstance(t0, (int, float)) or not 0.0 <= float(t0) <= 1.0:
        raise ValueError(f"t0 must be a fraction of T in [0, 1], got {t0!r}")
    guidance_w = check_float("guidance_w", guidance_w)
    num_classes = check_int("num_classes", num_classes, min=1)
    labels = check_labels("labels", labels, num_classes, images.shape[0])
    device = next(model.parameters()).device
    k0 = int(round(float(t0) * ddpm.T))
    if guidance_w != 0.0:
        model = CFGModel(model, guidance_w, num_classes)
    with autocast(device, enabled=amp):
        out = ddpm.sample(model, x_start=images.to(device), y=labels.to(device), start_step=k0, generator=generator)
    return out.x.float().cpu()


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image root-mean-square pixel distance ``sqrt(mean((a − b)²))``: ``(B, …)`` → ``(B,)``."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1).sqrt()


# --------------------------------------------------------------------------- part by part or all at once?
def settle_steps(x0_preds: dict[int, torch.Tensor], final: torch.Tensor, tol: float = 0.25) -> torch.Tensor:
    """Per pixel, the step from which the prediction x̂₀ stays on its final value:

        s(p) = max{k : |x̂₀^{(k')}(p) − x₀(p)| ≤ tol for every recorded k' ≤ k}   (0 if off at the last step)

    Generation runs k = T → 0, so when it reaches step s(p) pixel p is settled for good: s(p) = T
    means "right from the start", small s(p) means "only at the very end". ``x0_preds`` maps
    steps k to the x̂₀ predicted at k (``SampleResult.x0_preds``); ``final`` is the sample x₀.
    Shapes: each ``(B, C, H, W)`` like ``final`` → int64 ``(B, C, H, W)``.
    """
    if not x0_preds:
        raise ValueError("x0_preds is empty; sample with return_steps to record x̂0")
    final = final.float().cpu()
    out = torch.zeros(final.shape, dtype=torch.long)
    alive = torch.ones(final.shape, dtype=torch.bool)
    for k in sorted(x0_preds):  # from the end of generation backwards
        alive &= (x0_preds[k].float().cpu() - final).abs() <= tol
        out = torch.where(alive, torch.full_like(out, k), out)
    return out


@dataclass
class SettleSummary:
    """When do the parts of a digit settle (:func:`settle_steps`)? Steps are fractions of T
    (1 = settled from the start of generation, 0 = only at its end).

    ``ink_q10/median/q90``: quantiles of the settle step over ink pixels (final value > 0), averaged
    over samples; ``coarse_median``: the same for the 7×7 block means (4×4 average pooling) of the
    ink region; ``quadrant_spread``: per sample, the largest difference between the median settle
    steps of the digit's four quadrants (around its ink centroid), averaged; ``fraction_settled``:
    fraction of ink pixels (and of coarse ink blocks) already settled when generation reaches each
    recorded step ``steps`` (ascending; 1 at k = 0).
    """

    T: int
    n: int
    ink_q10: float
    ink_median: float
    ink_q90: float
    coarse_median: float
    quadrant_spread: float
    steps: np.ndarray = field(repr=False)
    fraction_settled: np.ndarray = field(repr=False)
    fraction_settled_coarse: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}


def settle_summary(x0_preds: dict[int, torch.Tensor], final: torch.Tensor, T: int, tol: float = 0.25) -> SettleSummary:
    """Summarise :func:`settle_steps` over a batch of single-channel digits (see :class:`SettleSummary`)."""
    final = final.float().cpu()
    s = settle_steps(x0_preds, final, tol).float() / T
    pooled = {k: F.avg_pool2d(v.float().cpu(), 4, ceil_mode=True) for k, v in x0_preds.items()}
    final_c = F.avg_pool2d(final, 4, ceil_mode=True)
    s_c = settle_steps(pooled, final_c, tol).float() / T
    ink = final[:, 0] > 0
    ink_c = final_c[:, 0] > -0.5  # blocks holding a fair share of ink
    q10, med, q90, cmed, spread = [], [], [], [], []
    H, W = final.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    for i in range(final.shape[0]):
        v = s[i, 0][ink[i]]
        if v.numel() < 4:
            continue
        q = torch.quantile(v, torch.tensor([0.1, 0.5, 0.9]))
        q10.append(q[0].item()), med.append(q[1].item()), q90.append(q[2].item())
        if ink_c[i].any():
            cmed.append(s_c[i, 0][ink_c[i]].median().item())
        cy, cx = yy[ink[i]].float().mean(), xx[ink[i]].float().mean()
        meds = []
        for up in (True, False):
            for left in (True, False):
                m = ink[i] & ((yy < cy) if up else (yy >= cy)) & ((xx < cx) if left else (xx >= cx))
                if m.sum() >= 3:
                    meds.append(s[i, 0][m].median().item())
        if len(meds) >= 2:
            spread.append(max(meds) - min(meds))
    steps = np.array(sorted(x0_preds) + ([0] if 0 not in x0_preds else []))
    steps.sort()
    s_ink = s[:, 0][ink] * T
    s_cink = s_c[:, 0][ink_c] * T
    frac = np.array([(s_ink >= k).float().mean().item() for k in steps])
    frac_c = np.array([(s_cink >= k).float().mean().item() for k in steps])
    mean = lambda a: float(np.mean(a)) if a else float("nan")  # noqa: E731
    return SettleSummary(T=T, n=len(med), ink_q10=mean(q10), ink_median=mean(med), ink_q90=mean(q90),
                         coarse_median=mean(cmed), quadrant_spread=mean(spread), steps=steps,
                         fraction_settled=frac, fraction_settled_coarse=frac_c)


# --------------------------------------------------------------------------- seed 003: the forward process on digits
@torch.no_grad()
def forward_process(ddpm: DDPM, images: torch.Tensor, steps: Sequence[int],
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """x_k = √ᾱ_k x₀ + √(1 − ᾱ_k) ε at every k in ``steps`` (k = 0 is the image), with one ε per
    image shared by all k, so a row shows one image being overpowered by noise.
    Shapes: images ``(B, C, H, W)`` → ``(B, len(steps), C, H, W)`` on the images' device.
    """
    bad = [k for k in steps if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= ddpm.T]
    if bad or not len(steps):
        raise ValueError(f"steps must be integers in [0, {ddpm.T}] (T of this DDPM), got {list(steps)!r}")
    noise = randn(images.shape, generator, images.device).to(images)
    return torch.stack([ddpm.q_sample(images, int(k), noise) for k in steps], dim=1)


def forward_process_figure(frames: torch.Tensor, steps: Sequence[int], ddpm: DDPM, size: float = 0.85,
                           title: str | None = None):
    """One row per image, one column per step k of :func:`forward_process`; every panel on the
    same grey scale, [−1, 1] (values beyond it are clipped), so the fading of the digit is not
    hidden by per-panel contrast. Column titles give k and √ᾱ_k, the share of the image left."""
    if frames.ndim != 5 or frames.shape[2] != 1 or frames.shape[1] != len(steps):
        raise ValueError(f"frames must have shape (B, {len(steps)}, 1, H, W) for {len(steps)} steps, "
                         f"got {tuple(frames.shape)}")
    B, K = frames.shape[:2]
    sqrt_ab = torch.cat([torch.ones(1, dtype=torch.float64), ddpm.alphas_cumprod.double().cpu().sqrt()])
    fig, axes = plt.subplots(B, K, figsize=(size * K + 0.4, size * B + 0.7), squeeze=False)
    x = frames.detach().float().cpu().clamp(-1, 1)
    for i in range(B):
        for j, k in enumerate(steps):
            ax = axes[i, j]
            ax.imshow(x[i, j, 0].numpy(), cmap="gray", vmin=-1, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(f"k = {int(k)}\n√ᾱ = {sqrt_ab[int(k)].item():.2f}", fontsize=8)
    fig.suptitle(title or f"forward process q(x_k | x_0), T = {ddpm.T}; one ε per row", fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- comparing two trained variants
def verdict(a: float, se_a: float, b: float, se_b: float, z: float = 2.0) -> str:
    """``"higher"``, ``"lower"`` or ``"indistinguishable"``: a against b, distinguishable only when
    |a − b| ≥ z·√(se_a² + se_b²) (independent estimates; z = 2 is about a 95 % two-sided test)."""
    if min(se_a, se_b) < 0 or not all(math.isfinite(v) for v in (a, b, se_a, se_b)):
        raise ValueError(f"need finite values and standard errors >= 0, got a={a!r}±{se_a!r}, b={b!r}±{se_b!r}")
    if abs(a - b) < z * math.hypot(se_a, se_b) or a == b:
        return "indistinguishable"
    return "higher" if a > b else "lower"


@dataclass
class VariantScore:
    """One trained model of notebook 07 scored by the MNIST evaluator, each number with its standard error.

    From the conditional samples at w = 0 (all ten digits requested equally): ``recognised``
    (max class probability ≥ 0.9), ``fd_ratio`` (FD to real digits over the real-vs-real floor;
    ``fd_ratio_se`` from a bootstrap over the samples) and ``accuracy_w0``; from the samples at
    w = 2: ``accuracy_w2`` (read as the requested digit); from the unconditional samples (y = ∅):
    ``class_min``/``class_max``, the shares of the rarest and commonest digit (1/10 each is balanced).
    """

    n: int
    recognised: float
    recognised_se: float
    fd_ratio: float
    fd_ratio_se: float
    accuracy_w0: float
    accuracy_w0_se: float
    accuracy_w2: float
    accuracy_w2_se: float
    class_min: float
    class_min_se: float
    class_max: float
    class_max_se: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def score_variant(ev: Any, labels: torch.Tensor, w0: torch.Tensor, w2: torch.Tensor, uncond: torch.Tensor,
                  n_boot: int = 20, generator: torch.Generator | None = None) -> VariantScore:
    """Score a model by its conditional samples ``w0`` and ``w2`` (requested ``labels``) and its
    unconditional samples ``uncond`` with an :class:`nb.metrics.images.MNISTEvaluator` ``ev``
    (see :class:`VariantScore`). Shapes: samples ``(N, 1, 28, 28)``, labels ``(N,)``."""
    from ..metrics.images import feature_statistics, frechet_distance

    if not (len(labels) == len(w0) == len(w2)):
        raise ValueError(f"labels, w0 and w2 must have one entry per sample, got {len(labels)}, {len(w0)}, {len(w2)}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2 for a standard error, got {n_boot!r}")
    e0, eu = ev.evaluate(w0), ev.evaluate(uncond)
    feats = ev.features(w0)
    floor = e0.fd_floor
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    boot = [frechet_distance(*feature_statistics(feats[torch.randint(0, len(feats), (len(feats),), generator=g)]),
                             *ev.reference_stats) / floor for _ in range(n_boot)]
    acc0, acc2 = ev.class_accuracy(w0, labels), ev.class_accuracy(w2, labels)
    n, n_u = len(labels), len(uncond)
    return VariantScore(
        n=n, recognised=e0.recognised_fraction, recognised_se=binomial_se(e0.recognised_fraction, n),
        fd_ratio=e0.fd_ratio, fd_ratio_se=float(np.std(boot, ddof=1)),
        accuracy_w0=acc0, accuracy_w0_se=binomial_se(acc0, n), accuracy_w2=acc2, accuracy_w2_se=binomial_se(acc2, n),
        class_min=eu.class_min, class_min_se=binomial_se(eu.class_min, n_u),
        class_max=eu.class_max, class_max_se=binomial_se(eu.class_max, n_u),
    )


# --------------------------------------------------------------------------- the guidance explorer
def draw_guidance_explorer(w: float, samples: dict[float, Any], metrics: dict[float, dict[str, float]] | None = None,
                           per_class: int = 8, num_classes: int = 10, fig: Figure | None = None) -> Figure:
    """Left: digits drawn with classifier-free guidance weight ``w`` (row = requested digit).
    Right (when ``metrics`` are given): class accuracy and within-class diversity (relative to real
    digits) against w, with the chosen w marked.

    ``samples[w]``: ``(N, 1, H, W)`` in [−1, 1] ordered by requested class, N / num_classes per class;
    ``metrics[w]``: ``{"accuracy": …, "diversity": …}`` (any extra keys are ignored).
    """
    if not samples:
        raise ValueError("samples is empty; pass {w: images} for at least one guidance weight")
    ws = sorted(float(k) for k in samples)
    if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)) or float(w) not in ws:
        raise ValueError(f"w must be one of the sampled guidance weights {ws}, got {w!r}")
    x = torch.as_tensor(samples[float(w)]).detach().float().cpu()
    if x.ndim != 4 or x.shape[0] % num_classes:
        raise ValueError(f"samples[{w}] must be (N, C, H, W) with N a multiple of num_classes={num_classes}, got {tuple(x.shape)}")
    n_per = x.shape[0] // num_classes
    k = min(per_class, n_per)
    H, W = x.shape[-2:]
    first_k = torch.tensor([c * n_per + j for c in range(num_classes) for j in range(k)])  # row = class
    canvas = tile_images(x[first_k, :1], k)[..., 0]
    if fig is None:
        fig = plt.figure(figsize=(8.5 if metrics else 4.0, 4.2))
    else:
        fig.clf()
    if metrics:
        ax_img, ax_m = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.3]})
    else:
        ax_img, ax_m = fig.subplots(1, 1), None
    ax_img.imshow(canvas, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax_img.set_xticks([])
    ax_img.set_yticks([c * (H + 2) + 1 + H / 2 for c in range(num_classes)])
    ax_img.set_yticklabels([str(c) for c in range(num_classes)])
    ax_img.grid(False)
    ax_img.set_title(f"guidance w = {float(w):g}", fontsize=10)
    if ax_m is not None:
        mw = sorted(float(v) for v in metrics)
        acc = [100 * metrics[v]["accuracy"] for v in mw]
        div = [metrics[v]["diversity"] for v in mw]
        ax_m.plot(mw, acc, "o-", color="C0", label="class accuracy (%)")
        ax_m.set_xlabel("guidance weight w")
        ax_m.set_ylabel("class accuracy (%)", color="C0")
        ax_m.set_ylim(min(acc + [50.0]) - 2, 101)
        ax2 = ax_m.twinx()
        ax2.plot(mw, div, "s--", color="C1", label="diversity / real")
        ax2.set_ylabel("within-class diversity / real digits", color="C1")
        ax2.set_ylim(0, max(div + [1.1]) * 1.05)
        ax2.axhline(1.0, color="C1", lw=0.8, ls=":")
        ax2.grid(False)
        ax_m.axvline(float(w), color="k", lw=1.0, ls=":")
        if float(w) in metrics:
            ax_m.plot([float(w)], [100 * metrics[float(w)]["accuracy"]], "o", ms=10, mfc="none", mec="k")
        ax_m.set_title("quality (accuracy) against diversity", fontsize=10)
    fig.tight_layout()
    return fig


def guidance_explorer(samples: dict[float, Any], metrics: dict[float, dict[str, float]] | None = None, w: float = 2.0,
                      per_class: int = 8, interactive: bool | None = None) -> Figure:
    """A slider over the sampled guidance weights redrawing :func:`draw_guidance_explorer` (static figure when headless)."""
    ws = sorted(float(k) for k in samples)
    initial = {"w": float(w), "samples": {float(k): v for k, v in samples.items()},
               "metrics": {float(k): v for k, v in metrics.items()} if metrics else None, "per_class": per_class}

    def controls() -> dict[str, Any]:
        import ipywidgets as widgets

        return {"w": widgets.SelectionSlider(options=ws, value=float(w), description="w", continuous_update=False)}

    return show_explorer(draw_guidance_explorer, initial, controls, interactive)


# --------------------------------------------------------------------------- the notebook's sweeps, scores and figures
def train_cfg_model(p: MnistCFGPreset, model: nn.Module, train_set: Any, steps: int | None = None, seed: int = 0,
                    retrain: bool = False, desc: str = "DDPM + label dropout",
                    loss_fn: Callable[[nn.Module, Any, torch.Generator], torch.Tensor] | None = None) -> Any:
    """Train ``model`` (built by :func:`build_model` from ``p``) with ``loss_fn`` (default :func:`cfg_loss` of the
    preset; notebook 07 passes its own, checked equal to it) on ``train_set`` (an :class:`nb.data.ImageDataset`),
    cached as ``mnist_cfg_<variant>`` under the key :meth:`MnistCFGPreset.key`.
    Returns :class:`nb.training.TrainResult` (``sampling_model`` holds the EMA weights)."""
    from ..standin import mark_key
    from ..training import checkpoint_path, train

    key = mark_key(p.key(), getattr(train_set, "name", ""))
    ckpt = checkpoint_path(f"mnist_cfg_{p.variant}", key, profile=p.profile)
    if loss_fn is None:
        loss_fn = cfg_loss(p.ddpm(), p.p_uncond, channels_last=p.channels_last)
    return train(model, loss_fn, train_set.batcher(p.batch_size),
                 p.train_config(steps, seed=seed), checkpoint=ckpt, key=key, retrain=retrain, desc=desc)


def schedule_and_time_input_figure(model: nn.Module, T: int, schedule: str) -> Figure:
    """Left: ᾱ_k against k/T for both variants' schedules (cosine, T = 200; linear, T = 1000), ``schedule``
    drawn thicker; right: the time input ``model.time_embed(k / T)`` for k = 0…T, one row per feature."""
    fig, (ax_a, ax_e) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 1.3]})
    for name, T_s in (("cosine", 200), ("linear", 1000)):
        ab = DDPM.from_schedule(name, T_s).alphas_cumprod
        ax_a.plot(np.arange(1, T_s + 1) / T_s, ab.numpy(), lw=2.4 if name == schedule else 1.2,
                  label=f"{name}, T = {T_s}" + ("  (this run)" if name == schedule else ""))
    ax_a.set_xlabel("k / T")
    ax_a.set_ylabel("ᾱ_k  (signal kept)")
    ax_a.set_title("noise schedules", fontsize=10)
    ax_a.legend(fontsize=8)
    k_grid = torch.arange(T + 1, device=next(model.parameters()).device)
    with torch.no_grad():
        codes = model.time_embed(k_grid.float() / T).float().cpu().numpy()
    im = ax_e.imshow(codes.T, aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, extent=(0, T, codes.shape[1] - 0.5, -0.5),
                     interpolation="nearest")
    ax_e.set_xlabel("step k")
    ax_e.set_ylabel("feature")
    ax_e.set_title(f"time input of this run: {codes.shape[1]} features of t = k/T", fontsize=10)
    ax_e.grid(False)
    fig.colorbar(im, ax=ax_e, fraction=0.04)
    fig.tight_layout()
    return fig


@dataclass
class GuidanceSweep:
    """Samples at each guidance weight w (``samples[w]`` on the CPU), the network calls per sample and the wall time."""

    samples: dict[float, torch.Tensor]
    nfe: dict[float, int]
    seconds: float


def guidance_sweep(ddpm: DDPM, model: nn.Module, labels: torch.Tensor, weights: Sequence[float], *, x_T: torch.Tensor,
                   sampler: str = "ancestral", n_steps: int | None = None, generator: torch.Generator | None = None,
                   chunk: int = 1000, amp: bool = False) -> GuidanceSweep:
    """:func:`generate` at every weight in ``weights`` from the same starting noise ``x_T``; each weight draws
    its sampler noise from a copy of ``generator`` in the state it is given, so the weights differ only in w."""
    import time

    samples, nfe = {}, {}
    t0 = time.perf_counter()
    for w in weights:
        g = None
        if generator is not None:
            g = torch.Generator(device=generator.device)
            g.set_state(generator.get_state())
        out = generate(ddpm, model, labels, w, sampler=sampler, n_steps=n_steps, x_T=x_T, generator=g, chunk=chunk,
                       amp=amp)
        samples[w], nfe[w] = out.x, out.nfe
    return GuidanceSweep(samples, nfe, time.perf_counter() - t0)


def first_per_class(x: torch.Tensor, per_class: int, k: int = 10) -> torch.Tensor:
    """The first ``k`` samples of each class of ``x``, ordered by class with ``per_class`` each (as
    :func:`class_labels`). Shapes: ``(C · per_class, …)`` → ``(C · k, …)``."""
    per_class = check_int("per_class", per_class, min=1)
    if x.shape[0] % per_class:
        raise ValueError(f"x holds {x.shape[0]} samples, not a multiple of per_class = {per_class}")
    return x.reshape(-1, per_class, *x.shape[1:])[:, :k].reshape(-1, *x.shape[1:])


SWEEP_METRICS = ("accuracy", "recognised", "fd", "fd_floor", "fd_ratio", "fd_ratio_se", "diversity")


def score_samples(ev: Any, samples: dict[float, torch.Tensor], labels: torch.Tensor,
                  real_diversity: np.ndarray) -> dict[float, dict[str, Any]]:
    """Score each sample set of a sweep with the MNIST evaluator ``ev``: class accuracy against ``labels``, the
    recognised fraction, FD, its floor and ratio (with s.e.), and the within-class diversity relative to
    ``real_diversity`` (per class, and its mean over the classes)."""
    rows = {}
    for w, x in samples.items():
        e = ev.evaluate(x)
        div = ev.diversity(x, labels)
        rows[w] = {"accuracy": ev.class_accuracy(x, labels), "recognised": e.recognised_fraction, "fd": e.fd,
                   "fd_floor": e.fd_floor, "fd_ratio": e.fd_ratio, "fd_ratio_se": e.fd_ratio_se,
                   "diversity_per_class": div / real_diversity, "diversity": float(np.nanmean(div / real_diversity))}
    return rows


def sweep_metrics(rows: dict[float, dict[str, Any]]) -> dict[str, Any]:
    """The recorded numbers of :func:`score_samples`: ``w<w>_<name>`` for each name in :data:`SWEEP_METRICS`."""
    return {f"w{w:g}_{name}": r[name] for w, r in rows.items() for name in SWEEP_METRICS}


def sweep_table(rows: dict[float, dict[str, Any]]) -> str:
    """One line per guidance weight: class accuracy, recognised, FD, FD/floor and diversity/real."""
    lines = [f"{'w':>4} | {'class acc.':>10} | {'recognised':>10} | {'FD':>7} | {'FD/floor':>8} | "
             f"{'diversity/real':>14}"]
    for w, r in rows.items():
        lines.append(f"{w:4g} | {100 * r['accuracy']:9.1f}% | {100 * r['recognised']:9.1f}% | {r['fd']:7.2f} | "
                     f"{r['fd_ratio']:8.2f} | {r['diversity']:14.2f}")
    return "\n".join(lines)


def diversity_figure(rows: dict[float, dict[str, Any]], weights: Sequence[float] = (0.0, 2.0)) -> Figure:
    """Bars of the within-class diversity relative to real digits, one group per digit: real (= 1) and the
    generated sets at ``weights`` (``rows[w]["diversity_per_class"]``, as :func:`score_samples`)."""
    fig, ax = plt.subplots(figsize=(9, 3.2))
    width = 0.26
    xs = np.arange(10)
    ax.bar(xs - width, np.ones(10), width, color="0.6", label="real digits (= 1 by definition)")
    for j, w in enumerate(weights):
        ax.bar(xs + j * width, rows[w]["diversity_per_class"], width, label=f"generated, w = {w:g}")
    ax.set_xticks(xs)
    ax.set_xlabel("digit")
    ax.set_ylabel("diversity / real")
    ax.set_title("within-class diversity: mean pairwise evaluator-feature distance, relative to real digits",
                 fontsize=10)
    ax.legend(fontsize=8, ncol=3, loc="lower right")
    fig.tight_layout()
    return fig


def diversity_text(w: float, row: dict[str, Any]) -> str:
    """One line on the diversity at weight ``w``: the mean over classes, the least and the most diverse digit."""
    d = row["diversity_per_class"]
    return (f"w = {w:g}: diversity / real = {row['diversity']:.2f} on average (least diverse: digit "
            f"{int(np.nanargmin(d))} at {np.nanmin(d):.2f}; most: digit {int(np.nanargmax(d))} at {np.nanmax(d):.2f})")


def guidance_tradeoff_figure(rows: dict[float, dict[str, Any]]) -> Figure:
    """Class accuracy against within-class diversity, one point per guidance weight, coloured by log₁₀(FD/floor)."""
    ws = list(rows)
    fig, ax = plt.subplots(figsize=(6.2, 4.2))
    div = [rows[w]["diversity"] for w in ws]
    acc = [100 * rows[w]["accuracy"] for w in ws]
    ratio = [rows[w]["fd_ratio"] for w in ws]
    ax.plot(div, acc, "-", color="0.7", zorder=1)
    sc = ax.scatter(div, acc, c=np.log10(ratio), cmap="magma_r", s=90, zorder=2, edgecolor="k")
    for i, (w, d, a) in enumerate(zip(ws, div, acc)):  # labels alternate below / above: neighbours may share a height
        ax.annotate(f"w = {w:g}", (d, a), textcoords="offset points", xytext=(7, -12) if i % 2 == 0 else (-8, 9),
                    fontsize=9)
    cb = fig.colorbar(sc, ax=ax)
    cb.set_label("log₁₀ (FD / floor)")
    ax.axvline(1.0, color="0.5", lw=0.8, ls=":")
    ax.set_xlabel("within-class diversity / real digits  (→ more varied)")
    ax.set_ylabel("class accuracy (%)  (↑ more faithful)")
    ax.set_title("classifier-free guidance: fidelity against diversity", fontsize=10)
    fig.tight_layout()
    return fig


def _bare(ax: Any) -> None:
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)


def trajectory_figure(states: dict[int, torch.Tensor], x0_preds: dict[int, torch.Tensor], final: torch.Tensor,
                      i: int, steps: Sequence[int]) -> Figure:
    """Sample ``i`` of a recorded generation at ``steps``: the state x_k (top) and the prediction x̂₀ at k
    (bottom; the final digit at k = 0). ``states``/``x0_preds`` as ``SampleResult.trajectory``/``x0_preds``."""
    fig, axes = plt.subplots(2, len(steps), figsize=(1.25 * len(steps), 3.0))
    for j, k in enumerate(steps):
        xk = states[k][i, 0]
        x0k = x0_preds[k][i, 0] if k > 0 else final[i, 0]
        axes[0, j].imshow(xk.clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[1, j].imshow(x0k.clamp(-1, 1).numpy(), cmap="gray", vmin=-1, vmax=1)
        axes[0, j].set_title(f"k = {k}", fontsize=9)
    for ax in axes.flat:
        _bare(ax)
    axes[0, 0].set_ylabel("x_k", fontsize=9)
    axes[1, 0].set_ylabel("x̂₀ at k", fontsize=9)
    fig.suptitle("one generation, noise (left) to digit (right)", fontsize=10)
    fig.tight_layout()
    return fig


def settling_figure(digit: torch.Tensor, settle: torch.Tensor, summary: SettleSummary) -> Figure:
    """One digit ``(H, W)``, the step at which each of its pixels settles ``(H, W)`` (:func:`settle_steps`), and
    the fraction of ink pixels and coarse blocks settled against k over the batch of ``summary``."""
    T = summary.T
    fig, (ax_d, ax_s, ax_f) = plt.subplots(1, 3, figsize=(11, 3.3), gridspec_kw={"width_ratios": [1, 1.2, 1.8]})
    ax_d.imshow(digit.numpy(), cmap="gray", vmin=-1, vmax=1)
    ax_d.set_title("final digit", fontsize=10)
    im = ax_s.imshow(settle.numpy(), cmap="viridis", vmin=0, vmax=T)
    ax_s.set_title("step k at which each pixel settles", fontsize=10)
    fig.colorbar(im, ax=ax_s, fraction=0.046)
    for ax in (ax_d, ax_s):
        _bare(ax)
    ax_f.plot(summary.steps, summary.fraction_settled, label="ink pixels")
    ax_f.plot(summary.steps, summary.fraction_settled_coarse, label="coarse shape (4×4 blocks)")
    ax_f.axvspan(summary.ink_q10 * T, summary.ink_q90 * T, color="C0", alpha=0.12,
                 label="10–90 % of ink pixels settle")
    ax_f.set_xlim(T, 0)
    ax_f.set_xlabel("step k (generation runs right →)")
    ax_f.set_ylabel("fraction settled")
    ax_f.set_title(f"over {summary.n} digits", fontsize=10)
    ax_f.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def edit_sweep(ddpm: DDPM, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, new_labels: torch.Tensor,
               t0s: Sequence[float], generators: Sequence[torch.Generator | None], guidance_w: float = 0.0,
               amp: bool = False, edit_fn: Callable[..., torch.Tensor] | None = None
               ) -> dict[float, tuple[torch.Tensor, torch.Tensor]]:
    """:func:`edit` of ``images`` at each t0, with their own ``labels`` and with ``new_labels`` in one batch
    (one generator per t0). Returns ``{t0: (edited with labels, edited with new_labels)}``, each ``(B, 1, 28, 28)``.
    ``edit_fn(images, labels, t0, generator)`` replaces :func:`edit` (notebook 07 writes its own, with its ``w``)."""
    if len(generators) != len(t0s):
        raise ValueError(f"need one generator per t0, got {len(generators)} for {len(t0s)} values of t0")
    if edit_fn is None:
        def edit_fn(x: torch.Tensor, y: torch.Tensor, f: float, g: torch.Generator | None) -> torch.Tensor:
            return edit(ddpm, model, x, y, f, guidance_w=guidance_w, generator=g, amp=amp)
    out = {}
    for f, g in zip(t0s, generators):
        x = edit_fn(torch.cat([images, images]), torch.cat([labels, new_labels]), f, g).float().cpu()
        out[f] = (x[:len(labels)], x[len(labels):])
    return out


def real_pair_distances(images: torch.Tensor, labels: torch.Tensor, n_pairs: int,
                        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Yardsticks for an edit: the mean :func:`rms_distance` between two real images drawn at random
    (``n_pairs`` pairs), of the same class and of different classes."""
    pairs = torch.randint(0, len(images), (2, n_pairs), generator=generator)
    d = rms_distance(images[pairs[0]], images[pairs[1]])
    same = labels[pairs[0]] == labels[pairs[1]]
    return d[same].mean().item(), d[~same].mean().item()


def score_edits(ev: Any, edits: dict[float, tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor,
                labels: torch.Tensor, new_labels: torch.Tensor) -> dict[float, dict[str, Any]]:
    """Per t0 of :func:`edit_sweep`: per-image RMS distances to the originals (``rms_same``, ``rms_new``), the
    fraction read as the requested digit (``acc_same``, ``acc_new``) and, for the new label, as the original."""
    rows = {}
    for f, (same_lab, new_lab) in edits.items():
        rows[f] = {
            "rms_same": rms_distance(same_lab, images), "rms_new": rms_distance(new_lab, images),
            "acc_same": ev.class_accuracy(same_lab, labels), "acc_new": ev.class_accuracy(new_lab, new_labels),
            "still_original": ev.class_accuracy(new_lab, labels),
        }
    return rows


def edit_metrics(rows: dict[float, dict[str, Any]]) -> dict[str, Any]:
    """The recorded numbers of :func:`score_edits`: ``edit_t<t0>_{rms_own, rms_other, acc_own, acc_other}``."""
    out = {}
    for f, r in rows.items():
        out.update({f"edit_t{f:g}_rms_own": r["rms_same"].mean(), f"edit_t{f:g}_rms_other": r["rms_new"].mean(),
                    f"edit_t{f:g}_acc_own": r["acc_same"], f"edit_t{f:g}_acc_other": r["acc_new"]})
    return out


def edit_table(rows: dict[float, dict[str, Any]]) -> str:
    """One line per t0 of :func:`score_edits`."""
    lines = [f"{'t0':>4} | {'RMS, own label':>14} | {'RMS, label+1':>12} | {'reads own':>9} | {'reads +1':>8} | "
             f"{'(+1 edit) still reads own':>25}"]
    for f, r in rows.items():
        lines.append(f"{f:4.1f} | {r['rms_same'].mean():14.3f} | {r['rms_new'].mean():12.3f} | "
                     f"{100 * r['acc_same']:8.0f}% | {100 * r['acc_new']:7.0f}% | {100 * r['still_original']:24.0f}%")
    return "\n".join(lines)


def edits_figure(images: torch.Tensor, labels: torch.Tensor, new_labels: torch.Tensor,
                 edits: dict[float, tuple[torch.Tensor, torch.Tensor]], n_show: int = 5) -> Figure:
    """``n_show`` originals (evenly spaced over the batch), each followed by its edits at every t0: with the own
    label (left) and with the new one (right)."""
    t0s = list(edits)
    n_show = min(n_show, len(labels))
    pick = torch.linspace(0, len(labels) - 1, n_show).round().long()
    panel_same = torch.cat([torch.stack([images[i]] + [edits[f][0][i] for f in t0s]) for i in pick])
    panel_new = torch.cat([torch.stack([images[i]] + [edits[f][1][i] for f in t0s]) for i in pick])
    steps = ", ".join(f"{f:g}" for f in t0s)
    return class_grid_figure([panel_same, panel_new],
                             [f"own label: original, t₀ = {steps}", f"label + 1: original, t₀ = {steps}"],
                             per_row=len(t0s) + 1, size=0.7,
                             row_labels=[f"{int(labels[i])} → {int(labels[i])}/{int(new_labels[i])}" for i in pick])


def edit_distance_figure(rows: dict[float, dict[str, Any]], ref_same: float, ref_diff: float) -> Figure:
    """Left: RMS distance of the edits to the originals against t0 (mean ± s.d.) beside the distance between two
    real digits of the same and of different classes; right: what the evaluator reads in the edits."""
    t0s = list(rows)
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(10, 3.6))
    for key_, label in (("rms_same", "own label"), ("rms_new", "label + 1")):
        m = [rows[f][key_].mean().item() for f in t0s]
        s = [rows[f][key_].std().item() for f in t0s]
        ax_d.errorbar(t0s, m, yerr=s, marker="o", capsize=3, label=label)
    ax_d.axhline(ref_same, color="0.4", ls="--", lw=1, label="two real digits, same class")
    ax_d.axhline(ref_diff, color="0.4", ls=":", lw=1, label="two real digits, different class")
    ax_d.set_xlabel("t₀ = k₀ / T")
    ax_d.set_ylabel("RMS distance to the original")
    ax_d.set_title("how far an edit moves a digit", fontsize=10)
    ax_d.legend(fontsize=8)
    ax_c.plot(t0s, [100 * rows[f]["acc_same"] for f in t0s], "o-", label="own label: reads as own digit")
    ax_c.plot(t0s, [100 * rows[f]["acc_new"] for f in t0s], "s-", label="label + 1: reads as the new digit")
    ax_c.plot(t0s, [100 * rows[f]["still_original"] for f in t0s], "^--",
              label="label + 1: still reads as the original")
    ax_c.set_xlabel("t₀ = k₀ / T")
    ax_c.set_ylabel("% of edits")
    ax_c.set_ylim(-3, 103)
    ax_c.set_title("what the evaluator reads", fontsize=10)
    ax_c.legend(fontsize=8)
    fig.tight_layout()
    return fig


def ddim_and_ancestral_sets(ddpm: DDPM, model: nn.Module, labels: torch.Tensor, guidance_w: float,
                            x_T: torch.Tensor, ddim_steps: Sequence[int], *, generator: torch.Generator | None = None,
                            chunk: int = 1000, amp: bool = False,
                            have: dict[str, tuple[torch.Tensor, int]] | None = None
                            ) -> dict[str, tuple[torch.Tensor, int]]:
    """``{"DDIM-<n>": (samples, nfe), …, "ancestral": (samples, nfe)}`` from the same ``x_T``: DDIM (η = 0) with
    each step count in ``ddim_steps``, then ancestral sampling with all T steps (its noise from ``generator``).
    A set already in ``have`` (same names) is taken from there instead of being sampled again."""
    have = have or {}
    sets = {}
    for n in ddim_steps:
        name = f"DDIM-{n}"
        if name in have:
            sets[name] = have[name]
            continue
        out = generate(ddpm, model, labels, guidance_w, sampler="ddim", n_steps=n, x_T=x_T, chunk=chunk, amp=amp)
        sets[name] = (out.x, out.nfe)
    if "ancestral" in have:
        sets["ancestral"] = have["ancestral"]
    else:
        out = generate(ddpm, model, labels, guidance_w, sampler="ancestral", x_T=x_T, generator=generator, chunk=chunk,
                       amp=amp)
        sets["ancestral"] = (out.x, out.nfe)
    return sets


def score_sets(ev: Any, sets: dict[str, tuple[torch.Tensor, int]], labels: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Per named set of :func:`ddim_and_ancestral_sets`: network calls, class accuracy, FD, FD/floor (with s.e.)
    and the recognised fraction."""
    rows = {}
    for name, (x, n_eval) in sets.items():
        e = ev.evaluate(x)
        rows[name] = {"nfe": n_eval, "accuracy": ev.class_accuracy(x, labels), "fd": e.fd, "fd_ratio": e.fd_ratio,
                      "fd_ratio_se": e.fd_ratio_se, "recognised": e.recognised_fraction}
    return rows


def sets_metrics(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recorded numbers of :func:`score_sets`: ``<name, lower case, no dash>_<metric>`` (``ddim50_accuracy``)."""
    return {f"{name.lower().replace('-', '')}_{k}": v for name, r in rows.items() for k, v in r.items()}


def sets_table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per sampler of :func:`score_sets`."""
    lines = [f"{'sampler':>10} | {'NFE':>5} | {'class acc.':>10} | {'recognised':>10} | {'FD/floor':>8}"]
    for name, r in rows.items():
        lines.append(f"{name:>10} | {r['nfe']:5d} | {100 * r['accuracy']:9.1f}% | {100 * r['recognised']:9.1f}% | "
                     f"{r['fd_ratio']:8.2f} ± {r['fd_ratio_se']:.2f}")
    return "\n".join(lines)


def ddim_vs_ancestral_figure(rows: dict[str, dict[str, Any]], guidance_w: float, T: int) -> Figure:
    """Class accuracy (left) and FD/floor (right) against network calls per sample: DDIM at each step count,
    ancestral sampling with all T steps as a star (``rows`` of :func:`score_sets`)."""
    fig, (ax_a, ax_f) = plt.subplots(1, 2, figsize=(10, 3.5))
    ddim_names = [n for n in rows if n.startswith("DDIM")]
    for ax, key_, label in ((ax_a, "accuracy", "class accuracy (%)"), (ax_f, "fd_ratio", "FD / floor")):
        scale = 100 if key_ == "accuracy" else 1
        ax.plot([rows[n]["nfe"] for n in ddim_names], [scale * rows[n][key_] for n in ddim_names], "o-",
                label="DDIM (η = 0)")
        ax.plot([rows["ancestral"]["nfe"]], [scale * rows["ancestral"][key_]], "*", ms=14,
                label=f"ancestral, all T = {T}")
        for n in ddim_names:
            ax.annotate(n.split("-")[1], (rows[n]["nfe"], scale * rows[n][key_]), textcoords="offset points",
                        xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("network evaluations per sample")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax_a.set_title(f"fidelity at w = {guidance_w:g}", fontsize=10)
    ax_f.set_title("distance to real digits", fontsize=10)
    fig.tight_layout()
    return fig


def sample_and_score_variant(ev: Any, ddpm: DDPM, model: nn.Module, labels: torch.Tensor, x_T: torch.Tensor, *,
                             sampler: str, n_steps: int | None = None, have: dict[str, torch.Tensor] | None = None,
                             chunk: int = 1000, amp: bool = False, num_classes: int = NUM_CLASSES,
                             generator: torch.Generator | None = None) -> VariantScore:
    """:func:`score_variant` of one model on the sets ``w0`` (w = 0), ``w2`` (w = 2) for ``labels`` and
    ``uncond`` (y = ∅), each sampled from ``x_T`` unless given in ``have``; ``generator`` drives the bootstrap."""
    sets = dict(have or {})
    null = torch.full_like(labels, num_classes)
    for set_name, w, y in (("w0", 0.0, labels), ("w2", 2.0, labels), ("uncond", 0.0, null)):
        if set_name not in sets:
            sets[set_name] = generate(ddpm, model, y, w, sampler=sampler, n_steps=n_steps, x_T=x_T, chunk=chunk,
                                      amp=amp, num_classes=num_classes).x
    return score_variant(ev, labels, **sets, generator=generator)


# --------------------------------------------------------------------------- the evidence behind the written answers
# Each returns the values a written answer of the notebook cites and the claims it checks (``claims``), for
# ``run.answer(template, **evidence)``; every claim compares with a standard error where one applies.
def diversity_evidence(rows: dict[float, dict[str, Any]], real_diversity: np.ndarray) -> dict[str, Any]:
    """Diversity at w = 0 against real digits (± s.e. over the classes) and against w = 2, class by class."""
    from ..answers import claim

    d0, d2 = rows[0.0]["diversity_per_class"], rows[2.0]["diversity_per_class"]
    se = float(np.nanstd(d0, ddof=1) / np.sqrt(np.isfinite(d0).sum()))  # s.e. of the mean over the ten classes
    digits = np.argsort(real_diversity)
    gap = rows[0.0]["diversity"] - 1
    vs_real = ("more varied than real handwriting: the malformed samples lie far from every real style" if gap > 2 * se
               else "as varied as real handwriting, within 2 s.e." if abs(gap) <= 2 * se
               else "less varied than real handwriting")
    return {"claims": [claim("guidance at w = 2 makes every class less varied than w = 0", bool(np.all(d2 < d0)),
                             f"{int(np.sum(d2 < d0))} of 10 classes")],
            "se": se, "n_less": int(np.sum(d2 < d0)), "top": f"{digits[-1]} and {digits[-2]}",
            "bottom": f"{digits[0]} and {digits[1]}", "vs_real": vs_real}


def settle_evidence(summary: SettleSummary) -> dict[str, Any]:
    """The quadrants' spread against the spread of single ink pixels, and coarse shape against pixels."""
    from ..answers import claim

    ink = summary.ink_q90 - summary.ink_q10
    return {"claims": [claim("the quadrants settle much closer together than single pixels",
                             summary.quadrant_spread < 0.5 * ink,
                             f"quadrants {summary.quadrant_spread:.2f}·T, ink pixels {ink:.2f}·T"),
                       claim("the coarse shape settles before single pixels",
                             summary.coarse_median > summary.ink_median,
                             f"median k/T {summary.coarse_median:.2f} vs {summary.ink_median:.2f}")],
            "frac": summary.quadrant_spread / ink, "ink": ink}


def guidance_evidence(rows: dict[float, dict[str, Any]], n: int) -> dict[str, Any]:
    """Accuracy, diversity and FD/floor along the sweep (``rows`` of :func:`score_samples`, n samples per w)."""
    from ..answers import claim

    W = list(rows)
    acc_w, div_w, fd_w = ([rows[w][k] for w in W] for k in ("accuracy", "diversity", "fd_ratio"))
    se_fd = max(rows[w]["fd_ratio_se"] for w in W)
    acc_se = binomial_se(acc_w[0], n)  # at the first w
    return {"claims": [claim("guidance raises class accuracy", acc_w[-1] - acc_w[0] > 2 * acc_se,
                             f"{acc_w[0]:.1%} → {acc_w[-1]:.1%}, s.e. {acc_se:.1%}"),
                       claim("diversity falls steadily with w", bool(np.all(np.diff(div_w) < 0)),
                             ", ".join(f"{d:.2f}" for d in div_w)),
                       claim("the FD grows at large w", fd_w[-1] - min(fd_w) > 2 * np.sqrt(2) * se_fd,
                             f"{fd_w[-1]:.2f} vs lowest {min(fd_w):.2f}, s.e. {se_fd:.2f}")],
            "a0": acc_w[0], "a0_se": acc_se, "a2": rows[2.0]["accuracy"], "amax": acc_w[-1], "wmax": W[-1],
            "d0": div_w[0], "dmax": div_w[-1], "wb": W[int(np.argmin(fd_w))], "fdb": min(fd_w), "se": se_fd,
            "fd0": fd_w[0], "fdmax": fd_w[-1]}


def edit_evidence(rows: dict[float, dict[str, Any]], ref_same: float, ref_diff: float) -> dict[str, Any]:
    """Distances and readings of the edits (``rows`` of :func:`score_edits`) against the real-digit yardsticks."""
    from ..answers import claim

    t0s = list(rows)
    own = [rows[f]["acc_same"] for f in t0s]
    new = [rows[f]["acc_new"] for f in t0s]
    rms_own = [rows[f]["rms_same"].mean().item() for f in t0s]
    n = len(rows[t0s[0]]["rms_same"])
    return {"claims": [claim("the distance to the original grows with t0", bool(np.all(np.diff(rms_own) > 0)),
                             ", ".join(f"{r:.2f}" for r in rms_own)),
                       claim("a small-t0 edit stays far closer than another real digit of the class",
                             rms_own[0] < 0.5 * ref_same, f"{rms_own[0]:.2f} vs {ref_same:.2f}"),
                       claim("the requested digit takes over only at the largest t0",
                             new[-1] >= 0.5 and max(new[:-1]) < 0.5, ", ".join(f"{a:.0%}" for a in new))],
            "f0": t0s[0], "r0": rms_own[0], "ref_same": ref_same, "f1": t0s[-1], "r1": rms_own[-1],
            "r1n": rows[t0s[-1]]["rms_new"].mean().item(), "ref_diff": ref_diff, "own_lo": min(own),
            "own_hi": max(own), "n": n, "se": max_binomial_se(n),  # the largest s.e. of a fraction of n
            "new_txt": ", ".join(f"{a:.0%} at t₀ = {f:g}" for f, a in zip(t0s, new))}


def ddim_evidence(rows: dict[str, dict[str, Any]], n: int, T: int) -> dict[str, Any]:
    """DDIM at each step count against ancestral sampling (``rows`` of :func:`score_sets`, n samples per set)."""
    from ..answers import claim

    anc, dd = rows["ancestral"], {k: r for k, r in rows.items() if k.startswith("DDIM")}
    few, many = min(dd, key=lambda k: dd[k]["nfe"]), max(dd, key=lambda k: dd[k]["nfe"])
    se2 = 2 * np.sqrt(2) * max(r["fd_ratio_se"] for r in rows.values())
    fd_dd = [r["fd_ratio"] for r in dd.values()]
    d_ref = "DDIM-50" if "DDIM-50" in dd else many  # DDIM-50 whenever T allows it
    acc_se = max_binomial_se(n)  # the largest s.e. of an accuracy over these samples
    anc_text = ("higher than every DDIM set by more than two standard errors" if anc["fd_ratio"] - max(fd_dd) > se2
                else "lower than every DDIM set by more than two standard errors" if min(fd_dd) - anc["fd_ratio"] > se2
                else "within two standard errors of the DDIM sets")
    return {"claims": [claim("DDIM with a fraction of the steps matches the class accuracy of ancestral sampling",
                             abs(dd[d_ref]["accuracy"] - anc["accuracy"]) <= 2 * acc_se,
                             f"{dd[d_ref]['accuracy']:.1%} vs {anc['accuracy']:.1%}")],
            "d_ref": d_ref, "few": few, "many": many, "acc_few": dd[few]["accuracy"], "acc_anc": anc["accuracy"],
            "T": T, "fd_lo": min(fd_dd), "fd_hi": max(fd_dd), "fd_anc": anc["fd_ratio"], "anc_text": anc_text,
            "dd_text": ("differences within two standard errors, so more steps do not measurably improve the FD"
                        if max(fd_dd) - min(fd_dd) < se2 else "differences beyond two standard errors")}


def forward_evidence(read: dict[int, float], ddpm: DDPM, n: int) -> dict[str, Any]:
    """What the judge reads of the noised digits (``read[k]``, n digits) and where noise outweighs the digit."""
    from ..answers import claim

    se = binomial_se(read[ddpm.T], n)
    return {"claims": [claim("the judge reads the clean digits", read[0] >= 0.9, f"{read[0]:.0%}"),
                       claim("at k = T the digits are lost to the judge (chance level)",
                             read[ddpm.T] <= 0.1 + 3 * max(se, 0.02), f"{read[ddpm.T]:.0%}")],
            "k_equal": int((ddpm.alphas_cumprod < 0.5).nonzero()[0]) + 1}  # the first k where noise outweighs it


VARIANT_ROWS = (("class accuracy, w = 2", "accuracy_w2", ".1%"), ("class accuracy, w = 0", "accuracy_w0", ".1%"),
                ("recognised, w = 0", "recognised", ".1%"), ("FD / floor, w = 0", "fd_ratio", ".2f"),
                ("rarest digit, unconditional", "class_min", ".1%"),
                ("commonest digit, unconditional", "class_max", ".1%"))


def variant_table() -> str:
    """The Markdown table of the two variants as a template of :func:`nbhelpers.answers.render`: each number
    cited from the run's metrics (``cosine/…``, ``ddpm_paper/…``), ± its standard error."""
    def cell(v: str, m: str, f: str) -> str:
        return f"{{{v}/{m}:{f}}} ± {{{v}/{m}_se:{f}}}"

    lines = ["| | `cosine` (seed 001) | `ddpm_paper` (seed 003) |", "|---|---|---|",
             "| schedule, T | cosine, {cosine/T} | linear, {ddpm_paper/T} |",
             "| training steps | {cosine/train_steps} | {ddpm_paper/train_steps} |",
             "| training seconds | {cosine/train_seconds:.0f} | {ddpm_paper/train_seconds:.0f} |"]
    lines += [f"| {name} | {cell('cosine', m, f)} | {cell('ddpm_paper', m, f)} |" for name, m, f in VARIANT_ROWS]
    return "\n".join(lines)


def variant_evidence(cosine: VariantScore, paper: VariantScore, train_steps: tuple[int, int]) -> dict[str, Any]:
    """Seed 003's model against the cosine one, metric by metric (``<metric>_cmp``: "higher than the cosine
    model's", … by :func:`verdict`), and the share of near-pure-noise steps of each schedule. ``train_steps``:
    the steps of the two trainings (this run's variant first)."""
    from ..answers import claim

    noise_share = {n: (DDPM.from_schedule(n, T).alphas_cumprod < 0.01).double().mean().item()
                   for n, T in (("linear", 1000), ("cosine", 200))}
    say = {"higher": "higher than the cosine model's", "lower": "lower than the cosine model's",
           "indistinguishable": "indistinguishable from the cosine model's"}
    words = {f"{m}_cmp": say[verdict(getattr(paper, m), getattr(paper, f"{m}_se"), getattr(cosine, m),
                                     getattr(cosine, f"{m}_se"))]
             for m in ("accuracy_w2", "accuracy_w0", "recognised", "fd_ratio", "class_min")}
    a, b = train_steps
    return {"claims": [claim("both variants are trained for the same number of steps", b == a, f"{a} and {b}"),
                       claim("both models draw the requested digit far more often than chance at w = 2",
                             min(cosine.accuracy_w2, paper.accuracy_w2) > 0.5,
                             f"{cosine.accuracy_w2:.1%} and {paper.accuracy_w2:.1%}"),
                       claim("the linear schedule spends more of its steps near pure noise",
                             noise_share["linear"] > noise_share["cosine"], f"{noise_share}")],
            "noise_lin": noise_share["linear"], "noise_cos": noise_share["cosine"], **words}
