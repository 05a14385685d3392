"""Notebook 06's studies: samples scored against the known two-pixel mixture.

Each study returns a frozen dataclass: the numbers it measured (typed fields), ``.metrics`` (metric name →
number, the notebook's names, for ``run.report_all``) and ``.summary()`` (the text the notebook prints). None
reports, saves or prints anything itself. :func:`score_steps` (Q2: x_k against its exact density),
:func:`q3_study` (Q3: T = 5 … 50 with learned and exact ε, σ² = β or β̃), :func:`ddim_study`,
:func:`same_noise_two_labels` (Q4) and :func:`guidance_sweep`.

Direction (as in :mod:`nbhelpers.ddpm`): k = 0 data, k = T noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ...ddpm import DDPM, GMMEpsOracle
from ...distributions import GaussianMixture
from ...metrics.toy import NoiseFloor, SampleScore, energy_noise_floor, score_against_truth
from .training import TrainedDDPM

__all__ = ["TWO_PIXEL_STD", "noised_two_pixel", "typical_run", "StepScores", "score_steps", "TruthScorer",
           "EpsSource", "Q3Sampler", "Q3Study", "q3_study", "DdimStudy", "ddim_study", "SameNoise",
           "same_noise_two_labels", "GuidanceSweep", "guidance_sweep"]

TWO_PIXEL_STD = 0.1
"""σ of both components of :func:`nbhelpers.distributions.two_pixel`."""


def _fraction(mask: torch.Tensor) -> float:
    """The share of True entries (the count over the size: what a float64 mean gives, without float64)."""
    return int(mask.sum()) / mask.numel()


def _score_metrics(name: str, score: SampleScore) -> dict[str, Any]:
    return {f"{name}/{key}": value for key, value in score.as_dict().items()}


# --------------------------------------------------------------------------- Q2: the density of x_k along the chain
def noised_two_pixel(gmm: GaussianMixture, ddpm: DDPM, k: int) -> GaussianMixture:
    """The exact density of x_k when x_0 follows ``gmm`` (component stds s_j):
    Σ_j w_j N(√ᾱ_k μ_j, (ᾱ_k s_j² + 1 − ᾱ_k) I), i.e. ``gmm.noised(√ᾱ_k, √(1 − ᾱ_k))``; k = 0 is ``gmm``."""
    ab = float(ddpm.alphas_cumprod[k - 1]) if k > 0 else 1.0
    return gmm.noised(ab**0.5, (1 - ab) ** 0.5)


def typical_run(ends: torch.Tensor, means: torch.Tensor, radius: float = 2 * TWO_PIXEL_STD) -> int:
    """Index of the first run whose end point ``ends[i]`` lies within ``radius`` of a peak (0 if none does)."""
    near = torch.cdist(ends, means).min(1).values < radius
    return int(near.nonzero()[0]) if near.any() else 0


@dataclass(frozen=True)
class StepScores:
    """Q2: the samples of x_k scored against the exact density of x_k, by step k (largest first)."""

    scores: dict[int, SampleScore]
    prefix: str = "q2"

    @property
    def metrics(self) -> dict[str, Any]:
        """``<prefix>/k<k>/{energy_ratio, energy_ratio_se, log_likelihood, true_log_likelihood}``."""
        keys = ("energy_ratio", "energy_ratio_se", "log_likelihood", "true_log_likelihood")
        return {f"{self.prefix}/k{k}/{key}": s.as_dict()[key] for k, s in self.scores.items() for key in keys}

    def summary(self) -> str:
        return "\n".join(f"k = {k:>2}: samples vs the exact density of x_k: {s.summary()}"
                         for k, s in self.scores.items())


def score_steps(samples: dict[int, torch.Tensor], steps: Sequence[int], truth: Callable[[int], GaussianMixture],
                n: int, generator: torch.Generator, seed: int, floor_repeats: int, n_pairs: int,
                prefix: str = "q2") -> StepScores:
    """Score the samples of x_k (``samples[k] (N, 2)``) against the exact density ``truth(k)`` for each k of
    ``steps``, in sets of ``n``: the energy noise floor at each k from ``generator``, the reference draws from a
    generator seeded ``seed + k``."""
    out = {}
    for k in steps:
        truth_k = truth(k)
        fl = energy_noise_floor(truth_k, n, generator=generator, repeats=floor_repeats, n_pairs=n_pairs)
        out[k] = score_against_truth(samples[k], truth_k, generator=torch.Generator().manual_seed(seed + k), n=n,
                                     floor=fl)
    return StepScores(out, prefix)


# --------------------------------------------------------------------------- Q3: T = 5 … 50, and DDIM
@dataclass(frozen=True)
class TruthScorer:
    """``scorer(x)``: :func:`score_against_truth` of ``x (N, 2)`` against ``gmm`` in sets of ``n`` on a shared noise
    ``floor``, its reference drawn from a generator seeded ``seed + 1`` (the same draw for every set scored)."""

    gmm: GaussianMixture
    floor: NoiseFloor
    n: int
    seed: int

    def __call__(self, x: torch.Tensor) -> SampleScore:
        return score_against_truth(x.cpu(), self.gmm, generator=torch.Generator().manual_seed(self.seed + 1), n=self.n,
                                   floor=self.floor)


class EpsSource(Enum):
    """Where a sampler's ε comes from: the trained network or the mixture's exact ε (:class:`GMMEpsOracle`)."""

    LEARNED = ("learned", "learned")
    EXACT = ("exact_eps", "exact ε")

    @property
    def tag(self) -> str:
        """The name's piece in the metrics (``q3/T50/exact_eps/...``)."""
        return self.value[0]

    @property
    def label(self) -> str:
        """How tables and figures name it."""
        return self.value[1]


class Q3Sampler(Enum):
    """The four samplers of Q3 per T: learned or exact ε, σ_k² = β_k or β̃_k (the ``sigma`` of :meth:`DDPM.sample`)."""

    LEARNED_BETA = (EpsSource.LEARNED, "beta")
    LEARNED_POSTERIOR = (EpsSource.LEARNED, "posterior")
    EXACT_BETA = (EpsSource.EXACT, "beta")
    EXACT_POSTERIOR = (EpsSource.EXACT, "posterior")

    @property
    def eps(self) -> EpsSource:
        return self.value[0]

    @property
    def sigma(self) -> str:
        return self.value[1]

    @property
    def tag(self) -> str:
        """``learned``, ``learned_posterior_var``, ``exact_eps``, ``exact_eps_posterior_var``."""
        return self.eps.tag + ("_posterior_var" if self.sigma == "posterior" else "")

    @property
    def label(self) -> str:
        return f"{self.eps.label}, σ²={'β' if self.sigma == 'beta' else 'β̃'}"


@dataclass(frozen=True)
class Q3Study:
    """What :func:`q3_study` measured, by (T, sampler tag): the scores, the std in the lower-right mode
    (``mode_std``) and the share more than 0.3 from both peaks (``between_modes``); the learned σ² = β samples
    (one set each, for the figure, with a note per T), and every set of them with its reference draw
    (``to_save``: name → arrays, for ``run.save_samples``)."""

    scores: dict[tuple[int, str], SampleScore]
    mode_std: dict[tuple[int, str], float]
    between_modes: dict[tuple[int, str], float]
    samples: dict[str, torch.Tensor]
    notes: dict[str, str]
    to_save: dict[str, dict[str, torch.Tensor]]
    n_sets: int

    @property
    def metrics(self) -> dict[str, Any]:
        """Every number of each score as ``q3/T<T>/<tag>/<key>``, then ``…/mode_std`` and ``…/between_modes``."""
        out: dict[str, Any] = {}
        for (T, tag), s in self.scores.items():
            out |= _score_metrics(f"q3/T{T}/{tag}", s)
            out[f"q3/T{T}/{tag}/mode_std"] = self.mode_std[T, tag]
            out[f"q3/T{T}/{tag}/between_modes"] = self.between_modes[T, tag]
        return out

    @property
    def rows(self) -> list[tuple[int, str, float, float, float, float, float]]:
        """(T, sampler, energy ratio, its s.e., weight of y = 0, std in the mode y = 1, share > 3σ off both peaks)."""
        labels = {q.tag: q.label for q in Q3Sampler}
        return [(T, labels[tag], s.energy_ratio, s.energy_ratio_se, float(s.mode_weights[0]), self.mode_std[T, tag],
                 self.between_modes[T, tag]) for (T, tag), s in self.scores.items()]

    def table(self) -> str:
        head = (f"{'T':>3}  {'sampler':<16} {'energy / floor':>16} {'weight y=0':>11} {'std in mode y=1':>16} "
                f"{'> 3σ off':>9}   (truth: 1, 0.350, 0.100, 0.011; ± 1 s.e. over {self.n_sets} sets)")
        lines = [f"{T:>3}  {label:<16} {ratio:>9.2f} ± {se:<4.2f} {w0:>11.3f} {sd:>16.3f} {off:>9.3f}"
                 for T, label, ratio, se, w0, sd, off in self.rows]
        return "\n".join([head, *lines])

    summary = table


def q3_study(trained: dict[int, TrainedDDPM], gmm: GaussianMixture, n_samples: int, n_sets: int,
             generator: torch.Generator, seed: int, device: str | torch.device, score: TruthScorer) -> Q3Study:
    """Q3: for each T, ``n_samples * n_sets`` noises from ``generator`` sampled by the four :class:`Q3Sampler`\\ s
    (learned or exact ε, σ² = β or β̃), the noise of each step from a generator seeded ``seed + T``; each set
    scored by ``score``. The learned σ² = β samples are kept as ``q3_T<T>`` in ``to_save``."""
    scores, mode_std, between, samples, notes, to_save = {}, {}, {}, {}, {}, {}
    for T, (ddpm, res) in trained.items():
        x_T = torch.randn(n_samples * n_sets, 2, generator=generator)
        for sampler in Q3Sampler:
            tag = sampler.tag
            m = res.sampling_model if sampler.eps is EpsSource.LEARNED else GMMEpsOracle(ddpm, gmm)
            x = ddpm.sample(m, x_T.to(device), generator=torch.Generator().manual_seed(seed + T),
                            sigma=sampler.sigma).x.cpu()
            s = scores[T, tag] = score(x)
            mode_std[T, tag] = float(x[x[:, 0] > x[:, 1]].std(0).mean())
            between[T, tag] = _fraction(torch.cdist(x, gmm.means).min(1).values > 0.3)
            if sampler is Q3Sampler.LEARNED_BETA:
                samples[f"T = {T}"] = x[:n_samples]
                notes[f"T = {T}"] = (f"energy {s.energy_ratio:.1f} ± {s.energy_ratio_se:.1f}× floor, "
                                     f"weights {s.mode_weights[0]:.3f} / {s.mode_weights[1]:.3f}")
                to_save[f"q3_T{T}"] = {"samples": x, "reference": s.reference}
    return Q3Study(scores, mode_std, between, samples, notes, to_save, n_sets)


@dataclass(frozen=True)
class DdimStudy:
    """Deterministic DDIM (η = 0) of a T-step DDPM: the scores by (number of steps, ε source)."""

    scores: dict[tuple[int, EpsSource], SampleScore]
    T: int

    @property
    def metrics(self) -> dict[str, Any]:
        """Every number of each score as ``ddim/<n>_of_<T>/<learned | exact_eps>/<key>``."""
        out: dict[str, Any] = {}
        for (n, eps), s in self.scores.items():
            out |= _score_metrics(f"ddim/{n}_of_{self.T}/{eps.tag}", s)
        return out

    def summary(self) -> str:
        return "\n".join(f"DDIM (η = 0), {n:>2} of {self.T} steps, {eps.label:<8}: energy {s.energy_ratio:5.1f} ± "
                         f"{s.energy_ratio_se:.1f}× floor, weight y=0 {s.mode_weights[0]:.3f}"
                         for (n, eps), s in self.scores.items())


def ddim_study(ddpm: DDPM, models: Mapping[EpsSource, Callable[..., torch.Tensor]], x_T: torch.Tensor,
               n_steps: Sequence[int], score: TruthScorer) -> DdimStudy:
    """Deterministic DDIM (η = 0) from the same ``x_T`` with each of ``models`` (``{EpsSource: model}``) and each
    number of steps, scored by ``score``."""
    for eps in models:
        if not isinstance(eps, EpsSource):
            raise ValueError(f"models must be keyed by EpsSource ({', '.join(e.name for e in EpsSource)}), got {eps!r}")
    return DdimStudy({(n, eps): score(ddpm.ddim_sample(m, x_T, n_steps=n).x.cpu())
                      for n in n_steps for eps, m in models.items()}, ddpm.T)


# --------------------------------------------------------------------------- Q4 and the guidance sweep
@dataclass(frozen=True)
class SameNoise:
    """Q4: ``ends[c] (N, 2)`` and ``paths[c] (T + 1, N, 2)`` (start first) of the runs asked for class c from
    the same noises, and ``both``, the share of starting points whose two runs each end in their own mode."""

    ends: dict[int, torch.Tensor]
    paths: dict[int, torch.Tensor]
    both: float

    @property
    def metrics(self) -> dict[str, float]:
        return {"q4/both_labels_reach_their_mode": self.both}

    def summary(self) -> str:
        return (f"pairs from the same x_T whose y=0 run ends in mode 0 AND y=1 run in mode 1: "
                f"{100 * self.both:.1f} %")


def same_noise_two_labels(ddpm: DDPM, model: Callable[..., torch.Tensor], x_T: torch.Tensor, means: torch.Tensor,
                          seed: int) -> SameNoise:
    """Sample ``model(x, t, y)`` from the same ``x_T`` with y = 0 and with y = 1, σ² = β, the injected noise from a
    generator seeded ``seed`` in both runs (the label is the only difference); keep every step."""
    ends, paths = {}, {}
    for c in (0, 1):
        y = torch.full((x_T.shape[0],), c, dtype=torch.long, device=x_T.device)
        out = ddpm.sample(model, x_T, y=y, sigma="beta", generator=torch.Generator().manual_seed(seed),
                          return_steps=range(ddpm.T + 1))
        ends[c] = out.x.cpu()
        paths[c] = torch.stack([out.trajectory[k].cpu() for k in range(ddpm.T, -1, -1)])
    hit = {c: torch.cdist(ends[c], means).argmin(1) == c for c in (0, 1)}
    return SameNoise(ends, paths, _fraction(hit[0] & hit[1]))


@dataclass(frozen=True)
class GuidanceSweep:
    """Samples ``samples[w] = (x (N, 2), y (N,))`` per guidance weight and their ``per_w[w] = {"accuracy",
    "spread", "spread_se"}``."""

    samples: dict[float, tuple[torch.Tensor, torch.Tensor]]
    per_w: dict[float, dict[str, float]]

    @property
    def metrics(self) -> dict[str, float]:
        """``guidance/w<w>/{accuracy, spread, spread_se}``."""
        return {f"guidance/w{w:g}/{key}": m[key] for w, m in self.per_w.items()
                for key in ("accuracy", "spread", "spread_se")}

    def summary(self) -> str:
        return "\n".join(f"w = {w:<4g} accuracy {100 * m['accuracy']:6.2f} %   spread {m['spread']:.3f}"
                         for w, m in self.per_w.items())


def guidance_sweep(ddpm: DDPM, guided: Callable[[float], Callable[..., torch.Tensor]], x_T: torch.Tensor,
                   y: torch.Tensor, ws: Sequence[float], means: torch.Tensor, seed: int) -> GuidanceSweep:
    """For each guidance weight w, sample ``guided(w)`` (a model ``(x, t, y)``) from the same ``x_T`` with labels
    ``y`` (σ² = β, noise from a generator seeded ``seed``). Accuracy: the share ending in the requested mode;
    spread: the std inside the requested mode over the true σ, averaged over the two classes, with s.e.
    σ/√(2m)."""
    sweep, per_w = {}, {}
    y_cpu = y.cpu()
    for w in ws:
        x = ddpm.sample(guided(w), x_T, y=y, sigma="beta", generator=torch.Generator().manual_seed(seed)).x.cpu()
        inside = torch.cdist(x, means).argmin(1) == y_cpu
        spread = np.mean([float(x[inside & (y_cpu == c)].std(0).mean()) / TWO_PIXEL_STD for c in (0, 1)])
        per_w[w] = {"accuracy": _fraction(inside), "spread": spread,
                    "spread_se": spread / math.sqrt(2 * max(int(inside.sum()), 1))}  # s.e. of a std: σ/√(2m)
        sweep[w] = (x, y_cpu)
    return GuidanceSweep(sweep, per_w)
