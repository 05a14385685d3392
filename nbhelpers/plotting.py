"""Small plotting helpers shared by the notebooks. Every function returns the matplotlib ``Figure``
(the notebook saves it with ``run.savefig`` and shows it); none calls ``plt.show``.

Conventions: 2D point sets are ``(N, 2)`` tensors or arrays; images ``(B, C, H, W)`` in [−1, 1].
"""
from __future__ import annotations

import io
import math
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "to_numpy", "panel_grid", "scatter_panels", "hist2d_panels", "plot_paths", "plot_trajectories_2d",
    "density_image", "plot_density", "tile_images", "image_grid", "class_grid_figure", "loss_curve", "smooth_curve",
]

Limits = tuple[float, float]


def to_numpy(x: Any) -> np.ndarray:
    """Tensor / array / list → a NumPy array on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def panel_grid(n: int, ncols: int | None = None, size: float = 3.0, sharex: bool = False,
               sharey: bool = False) -> tuple[Figure, list[Axes]]:
    """A figure with ``n`` square panels in rows of ``ncols`` (default: all in one row up to 6)."""
    if n < 1:
        raise ValueError(f"need at least one panel, got n={n!r}")
    ncols = min(n, 6) if ncols is None else max(1, min(ncols, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False,
                             sharex=sharex, sharey=sharey)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def _titles(titles: Sequence[str] | None, n: int) -> list[str]:
    if titles is None:
        return [""] * n
    if len(titles) != n:
        raise ValueError(f"got {len(titles)} titles for {n} panels")
    return list(titles)


def scatter_panels(point_sets: Sequence[Any], titles: Sequence[str] | None = None, lim: Limits | None = (-3.5, 3.5),
                   ncols: int | None = None, size: float = 3.0, s: float = 2.0, alpha: float = 0.5,
                   colors: Sequence[Any] | None = None, suptitle: str | None = None, cmap: str = "coolwarm",
                   clim: Limits | None = None) -> Figure:
    """One scatter panel per ``(N, 2)`` point set, same limits everywhere. ``colors``: one entry per set
    (a colour name or per-point values mapped through ``cmap`` with limits ``clim``)."""
    fig, axes = panel_grid(len(point_sets), ncols, size)
    for i, (ax, pts, title) in enumerate(zip(axes, point_sets, _titles(titles, len(point_sets)))):
        p = to_numpy(pts)
        c = None if colors is None else colors[i]
        if c is not None and not isinstance(c, str):
            c = to_numpy(c)
        numeric = c is not None and not isinstance(c, str)
        ax.scatter(p[:, 0], p[:, 1], s=s, alpha=alpha, c=c, linewidths=0, cmap=cmap if numeric else None,
                   vmin=clim[0] if numeric and clim else None, vmax=clim[1] if numeric and clim else None)
        if lim is not None:
            ax.set_xlim(*lim)
            ax.set_ylim(*lim)
        ax.set_aspect("equal")
        ax.set_title(title)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def hist2d_panels(point_sets: Sequence[Any], titles: Sequence[str] | None = None, lim: Limits = (-3.5, 3.5),
                  bins: int = 60, ncols: int | None = None, size: float = 3.0, cmap: str = "viridis",
                  row_labels: Sequence[str] | None = None, suptitle: str | None = None) -> Figure:
    """One 2D histogram (counts, shared range) per ``(N, 2)`` point set.

    With ``row_labels`` the panels are laid out in ``len(row_labels)`` rows (e.g. one schedule per row).
    """
    n = len(point_sets)
    if row_labels is not None:
        if n % len(row_labels):
            raise ValueError(f"{n} panels cannot be split into {len(row_labels)} rows")
        ncols = n // len(row_labels)
    fig, axes = panel_grid(n, ncols, size)
    for ax, pts, title in zip(axes, point_sets, _titles(titles, n)):
        p = to_numpy(pts)
        ax.hist2d(p[:, 0], p[:, 1], bins=bins, range=[lim, lim], cmap=cmap)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=10)
        ax.grid(False)
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            axes[r * ncols].set_ylabel(label, fontsize=11)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_paths(ts: Any, trajectories: Any, ax: Axes | None = None, title: str | None = None,
               envelope: Callable[[np.ndarray], np.ndarray] | None = None, max_paths: int = 50,
               color: Any = None, lw: float = 1.0, alpha: float = 0.8, envelope_label: str = "±envelope") -> Figure:
    """1D paths against time. ``trajectories``: (n_steps + 1, B) or (n_steps + 1, B, 1).

    ``envelope(t)`` (optional) draws ±envelope(t) as dashed lines (e.g. σ√t for Brownian motion).
    """
    t = to_numpy(ts)
    tr = to_numpy(trajectories)
    if tr.ndim == 3 and tr.shape[2] == 1:
        tr = tr[..., 0]
    if tr.ndim != 2 or tr.shape[0] != t.shape[0]:
        raise ValueError(f"trajectories must be (len(ts), B) or (len(ts), B, 1), got {tr.shape} for {t.shape[0]} times")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    else:
        fig = ax.figure
    ax.plot(t, tr[:, :max_paths], lw=lw, alpha=alpha, color=color)
    if envelope is not None:
        e = to_numpy(envelope(t))
        ax.plot(t, e, "k--", lw=1.2, label=envelope_label)
        ax.plot(t, -e, "k--", lw=1.2)
    ax.set_xlabel("t")
    if title:
        ax.set_title(title)
    return fig


def plot_trajectories_2d(trajectory: Any, ax: Axes | None = None, max_paths: int = 30, color: str = "k",
                         lw: float = 0.6, alpha: float = 0.5, mark_ends: bool = True) -> Figure:
    """2D trajectories (n_steps + 1, B, 2) as lines in the plane; start ○ and end ● marked."""
    tr = to_numpy(trajectory)
    if tr.ndim != 3 or tr.shape[2] != 2:
        raise ValueError(f"trajectory must have shape (T, B, 2), got {tr.shape}")
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    tr = tr[:, :max_paths]
    ax.plot(tr[:, :, 0], tr[:, :, 1], color=color, lw=lw, alpha=alpha)
    if mark_ends:
        ax.scatter(tr[0, :, 0], tr[0, :, 1], s=12, facecolors="none", edgecolors="tab:blue", label="start")
        ax.scatter(tr[-1, :, 0], tr[-1, :, 1], s=12, color="tab:red", label="end")
    ax.set_aspect("equal")
    return fig


def density_image(log_prob_fn: Callable[[torch.Tensor], torch.Tensor], lim: Limits = (-3.5, 3.5),
                  n: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Evaluate exp(log_prob_fn) on an n × n grid: returns (xs, ys, density[n, n])."""
    xs = torch.linspace(lim[0], lim[1], n)
    gx, gy = torch.meshgrid(xs, xs, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)
    with torch.no_grad():
        dens = torch.exp(log_prob_fn(pts)).reshape(n, n)
    return to_numpy(xs), to_numpy(xs), to_numpy(dens)


def plot_density(log_prob_fn: Callable[[torch.Tensor], torch.Tensor], ax: Axes | None = None,
                 lim: Limits = (-3.5, 3.5), n: int = 200, filled: bool = True, cmap: str = "Greys",
                 levels: int = 12, alpha: float = 1.0) -> Figure:
    """Contours of a 2D density given its log-density (e.g. ``gmm.log_prob``), as a backdrop."""
    xs, ys, dens = density_image(log_prob_fn, lim, n)
    if ax is None:
        fig, ax = plt.subplots(figsize=(4, 4))
    else:
        fig = ax.figure
    (ax.contourf if filled else ax.contour)(xs, ys, dens, levels=levels, cmap=cmap, alpha=alpha)
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    return fig


def tile_images(images: Any, nrow: int, padding: int = 2, border: int | None = None, pad_value: float = 1.0,
                full_rows: bool = False) -> np.ndarray:
    """Tile ``(B, C, H, W)`` images in [−1, 1] into one ``(H', W', C)`` float32 array in [0, 1] with
    :func:`torchvision.utils.make_grid`: ``nrow`` images per row (fewer when B < nrow, unless
    ``full_rows``), ``padding`` pixels of ``pad_value`` between images and ``border`` (default
    ``padding // 2``, at most ``padding``) around the whole grid; empty cells are ``pad_value``.
    Values outside [−1, 1] saturate. Image (r, c) starts at row ``border + r (H + padding)``."""
    from torchvision.utils import make_grid

    x = torch.as_tensor(to_numpy(images))
    if x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (B, C, H, W) batch, got shape {tuple(x.shape)}")
    if nrow < 1 or padding < 0:
        raise ValueError(f"need nrow >= 1 and padding >= 0, got nrow={nrow!r}, padding={padding!r}")
    border = padding // 2 if border is None else border
    if not 0 <= border <= padding:
        raise ValueError(f"border must lie in [0, padding={padding}], got {border!r}")
    img = ((x.clamp(-1, 1) + 1) / 2).float()
    if full_rows and img.shape[0] < nrow:  # blank cells keep a short batch nrow wide
        img = torch.cat([img, img.new_full((nrow - img.shape[0], *img.shape[1:]), pad_value)])
    if img.shape[0] == 1:  # make_grid returns a single image without its padding
        grid = torch.nn.functional.pad(img[0], (padding,) * 4, value=pad_value)
    else:
        grid = make_grid(img, nrow=nrow, padding=padding, pad_value=pad_value)
    cut = padding - border
    if cut:
        grid = grid[:, cut:grid.shape[1] - cut, cut:grid.shape[2] - cut]
    return grid[: img.shape[1]].permute(1, 2, 0).numpy()  # make_grid turns one channel into three


def image_grid(images: Any, nrow: int = 8, title: str | None = None, size: float = 1.0,
               row_labels: Sequence[str] | None = None) -> Figure:
    """Tile ``(B, C, H, W)`` images in [−1, 1] (C = 1 or 3) into a grid with ``nrow`` images per row
    (:func:`tile_images`: 2 pixels between images, 1 around)."""
    x = to_numpy(images)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must have shape (B, C, H, W) with C in (1, 3), got {x.shape}")
    B, C, H, W = x.shape
    ncol = max(1, min(nrow, B))
    nrows = math.ceil(B / ncol)
    canvas = tile_images(x, ncol)
    fig, ax = plt.subplots(figsize=(size * ncol + 0.5, size * nrows + (0.4 if title else 0.1)))
    ax.imshow(canvas[..., 0] if C == 1 else canvas, cmap="gray" if C == 1 else None, vmin=0, vmax=1,
              interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([] if row_labels is None else [r * (H + 2) + 1 + H / 2 for r in range(nrows)])
    if row_labels is not None:
        ax.set_yticklabels(list(row_labels)[:nrows])
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def class_grid_figure(panels: Sequence[torch.Tensor], titles: Sequence[str], per_row: int = 10,
                      size: float = 0.42, row_labels: Sequence[str] | None = None) -> Figure:
    """Several image grids side by side, ``per_row`` images per row (e.g. row = class), all on one grey scale
    (:func:`tile_images`), ``row_labels`` beside the rows where given. Each panel: ``(B, C, H, W)`` in [−1, 1],
    its first channel shown."""
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


def smooth_curve(values: Any, smooth: int) -> np.ndarray:
    """Moving average over a window of ``smooth`` points (shorter at the start)."""
    v = to_numpy(values).astype(float)
    if smooth <= 1 or len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - smooth)
    return (c[idx] - c[lo]) / (idx - lo)


def plain_log_ticks(axis: Any) -> None:
    """Log-axis ticks at 1, 2, 5 × 10^k written as plain numbers, without minor labels (a loss
    spanning less than a decade otherwise gets a clutter of mixed 10^k and m×10^k labels)."""
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FormatStrFormatter("%g"))
    axis.set_minor_formatter(NullFormatter())


def loss_curve(losses: Any, smooth: int = 50, ax: Axes | None = None, title: str = "training loss",
               logy: bool = True, label: str | None = None) -> Figure:
    """Raw loss (faint) and its moving average over ``smooth`` steps."""
    v = to_numpy(losses).astype(float)
    if ax is None:
        fig, ax = plt.subplots(figsize=(5, 3.2))
    else:
        fig = ax.figure
    steps = np.arange(1, len(v) + 1)
    line = ax.plot(steps, v, alpha=0.25, lw=0.8)[0]
    ax.plot(steps, smooth_curve(v, smooth), color=line.get_color(), lw=1.6,
            label=label or (f"moving average ({smooth})" if smooth > 1 else None))
    if logy and len(v) and (v > 0).all():
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    if label or smooth > 1:
        ax.legend()
    return fig


# --------------------------------------------------------------------------- 2D sample densities
def sample_density(points: Any, lim: Limits = (-3.5, 3.5), bins: int = 80,
                   smooth: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density of 2D samples estimated by a 2D histogram on ``bins × bins`` cells over ``lim²``,
    smoothed by a Gaussian of ``smooth`` cells (0: none) and divided by N · cell area, so it
    integrates to the fraction of samples inside the square. Returns ``(xs, ys, dens[iy, ix])``
    (cell centres; the layout of :func:`density_image`)."""
    p = to_numpy(points).astype(np.float64)
    if p.ndim != 2 or p.shape[1] != 2 or p.shape[0] == 0:
        raise ValueError(f"points must be a non-empty (N, 2) set, got shape {p.shape}")
    if bins < 2 or smooth < 0:
        raise ValueError(f"need bins >= 2 and smooth >= 0, got bins={bins!r}, smooth={smooth!r}")
    edges = np.linspace(lim[0], lim[1], bins + 1)
    h, _, _ = np.histogram2d(p[:, 1], p[:, 0], bins=[edges, edges])  # rows = y
    if smooth > 0:
        from scipy.ndimage import gaussian_filter

        h = gaussian_filter(h, smooth, mode="constant")
    centres = 0.5 * (edges[1:] + edges[:-1])
    return centres, centres.copy(), h / (p.shape[0] * (edges[1] - edges[0]) ** 2)


__all__ += ["sample_density"]


# --------------------------------------------------------------------------- animations
def scatter_gif(point_sets: Sequence[Any], titles: Sequence[str], path: Any,
                log_prob: Callable[[torch.Tensor], torch.Tensor] | None = None, lim: Limits = (-3.5, 3.5),
                size: float = 3.6, dpi: int = 80, duration: int = 90, color: str = "C3") -> list[Any]:
    """Write a GIF with one frame per ``(N, 2)`` point set (title from ``titles``; the contours of
    ``exp(log_prob)`` behind, when given) to ``path`` (folders created), ``duration`` ms a frame,
    looping. Returns the frames (PIL images, palette mode)."""
    from pathlib import Path

    from PIL import Image

    if len(point_sets) == 0 or len(point_sets) != len(titles):
        raise ValueError(f"need one title per frame and at least one frame, got {len(point_sets)} point sets "
                         f"and {len(titles)} titles")
    backdrop = density_image(log_prob, lim, 120) if log_prob is not None else None
    frames = []
    for pts, title in zip(point_sets, titles):
        fig, ax = plt.subplots(figsize=(size, size), dpi=dpi)
        if backdrop is not None:
            ax.contour(*backdrop, levels=8, cmap="Greys", alpha=0.5)
        ax.scatter(*to_numpy(pts).T, s=6, color=color)
        ax.set_xlim(*lim)
        ax.set_ylim(*lim)
        ax.set_aspect("equal")
        ax.set_title(title)
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        plt.close(fig)
        frames.append(Image.open(buf).convert("P", palette=Image.ADAPTIVE))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration, loop=0)
    return frames


def frame_strip(frames: Sequence[Any], k: int = 4, size: float = 3.0) -> Figure:
    """``k`` frames (PIL images) evenly spaced from the first to the last, side by side."""
    if len(frames) == 0 or k < 1:
        raise ValueError(f"need at least one frame and k >= 1, got {len(frames)} frames and k={k!r}")
    fig, axes = plt.subplots(1, k, figsize=(size * k, size), squeeze=False)
    for ax, j in zip(axes[0], np.linspace(0, len(frames) - 1, k).astype(int)):
        ax.imshow(frames[j].convert("RGB"))
        ax.axis("off")
    fig.tight_layout()
    return fig


__all__ += ["scatter_gif", "frame_strip"]


def guidance_tradeoff_panel(ax: Any, metrics: dict[float, dict[str, float]], w: float, *, second: str,
                            accuracy_label: str, second_label: str, accuracy_floor: float, accuracy_pad: float,
                            accuracy_top: float, second_floor: float, title: str) -> None:
    """What guidance trades, on ``ax``: ``metrics[w]["accuracy"]`` (in %) against the guidance weight w, and
    ``metrics[w][second]`` (a spread or diversity relative to the real data's, 1 marked) on a second y-axis;
    the weight ``w`` shown now is a dotted line, its accuracy circled. Notebooks 06 and 07's explorers."""
    mw = sorted(float(v) for v in metrics)
    ms = {float(k): v for k, v in metrics.items()}
    acc = [100 * ms[v]["accuracy"] for v in mw]
    other = [ms[v][second] for v in mw]
    ax.plot(mw, acc, "o-", color="C0")
    ax.set_xlabel("guidance weight w")
    ax.set_ylabel(accuracy_label, color="C0")
    ax.set_ylim(min(acc + [accuracy_floor]) - accuracy_pad, accuracy_top)
    ax2 = ax.twinx()
    ax2.plot(mw, other, "s--", color="C1")
    ax2.set_ylabel(second_label, color="C1")
    ax2.set_ylim(0, max(other + [second_floor]) * 1.05)
    ax2.axhline(1.0, color="C1", lw=0.8, ls=":")
    ax2.grid(False)
    ax.axvline(float(w), color="k", lw=1.0, ls=":")
    if float(w) in ms:
        ax.plot([float(w)], [100 * ms[float(w)]["accuracy"]], "o", ms=10, mfc="none", mec="k")
    ax.set_title(title, fontsize=10)


__all__ += ["guidance_tradeoff_panel"]
