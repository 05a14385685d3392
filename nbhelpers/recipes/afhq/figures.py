"""Seed 004's figures (sections 5.3 and 5.4): the forward and backward processes, sample grids, loss and FID logs;
and notebook 08's other figures (schedule, training batch, 5.1 losses, 5.2 FID, x̂_0, 5.5 losses, the copy check).

Every figure function returns the figure and saves nothing (the notebook saves it by name); steps are the
integer t of :mod:`nbhelpers.ddpm` (t = 0 data, t = T noise)."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ...devices import randn
from ...files import atomic_write_bytes, save_figure
from ...plotting import tile_images
from .data import AFHQImages
from .diffusion import Diffusion, autocast

__all__ = ["PROCESS_FRACTIONS", "process_steps", "forward_process", "backward_process", "library_predict_x0",
           "x0_predictions", "plot_process", "process_labels", "schedule_figure", "batch_figure", "loss_figure",
           "fid_figure", "long_loss_figure", "copy_distance_figure", "copy_pairs_figure", "copy_summary",
           "save_image_grid", "visualize", "write_loss_log", "write_fid_log"]


PROCESS_FRACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.99)


def process_steps(T: int, fractions: Sequence[float] = PROCESS_FRACTIONS) -> list[int]:
    """Steps k = ⌊f·T⌋ for the fractions f of T (0 % → k = 0, the clean image)."""
    bad = [f for f in fractions if not 0.0 <= f <= 1.0]
    if bad:
        raise ValueError(f"fractions must lie in [0, 1], got {bad}")
    return [int(math.floor(f * T + 1e-9)) for f in fractions]


@torch.no_grad()
def forward_process(diffusion: Diffusion, x0: torch.Tensor, steps: Sequence[int],
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε for each k in ``steps`` with one shared ε: ``(len(steps), B, C, H, W)``."""
    noise = randn(x0.shape, generator, x0.device).to(x0.dtype)
    return torch.stack([diffusion.q_sample(x0, int(k), noise) for k in steps])


@torch.no_grad()
def backward_process(diffusion: Diffusion, x_k: torch.Tensor, start_step: int, steps: Sequence[int],
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Run Alg. 2 from ``x_k`` at ``start_step`` to 0 and return the states at ``steps``
    (each ≤ ``start_step``) in the order given: ``(len(steps), B, C, H, W)``."""
    res = diffusion.p_sample_loop(x_k, generator=generator, start_step=start_step, return_steps=sorted(set(steps)))
    return torch.stack([res.trajectory[int(k)] for k in steps])


def library_predict_x0(diffusion: Diffusion, x_k: torch.Tensor, k: int | torch.Tensor,
                       eps: torch.Tensor) -> torch.Tensor:
    """x̂_0 = clamp((x_k − √(1 − ᾱ_k) ε)/√ᾱ_k, −1, 1): eq. 19 with the clamp of Alg. 2 (``DDPM.predict_x0``)."""
    return diffusion.ddpm.predict_x0(x_k, k, eps).clamp(-1.0, 1.0)


@torch.no_grad()
def x0_predictions(diffusion: Diffusion, frames: torch.Tensor, steps: Sequence[int],
                   predict_x0: Callable = library_predict_x0) -> torch.Tensor:
    """The network's guess of the clean image from each frame: ``predict_x0(diffusion, x_k, k, ε_θ(x_k, k/T))``
    for the frame x_k at step k (k ≥ 1); a frame at k = 0 is the clean image and is returned as it is.

    Shapes: ``frames`` ``(F, B, C, H, W)`` (as from :func:`forward_process`) → the same shape.
    """
    if len(steps) != frames.shape[0]:
        raise ValueError(f"one step per frame: got {len(steps)} steps for {frames.shape[0]} frames")
    out = []
    for x_k, k in zip(frames, steps):
        k = int(k)
        if k == 0:
            out.append(x_k)
            continue
        eps = diffusion.model(x_k, diffusion.ddpm.time(k, x_k))
        out.append(predict_x0(diffusion, x_k, k, eps.to(x_k.dtype)))
    return torch.stack(out)


def _to_display(x: torch.Tensor) -> np.ndarray:
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def plot_process(frames: torch.Tensor, labels: Sequence[str], title: str, n_images: int = 6):
    """Grid figure: one row per image (first ``n_images``), one column per frame."""
    import matplotlib.pyplot as plt

    n_frames = frames.shape[0]
    n = min(n_images, frames.shape[1])
    fig, axes = plt.subplots(n, n_frames, figsize=(1.5 * n_frames, 1.5 * n + 0.5), squeeze=False)
    for j in range(n_frames):
        imgs = _to_display(frames[j, :n])
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(imgs[i], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(labels[j], fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save images in [−1, 1] as one PNG grid (``nrow`` per row, default √B)."""
    from PIL import Image

    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = tile_images(images.detach().float().cpu(), nrow, padding=2, border=2)  # (H, W, C) in [0, 1]
    arr = (np.repeat(grid, 3, axis=2) if grid.shape[2] == 1 else grid) * 255
    arr = arr.round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def write_loss_log(out_dir: Path, losses: list[float]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "loss"])
    w.writerows((i + 1, f"{v:.6g}") for i, v in enumerate(losses))
    atomic_write_bytes(out_dir / "losses.csv", buf.getvalue().encode())
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="per step")
    if len(losses) >= 20:
        w_ = max(10, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(w_) / w_, mode="valid")
        ax.plot(steps[w_ - 1:], smooth, lw=1.5, label=f"mean of {w_}")
    ax.set_xlabel("training step"), ax.set_ylabel("L1 loss on ε")
    if losses:
        ax.legend()
    fig.tight_layout()
    save_figure(fig, out_dir / "loss.png", dpi=100, bbox_inches=None)


def write_fid_log(out_dir: Path, history: dict[int, float | None], label: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "fid"])
    w.writerows((k, "missing" if v is None else f"{v:.4f}") for k, v in sorted(history.items()))
    atomic_write_bytes(out_dir / "fid.csv", buf.getvalue().encode())
    pts = [(k, v) for k, v in sorted(history.items()) if v is not None]
    if pts:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3))
        ax = fig.subplots()
        ax.plot(*zip(*pts), marker="o")
        ax.set_xlabel("training step"), ax.set_ylabel("FID"), ax.set_title(label, fontsize=8)
        fig.tight_layout()
        save_figure(fig, out_dir / "fid.png", dpi=100, bbox_inches=None)


def visualize(diffusion: Diffusion, data: AFHQImages, batch_size: int, out_dir: str | Path, seed: int = 0,
              fractions: Sequence[float] = PROCESS_FRACTIONS) -> list[Path]:
    """Seed 004's 5.3 and 5.4 figures: the forward process on the first batch at ``fractions`` of T,
    and the backward process from its last (most noised) image at the same fractions."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    T = diffusion.num_timesteps
    steps = process_steps(T, fractions)
    dev = next(diffusion.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x0 = data.first_batch(batch_size).to(dev)
    fwd = forward_process(diffusion, x0, steps, gen)
    labels = [f"{round(f * 100)} % (k={k})" for f, k in zip(fractions, steps)]
    paths = []
    fig = plot_process(fwd, labels, f"forward process q(x_k | x_0), T = {T}")
    paths.append(out_dir / "forward_process.png")
    save_figure(fig, paths[-1], dpi=110)
    plt.close(fig)
    with autocast(dev):
        bwd = backward_process(diffusion, fwd[-1], steps[-1], steps[::-1], gen).float()
    fig = plot_process(bwd, labels[::-1], f"backward process from the {labels[-1]} images")
    paths.append(out_dir / "backward_process.png")
    save_figure(fig, paths[-1], dpi=110)
    plt.close(fig)
    return paths


# --------------------------------------------------------------------------- notebook 08's figures
def process_labels(steps: Sequence[int], fractions: Sequence[float] = PROCESS_FRACTIONS) -> list[str]:
    """Column titles of the 5.3 / 5.4 figures: ``"25 % (t=12)"`` (the notebook's t is the step k)."""
    if len(steps) != len(fractions):
        raise ValueError(f"one step per fraction: got {len(steps)} steps for {len(fractions)} fractions")
    return [f"{round(f * 100)} % (t={s})" for f, s in zip(fractions, steps)]


def schedule_figure(diffusion: Diffusion):
    """ᾱ_t over t = 0…T (ᾱ_0 = 1) beside β_t = 1 − α_t on a log scale: the schedule of the chain."""
    import matplotlib.pyplot as plt

    T = diffusion.num_timesteps
    a, ab = diffusion.alphas, diffusion.alphas_cumprod
    fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
    k = np.arange(T + 1)
    axes[0].plot(k, np.concatenate([[1.0], ab.numpy()]), marker=".")
    axes[0].set(xlabel="step t", ylabel=r"$\bar\alpha_t$", title=f"cosine schedule, T = {T}")
    axes[1].semilogy(k[1:], 1 - a.numpy(), marker=".")
    axes[1].set(xlabel="step t", ylabel=r"$\beta_t = 1-\alpha_t$", title=r"$\beta_t$ (clipped at 0.999)")
    fig.tight_layout()
    return fig


def batch_figure(data: AFHQImages, seed: int, n: int = 32):
    """``n`` training images as :meth:`AFHQImages.batch` draws them (random flips; generator ``seed`` on the
    data's device), in rows of 16."""
    from ...plotting import image_grid

    batch = data.batch(n, torch.Generator(device=data.device).manual_seed(seed)).cpu()
    return image_grid(batch, nrow=16, title="a training batch (random flips)", size=0.6)


def loss_figure(losses: Sequence[float], per_step: Sequence[float], batch_size: int, smooth: int):
    """5.1: the training loss over the steps (left) beside the trained model's loss at each step t
    = 1…T of the chain (right, ``per_step`` from :func:`loss_per_step`)."""
    import matplotlib.pyplot as plt

    from ...plotting import loss_curve

    steps, T = len(losses), len(per_step)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    loss_curve(losses, smooth=smooth, logy=False, ax=axes[0],
               title=f"5.1 · L1 loss on ε over {steps} steps (batch {batch_size}, T = {T})")
    axes[1].plot(range(1, T + 1), per_step, marker=".")
    axes[1].set(xlabel="step t", ylabel="L1 loss on ε", title=f"loss per step t after {steps} steps (EMA weights)")
    fig.tight_layout()
    return fig


def fid_figure(history: dict[int, float | None], title: str):
    """5.2: FID against the training step, or ``None`` when no step has a value (no Inception weights)."""
    import matplotlib.pyplot as plt

    pts = [(s, v) for s, v in sorted(history.items()) if v is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(*zip(*pts), marker="o")
    ax.set(xlabel="training step", ylabel="FID", title=title)
    return fig


def long_loss_figure(losses: Sequence[float], first_steps: int, smooth: int):
    """5.5: the loss of the continued run, with a dashed line where the run of 5.1 ended."""
    from ...plotting import loss_curve

    fig = loss_curve(losses, smooth=smooth, logy=False,
                     title=f"L1 loss over {len(losses)} steps (dashed: end of 5.1)")
    fig.axes[0].axvline(first_steps, color="k", lw=0.8, ls="--")
    return fig


def copy_distance_figure(chk, label: str):
    """Histograms of the nearest-neighbour distance d₁ and of r = d₁/d₂ for training images (among the
    others) and for samples (``label`` names them), on shared bins; the near-copy threshold dashed.
    ``chk`` is a :class:`nbhelpers.metrics.nearest.CopyCheck`."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, attr, xlabel in ((axes[0], "distance", "RMS distance to the nearest training image, $d_1$"),
                             (axes[1], "relative", "$r = d_1 / d_2$ (nearest / second nearest)")):
        both = torch.cat([getattr(chk.train, attr), getattr(chk.sample, attr)])
        bins = np.linspace(both.min().item(), both.max().item(), 41)  # one set of bins: comparable heights
        for nn_, lab in ((chk.train, f"{len(chk.train.distance)} training images, among the others"),
                         (chk.sample, f"{len(chk.sample.distance)} {label}")):
            ax.hist(getattr(nn_, attr).numpy(), bins=bins, density=True, alpha=0.55, label=lab)
        ax.set(xlabel=xlabel, ylabel="density")
    axes[1].axvline(chk.threshold, color="k", lw=0.8, ls="--", label="near-copy threshold")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def copy_pairs_figure(chk, samples: torch.Tensor, train_images: torch.Tensor):
    """The eight samples with the smallest r = d₁/d₂ (the most copy-like) above their nearest training images."""
    from ...metrics.nearest import matched_images
    from ...plotting import image_grid

    show = torch.argsort(chk.sample.relative)[:8]
    nbrs = matched_images(chk.sample, train_images, show)
    return image_grid(torch.cat([samples[show].cpu(), nbrs]), nrow=8, size=0.9, row_labels=["sample", "nearest"],
                      title="the eight samples with the smallest r, above their nearest training images")


def copy_summary(chk) -> str:
    """One line on a :class:`~nbhelpers.metrics.nearest.CopyCheck`: median d₁ and r, samples against training images."""
    return (f"nearest training image: median RMS distance {chk.sample.distance.median():.3f} for samples, "
            f"{chk.train.distance.median():.3f} between training images; median r = d1/d2: "
            f"{chk.sample.relative.median():.2f} vs {chk.train.relative.median():.2f}; "
            f"near copies {chk.near_copies:.1%}")
