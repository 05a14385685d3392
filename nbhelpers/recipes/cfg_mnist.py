"""Class-conditional DDPM with classifier-free guidance on MNIST: notebook 07_mnist_cfg's recipe.

Model presets per profile and variant, the guided training loss, guided sampling in chunks,
seed 003's partial-diffusion editing, the "when does each pixel settle" measurement, seed 003's
forward process on digits, the scores (with standard errors) that compare the two variants, and
the guidance explorer. The digits are scored by :func:`nbhelpers.recipes.mnist.mnist_evaluator`.

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
from ..ddpm import DDPM, SampleResult
from ..models.embeddings import sinusoidal_encoding, sinusoidal_frequencies
from ..models.unet import UNet, UNetConfig
from ..plotting import tile_images
from ..training import TrainConfig
from ..widgets import show_explorer

__all__ = [
    "VARIANTS", "SAMPLERS", "NUM_CLASSES", "PaperTimeEncoding", "MnistCFGPreset", "preset", "build_model",
    "cfg_loss", "class_labels", "device_generator", "generate", "edit", "settle_steps", "SettleSummary",
    "settle_summary", "rms_distance", "class_grid_figure",
    "forward_process", "forward_process_figure", "binomial_se", "verdict", "VariantScore", "score_variant",
    "draw_guidance_explorer", "guidance_explorer",
]

VARIANTS = ("cosine", "ddpm_paper")
SAMPLERS = ("ancestral", "ddim")
NUM_CLASSES = 10


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
        self.register_buffer("freqs", sinusoidal_frequencies(self.n_freqs, self.max_freq).float(), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        t = torch.as_tensor(t)
        return sinusoidal_encoding(t.float(), self.n_freqs, self.max_freq).to(device=t.device)

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


def preset(variant: str = "cosine", profile: str = "cpu") -> MnistCFGPreset:
    """The model and training settings of notebook 07 for ``variant`` and ``profile``.

    The smoke profile shortens T five-fold (a code-path check, not a model). Every profile keeps 4 blocks per pathway (levels at 28, 14, 7, 4 and a 2×2 bottleneck) with
    residual layers and self-attention. ``gpu`` attends at every level; ``cpu`` and ``smoke`` skip
    the 28×28 level, whose 784-token attention alone would cost more than the rest of the network there.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid choices: {', '.join(VARIANTS)}")
    if profile not in ("smoke", "cpu", "gpu"):
        raise ValueError(f"unknown profile {profile!r}; valid choices: smoke, cpu, gpu")
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
    from ..guidance import drop_labels

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


def _merge(parts: list[dict[int, torch.Tensor] | None]) -> dict[int, torch.Tensor] | None:
    if parts[0] is None:
        return None
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@torch.no_grad()
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
    """Guided samples for ``labels`` with weight ``guidance_w``: ancestral (all T steps) or DDIM
    (``n_steps``, ``eta``), in chunks of ``chunk``; states and x̂₀ at ``return_steps`` are kept on the CPU.

    w = 0 skips the unconditional pass ((0 + 1)·ε_c − 0·ε_u = ε_c), halving the cost. ``amp`` runs the
    network under bf16 autocast on CUDA. ``x_T`` fixes the starting noise; otherwise it is drawn
    with ``generator``. Returns a :class:`nb.ddpm.SampleResult` (``x`` on the CPU, float32).
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid choices: {', '.join(SAMPLERS)}")
    if sampler == "ddim" and n_steps is None:
        raise ValueError("the DDIM sampler needs n_steps")
    guidance_w = check_float("guidance_w", guidance_w, min=0.0)
    eta = check_float("eta", eta, min=0.0)
    chunk = check_int("chunk", chunk, min=1)
    num_classes = check_int("num_classes", num_classes, min=1)
    labels = check_labels("labels", labels, num_classes)
    if x_T is not None and (not isinstance(x_T, torch.Tensor) or x_T.ndim != 4 or x_T.shape[0] != labels.shape[0]):
        raise ValueError(f"x_T must be an image tensor ({labels.shape[0]}, C, H, W) with one start per label, "
                         f"got {type(x_T).__name__} {tuple(getattr(x_T, 'shape', ()))}")
    device = next(model.parameters()).device
    model = budget(model)  # a dry run ($NBHELPERS_MAX_STEPS): one budget of network evaluations for all the chunks
    labels = labels.to(device)
    w = None if guidance_w == 0.0 else guidance_w
    xs, trajs, preds, nfe = [], [], [], 0
    for i in range(0, labels.shape[0], chunk):
        y = labels[i:i + chunk]
        start = (x_T[i:i + chunk].to(device) if x_T is not None else
                 torch.randn((y.shape[0], 1, 28, 28), generator=generator,
                             device=generator.device if generator is not None else device).to(device))
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            if sampler == "ancestral":
                out = ddpm.sample(model, start, y=y, generator=generator, return_steps=return_steps,
                                  guidance_w=w, num_classes=num_classes)
            else:
                out = ddpm.ddim_sample(model, start, n_steps, eta=eta, y=y, generator=generator,
                                       return_steps=return_steps, guidance_w=w, num_classes=num_classes)
        xs.append(out.x.float().cpu())
        trajs.append({k: v.float().cpu() for k, v in out.trajectory.items()} if out.trajectory is not None else None)
        preds.append({k: v.float().cpu() for k, v in out.x0_preds.items()} if out.x0_preds is not None else None)
        nfe = out.nfe
    return SampleResult(torch.cat(xs), _merge(trajs), _merge(preds), nfe)


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
    w = None if guidance_w == 0.0 else guidance_w
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
        out = ddpm.sample(model, x_start=images.to(device), y=labels.to(device), start_step=k0, generator=generator,
                          guidance_w=w, num_classes=num_classes)
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


# --------------------------------------------------------------------------- figures
def class_grid_figure(panels: Sequence[torch.Tensor], titles: Sequence[str], per_row: int = 10,
                      size: float = 0.42, row_labels: Sequence[str] | None = None):
    """Several image grids side by side, ``per_row`` images per row (e.g. row = digit).
    Each panel: ``(B, 1, H, W)`` in [−1, 1]. Returns the matplotlib ``Figure``."""
    if len(panels) != len(titles) or not panels:
        raise ValueError(f"need one title per panel, got {len(panels)} panels and {len(titles)} titles")
    canv, cell = [], None
    for p in panels:
        x = p.detach().float().cpu()[:, :1]
        cell = x.shape[-2] + 2
        canv.append(tile_images(x, per_row, full_rows=True)[..., 0])
    rows_max = max(c.shape[0] for c in canv) / cell
    fig, axes = plt.subplots(1, len(canv), figsize=(len(canv) * (per_row * size + 0.3), rows_max * size + 0.6), squeeze=False)
    for ax, c, title in zip(axes[0], canv, titles):
        ax.imshow(c, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.grid(False)
        for sp in ax.spines.values():
            sp.set_visible(False)
        if row_labels is not None:
            n_rows = min(c.shape[0] // cell, len(row_labels))
            ax.set_yticks([r * cell + cell / 2 for r in range(n_rows)])
            ax.set_yticklabels(list(row_labels)[:n_rows])
        else:
            ax.set_yticks([])
    fig.tight_layout()
    return fig


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
    noise = torch.randn(images.shape, generator=generator,
                        device=generator.device if generator is not None else images.device).to(images)
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
def binomial_se(p: float, n: int) -> float:
    """Standard error of a fraction p measured on n independent samples, √(p(1 − p)/n)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n!r}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a fraction in [0, 1], got {p!r}")
    return math.sqrt(p * (1.0 - p) / n)


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
