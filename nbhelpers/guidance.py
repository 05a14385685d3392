"""Classifier-free guidance (Ho & Salimans 2022) in the convention of seed 001.

One network ε_θ(x, t, y) learns both the conditional and the unconditional noise: during training
labels are replaced by the null label ∅ = ``num_classes`` with probability ``p_uncond``
(:func:`drop_labels`). At sampling time

    ε̄(x, t, y) = (w + 1) · ε(x, t, y) − w · ε(x, t, ∅)                              (seed 001 eq. 18)

so w = 0 is plain conditional sampling and w > 0 pushes samples towards the class. The other
common convention (Rombach et al., diffusers' ``guidance_scale``) writes
ε_u + s (ε_c − ε_u) with s = w + 1: s = 1 is conditional sampling, s = 0 unconditional (w = −1).

Time follows the model: for a DDPM network ``t = k / T`` (see :mod:`nbhelpers.ddpm`).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

__all__ = ["drop_labels", "null_labels", "guided_eps", "CFGModel"]

Model = Callable[..., torch.Tensor]


def _check_classes(num_classes: int) -> None:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")


def null_labels(batch: int, num_classes: int, device: str | torch.device | None = None) -> torch.Tensor:
    """The null label ∅ = ``num_classes`` for every sample, int64 ``(batch,)``."""
    _check_classes(num_classes)
    return torch.full((batch,), num_classes, dtype=torch.long, device=device)


def drop_labels(
    y: torch.Tensor, p_uncond: float, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each label by ∅ = ``num_classes`` independently with probability ``p_uncond``.

    Shapes: ``y`` int64 ``(B,)`` → ``(B,)`` (a new tensor; ``y`` is not modified).
    """
    _check_classes(num_classes)
    if not 0.0 <= float(p_uncond) <= 1.0:
        raise ValueError(f"p_uncond must lie in [0, 1], got {p_uncond!r}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"labels must be an integer tensor, got dtype {y.dtype}")
    gen_device = generator.device if generator is not None else y.device
    u = torch.rand(y.shape, generator=generator, device=gen_device).to(y.device)
    return torch.where(u < p_uncond, torch.full_like(y, num_classes), y).long()


def guided_eps(
    model: Model,
    x: torch.Tensor,
    t: torch.Tensor,
    y: torch.Tensor,
    w: float | torch.Tensor,
    num_classes: int,
) -> torch.Tensor:
    """ε̄ = (w + 1)·ε(x, t, y) − w·ε(x, t, ∅), both terms from ONE forward pass on the batch
    ``[x; x]`` with labels ``[y; ∅]``.

    Shapes: ``x (B, …)``, ``t (B,)`` (or a scalar), ``y (B,)``; ``w`` a float or a ``(B,)`` tensor.
    """
    _check_classes(num_classes)
    B = x.shape[0]
    if y.shape != (B,):
        raise ValueError(f"y must have shape ({B},), got {tuple(y.shape)}")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    t = t.expand(B) if t.ndim == 0 else t
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null_labels(B, num_classes, y.device)]))
    eps_c, eps_u = out[:B], out[B:]
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        w = w.to(x).reshape(-1, *([1] * (x.ndim - 1)))
    return (w + 1.0) * eps_c - w * eps_u


class CFGModel(nn.Module):
    """Wrap a conditional ε-network so that ``forward(x, t, y)`` returns the guided ε̄ with weight ``w``.

    ``y = None`` gives the unconditional output ε(x, t, ∅). The wrapper owns no parameters besides
    the wrapped model's, so it can be handed to any sampler that expects ``model(x, t, y)``.
    """

    def __init__(self, model: nn.Module, w: float, num_classes: int) -> None:
        super().__init__()
        _check_classes(num_classes)
        self.model = model
        self.w = float(w)
        self.num_classes = num_classes

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            return self.model(x, t, null_labels(x.shape[0], self.num_classes, x.device))
        return guided_eps(self.model, x, t, y, self.w, self.num_classes)

    def extra_repr(self) -> str:
        return f"w={self.w:g}, num_classes={self.num_classes}"
