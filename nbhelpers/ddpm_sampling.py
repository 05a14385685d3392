"""Guided sampling from a discrete DDPM in chunks: :func:`guided_sample`, the harness around
:meth:`nbhelpers.ddpm.DDPM.sample` and :meth:`~nbhelpers.ddpm.DDPM.ddim_sample` that draws a labelled batch with
classifier-free guidance (:class:`nbhelpers.guidance.CFGModel`), ``chunk`` labels at a time, under autocast if asked,
and gathers the results on the CPU. Direction as in :mod:`nbhelpers.ddpm` (k = 0 data, k = T noise).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ._checks import check_float, check_int, check_labels
from .ddpm import DDPM, SAMPLERS, SampleResult
from .devices import autocast, randn
from . import dryrun
from .guidance import CFGModel

__all__ = ["guided_sample"]


def _merge(parts: list[dict[int, torch.Tensor] | None]) -> dict[int, torch.Tensor] | None:
    if parts[0] is None:
        return None
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@dryrun.sampler
@torch.no_grad()
def guided_sample(
    ddpm: DDPM,
    model: nn.Module,
    labels: torch.Tensor,
    guidance_w: float,
    num_classes: int,
    *,
    shape: Sequence[int],
    sampler: str = "ancestral",
    n_steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    return_steps: Sequence[int] | None = None,
    chunk: int = 1000,
    amp: bool = False,
) -> SampleResult:
    """Classifier-free guided samples for ``labels`` (∅ = ``num_classes`` allowed) with weight ``guidance_w``,
    ε̄ = (w + 1)·ε(x, t, y) − w·ε(x, t, ∅) (:class:`nbhelpers.guidance.CFGModel`): ancestral (all T steps,
    :meth:`DDPM.sample`) or DDIM (``n_steps``, ``eta``, :meth:`DDPM.ddim_sample`), ``chunk`` labels at a time.

    w = 0 skips the unconditional pass ((0 + 1)·ε_c − 0·ε_u = ε_c), halving the cost. ``amp`` runs the network
    under the card's autocast dtype on CUDA (``nb.runtime.amp_dtype``: bf16 from sm_80, fp16 below). ``x_T``
    fixes the starting noise; otherwise each chunk's is drawn with ``generator`` on the model's device. A dry
    run ($NBHELPERS_MAX_STEPS) spends one budget of guided evaluations over all the chunks. Returns a
    :class:`SampleResult` with ``x`` and the states and x̂₀ at ``return_steps`` on the CPU, float32.
    Shapes: labels ``(B,)``, one sample ``shape`` (e.g. ``(1, 28, 28)``), x_T ``(B, *shape)``.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; valid choices: {', '.join(SAMPLERS)}")
    if sampler == "ddim" and n_steps is None:
        raise ValueError("the DDIM sampler needs n_steps")
    guidance_w = check_float("guidance_w", guidance_w, min=0.0)
    eta = check_float("eta", eta, min=0.0)
    chunk = check_int("chunk", chunk, min=1)
    num_classes = check_int("num_classes", num_classes, min=1)
    labels = check_labels("labels", labels, num_classes)
    shape = tuple(shape)
    if x_T is not None and (not isinstance(x_T, torch.Tensor) or tuple(x_T.shape) != (labels.shape[0], *shape)):
        raise ValueError(f"x_T must be a tensor {(labels.shape[0], *shape)} with one start per label, "
                         f"got {type(x_T).__name__} {tuple(getattr(x_T, 'shape', ()))}")
    device = next(model.parameters()).device
    labels = labels.to(device)
    if guidance_w != 0.0:  # w = 0 is plain conditional sampling: one network call per step, no wrapper
        model = CFGModel(model, guidance_w, num_classes)
    xs, trajs, preds, nfe = [], [], [], 0
    for i in range(0, labels.shape[0], chunk):
        y = labels[i:i + chunk]
        start = (x_T[i:i + chunk].to(device) if x_T is not None else
                 randn((y.shape[0], *shape), generator, device))
        with autocast(device, enabled=amp):
            if sampler == "ancestral":
                out = ddpm.sample(model, start, y=y, generator=generator, return_steps=return_steps)
            else:
                out = ddpm.ddim_sample(model, start, n_steps, eta=eta, y=y, generator=generator,
                                       return_steps=return_steps)
        xs.append(out.x.float().cpu())
        trajs.append({k: v.float().cpu() for k, v in out.trajectory.items()} if out.trajectory is not None else None)
        preds.append({k: v.float().cpu() for k, v in out.x0_preds.items()} if out.x0_preds is not None else None)
        nfe = out.nfe
    return SampleResult(torch.cat(xs), _merge(trajs), _merge(preds), nfe)
