"""The offline MNIST evaluator: a small CNN classifier and a Fréchet distance in its feature space.

Generated digits are scored by a CNN trained once on MNIST train (cached like any checkpoint; the
training and the cache live in :mod:`nbhelpers.recipes.mnist`, whose ``mnist_evaluator`` builds
the evaluator with :meth:`MNISTEvaluator.from_test_set`; this module only scores):

* ``class_histogram`` — the fraction of samples the classifier assigns to each digit;
* ``recognised_fraction`` — the fraction with max class probability ≥ 0.9;
* ``fd`` — the Fréchet distance between Gaussians fitted to the classifier's penultimate
  features of the samples and of MNIST test images (a "classifier FID"),

      FD = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2};

* ``fd_floor`` — the same distance for real held-out MNIST test images of the same sample size:
  what a perfect generator would score (FD has a positive bias that grows as N shrinks).

Each score states its uncertainty (``EvalResult``): the recognised fraction its binomial standard
error √(p(1 − p)/N); the FD the spread of the floor — the standard deviation of the FD of disjoint
splits of the held-out real images, each of N images, to the reference — so ``fd_ratio_se`` is how
far the ratio of a perfect generator's N samples scatters around 1. Two FD ratios (scored against
the same reference) closer than about 2·√2·``fd_ratio_se`` cannot be told apart.

Read the three together: a classifier is over-confident off the data — a CNN at 99 % test
accuracy calls most uniform-noise images one digit with confidence ≥ 0.9 — so "recognised"
alone says little; the FD and the class histogram catch what it misses.

The reference set is MNIST test images 0–4999; the floor uses N-image splits of 5000–9999, drawn
from one fixed shuffle: the test set is ordered by groups of writers, so a contiguous block of it is
less varied than a generator's independent samples and scores above the floor (on the cpu
evaluator, test images 5000–5499 score about 1.6× the floor, a random 500 of 5000–9999 about 1×).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..devices import exact, to_exact
from .stats import binomial_se

__all__ = [
    "MNISTClassifier",
    "MNISTEvaluator",
    "EvalResult",
    "QualityBars",
    "CPU_BARS",
    "GPU_BARS",
    "bars_for",
    "frechet_distance",
    "feature_statistics",
    "mean_pairwise_distance",
    "RECOGNISED_THRESHOLD",
]

RECOGNISED_THRESHOLD = 0.9
_REFERENCE = slice(0, 5000)  # MNIST test images whose statistics are the reference
_HELD_OUT = slice(5000, 10000)  # real images drawn for the real-vs-real floor


# --------------------------------------------------------------------------- Fréchet distance
def feature_statistics(features: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` (unbiased, float64) of an ``(N, d)`` feature set."""
    if isinstance(features, torch.Tensor):
        with exact():
            f = to_exact(features.detach()).cpu().numpy()
    else:
        f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be an (N, d) array with N >= 2, got shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False).reshape(f.shape[1], f.shape[1])


def _sqrt_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Fréchet (2-Wasserstein²) distance between N(μ₁, Σ₁) and N(μ₂, Σ₂):

        ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}.

    The cross term comes from symmetric eigen-decompositions (stable for the singular
    covariances of ReLU features); it equals tr sqrtm(Σ₁Σ₂).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, dtype=np.float64)), np.atleast_1d(np.asarray(mu2, dtype=np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, dtype=np.float64)), np.atleast_2d(np.asarray(sigma2, dtype=np.float64))
    d = mu1.shape[0]
    if mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"shapes do not match: mu1 {mu1.shape}, mu2 {mu2.shape}, sigma1 {s1.shape}, sigma2 {s2.shape}")
    r1 = _sqrt_psd(s1)
    w = np.linalg.eigvalsh(r1 @ s2 @ r1)
    cross = np.sqrt(np.clip(w, 0.0, None)).sum()
    diff = mu1 - mu2
    return float(max(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * cross, 0.0))


def mean_pairwise_distance(features: torch.Tensor) -> float:
    """Mean Euclidean distance over distinct pairs of rows of an ``(N, d)`` set (NaN for N < 2)."""
    n = features.shape[0]
    if n < 2:
        return float("nan")
    with exact():
        f = to_exact(features)
        return float(torch.cdist(f, f).sum() / (n * (n - 1)))


def _fraction(mask: torch.Tensor) -> float:
    """The share of True entries of a bool tensor (the count over the size: what a float64 mean gives)."""
    return int(mask.sum()) / mask.numel()


# --------------------------------------------------------------------------- classifier
class MNISTClassifier(nn.Module):
    """Three conv blocks (w, 2w, 4w channels, w = 16; BatchNorm, ReLU, 2×2 max-pool) → 128 features → 10 logits.

    ``features(x)`` is the penultimate 128-dim ReLU layer used for the Fréchet distance.
    Input: ``(B, 1, 28, 28)`` in [−1, 1].
    """

    def __init__(self, width: int = 16, feature_dim: int = 128, num_classes: int = 10) -> None:
        super().__init__()

        def block(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.body = nn.Sequential(block(1, width), block(width, 2 * width), block(2 * width, 4 * width), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(4 * width * 9, feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(0.25)
        self.out = nn.Linear(feature_dim, num_classes)
        self.feature_dim = feature_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.dropout(self.features(x)))


# --------------------------------------------------------------------------- results
@dataclass
class QualityBars:
    """Pass marks for generated MNIST digits (all three must hold)."""

    min_recognised: float = 0.70
    class_range: tuple[float, float] = (0.04, 0.16)
    max_fd_ratio: float = 15.0


CPU_BARS = QualityBars(0.70, (0.04, 0.16), 15.0)
GPU_BARS = QualityBars(0.95, (0.04, 0.16), 3.0)


def bars_for(profile: str) -> QualityBars:
    """The pass marks of a profile (``gpu`` → :data:`GPU_BARS`, otherwise :data:`CPU_BARS`)."""
    return GPU_BARS if profile == "gpu" else CPU_BARS


@dataclass
class EvalResult:
    """The evaluator's verdict on a set of images. Read recognised, class balance and FD together."""

    n: int
    class_histogram: np.ndarray
    recognised_fraction: float
    fd: float
    fd_floor: float
    mean_confidence: float
    predicted: torch.Tensor = field(repr=False)
    confidence: torch.Tensor = field(repr=False)
    fd_floor_std: float = float("nan")  # spread of a real N-image set's FD (see MNISTEvaluator.floor)

    @property
    def fd_ratio(self) -> float:
        """FD in units of the real-vs-real floor."""
        return self.fd / self.fd_floor if self.fd_floor > 0 else float("inf")

    @property
    def recognised_se(self) -> float:
        """Binomial standard error of the recognised fraction, √(p(1 − p)/N)."""
        return binomial_se(self.recognised_fraction, self.n) if self.n > 0 else float("nan")

    @property
    def fd_ratio_se(self) -> float:
        """The FD ratio's uncertainty: the spread of a real N-image set's ratio, ``fd_floor_std / fd_floor``."""
        return self.fd_floor_std / self.fd_floor if self.fd_floor > 0 else float("nan")

    @property
    def class_se(self) -> np.ndarray:
        """Binomial standard error of each class share, √(h(1 − h)/N)."""
        return binomial_se(np.asarray(self.class_histogram, dtype=np.float64), max(self.n, 1))

    @property
    def class_min(self) -> float:
        return float(self.class_histogram.min())

    @property
    def class_max(self) -> float:
        return float(self.class_histogram.max())

    def checks(self, bars: QualityBars = CPU_BARS) -> dict[str, bool]:
        lo, hi = bars.class_range
        return {
            "recognised": self.recognised_fraction >= bars.min_recognised,
            "class_balance": lo <= self.class_min and self.class_max <= hi,
            "fd": self.fd_ratio <= bars.max_fd_ratio,
        }

    def passes(self, bars: QualityBars = CPU_BARS) -> bool:
        """All three bars met."""
        return all(self.checks(bars).values())

    def summary(self) -> str:
        return (f"recognised {100 * self.recognised_fraction:5.1f} ± {100 * self.recognised_se:.1f} % | classes "
                f"{100 * self.class_min:4.1f}–{100 * self.class_max:4.1f} % | FD {self.fd:7.2f} = {self.fd_ratio:5.2f} ± "
                f"{self.fd_ratio_se:.2f}× floor ({self.fd_floor:.2f}), n={self.n}")

    def as_dict(self) -> dict[str, Any]:
        """Plain numbers; ``recognised_se``, ``fd_floor_std`` and ``fd_ratio_se`` state the uncertainty."""
        return {"n": self.n, "recognised": self.recognised_fraction, "class_histogram": self.class_histogram.tolist(),
                "class_min": self.class_min, "class_max": self.class_max, "fd": self.fd, "fd_floor": self.fd_floor,
                "fd_ratio": self.fd_ratio, "mean_confidence": self.mean_confidence,
                "recognised_se": self.recognised_se, "fd_floor_std": self.fd_floor_std, "fd_ratio_se": self.fd_ratio_se}

    def metrics(self, prefix: str = "", bars: QualityBars | None = None) -> dict[str, Any]:
        """Every number as ``<prefix>/<name>`` (plain names without a prefix), plus ``passes`` against ``bars``:
        what ``run.report_all`` records."""
        d = self.as_dict()
        if bars is not None:
            d["passes"] = self.passes(bars)
        return {f"{prefix}/{k}" if prefix else k: v for k, v in d.items()}


# --------------------------------------------------------------------------- the evaluator
class MNISTEvaluator:
    """Scores images ``(N, 1, 28, 28)`` in [−1, 1] with a trained :class:`MNISTClassifier`.

    ``reference`` are the real images whose feature statistics generated sets are compared with;
    ``held_out`` are other real images, drawn to compute the real-vs-real floor.
    """

    def __init__(self, classifier: nn.Module, reference: torch.Tensor, held_out: torch.Tensor,
                 held_out_labels: torch.Tensor | None = None, test_accuracy: float = float("nan"),
                 batch_size: int = 1000) -> None:
        self.classifier = classifier.eval()
        self.device = next(classifier.parameters()).device
        self.batch_size = batch_size
        self.test_accuracy = float(test_accuracy)
        self.reference_features = self.features(reference)
        self.reference_stats = feature_statistics(self.reference_features)
        self.held_out_features = self.features(held_out)
        self.held_out_labels = held_out_labels.cpu() if held_out_labels is not None else None
        self._floors: dict[int, tuple[float, float]] = {}

    @classmethod
    def from_test_set(cls, classifier: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> "MNISTEvaluator":
        """The evaluator of a trained ``classifier`` on the 10 000 MNIST test images ``(10000, 1, 28, 28)``:
        reference images 0–4999, held-out images 5000–9999, and the classifier's accuracy on all of them."""
        classifier = classifier.eval()
        with torch.no_grad():
            preds = torch.cat([classifier(c).argmax(-1) for c in images.split(1000)])
        acc = _fraction(preds == labels)
        return cls(classifier, images[_REFERENCE], images[_HELD_OUT], labels[_HELD_OUT], test_accuracy=acc)

    # -- raw outputs --------------------------------------------------------------
    def _check(self, images: torch.Tensor) -> torch.Tensor:
        if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1:] != (1, 28, 28):
            raise ValueError(f"images must be a (N, 1, 28, 28) tensor in [-1, 1], got {tuple(getattr(images, 'shape', ()))}")
        return images

    @torch.no_grad()
    def _run(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = self._check(images)
        feats, probs = [], []
        for chunk in images.split(self.batch_size):
            f = self.classifier.features(chunk.to(self.device, torch.float32))
            feats.append(f.cpu())
            probs.append(F.softmax(self.classifier.out(f), dim=-1).cpu())
        return torch.cat(feats), torch.cat(probs)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate features ``(N, 128)`` (on the CPU)."""
        return self._run(images)[0]

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities ``(N, 10)`` (on the CPU)."""
        return self._run(images)[1]

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """Fraction of ``images`` classified as ``labels``."""
        return _fraction(self.probabilities(images).argmax(-1) == labels.cpu())

    # -- metrics -------------------------------------------------------------------
    def floor(self, n: int) -> tuple[float, float]:
        """Mean and standard deviation of the FD of ``n`` real held-out images to the reference.

        The held-out images (one fixed shuffle) are cut into k = ⌊H / n⌋ disjoint splits of ``n``
        (H held-out images); the mean and spread are over the splits' FDs. When k < 2 the mean comes
        from the first ``min(n, H)`` images and the spread from splits of ⌊H / 2⌋ images, scaled by
        ⌊H / 2⌋ / n: at distance zero both the FD's bias and its fluctuation fall like 1/n.
        """
        if n < 2:
            raise ValueError(f"need at least 2 images for a Fréchet distance, got {n}")
        held = self.held_out_features.shape[0]
        n_eff = min(n, held)
        if n_eff not in self._floors:
            order = torch.randperm(held, generator=torch.Generator().manual_seed(1234))
            feats = self.held_out_features[order]

            def split_fds(m: int) -> np.ndarray:
                return np.array([frechet_distance(*feature_statistics(feats[i * m:(i + 1) * m]), *self.reference_stats)
                                 for i in range(held // m)])

            if held // n_eff >= 2:
                vals = split_fds(n_eff)
                mean, std = float(vals.mean()), float(vals.std(ddof=1))
            else:
                half = held // 2
                mean = frechet_distance(*feature_statistics(feats[:n_eff]), *self.reference_stats)
                std = float(split_fds(half).std(ddof=1)) * half / n_eff if half >= 2 else float("nan")
            self._floors[n_eff] = (float(mean), std)
        return self._floors[n_eff]

    def fd_floor(self, n: int) -> float:
        """The real-vs-real floor: mean FD of ``n``-image splits of the held-out real images (:meth:`floor`)."""
        return self.floor(n)[0]

    def fd_floor_std(self, n: int) -> float:
        """Spread (standard deviation) of a real ``n``-image set's FD around the floor (:meth:`floor`)."""
        return self.floor(n)[1]

    def fd(self, images: torch.Tensor) -> float:
        """Fréchet distance of ``images`` to the reference set in feature space."""
        return frechet_distance(*feature_statistics(self.features(images)), *self.reference_stats)

    def fd_between(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """Fréchet distance between two image sets in feature space."""
        return frechet_distance(*feature_statistics(self.features(a)), *feature_statistics(self.features(b)))

    def evaluate(self, images: torch.Tensor) -> EvalResult:
        """Class histogram, recognised fraction (max prob ≥ 0.9), FD to the reference, its floor and spread."""
        feats, probs = self._run(images)
        conf, pred = probs.max(dim=-1)
        with exact():
            hist = to_exact(torch.bincount(pred, minlength=probs.shape[1]), torch.float64).cpu().numpy() / len(pred)
            mean_confidence = float(to_exact(conf).mean())
        fd = frechet_distance(*feature_statistics(feats), *self.reference_stats)
        floor_mean, floor_std = self.floor(len(pred))
        return EvalResult(
            n=len(pred),
            class_histogram=hist,
            recognised_fraction=_fraction(conf >= RECOGNISED_THRESHOLD),
            fd=fd,
            fd_floor=floor_mean,
            mean_confidence=mean_confidence,
            predicted=pred,
            confidence=conf,
            fd_floor_std=floor_std,
        )

    def class_accuracy(self, images: torch.Tensor, requested_labels: torch.Tensor) -> float:
        """Fraction of class-conditional samples classified as the class they were asked for."""
        if requested_labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {requested_labels.shape[0]} requested labels")
        return self.accuracy(images, requested_labels)

    def diversity(self, images: torch.Tensor, labels: torch.Tensor | None = None, num_classes: int = 10) -> np.ndarray:
        """Per-class diversity: mean pairwise feature distance among images of each class ``(num_classes,)``.

        ``labels`` are the groups (e.g. the requested classes); default: the predicted classes.
        A class with fewer than two images gets NaN. Compare with :meth:`reference_diversity`.
        """
        feats, probs = self._run(images)
        groups = probs.argmax(-1) if labels is None else labels.cpu()
        return np.array([mean_pairwise_distance(feats[groups == c]) for c in range(num_classes)])

    def reference_diversity(self, per_class: int = 100, num_classes: int = 10) -> np.ndarray:
        """:meth:`diversity` of real held-out test images, ``per_class`` per class (by true label when known)."""
        out = []
        if self.held_out_labels is not None:
            preds = self.held_out_labels
        else:
            with torch.no_grad():
                preds = self.classifier.out(self.held_out_features.to(self.device)).argmax(-1).cpu()
        for c in range(num_classes):
            f = self.held_out_features[preds == c][:per_class]
            out.append(mean_pairwise_distance(f))
        return np.array(out)
