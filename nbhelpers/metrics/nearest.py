"""Are generated images copies of training images? Nearest-neighbour distances in pixel space.

For every generated image, the distance to its nearest training image (or that image's mirror,
when the training data were flipped left–right) is compared with the same distance between
training images themselves, each against all the *others* (leave-one-out). A model that copies its
training set puts its samples much closer to a training image than training images are to each
other; a model that generalises leaves them at least as far. The distance is the root-mean-square
pixel difference in the [−1, 1] range,

    d(a, b) = √(mean_p (a_p − b_p)²),

which needs no pretrained network, so it runs offline. Blurry samples sit close to many training
images at once, so a small distance alone is not a copy; a copy sits much closer to *one* training
image than to any other. Hence the relative distance r = d₁/d₂ (nearest over second-nearest
distinct training image, after Carlini et al. 2023, who divide by the mean distance to the nearest
few): r ≪ 1 is a near copy. A large distance does not prove novelty (a shifted copy is far in
pixels), so look at the figure of samples beside their neighbours as well.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..devices import exact, to_exact

__all__ = ["Neighbours", "nearest_neighbours", "matched_images", "CopyCheck", "copy_check"]


@dataclass
class Neighbours:
    """For each query: RMS ``distance`` to its nearest reference image, that image's ``index`` in the
    reference set, whether the match is the reference image's mirror (``flipped``), and the distance
    to the nearest *other* reference image (``second``, either orientation)."""

    distance: torch.Tensor
    index: torch.Tensor
    flipped: torch.Tensor
    second: torch.Tensor

    @property
    def relative(self) -> torch.Tensor:
        """r = d₁/d₂ per query: near 0 for a copy of one reference image, near 1 for an image
        equally close to several."""
        return self.distance / self.second.clamp_min(1e-12)


def _as_float(images: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"{name} must be images of shape (N, C, H, W), got {tuple(getattr(images, 'shape', ()))}")
    if images.dtype == torch.uint8:
        return images.float() / 127.5 - 1.0
    return images.float()


@exact()
def _rms(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """RMS distance of matching rows in float64 (on the host where the device has none), float32 on the CPU."""
    return (to_exact(a) - to_exact(b)).pow(2).mean(1).sqrt().float().cpu()


@torch.no_grad()
def nearest_neighbours(queries: torch.Tensor, reference: torch.Tensor, mirror: bool = False,
                       exclude: torch.Tensor | None = None, chunk: int = 256) -> Neighbours:
    """Nearest image of ``reference`` to each of ``queries`` by RMS pixel distance.

    ``mirror``: also match the reference images flipped left–right (a flipped copy is still a copy).
    ``exclude``: int64 ``(N,)``, for each query one reference index it may not match (in either
    orientation) — the query's own index for leave-one-out distances within a set.
    Images are uint8 (0…255) or float in [−1, 1]; distances are computed on the reference's device.
    Shapes: queries ``(N, C, H, W)``, reference ``(M, C, H, W)`` → each field ``(N,)`` on the CPU.
    """
    q, r = _as_float(queries, "queries"), _as_float(reference, "reference")
    if q.shape[1:] != r.shape[1:]:
        raise ValueError(f"queries {tuple(q.shape[1:])} and reference {tuple(r.shape[1:])} must have the same image shape")
    M = r.shape[0]
    need = 3 if exclude is not None else 2
    if M < need:
        raise ValueError(f"reference needs at least {need} images (a nearest and a second-nearest), got {M}")
    if exclude is not None and exclude.shape != (q.shape[0],):
        raise ValueError(f"exclude must hold one reference index per query, shape ({q.shape[0]},), got {tuple(exclude.shape)}")
    dev = r.device
    refs = torch.cat([r, r.flip(-1)]) if mirror else r
    flat_r = refs.flatten(1)
    r_sq = flat_r.pow(2).sum(1)
    dists, seconds, idx = [], [], []
    for start in range(0, q.shape[0], chunk):
        fq = q[start:start + chunk].to(dev).flatten(1)
        # ‖a − b‖² = ‖a‖² + ‖b‖² − 2 a·b picks the neighbours; their distances are then recomputed
        # directly, since the expansion loses digits exactly where a copy sits (d ≈ 0)
        d2 = (fq.pow(2).sum(1, keepdim=True) + r_sq[None] - 2 * fq @ flat_r.T).clamp_min(0)
        if exclude is not None:
            ex = exclude[start:start + chunk].to(dev).long()
            rows = torch.arange(len(ex), device=dev)
            d2[rows, ex] = float("inf")
            if mirror:
                d2[rows, ex + M] = float("inf")
        j = d2.argmin(1)
        rows = torch.arange(len(j), device=dev)
        d2[rows, j % M] = float("inf")
        if mirror:
            d2[rows, j % M + M] = float("inf")
        j2 = d2.argmin(1)
        dists.append(_rms(fq, flat_r[j]))
        seconds.append(_rms(fq, flat_r[j2]))
        idx.append(j.cpu())
    j = torch.cat(idx)
    return Neighbours(distance=torch.cat(dists), index=j % M, flipped=j >= M, second=torch.cat(seconds))


@dataclass
class CopyCheck:
    """Generated samples against the training set (:func:`copy_check`).

    ``sample``: each sample's nearest training image; ``train``: leave-one-out nearest distances of
    ``train_index`` training images among all the others. ``ratio`` = median sample distance /
    median training distance (≥ 1: samples are no closer to the training set than training images
    are to each other); ``near_copies``: fraction of samples whose relative distance r = d₁/d₂
    (:attr:`Neighbours.relative`) is below ``threshold``, the ``quantile`` of r among training
    images (the set's own near-duplicates); a model that does not copy gives about ``quantile``.
    """

    sample: Neighbours
    train: Neighbours
    train_index: torch.Tensor = field(repr=False)
    quantile: float
    threshold: float
    ratio: float
    near_copies: float

    def as_dict(self) -> dict[str, float]:
        return {"sample_nn_median": float(self.sample.distance.median()), "train_nn_median": float(self.train.distance.median()),
                "sample_relative_median": float(self.sample.relative.median()),
                "train_relative_median": float(self.train.relative.median()), "ratio": self.ratio, "threshold": self.threshold, "quantile": self.quantile, "near_copies": self.near_copies,
                "n_samples": int(self.sample.distance.numel()), "n_train_queries": int(self.train.distance.numel())}


def copy_check(samples: torch.Tensor, train: torch.Tensor, n_train: int = 500, mirror: bool = True,
               quantile: float = 0.01, generator: torch.Generator | None = None) -> CopyCheck:
    """Nearest training image of every sample, against the leave-one-out nearest distances of
    ``n_train`` training images drawn at random (all of them when fewer). See :class:`CopyCheck`."""
    if not 0.0 < quantile < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {quantile!r}")
    if n_train < 1:
        raise ValueError(f"n_train must be >= 1, got {n_train!r}")
    M = train.shape[0]
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    pick = torch.randperm(M, generator=g)[:min(n_train, M)]
    nn_s = nearest_neighbours(samples, train, mirror=mirror)
    nn_t = nearest_neighbours(train[pick.to(train.device)], train, mirror=mirror, exclude=pick)
    thr = float(np.quantile(nn_t.relative.numpy(), quantile))
    ratio = float(nn_s.distance.median() / nn_t.distance.median()) if nn_t.distance.median() > 0 else float("inf")
    return CopyCheck(sample=nn_s, train=nn_t, train_index=pick, quantile=quantile, threshold=thr, ratio=ratio,
                     near_copies=float((nn_s.relative <= thr).float().mean()))


def matched_images(neighbours: Neighbours, reference: torch.Tensor, which: torch.Tensor | None = None) -> torch.Tensor:
    """The reference images matched to the queries ``which`` (all when None), mirrored where the
    match was the mirror, as float images in [−1, 1] on the CPU — to show beside the queries."""
    which = torch.arange(len(neighbours.index)) if which is None else which.cpu().long()
    imgs = _as_float(reference[neighbours.index[which].to(reference.device)].cpu(), "reference")
    flip = neighbours.flipped[which].view(-1, 1, 1, 1)
    return torch.where(flip, imgs.flip(-1), imgs)
