"""Classifier-free guidance (Ho & Salimans 2022) in the convention of seed 001.

One network ε_θ(x, t, y) learns both the conditional and the unconditional noise: during training
labels are replaced by the null label ∅ = ``num_classes`` with probability ``p_uncond``
(:func:`drop_labels`). At sampling time

    ε̄(x, t, y) = (w + 1) · ε(x, t, y) − w · ε(x, t, ∅)                              (seed 001 eq. 18)

so w = 0 is plain conditional sampling and w > 0 pushes samples towards the class. The other
common convention (Rombach et al., diffusers' ``guidance_scale``) writes
ε_u + s (ε_c − ε_u) with s = w + 1: s = 1 is conditional sampling, s = 0 unconditional (w = −1).

Time follows the model: for a DDPM network ``t = k / T`` (see :mod:`nbhelpers.ddpm`).

Autoguidance (Karras et al. 2024, "Guiding a diffusion model with a bad version of itself") needs no
labels: a weaker model D₀ of the same task — here the same network earlier in its training — guides
the trained one D₁,

    D_w(x, t) = D₀(x, t) + w · (D₁(x, t) − D₀(x, t)),                                   (:class:`AutoGuided`)

so w = 1 is plain sampling with D₁ and w > 1 moves every step away from where the weaker model would
go. Both models err in similar ways (blur, ambiguous strokes), the weaker one more, so the
extrapolation removes part of the stronger one's error. Weights summing to one make this the same
field whether the networks predict velocity, noise, score or the clean image (every conversion
between them is affine in the prediction at fixed ``(x, t)``).
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ._checks import batch_time, check_finite, check_float, check_int, check_labels

__all__ = ["drop_labels", "null_labels", "guided_eps", "CFGModel", "AutoGuided"]

Model = Callable[..., torch.Tensor]


def _check_classes(num_classes: int) -> int:
    return check_int("num_classes", num_classes, min=1)


def _check_w(w: float | torch.Tensor, batch: int) -> float | torch.Tensor:
    """A finite guidance weight: a number, or a ``(B,)`` tensor (one weight per sample)."""
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        if w.shape[0] != batch:
            raise ValueError(f"guidance weight w must be a number or a ({batch},) tensor, got shape {tuple(w.shape)}")
        return check_finite("guidance weight w", w)
    return check_float("guidance weight w", w)


def null_labels(batch: int, num_classes: int, device: str | torch.device | None = None) -> torch.Tensor:
    """The null label ∅ = ``num_classes`` for every sample, int64 ``(batch,)``."""
    num_classes = _check_classes(num_classes)
    batch = check_int("batch", batch, min=0)
    return torch.full((batch,), num_classes, dtype=torch.long, device=device)


def drop_labels(
    y: torch.Tensor, p_uncond: float, num_classes: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Replace each label by ∅ = ``num_classes`` independently with probability ``p_uncond``.

    Shapes: ``y`` int64 ``(B,)`` → ``(B,)`` (a new tensor; ``y`` is not modified).
    """
    num_classes = _check_classes(num_classes)
    p_uncond = check_float("p_uncond", p_uncond, min=0.0, max=1.0)
    y = check_labels("labels y", y, num_classes)
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
    num_classes = _check_classes(num_classes)
    B = x.shape[0]
    y = check_labels("labels y", y, num_classes, B)
    w = _check_w(w, B)
    t = batch_time(t, x)
    out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, null_labels(B, num_classes, y.device)]))
    if out.dtype in (torch.float16, torch.bfloat16):  # under autocast: combine in float32, where w·(ε_c − ε_u) is exact enough
        out = out.float()
    eps_c, eps_u = out[:B], out[B:]
    if isinstance(w, torch.Tensor) and w.ndim == 1:
        w = w.to(x).reshape(-1, *([1] * (x.ndim - 1)))
    return (w + 1.0) * eps_c - w * eps_u


class CFGModel(nn.Module):
    """Wrap a conditional ε-network so that ``forward(x, t, y)`` returns the guided ε̄ with weight ``w``.

    This is how guidance enters sampling: every sampler takes a model ``model(x, t, y)``, and
    ``DDPM.sample(CFGModel(net, w, num_classes), shape, y=labels)`` samples with guidance weight w
    (one batched network call per step). ``w`` is a number or a ``(B,)`` tensor (one weight per
    sample, e.g. a sweep over w in one batch). ``y = None`` gives the unconditional output
    ε(x, t, ∅). The wrapper owns no parameters besides the wrapped model's.
    """

    def __init__(self, model: Model, w: float | torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.model = model
        if isinstance(w, torch.Tensor) and w.ndim == 1:
            self.w = check_finite("guidance weight w", w)
        else:
            self.w = check_float("guidance weight w", w)
        self.num_classes = _check_classes(num_classes)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is None:
            return self.model(x, t, null_labels(x.shape[0], self.num_classes, x.device))
        return guided_eps(self.model, x, t, y, self.w, self.num_classes)

    def extra_repr(self) -> str:
        w = f"{self.w:g}" if isinstance(self.w, float) else f"tensor of shape {tuple(self.w.shape)}"
        return f"w={w}, num_classes={self.num_classes}"


class AutoGuided(nn.Module):
    """Autoguidance: ``forward(x, t, *args) = weak(x, t, *args) + w · (strong(x, t, *args) − weak(x, t, *args))``.

    ``strong`` is the trained model, ``weak`` a worse version of it (an earlier snapshot,
    ``TrainResult.snapshot_model``); both predict the same quantity (velocity, noise, score …) and take
    the same arguments. ``w = 1`` is ``strong`` alone, ``w = 0`` ``weak`` alone; Karras et al. 2024 use
    w ≈ 2–3. Two network calls per evaluation. Wrap it like any model: ``nb.solvers.euler(AutoGuided(net,
    early, 2.0), x0, 0, 1, 50)``. The wrapper owns no parameters besides the two models'.
    """

    def __init__(self, strong: Model, weak: Model, w: float) -> None:
        super().__init__()
        for label, m in (("strong", strong), ("weak", weak)):
            if not callable(m):
                raise TypeError(f"{label} must be a model called as {label}(x, t, ...), got {type(m).__name__}")
        if strong is weak:
            raise ValueError("strong and weak are the same model; autoguidance needs a weaker copy "
                             "(e.g. TrainResult.snapshot_model(step))")
        self.strong, self.weak = strong, weak
        self.w = check_float("guidance weight w", w)

    def forward(self, x: torch.Tensor, t: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        weak = self.weak(x, t, *args)
        return weak + self.w * (self.strong(x, t, *args) - weak)

    def extra_repr(self) -> str:
        return f"w={self.w:g}"
