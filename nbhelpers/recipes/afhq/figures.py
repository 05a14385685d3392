"""Seed 004's figures (sections 5.3 and 5.4): the forward and backward processes, sample grids, loss and FID logs."""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ...plotting import tile_images
from ...runtime import atomic_write_bytes, save_figure
from .data import AFHQImages
from .diffusion import Diffusion, autocast

__all__ = ["PROCESS_FRACTIONS", "process_steps", "forward_process", "backward_process", "plot_process",
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
    noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator is not None else x0.device)
    noise = noise.to(x0.device, x0.dtype)
    return torch.stack([diffusion.q_sample(x0, int(k), noise) for k in steps])


@torch.no_grad()
def backward_process(diffusion: Diffusion, x_k: torch.Tensor, start_step: int, steps: Sequence[int],
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Run Alg. 2 from ``x_k`` at ``start_step`` to 0 and return the states at ``steps``
    (each ≤ ``start_step``) in the order given: ``(len(steps), B, C, H, W)``."""
    res = diffusion.p_sample_loop(x_k, generator=generator, start_step=start_step, return_steps=sorted(set(steps)))
    return torch.stack([res.trajectory[int(k)] for k in steps])


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
