"""Training notebook 07's models: the ε-loss with label dropout and the cached training run of a preset.

Labels are replaced by the null label ∅ = ``num_classes`` with probability ``p_uncond``
(:func:`nbhelpers.guidance.drop_labels`), so one network learns ε(x, t, y) and ε(x, t, ∅); the loss is Ho
et al.'s (Algorithm 1, :meth:`nbhelpers.ddpm.DDPM.loss`) and the loop is :func:`nbhelpers.training.train`.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from ...ddpm import DDPM
from ...guidance import drop_labels
from .presets import NUM_CLASSES, MnistCFGPreset

__all__ = ["cfg_loss", "train_cfg_model"]


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


def train_cfg_model(p: MnistCFGPreset, model: nn.Module, train_set: Any, steps: int | None = None, seed: int = 0,
                    retrain: bool = False, desc: str = "DDPM + label dropout",
                    loss_fn: Callable[[nn.Module, Any, torch.Generator], torch.Tensor] | None = None) -> Any:
    """Train ``model`` (built by :func:`build_model` from ``p``) with ``loss_fn`` (default :func:`cfg_loss` of the
    preset; notebook 07 passes its own, checked equal to it) on ``train_set`` (an :class:`nb.data.ImageDataset`),
    cached as ``mnist_cfg_<variant>`` under the key :meth:`MnistCFGPreset.key`.
    Returns :class:`nb.training.TrainResult` (``sampling_model`` holds the EMA weights)."""
    from ...standin import mark_key
    from ...checkpoints import checkpoint_path
    from ...training import train

    key = mark_key(p.key(), getattr(train_set, "name", ""))
    ckpt = checkpoint_path(f"mnist_cfg_{p.variant}", key, profile=p.profile)
    if loss_fn is None:
        loss_fn = cfg_loss(p.ddpm(), p.p_uncond, channels_last=p.channels_last)
    return train(model, loss_fn, train_set.batcher(p.batch_size),
                 p.train_config(steps, seed=seed), checkpoint=ckpt, key=key, retrain=retrain, desc=desc)
