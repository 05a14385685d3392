"""Notebook 06's training: one cosine-DDPM ε-network per T (label dropout for the conditional one), and the tails
of their loss histories.

Direction (as in :mod:`nbhelpers.ddpm`): k = 0 data, k = T noise; the network sees t = k / T.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...ddpm import DDPM
from ...distributions import GaussianMixture
from ...guidance import drop_labels
from ...models.two_pixel import TwoPixelUNet
from ...checkpoints import checkpoint_path
from ...training import TrainConfig, TrainResult, train

__all__ = ["TrainedDDPM", "train_two_pixel", "LossTail", "loss_tail"]


@dataclass(frozen=True)
class TrainedDDPM:
    """A trained ε-network (``result``), the DDPM it was trained for and the name it is cached and reported under."""

    ddpm: DDPM
    result: TrainResult
    name: str = ""

    def __iter__(self):  # ``ddpm, result = train_two_pixel(...)``
        return iter((self.ddpm, self.result))

    @property
    def metrics(self) -> dict[str, float]:
        """``train_seconds/<name>``: the training's wall time (the checkpoint's, when loaded from the cache)."""
        return {f"train_seconds/{self.name}": self.result.seconds}

    def summary(self) -> str:
        how = "from the checkpoint cache" if self.result.loaded_from_cache else "trained now"
        return f"{self.name}: {self.result.steps} steps in {self.result.seconds:.1f} s ({how})"


def train_two_pixel(T: int, *, data: GaussianMixture, net: dict[str, Any], steps: int, batch: int, lr: float,
                    seed: int, device: str | torch.device, profile: str, p_uncond: float | None = None,
                    label_dropout: Callable[..., torch.Tensor] = drop_labels, retrain: bool = False) -> TrainedDDPM:
    """Train (or load from the checkpoint cache) a :class:`TwoPixelUNet` ε-network for a cosine DDPM with T steps.

    ``p_uncond=None``: unconditional; otherwise conditional on the two classes, each label replaced by
    ∅ with probability ``p_uncond`` by ``label_dropout(y, p_uncond, 2, generator)`` (the notebook passes the
    learner's function). AdamW whose learning rate decays along a cosine from ``lr`` to 0 over ``steps``
    (``TrainConfig(lr_decay="cosine")``, no warm-up); squared-error ε-loss (:meth:`DDPM.loss`).
    """
    ddpm = DDPM.from_schedule("cosine", T)
    torch.manual_seed(seed)
    model = TwoPixelUNet(num_classes=0 if p_uncond is None else 2, **net).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    data_dev = data.to(device)

    def loss_fn(m: torch.nn.Module, b: Any, g: torch.Generator) -> torch.Tensor:
        y = None if p_uncond is None else label_dropout(b.labels, p_uncond, 2, g)
        return ddpm.loss(m, b.x, y, kind="l2", generator=g)

    key = {"data": "two_pixel", "net": "TwoPixelUNet", **net, "T": T, "schedule": "cosine", "loss": "l2",
           "p_uncond": p_uncond, "batch": batch, "lr": lr, "lr_decay": "cosine", "warmup_steps": 0}
    name = f"06_two_pixel_T{T}" + ("" if p_uncond is None else "_cfg")
    res = train(model, loss_fn, lambda g: data_dev.sample_with_labels(batch, g),
                TrainConfig(steps=steps, lr=lr, lr_decay="cosine", seed=seed),
                checkpoint=checkpoint_path(name, key, profile=profile), key=key, retrain=retrain, optimizer=opt, desc=name)
    return TrainedDDPM(ddpm, res, name)


@dataclass(frozen=True)
class LossTail:
    """Mean and its standard error (std/√n) of the last steps of each loss history, by label."""

    mean: dict[str, float]
    se: dict[str, float]

    def separation(self, a: str, b: str) -> float:
        """How far ``b`` ends above ``a``, in standard errors of their difference (NaN when both are exact)."""
        return (self.mean[b] - self.mean[a]) / (math.hypot(self.se[a], self.se[b]) or math.nan)


def loss_tail(losses: dict[str, Sequence[float]], last: int = 200) -> LossTail:
    """:class:`LossTail` over the last ``last`` values of each history in ``losses`` (``{label: losses}``)."""
    tails = {k: v[-last:] for k, v in losses.items()}
    return LossTail({k: float(np.mean(v)) for k, v in tails.items()},
                    {k: float(np.std(v)) / math.sqrt(len(v)) for k, v in tails.items()})
