"""A time-conditioned MLP: ``forward(x, t, y=None)`` → a tensor shaped like ``x``; and
:class:`ScoreFromNoise`, which turns any noise-predicting network into a score network.

With ``time_embedding=None`` the network sees the raw time concatenated to the data, i.e. for
2D data its input is (x, t) ∈ R³ (seed 000 task 3b). ``depth`` counts hidden layers: the
assignment's "4 hidden layers of width 64" is ``TimeMLP(dim=2, hidden=64, depth=4)``.
The network is agnostic to the time direction; whoever trains it states the convention.
"""
from __future__ import annotations


from typing import Any, Callable

import torch
from torch import Tensor, nn

from .._checks import batch_time, check_labels
from .embeddings import get_time_embedding

__all__ = ["TimeMLP", "ScoreFromNoise", "ACTIVATIONS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"silu": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "elu": nn.ELU}


class TimeMLP(nn.Module):
    """u_θ(x, t[, y]) = MLP([x, emb(t)[, emb(y)]]) with ``depth`` hidden layers of width ``hidden``.

    Args:
        dim: number of data features (``x`` is ``(B, dim)``, or ``(B, ...)`` with ``dim`` elements).
        hidden, depth: width and number of hidden layers.
        time_embedding: ``None`` (raw t, one input feature), ``"sinusoidal"``, ``"fourier"`` or a
            module with integer ``dim``; ``time_dim`` sets the size of a named embedding.
        activation: one of ``ACTIVATIONS``.
        num_classes: optional class conditioning; labels 0 … num_classes−1, the null label
            ``num_classes`` (also used when ``y`` is None) for classifier-free guidance.
        class_dim: size of the learned label embedding.

    Shapes: x ``(B, dim)``, t ``(B,)`` or a scalar, y int64 ``(B,)`` → ``(B, dim)``.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 64,
        depth: int = 4,
        time_embedding: str | nn.Module | None = None,
        time_dim: int = 32,
        activation: str = "silu",
        num_classes: int | None = None,
        class_dim: int = 16,
    ) -> None:
        super().__init__()
        for label, v in (("dim", dim), ("hidden", hidden), ("depth", depth)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{label} must be a positive integer, got {v!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid choices: {', '.join(ACTIVATIONS)}")
        if num_classes is not None and (isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1):
            raise ValueError(f"num_classes must be a positive integer or None, got {num_classes!r}")
        self.dim, self.hidden, self.depth, self.num_classes = dim, hidden, depth, num_classes
        self.time_embedding = get_time_embedding(time_embedding, time_dim)
        t_features = 1 if self.time_embedding is None else self.time_embedding.dim
        self.class_embedding = nn.Embedding(num_classes + 1, class_dim) if num_classes is not None else None
        y_features = class_dim if num_classes is not None else 0

        act = ACTIVATIONS[activation]
        layers: list[nn.Module] = [nn.Linear(dim + t_features + y_features, hidden), act()]
        for _ in range(depth - 1):
            layers += [nn.Linear(hidden, hidden), act()]
        layers.append(nn.Linear(hidden, dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        B = x.shape[0]
        h = x.reshape(B, -1)
        if h.shape[1] != self.dim:
            raise ValueError(f"x has {h.shape[1]} features per sample, this TimeMLP was built for dim={self.dim}")
        t = batch_time(t, h)
        temb = t[:, None] if self.time_embedding is None else self.time_embedding(t).to(h.dtype)
        parts = [h, temb]
        if self.class_embedding is not None:
            if y is None:
                y = torch.full((B,), self.num_classes, dtype=torch.long, device=h.device)
            y = check_labels("labels y", y, self.num_classes, B, check_values=y.device.type == "cpu")
            parts.append(self.class_embedding(y))
        elif y is not None:
            raise ValueError("labels y were given, but this TimeMLP was built with num_classes=None")
        return self.net(torch.cat(parts, dim=1)).reshape(x.shape)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, hidden={self.hidden}, depth={self.depth}"


class ScoreFromNoise(nn.Module):
    """s_θ(x, t) = −ε_θ(x, t) / σ(t): a score network built on a network ``net`` that predicts the noise.

    For x_t = m_t x_0 + σ_t ε the conditional score is −ε/σ_t, so the target of ``net`` is ε itself:
    O(1) at every t, while the score grows like 1/σ_t where the noise vanishes. With this wrapper
    the σ-weighted denoising loss E‖σ_t s_θ + ε‖² becomes the ε-prediction loss E‖ε − ε_θ‖².
    ``std(t)`` maps a ``(B,)`` time tensor to σ_t (e.g. ``VPSDE.marginal_std``); it is clamped
    below at ``min_std`` so that the score stays finite where σ_t = 0.

    Shapes: as ``net``; x ``(B, ...)``, t ``(B,)`` (or a scalar).
    """

    def __init__(self, net: nn.Module, std: Callable[[Tensor], Tensor], min_std: float = 1e-4) -> None:
        super().__init__()
        if not callable(std):
            raise ValueError(f"std must be a callable t -> sigma_t, got {std!r}")
        if not (min_std > 0):
            raise ValueError(f"min_std must be positive, got {min_std!r}")
        self.net, self.std, self.min_std = net, std, float(min_std)

    @classmethod
    def on_path(cls, net: nn.Module, path: Any, min_std: float = 1e-4) -> "ScoreFromNoise":
        """The score on a Gaussian path x_t = α_t z + β_t ε (``nb.paths.GaussianPath``; t = 0 noise, 1 data):
        σ_t = β_t, so s_θ = −ε_θ/β_t and the β_t²-weighted score-matching loss is ‖ε_θ − ε‖²."""
        return cls(net, lambda t: path.schedule(t).beta, min_std)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        t = batch_time(t, x)
        eps = self.net(x, t) if y is None else self.net(x, t, y)
        sigma = torch.as_tensor(self.std(t), dtype=x.dtype, device=x.device).clamp_min(self.min_std)
        return -eps / sigma.reshape(-1, *([1] * (x.dim() - 1)))
