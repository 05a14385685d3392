"""MNIST for notebooks 04 and 05: the Figure-1 UNet trained along a Gaussian path, and the evaluator's classifier.

* :func:`mnist_recipe` — per-profile sizes; :func:`train_mnist_field` trains (or loads from the
  checkpoint cache) a velocity field u_θ by flow matching or a score s_θ = −ε_θ/β_t by score matching,
  keeping the weights it had a third of the way through (``MNISTRecipe.guide_step``);
  :func:`autoguided` guides the trained model with that weaker copy (:class:`nbhelpers.guidance.AutoGuided`).
* :func:`mnist_evaluator` — the offline MNIST evaluator (:class:`nbhelpers.metrics.images.MNISTEvaluator`)
  with its classifier trained once by :func:`train_mnist_classifier` and cached; notebooks 04, 05
  and 07 score their digits with it.

Time as in :mod:`nbhelpers.paths`: t = 0 noise, t = 1 data.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_float
from ..checkpoints import checkpoint_path
from ..data import load_mnist
from ..guidance import AutoGuided
from ..losses import TIME_SAMPLINGS, flow_matching_loss, score_matching_loss
from ..metrics.images import MNISTClassifier, MNISTEvaluator
from ..models.mlp import ScoreFromNoise
from ..models.unet import UNet, UNetConfig
from ..paths import GaussianPath
from ..standin import mark_key
from ..training import TrainConfig, TrainResult, train

__all__ = ["FIELD_KINDS", "MNISTRecipe", "mnist_recipe", "train_mnist_field", "autoguided",
           "EVALUATOR_STEPS", "train_mnist_classifier", "mnist_evaluator"]

EVALUATOR_STEPS = 1200


# --------------------------------------------------------------------------- the Figure-1 UNet on MNIST
FIELD_KINDS = ("velocity", "score")


@dataclass(frozen=True)
class MNISTRecipe:
    """The Figure-1 UNet on MNIST as notebooks 04 and 05 train it: architecture and optimisation sizes."""

    unet: UNetConfig
    steps: int
    batch_size: int
    lr: float = 2e-3
    ema_decay: float | None = 0.999
    warmup_steps: int = 100
    checkpoint_every: int = 500
    lr_decay: str = "none"
    time_sampling: str = "uniform"  # the flow-matching loss's law of t (``nb.losses.TIME_SAMPLINGS``)
    guide_at: float | None = 1 / 3  # the weaker copy for autoguidance: the weights after this fraction of the steps
    guide_w: float = 2.0  # the autoguidance weight (1 = the trained model alone)
    amp: bool = False  # mixed precision at the card's dtype (nb.runtime.amp_dtype); the gpu profile's choice

    def __post_init__(self) -> None:
        if self.guide_at is not None:
            check_float("guide_at", self.guide_at, min=0.0, max=1.0, min_open=True, max_open=True)
        check_float("guide_w", self.guide_w)

    @property
    def guide_step(self) -> int | None:
        """The step after which the weaker copy is kept: ``guide_at`` of the steps, at least 1."""
        return None if self.guide_at is None or self.steps < 1 else max(1, round(self.steps * self.guide_at))

    def train_config(self, seed: int = 0):
        return TrainConfig(steps=self.steps, lr=self.lr, ema_decay=self.ema_decay, warmup_steps=self.warmup_steps,
                           lr_decay=self.lr_decay, checkpoint_every=self.checkpoint_every, seed=seed,
                           snapshot_steps=(self.guide_step,) if self.guide_step else (), amp=self.amp)

    def key(self, kind: str, schedule: str) -> dict[str, Any]:
        """Checkpoint key: everything that changes the trained model besides the TrainConfig."""
        key = {"unet": self.unet.key(), "data": "MNIST-train", "batch_size": self.batch_size, "kind": kind,
               "schedule": schedule, "loss": "flow_matching" if kind == "velocity" else "score_matching-beta2-eps"}
        if kind == "velocity" and self.time_sampling != "uniform":  # uniform keeps the keys models were cached under
            key["time_sampling"] = self.time_sampling
        return key


def mnist_recipe(profile: str, steps: int | None = None) -> MNISTRecipe:
    """Per-profile sizes: gpu = Figure 1 at 32/64/128 channels, batch 250, 5000 steps (seed 000 task 4b);
    cpu = the same blocks at 16/32/32 channels, batch 128, 900 steps, flow matching with logit-normal t;
    smoke = a few steps of a tiny one. cpu and gpu decay the learning rate to 0 along a cosine."""
    if profile == "gpu":
        r = MNISTRecipe(UNetConfig(base_channels=32, channel_mults=(1, 2, 4)), steps=5000, batch_size=250, lr_decay="cosine",
                        amp=True)  # bf16 from sm_80, fp16 with a gradient scaler on a T4
    elif profile == "cpu":
        # About 0.2 s a step on two quiet cores. Logit-normal t spends the steps mid-path, where the digit is decided:
        # 76 % of the samples recognised instead of 73 % at the same cost; wider nets, smaller batches with more
        # steps, an EMA, other optimiser settings, norms, couplings or attention did not do better at this cost
        # (benchmarks/README.md, "04 on the cpu profile"). The cosine decay anneals the weights itself: no EMA.
        # What does better is the sampler: autoguided by its own weights after step 300 (w = 2), 83–88 %.
        r = MNISTRecipe(UNetConfig(base_channels=16, channel_mults=(1, 2, 2)), steps=900, batch_size=128, lr=6e-3,
                        ema_decay=None, lr_decay="cosine", time_sampling="logit_normal")
    elif profile == "smoke":
        r = MNISTRecipe(UNetConfig(base_channels=4, channel_mults=(1, 2, 2), time_embed_dim=16), steps=8, batch_size=16,
                        ema_decay=0.9, warmup_steps=0, checkpoint_every=0)
    else:
        raise ValueError(f"unknown profile {profile!r}; valid choices: smoke, cpu, gpu")
    if steps is not None:
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be a positive integer or None, got {steps!r}")
        r = replace(r, steps=steps, warmup_steps=min(r.warmup_steps, steps // 4))
    return r


def train_mnist_field(
    kind: str,
    schedule: str,
    recipe: MNISTRecipe,
    data: Any,
    *,
    profile: str | None = None,
    seed: int = 0,
    retrain: bool = False,
    progress: bool = True,
    loss_fn: Callable[[nn.Module, torch.Tensor, GaussianPath, torch.Generator], torch.Tensor] | None = None,
):
    """Train (or load from the checkpoint cache) a Figure-1 UNet on MNIST along ``GaussianPath(schedule)``.

    ``kind="velocity"``: u_θ by conditional flow matching; ``kind="score"``: s_θ = −ε_θ/β_t by
    conditional score matching with weight β_t², where the UNet predicts the noise and
    ``nb.models.mlp.ScoreFromNoise`` divides by −β_t, so the loss is exactly ‖ε_θ − ε‖². ``data``
    is an ``ImageDataset`` on the training device. Returns ``nb.training.TrainResult``; use
    ``.sampling_model`` (the EMA copy) for sampling.

    ``loss_fn(model, z, path, generator)`` replaces the kind's loss on each batch of images ``z``
    (default: ``nb.losses.flow_matching_loss`` with ``recipe.time_sampling``, or the score loss above);
    notebook 04 passes the one it writes out. The cache key does not name it, so it must be the same loss,
    drawing from ``generator`` in the same order — check it equal to the default on one batch first.
    """
    if kind not in FIELD_KINDS:
        raise ValueError(f"unknown kind {kind!r}; valid choices: {', '.join(FIELD_KINDS)}")
    if recipe.time_sampling not in TIME_SAMPLINGS:
        raise ValueError(f"unknown time_sampling {recipe.time_sampling!r}; valid choices: {', '.join(TIME_SAMPLINGS)}")
    path = GaussianPath(schedule)
    device = data.images.device
    torch.manual_seed(seed)
    net: nn.Module = UNet(recipe.unet)
    if kind == "score":
        net = ScoreFromNoise.on_path(net, path)  # s_θ = −ε_θ/β_t
        loss = lambda m, b, g: score_matching_loss(m, b.x, path, generator=g, weighting="beta2")  # noqa: E731
    else:
        loss = lambda m, b, g: flow_matching_loss(m, b.x, path, generator=g,  # noqa: E731
                                                  time_sampling=recipe.time_sampling)
    if loss_fn is not None:
        if not callable(loss_fn):
            raise ValueError(f"loss_fn must be a function loss_fn(model, z, path, generator) or None, got {loss_fn!r}")
        loss = lambda m, b, g: loss_fn(m, b.x, path, g)  # noqa: E731
    net = net.to(device, memory_format=torch.channels_last)
    key = mark_key(recipe.key(kind, schedule), data.name)
    ckpt = checkpoint_path(f"mnist_{kind}", key, profile=profile)
    return train(net, loss, data.batcher(recipe.batch_size, labels=False), recipe.train_config(seed), checkpoint=ckpt,
                 key=key, retrain=retrain, progress=progress, desc=f"{kind} · {schedule}")


def autoguided(result: TrainResult, recipe: MNISTRecipe, w: float | None = None) -> AutoGuided:
    """The trained field guided by its own copy after ``recipe.guide_step`` steps (Karras et al. 2024):
    ``early + w · (final − early)``, ``w`` defaulting to ``recipe.guide_w``. ``result`` is what
    :func:`train_mnist_field` returned for ``recipe``."""
    if recipe.guide_step is None:
        raise ValueError("this recipe keeps no earlier copy to guide with (guide_at=None); "
                         "use a recipe with guide_at in (0, 1)")
    return AutoGuided(result.sampling_model, result.snapshot_model(recipe.guide_step),
                      recipe.guide_w if w is None else w)


# --------------------------------------------------------------------------- the evaluator's classifier
def _classifier_key(steps: int, width: int, batch_size: int) -> dict[str, Any]:
    return {"model": "MNISTClassifier-v1", "width": width, "data": "MNIST-train", "batch_size": batch_size, "steps": steps,
            "augment": "none", "lr_decay": "cosine"}


def train_mnist_classifier(
    device: str | torch.device = "cpu",
    *,
    steps: int = EVALUATOR_STEPS,
    profile: str | None = None,
    retrain: bool = False,
    progress: bool = True,
    root: str | Path | None = None,
    batch_size: int = 128,
    width: int = 16,
    lr: float = 3e-3,
    train_limit: int | None = None,
    checkpoint: str | Path | None | bool = True,
):
    """Train (or load from the checkpoint cache) the evaluator's classifier with ``nb.training.train``.

    Cross-entropy, AdamW with a cosine learning-rate decay from ``lr`` to 0 (about 99.3 % test
    accuracy after the default 1200 steps, ~35 s on two CPU cores). ``checkpoint=True`` uses
    ``nb.checkpoints.checkpoint_path("mnist_classifier", key, profile)``; a path uses that file;
    ``None``/``False`` trains without caching. Returns the ``TrainResult``.
    """
    device = torch.device(device)
    data = load_mnist("train", device=device, root=root, limit=train_limit)
    torch.manual_seed(0)
    model = MNISTClassifier(width=width).to(device)
    key = mark_key({**_classifier_key(steps, width, batch_size), "lr": lr}, data.name)
    if train_limit is not None:
        key["train_limit"] = train_limit
    if checkpoint is True:
        ckpt = checkpoint_path("mnist_classifier", key, profile=profile)
    else:
        ckpt = checkpoint or None
    batcher = data.batcher(batch_size)

    def loss_fn(m: nn.Module, batch: Any, generator: torch.Generator) -> torch.Tensor:
        return F.cross_entropy(m(batch.x), batch.y)

    cfg = TrainConfig(steps=steps, lr=lr, weight_decay=1e-4, lr_decay="cosine", seed=0)
    return train(model, loss_fn, batcher, cfg, checkpoint=ckpt, key=key, retrain=retrain, progress=progress,
                 desc="MNIST classifier")


_EVALUATORS: dict[tuple, MNISTEvaluator] = {}


def mnist_evaluator(
    device: str | torch.device = "cpu",
    *,
    steps: int | None = None,
    profile: str | None = None,
    retrain: bool = False,
    progress: bool = True,
    root: str | Path | None = None,
) -> MNISTEvaluator:
    """The offline MNIST evaluator, trained once (``steps``, default ``EVALUATOR_STEPS``) and then loaded from the cache.

    Its test accuracy on all 10 000 MNIST test images is in ``.test_accuracy`` (≥ 0.99 at the
    default steps). Kept in memory per (device, steps, profile) for the rest of the session.
    """
    steps = EVALUATOR_STEPS if steps is None else steps
    device = torch.device(device)
    cache_key = (str(device), steps, profile, str(root))
    if cache_key in _EVALUATORS and not retrain:
        return _EVALUATORS[cache_key]
    res = train_mnist_classifier(device, steps=steps, profile=profile, retrain=retrain, progress=progress, root=root)
    test = load_mnist("test", device=device, root=root)
    ev = MNISTEvaluator.from_test_set(res.model, test.images, test.labels)
    _EVALUATORS[cache_key] = ev
    return ev
