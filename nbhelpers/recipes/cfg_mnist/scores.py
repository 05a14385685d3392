"""Scoring notebook 07's samples with the MNIST evaluator (:func:`nbhelpers.recipes.mnist.mnist_evaluator`):
each sweep's rows, the numbers it records and its table, and the two variants compared, each number with its
standard error (binomial for fractions, :mod:`nbhelpers.metrics.stats`; a bootstrap for the FD ratio).

Sweeps: the guidance weight (:func:`score_samples`), the editing t₀ (:func:`score_edits`, with the distances
of real digits as yardsticks) and DDIM against ancestral sampling (:func:`score_sets`); the variants:
:func:`score_variant`, :func:`sample_and_score_variant` and :func:`verdict`.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ...ddpm import DDPM
from ...metrics.stats import binomial_se
from .presets import NUM_CLASSES
from .sampling import generate

__all__ = [
    "rms_distance", "real_pair_distances", "SWEEP_METRICS", "score_samples", "sweep_metrics", "sweep_table",
    "diversity_text", "score_edits", "edit_metrics", "edit_table", "score_sets", "sets_metrics", "sets_table",
    "verdict", "VariantScore", "score_variant", "sample_and_score_variant",
]


def rms_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image root-mean-square pixel distance ``sqrt(mean((a − b)²))``: ``(B, …)`` → ``(B,)``."""
    return (a.float() - b.float()).pow(2).flatten(1).mean(1).sqrt()


def real_pair_distances(images: torch.Tensor, labels: torch.Tensor, n_pairs: int,
                        generator: torch.Generator | None = None) -> tuple[float, float]:
    """Yardsticks for an edit: the mean :func:`rms_distance` between two real images drawn at random
    (``n_pairs`` pairs), of the same class and of different classes."""
    pairs = torch.randint(0, len(images), (2, n_pairs), generator=generator)
    d = rms_distance(images[pairs[0]], images[pairs[1]])
    same = labels[pairs[0]] == labels[pairs[1]]
    return d[same].mean().item(), d[~same].mean().item()


SWEEP_METRICS = ("accuracy", "recognised", "fd", "fd_floor", "fd_ratio", "fd_ratio_se", "diversity")


def score_samples(ev: Any, samples: dict[float, torch.Tensor], labels: torch.Tensor,
                  real_diversity: np.ndarray) -> dict[float, dict[str, Any]]:
    """Score each sample set of a sweep with the MNIST evaluator ``ev``: class accuracy against ``labels``, the
    recognised fraction, FD, its floor and ratio (with s.e.), and the within-class diversity relative to
    ``real_diversity`` (per class, and its mean over the classes)."""
    rows = {}
    for w, x in samples.items():
        e = ev.evaluate(x)
        div = ev.diversity(x, labels)
        rows[w] = {"accuracy": ev.class_accuracy(x, labels), "recognised": e.recognised_fraction, "fd": e.fd,
                   "fd_floor": e.fd_floor, "fd_ratio": e.fd_ratio, "fd_ratio_se": e.fd_ratio_se,
                   "diversity_per_class": div / real_diversity, "diversity": float(np.nanmean(div / real_diversity))}
    return rows


def sweep_metrics(rows: dict[float, dict[str, Any]]) -> dict[str, Any]:
    """The recorded numbers of :func:`score_samples`: ``w<w>_<name>`` for each name in :data:`SWEEP_METRICS`."""
    return {f"w{w:g}_{name}": r[name] for w, r in rows.items() for name in SWEEP_METRICS}


def sweep_table(rows: dict[float, dict[str, Any]]) -> str:
    """One line per guidance weight: class accuracy, recognised, FD, FD/floor and diversity/real."""
    lines = [f"{'w':>4} | {'class acc.':>10} | {'recognised':>10} | {'FD':>7} | {'FD/floor':>8} | "
             f"{'diversity/real':>14}"]
    for w, r in rows.items():
        lines.append(f"{w:4g} | {100 * r['accuracy']:9.1f}% | {100 * r['recognised']:9.1f}% | {r['fd']:7.2f} | "
                     f"{r['fd_ratio']:8.2f} | {r['diversity']:14.2f}")
    return "\n".join(lines)


def diversity_text(w: float, row: dict[str, Any]) -> str:
    """One line on the diversity at weight ``w``: the mean over classes, the least and the most diverse digit."""
    d = row["diversity_per_class"]
    return (f"w = {w:g}: diversity / real = {row['diversity']:.2f} on average (least diverse: digit "
            f"{int(np.nanargmin(d))} at {np.nanmin(d):.2f}; most: digit {int(np.nanargmax(d))} at {np.nanmax(d):.2f})")


def score_edits(ev: Any, edits: dict[float, tuple[torch.Tensor, torch.Tensor]], images: torch.Tensor,
                labels: torch.Tensor, new_labels: torch.Tensor) -> dict[float, dict[str, Any]]:
    """Per t0 of :func:`edit_sweep`: per-image RMS distances to the originals (``rms_same``, ``rms_new``), the
    fraction read as the requested digit (``acc_same``, ``acc_new``) and, for the new label, as the original."""
    rows = {}
    for f, (same_lab, new_lab) in edits.items():
        rows[f] = {
            "rms_same": rms_distance(same_lab, images), "rms_new": rms_distance(new_lab, images),
            "acc_same": ev.class_accuracy(same_lab, labels), "acc_new": ev.class_accuracy(new_lab, new_labels),
            "still_original": ev.class_accuracy(new_lab, labels),
        }
    return rows


def edit_metrics(rows: dict[float, dict[str, Any]]) -> dict[str, Any]:
    """The recorded numbers of :func:`score_edits`: ``edit_t<t0>_{rms_own, rms_other, acc_own, acc_other}``."""
    out = {}
    for f, r in rows.items():
        out.update({f"edit_t{f:g}_rms_own": r["rms_same"].mean(), f"edit_t{f:g}_rms_other": r["rms_new"].mean(),
                    f"edit_t{f:g}_acc_own": r["acc_same"], f"edit_t{f:g}_acc_other": r["acc_new"]})
    return out


def edit_table(rows: dict[float, dict[str, Any]]) -> str:
    """One line per t0 of :func:`score_edits`."""
    lines = [f"{'t0':>4} | {'RMS, own label':>14} | {'RMS, label+1':>12} | {'reads own':>9} | {'reads +1':>8} | "
             f"{'(+1 edit) still reads own':>25}"]
    for f, r in rows.items():
        lines.append(f"{f:4.1f} | {r['rms_same'].mean():14.3f} | {r['rms_new'].mean():12.3f} | "
                     f"{100 * r['acc_same']:8.0f}% | {100 * r['acc_new']:7.0f}% | {100 * r['still_original']:24.0f}%")
    return "\n".join(lines)


def score_sets(ev: Any, sets: dict[str, tuple[torch.Tensor, int]], labels: torch.Tensor) -> dict[str, dict[str, Any]]:
    """Per named set of :func:`ddim_and_ancestral_sets`: network calls, class accuracy, FD, FD/floor (with s.e.)
    and the recognised fraction."""
    rows = {}
    for name, (x, n_eval) in sets.items():
        e = ev.evaluate(x)
        rows[name] = {"nfe": n_eval, "accuracy": ev.class_accuracy(x, labels), "fd": e.fd, "fd_ratio": e.fd_ratio,
                      "fd_ratio_se": e.fd_ratio_se, "recognised": e.recognised_fraction}
    return rows


def sets_metrics(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The recorded numbers of :func:`score_sets`: ``<name, lower case, no dash>_<metric>`` (``ddim50_accuracy``)."""
    return {f"{name.lower().replace('-', '')}_{k}": v for name, r in rows.items() for k, v in r.items()}


def sets_table(rows: dict[str, dict[str, Any]]) -> str:
    """One line per sampler of :func:`score_sets`."""
    lines = [f"{'sampler':>10} | {'NFE':>5} | {'class acc.':>10} | {'recognised':>10} | {'FD/floor':>8}"]
    for name, r in rows.items():
        lines.append(f"{name:>10} | {r['nfe']:5d} | {100 * r['accuracy']:9.1f}% | {100 * r['recognised']:9.1f}% | "
                     f"{r['fd_ratio']:8.2f} ± {r['fd_ratio_se']:.2f}")
    return "\n".join(lines)


def verdict(a: float, se_a: float, b: float, se_b: float, z: float = 2.0) -> str:
    """``"higher"``, ``"lower"`` or ``"indistinguishable"``: a against b, distinguishable only when
    |a − b| ≥ z·√(se_a² + se_b²) (independent estimates; z = 2 is about a 95 % two-sided test)."""
    if min(se_a, se_b) < 0 or not all(math.isfinite(v) for v in (a, b, se_a, se_b)):
        raise ValueError(f"need finite values and standard errors >= 0, got a={a!r}±{se_a!r}, b={b!r}±{se_b!r}")
    if abs(a - b) < z * math.hypot(se_a, se_b) or a == b:
        return "indistinguishable"
    return "higher" if a > b else "lower"


@dataclass
class VariantScore:
    """One trained model of notebook 07 scored by the MNIST evaluator, each number with its standard error.

    From the conditional samples at w = 0 (all ten digits requested equally): ``recognised``
    (max class probability ≥ 0.9), ``fd_ratio`` (FD to real digits over the real-vs-real floor;
    ``fd_ratio_se`` from a bootstrap over the samples) and ``accuracy_w0``; from the samples at
    w = 2: ``accuracy_w2`` (read as the requested digit); from the unconditional samples (y = ∅):
    ``class_min``/``class_max``, the shares of the rarest and commonest digit (1/10 each is balanced).
    """

    n: int
    recognised: float
    recognised_se: float
    fd_ratio: float
    fd_ratio_se: float
    accuracy_w0: float
    accuracy_w0_se: float
    accuracy_w2: float
    accuracy_w2_se: float
    class_min: float
    class_min_se: float
    class_max: float
    class_max_se: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def score_variant(ev: Any, labels: torch.Tensor, w0: torch.Tensor, w2: torch.Tensor, uncond: torch.Tensor,
                  n_boot: int = 20, generator: torch.Generator | None = None) -> VariantScore:
    """Score a model by its conditional samples ``w0`` and ``w2`` (requested ``labels``) and its
    unconditional samples ``uncond`` with an :class:`nb.metrics.images.MNISTEvaluator` ``ev``
    (see :class:`VariantScore`). Shapes: samples ``(N, 1, 28, 28)``, labels ``(N,)``."""
    from ...metrics.images import feature_statistics, frechet_distance

    if not (len(labels) == len(w0) == len(w2)):
        raise ValueError(f"labels, w0 and w2 must have one entry per sample, got {len(labels)}, {len(w0)}, {len(w2)}")
    if n_boot < 2:
        raise ValueError(f"n_boot must be >= 2 for a standard error, got {n_boot!r}")
    e0, eu = ev.evaluate(w0), ev.evaluate(uncond)
    feats = ev.features(w0)
    floor = e0.fd_floor
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    boot = [frechet_distance(*feature_statistics(feats[torch.randint(0, len(feats), (len(feats),), generator=g)]),
                             *ev.reference_stats) / floor for _ in range(n_boot)]
    acc0, acc2 = ev.class_accuracy(w0, labels), ev.class_accuracy(w2, labels)
    n, n_u = len(labels), len(uncond)
    return VariantScore(
        n=n, recognised=e0.recognised_fraction, recognised_se=binomial_se(e0.recognised_fraction, n),
        fd_ratio=e0.fd_ratio, fd_ratio_se=float(np.std(boot, ddof=1)),
        accuracy_w0=acc0, accuracy_w0_se=binomial_se(acc0, n), accuracy_w2=acc2, accuracy_w2_se=binomial_se(acc2, n),
        class_min=eu.class_min, class_min_se=binomial_se(eu.class_min, n_u),
        class_max=eu.class_max, class_max_se=binomial_se(eu.class_max, n_u),
    )


def sample_and_score_variant(ev: Any, ddpm: DDPM, model: nn.Module, labels: torch.Tensor, x_T: torch.Tensor, *,
                             sampler: str, n_steps: int | None = None, have: dict[str, torch.Tensor] | None = None,
                             chunk: int = 1000, amp: bool = False, num_classes: int = NUM_CLASSES,
                             generator: torch.Generator | None = None) -> VariantScore:
    """:func:`score_variant` of one model on the sets ``w0`` (w = 0), ``w2`` (w = 2) for ``labels`` and
    ``uncond`` (y = ∅), each sampled from ``x_T`` unless given in ``have``; ``generator`` drives the bootstrap."""
    sets = dict(have or {})
    null = torch.full_like(labels, num_classes)
    for set_name, w, y in (("w0", 0.0, labels), ("w2", 2.0, labels), ("uncond", 0.0, null)):
        if set_name not in sets:
            sets[set_name] = generate(ddpm, model, y, w, sampler=sampler, n_steps=n_steps, x_T=x_T, chunk=chunk,
                                      amp=amp, num_classes=num_classes).x
    return score_variant(ev, labels, **sets, generator=generator)
