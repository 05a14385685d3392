"""Notebook 06 (two-pixel DDPM and classifier-free guidance, seed 001): its training, studies, figures and explorer.

The "images" are two pixels, x = (left pixel, right pixel), so every density can be drawn.
Training: :func:`train_two_pixel` (one ε-network per T, label dropout for the conditional one).
Studies, each scoring samples against the known mixture and recording what it measures through a
``report(key, value)`` callable (the notebook's ``run.report``): :func:`score_steps` (Q2),
:func:`q3_study` (Q3, T = 5 … 50 with learned and exact ε), :func:`ddim_study`,
:func:`same_noise_two_labels` (Q4), :func:`guidance_sweep`; their findings for the written answers
come from :func:`q2_findings`, :func:`q3_findings`, :func:`ddim_findings` and :func:`guidance_findings`.
Figures: the data (:func:`world_figure`), the cosine schedule for several T (:func:`schedules_figure`),
loss curves, one denoising trajectory over the estimated densities of x_k (Q2), sample sets against
the true density (Q3), trajectories over a density (Q4); :func:`two_pixel_guidance_explorer` slides
the guidance weight w. The network is :class:`nbhelpers.models.two_pixel.TwoPixelUNet`, the
sampler :class:`nbhelpers.ddpm.DDPM` (k = 0 data, k = T noise, the network sees t = k / T).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from ..checkpoints import checkpoint_path
from ..ddpm import DDPM, GMMEpsOracle
from ..distributions import GaussianMixture
from ..guidance import drop_labels
from ..metrics.stats import binomial_se
from ..metrics.toy import (NoiseFloor, SampleScore, energy_noise_floor, mode_weights, ratio_separation,
                           score_against_truth)
from ..models.two_pixel import TwoPixelUNet
from ..plotting import Limits, density_image, loss_curve, panel_grid, plot_density, sample_density, to_numpy
from ..training import TrainConfig, TrainResult, train
from ..widgets import show_explorer

__all__ = ["TWO_PIXEL_STD", "world_figure", "schedules_figure", "TrainedDDPM", "train_two_pixel", "loss_curves_figure",
           "LossTail", "loss_tail", "noised_two_pixel", "typical_run", "score_steps", "q2_findings", "TruthScorer",
           "Q3Study", "Q3_SAMPLERS", "q3_study", "q3_findings", "ddim_study", "ddim_findings", "SameNoise",
           "same_noise_two_labels", "same_noise_figure", "guidance_sweep", "guidance_findings",
           "trajectory_density_panels", "samples_vs_truth_rows", "paths_over_density", "draw_two_pixel_guidance",
           "two_pixel_guidance_explorer"]

Report = Callable[[str, Any], Any]
TWO_PIXEL_STD = 0.1
"""σ of both components of :func:`nbhelpers.distributions.two_pixel`."""


def _no_report(key: str, value: Any) -> Any:
    return value


def _fraction(mask: torch.Tensor) -> float:
    """The share of True entries (the count over the size: what a float64 mean gives, without float64)."""
    return int(mask.sum()) / mask.numel()


# --------------------------------------------------------------------------- the data and the schedule (sections 1, 2)
def world_figure(gmm: GaussianMixture, x: torch.Tensor, labels: torch.Tensor) -> Figure:
    """Left: the true density; right: samples ``x (N, 2)`` coloured by their ``labels (N,)``, with the diagonal
    (left pixel = right pixel) that separates the two classes."""
    fig, axes = plt.subplots(1, 2, figsize=(8.4, 4))
    plot_density(gmm.log_prob, ax=axes[0], lim=(-1.5, 1.5))
    axes[0].set_title("true PDF")
    for c in (0, 1):
        sel = labels == c
        axes[1].scatter(x[sel, 0], x[sel, 1], s=3, alpha=0.5, color=f"C{c}", label=f"y = {c}")
    axes[1].plot([-1.5, 1.5], [-1.5, 1.5], "k:", lw=0.8)
    axes[1].set(xlim=(-1.5, 1.5), ylim=(-1.5, 1.5), aspect="equal", xlabel="left pixel", ylabel="right pixel",
                title=f"{len(x)} images and their labels")
    axes[1].legend(markerscale=4)
    fig.tight_layout()
    return fig


def schedules_figure(T_list: Sequence[int], schedule: str = "cosine") -> Figure:
    """ᾱ_k (left) and β_k (right, log scale) of ``schedule`` against t = k / T, one curve per T."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for Tn in T_list:
        d = DDPM.from_schedule(schedule, Tn)
        k = np.arange(1, Tn + 1)
        axes[0].plot(k / Tn, d.alphas_cumprod.numpy(), "o-", ms=3, label=f"T = {Tn}")
        axes[1].semilogy(k / Tn, d.betas.numpy(), "o-", ms=3, label=f"T = {Tn}")
    axes[0].set(xlabel="t = k / T", ylabel="ᾱ_k", title="signal kept: the same curve for every T")
    axes[1].set(xlabel="t = k / T", ylabel="β_k", title="noise added per step: larger when T is small")
    axes[0].legend()
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- training (section 4)
class TrainedDDPM(NamedTuple):
    """A trained ε-network and the DDPM it was trained for."""

    ddpm: DDPM
    result: TrainResult


def train_two_pixel(T: int, *, data: GaussianMixture, net: dict[str, Any], steps: int, batch: int, lr: float,
                    seed: int, device: str | torch.device, profile: str, p_uncond: float | None = None,
                    label_dropout: Callable[..., torch.Tensor] = drop_labels, retrain: bool = False,
                    report: Report = _no_report) -> TrainedDDPM:
    """Train (or load from the checkpoint cache) a :class:`TwoPixelUNet` ε-network for a cosine DDPM with T steps.

    ``p_uncond=None``: unconditional; otherwise conditional on the two classes, each label replaced by
    ∅ with probability ``p_uncond`` by ``label_dropout(y, p_uncond, 2, generator)`` (the notebook passes the
    learner's function). AdamW whose learning rate decays along a cosine from ``lr`` to 0 over ``steps``
    (``TrainConfig(lr_decay="cosine")``, no warm-up); squared-error ε-loss (:meth:`DDPM.loss`). Reports
    ``train_seconds/<name>``.
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
    report(f"train_seconds/{name}", res.seconds)
    how = "from the checkpoint cache" if res.loaded_from_cache else "trained now"
    print(f"{name}: {res.steps} steps in {res.seconds:.1f} s ({how})")
    return TrainedDDPM(ddpm, res)


def loss_curves_figure(losses: dict[str, Sequence[float]], smooth: int = 100,
                       title: str = "ε-loss (moving averages of 100 steps)") -> Figure:
    """Moving averages of several loss histories (``{label: losses}``) on one axis; the raw curves are hidden."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    for label, values in losses.items():
        loss_curve(values, smooth=smooth, ax=ax, title=title, label=label)
    for line in ax.lines[::2]:
        line.set_alpha(0.0)  # keep the moving averages only
    ax.legend()
    fig.tight_layout()
    return fig


class LossTail(NamedTuple):
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


def score_steps(samples: dict[int, torch.Tensor], steps: Sequence[int], truth: Callable[[int], GaussianMixture],
                n: int, generator: torch.Generator, seed: int, floor_repeats: int, n_pairs: int,
                report: Report = _no_report, prefix: str = "q2") -> dict[int, SampleScore]:
    """Score the samples of x_k (``samples[k] (N, 2)``) against the exact density ``truth(k)`` for each k of
    ``steps``, in sets of ``n``: the energy noise floor at each k from ``generator``, the reference draws from a
    generator seeded ``seed + k``. Reports ``<prefix>/k<k>/{energy_ratio, energy_ratio_se, log_likelihood,
    true_log_likelihood}`` and prints one summary line per step."""
    out = {}
    for k in steps:
        truth_k = truth(k)
        fl = energy_noise_floor(truth_k, n, generator=generator, repeats=floor_repeats, n_pairs=n_pairs)
        out[k] = score_against_truth(samples[k], truth_k, generator=torch.Generator().manual_seed(seed + k), n=n,
                                     floor=fl)
        for key in ("energy_ratio", "energy_ratio_se", "log_likelihood", "true_log_likelihood"):
            report(f"{prefix}/k{k}/{key}", out[k].as_dict()[key])
        print(f"k = {k:>2}: samples vs the exact density of x_k: {out[k].summary()}")
    return out


# --------------------------------------------------------------------------- Q3: T = 5 … 50, and DDIM
@dataclass
class TruthScorer:
    """``scorer(name, x)``: :func:`score_against_truth` of ``x`` against ``gmm`` in sets of ``n`` on a shared
    noise ``floor``, its reference drawn from a generator seeded ``seed + 1``; every number of
    :meth:`SampleScore.as_dict` is reported as ``<name>/<key>``."""

    gmm: GaussianMixture
    floor: NoiseFloor
    n: int
    seed: int
    report: Report = _no_report

    def __call__(self, name: str, x: torch.Tensor) -> SampleScore:
        s = score_against_truth(x.cpu(), self.gmm, generator=torch.Generator().manual_seed(self.seed + 1), n=self.n,
                                floor=self.floor)
        for key, value in s.as_dict().items():
            self.report(f"{name}/{key}", value)
        return s


Q3_SAMPLERS = {"learned, σ²=β": ("learned", "beta"), "learned, σ²=β̃": ("learned_posterior_var", "posterior"),
               "exact ε, σ²=β": ("exact_eps", "beta"), "exact ε, σ²=β̃": ("exact_eps_posterior_var", "posterior")}
"""The four samplers of Q3 per T: row label → (metric tag, σ_k² choice of :meth:`DDPM.sample`)."""


@dataclass
class Q3Study:
    """What :func:`q3_study` measured: ``scores[T, tag]``; ``rows`` (T, sampler, energy ratio, its s.e., weight of
    y = 0, std in the mode y = 1, share > 3σ off both peaks); the learned σ² = β samples (one set) and a note per
    T for the figure."""

    scores: dict[tuple[int, str], SampleScore]
    rows: list[tuple[int, str, float, float, float, float, float]]
    samples: dict[str, torch.Tensor]
    notes: dict[str, str]
    n_sets: int

    def table(self) -> str:
        head = (f"{'T':>3}  {'sampler':<16} {'energy / floor':>16} {'weight y=0':>11} {'std in mode y=1':>16} "
                f"{'> 3σ off':>9}   (truth: 1, 0.350, 0.100, 0.011; ± 1 s.e. over {self.n_sets} sets)")
        lines = [f"{T:>3}  {label:<16} {ratio:>9.2f} ± {se:<4.2f} {w0:>11.3f} {sd:>16.3f} {off:>9.3f}"
                 for T, label, ratio, se, w0, sd, off in self.rows]
        return "\n".join([head, *lines])


def q3_study(trained: dict[int, TrainedDDPM], gmm: GaussianMixture, n_samples: int, n_sets: int,
             generator: torch.Generator, seed: int, device: str | torch.device, score: TruthScorer,
             report: Report = _no_report, save_samples: Callable[..., Any] | None = None) -> Q3Study:
    """Q3: for each T, ``n_samples * n_sets`` noises from ``generator`` sampled by the four :data:`Q3_SAMPLERS`
    (learned or exact ε, σ² = β or β̃), the noise of each step from a generator seeded ``seed + T``. Each set is
    scored by ``score`` as ``q3/T<T>/<tag>``, and its std in the lower-right mode (``mode_std``) and share more than
    0.3 from both peaks (``between_modes``) are reported; the learned σ² = β samples are saved as ``q3_T<T>``."""
    scores, rows, samples, notes = {}, [], {}, {}
    for T, (ddpm, res) in trained.items():
        x_T = torch.randn(n_samples * n_sets, 2, generator=generator)
        for label, (tag, sigma) in Q3_SAMPLERS.items():
            m = res.sampling_model if tag.startswith("learned") else GMMEpsOracle(ddpm, gmm)
            x = ddpm.sample(m, x_T.to(device), generator=torch.Generator().manual_seed(seed + T), sigma=sigma).x.cpu()
            s = score(f"q3/T{T}/{tag}", x)
            sd = report(f"q3/T{T}/{tag}/mode_std", float(x[x[:, 0] > x[:, 1]].std(0).mean()))
            off = report(f"q3/T{T}/{tag}/between_modes",
                         _fraction(torch.cdist(x, gmm.means).min(1).values > 0.3))
            rows.append((T, label, s.energy_ratio, s.energy_ratio_se, float(s.mode_weights[0]), sd, off))
            scores[T, tag] = s
            if tag == "learned":
                samples[f"T = {T}"] = x[:n_samples]
                notes[f"T = {T}"] = (f"energy {s.energy_ratio:.1f} ± {s.energy_ratio_se:.1f}× floor, "
                                     f"weights {s.mode_weights[0]:.3f} / {s.mode_weights[1]:.3f}")
                if save_samples is not None:
                    save_samples(f"q3_T{T}", samples=x, reference=s.reference)
    return Q3Study(scores, rows, samples, notes, n_sets)


def q3_findings(scores: dict[tuple[int, str], SampleScore], metrics: dict[str, Any], n_total: int,
                T_list: Sequence[int] = (5, 10, 25, 50)) -> dict[str, Any]:
    """The numbers the Q3 answer cites and checks, by name: energy ratios ``r<T>`` (learned) and ``e<T>`` (exact ε),
    their s.e. ``s<T>``; weights ``w<T>``/``w<T>b``, widths ``sd<T>`` and share between the modes ``b<T>`` of
    the learned samplers (from the reported ``metrics``); the binomial s.e. ``wse`` of a weight over ``n_total``
    samples; separations in s.e. (``z25``: T = 25 against 50; ``z_fewer``: the smaller of 10 vs 50 and 5 vs 10;
    ``z_exact``: exact ε at T = 10, 5 against the floor; ``zmin``: σ² = β̃ against β at T ≤ 25; ``zp50`` at T = 50);
    ``v25``/``v50`` the verdicts in words; ``sdp``/``sde`` the exact-ε widths with β̃ and β at T = 50, ``p50``/
    ``sp50`` the learned β̃ score at T = 50, ``narrower_posterior`` whether β̃ narrows every mode (exact ε), and
    ``clip`` the share of the lower-right mode beyond the pixel range, P(x > 1) for N(0.75, 0.1²)."""
    L, E, LP, EP = "learned", "exact_eps", "learned_posterior_var", "exact_eps_posterior_var"

    def sep(a: tuple[int, str], b: tuple[int, str]) -> float:
        return ratio_separation(scores[a], scores[b])

    def q(T: int, tag: str, what: str) -> Any:
        return metrics[f"q3/T{T}/{tag}/{what}"]

    f: dict[str, Any] = {}
    for T in T_list:
        f[f"r{T}"], f[f"s{T}"] = scores[T, L].energy_ratio, scores[T, L].energy_ratio_se
        f[f"e{T}"] = scores[T, E].energy_ratio
        w = q(T, L, "mode_weights")
        f[f"w{T}"], f[f"w{T}b"], f[f"sd{T}"], f[f"b{T}"] = w[0], w[1], q(T, L, "mode_std"), q(T, L, "between_modes")
    f["wse"] = binomial_se(0.35, n_total)
    f["z25"], f["zp50"] = sep((25, L), (50, L)), sep((50, LP), (50, L))
    f["v25"] = ("within 2 s.e. of $T = 50$: this score cannot tell the two apart" if abs(f["z25"]) < 2
                else f"{f['z25']:+.1f} s.e. from $T = 50$")
    f["v50"] = "within 2 s.e. of it" if abs(f["zp50"]) < 2 else f"{f['zp50']:+.1f} s.e. from it"
    f["zmin"] = min(sep((T, tag + "_posterior_var"), (T, tag)) for T in (5, 10, 25) for tag in (L, E))
    f["z_fewer"] = min(sep((10, L), (50, L)), sep((5, L), (10, L)))
    f["z_exact"] = min(ratio_separation(scores[T, E], 1.0) for T in (5, 10))
    f["sdp"], f["sde"] = q(50, EP, "mode_std"), q(50, E, "mode_std")
    f["p50"], f["sp50"] = scores[50, LP].energy_ratio, scores[50, LP].energy_ratio_se
    f["narrower_posterior"] = all(q(T, EP, "mode_std") < q(T, E, "mode_std") for T in T_list)
    f["clip"] = 0.5 * math.erfc((1 - 0.75) / (TWO_PIXEL_STD * math.sqrt(2)))
    return f


def ddim_study(ddpm: DDPM, models: dict[str, Callable[..., torch.Tensor]], x_T: torch.Tensor,
               n_steps: Sequence[int], score: TruthScorer) -> dict[tuple[int, str], SampleScore]:
    """Deterministic DDIM (η = 0) from the same ``x_T`` with each of ``models`` (``{label: model}``) and each number
    of steps; scored as ``ddim/<n>_of_<T>/<learned | exact_eps>``, one printed line each."""
    rows = {}
    for n in n_steps:
        for label, m in models.items():
            tag = "learned" if label == "learned" else "exact_eps"
            s = score(f"ddim/{n}_of_{ddpm.T}/{tag}", ddpm.ddim_sample(m, x_T, n_steps=n).x.cpu())
            rows[n, label] = s
            print(f"DDIM (η = 0), {n:>2} of {ddpm.T} steps, {label:<8}: energy {s.energy_ratio:5.1f} ± "
                  f"{s.energy_ratio_se:.1f}× floor, weight y=0 {s.mode_weights[0]:.3f}")
    return rows


def ddim_findings(ddim: dict[tuple[int, str], SampleScore], scores: dict[tuple[int, str], SampleScore]
                  ) -> dict[str, Any]:
    """The numbers the DDIM answer cites and checks: DDIM ratios ``d<n>`` (learned) and ``x<n>`` (exact ε) for
    n = 10, 25, the ancestral ones at T = n ``a<n>`` and ``b<n>``; ``zmin``, the smallest separation (in s.e.) of
    DDIM with n steps from ancestral sampling with T = n for n = 10, 25; ``v50`` the verdict at n = 50 in words."""
    tags = {"learned": "learned", "exact ε": "exact_eps"}
    z = {(n, lab): ratio_separation(ddim[n, lab], scores[n, tags[lab]]) for n, lab in ddim}
    f: dict[str, Any] = {"zmin": min(z[n, lab] for n in (10, 25) for lab in tags)}
    for n in (10, 25):
        f[f"d{n}"], f[f"x{n}"] = ddim[n, "learned"].energy_ratio, ddim[n, "exact ε"].energy_ratio
        f[f"a{n}"], f[f"b{n}"] = scores[n, "learned"].energy_ratio, scores[n, "exact_eps"].energy_ratio
    f["v50"] = ("within 2 s.e. of ancestral sampling for both: at this step size the two cannot be told apart"
                if max(abs(z[50, lab]) for lab in tags) < 2 else
                f"{z[50, 'learned']:+.1f} s.e. (learned) and {z[50, 'exact ε']:+.1f} s.e. (exact ε) "
                "away from ancestral sampling (positive: worse)")
    return f


# --------------------------------------------------------------------------- Q4 and the guidance sweep
@dataclass
class SameNoise:
    """Q4: ``ends[c] (N, 2)`` and ``paths[c] (T + 1, N, 2)`` (start first) of the runs asked for class c from
    the same noises, and ``both``, the share of starting points whose two runs each end in their own mode."""

    ends: dict[int, torch.Tensor]
    paths: dict[int, torch.Tensor]
    both: float


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


def same_noise_figure(q4: SameNoise, x_T: torch.Tensor, log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                      n: int = 3) -> Figure:
    """The first ``n`` starting points of Q4, one panel each: the y = 0 and y = 1 paths over the true density."""
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4.2))
    for i, ax in enumerate(axes):
        paths_over_density([q4.paths[0][:, i], q4.paths[1][:, i]], log_prob_fn, colors=["C0", "C1"],
                           labels=["y = 0 (left darker)", "y = 1 (left lighter)"], ax=ax)
        ax.set_title(f"start x_T = {x_T[i].cpu().numpy().round(2)}", fontsize=10)
    fig.tight_layout()
    return fig


def guidance_sweep(ddpm: DDPM, guided: Callable[[float], Callable[..., torch.Tensor]], x_T: torch.Tensor,
                   y: torch.Tensor, ws: Sequence[float], means: torch.Tensor, seed: int, report: Report = _no_report
                   ) -> tuple[dict[float, tuple[torch.Tensor, torch.Tensor]], dict[float, dict[str, float]]]:
    """For each guidance weight w, sample ``guided(w)`` (a model ``(x, t, y)``) from the same ``x_T`` with labels
    ``y`` (σ² = β, noise from a generator seeded ``seed``). Accuracy: the share ending in the requested mode;
    spread: the std inside the requested mode over the true σ, averaged over the two classes, with s.e.
    σ/√(2m). Returns ``{w: (x, y)}`` and ``{w: {"accuracy", "spread", "spread_se"}}``; reports
    ``guidance/w<w>/…`` and prints one line per w."""
    sweep, metrics = {}, {}
    y_cpu = y.cpu()
    for w in ws:
        x = ddpm.sample(guided(w), x_T, y=y, sigma="beta", generator=torch.Generator().manual_seed(seed)).x.cpu()
        inside = torch.cdist(x, means).argmin(1) == y_cpu
        spread = np.mean([float(x[inside & (y_cpu == c)].std(0).mean()) / TWO_PIXEL_STD for c in (0, 1)])
        metrics[w] = {"accuracy": _fraction(inside), "spread": spread,
                      "spread_se": spread / math.sqrt(2 * max(int(inside.sum()), 1))}  # s.e. of a std: σ/√(2m)
        sweep[w] = (x, y_cpu)
        for key in ("accuracy", "spread", "spread_se"):
            report(f"guidance/w{w:g}/{key}", metrics[w][key])
        print(f"w = {w:<4g} accuracy {100 * metrics[w]['accuracy']:6.2f} %   spread {spread:.3f}")
    return sweep, metrics


def guidance_findings(metrics: dict[float, dict[str, float]], unconditional: SampleScore | None = None
                      ) -> dict[str, float]:
    """The numbers the guidance answer cites and checks: accuracy at w = 0 (``a0``) and the lowest from w = 1 on
    (``a1``); the spread's relative change over w (``dspread``), its range (``smin``, ``smax``) and largest s.e.
    (``sse``); ``narrower``: the largest narrowing against w = 0, in standard errors. With the score of the same
    network sampled unconditionally: its mode weights ``u0``, ``u1``, energy ratio ``ur`` ± ``us`` and largest
    weight error ``uwe``."""
    acc = {w: m["accuracy"] for w, m in metrics.items()}
    spr = {w: m["spread"] for w, m in metrics.items()}
    f = {"a0": acc[0.0], "a1": min(a for w, a in acc.items() if w >= 1),
         "dspread": max(spr.values()) / min(spr.values()) - 1, "smin": min(spr.values()), "smax": max(spr.values()),
         "sse": max(m["spread_se"] for m in metrics.values()),
         "narrower": max((spr[0.0] - spr[w]) / math.hypot(metrics[w]["spread_se"], metrics[0.0]["spread_se"])
                         for w in metrics)}
    if unconditional is not None:
        u = unconditional
        f |= {"u0": float(u.mode_weights[0]), "u1": float(u.mode_weights[1]), "ur": u.energy_ratio,
              "us": u.energy_ratio_se, "uwe": u.max_weight_error}
    return f


def q2_findings(ends: torch.Tensor, scores: dict[int, SampleScore], means: torch.Tensor) -> dict[str, Any]:
    """The numbers the Q2 answer cites and checks: the nearest-mode weights ``w0``, ``w1`` of the end points
    ``ends (N, 2)`` and their ratio ``lobes`` (w1 / w0); the step ``worst_k`` whose samples score worst against
    the exact density of x_k, that score ``worst`` ± ``worst_se``."""
    w = mode_weights(ends, means)
    worst_k = max(scores, key=lambda k: scores[k].energy_ratio)
    return {"w0": float(w[0]), "w1": float(w[1]), "lobes": float(w[1] / w[0]), "worst_k": worst_k,
            "worst": scores[worst_k].energy_ratio, "worst_se": scores[worst_k].energy_ratio_se}


# --------------------------------------------------------------------------- figures (Q2, Q3)
def _density_backdrop(ax: Axes, log_prob_fn: Callable[[torch.Tensor], torch.Tensor], lim: Limits,
                      filled: bool = True, n: int = 150) -> None:
    xs, ys, dens = density_image(log_prob_fn, lim, n)
    if filled:  # log-density bands down to e^-8 of the peak: narrow modes stay visible as discs, not dots
        with np.errstate(divide="ignore"):
            logd = np.log(dens)
        top = float(np.nanmax(logd))
        ax.contourf(xs, ys, np.clip(logd, top - 8.0, None), levels=np.linspace(top - 8.0, top, 9),
                    cmap="Greys", extend="neither")
    else:
        ax.contour(xs, ys, dens, levels=6, colors="w", linewidths=0.7, linestyles="--")


def _square(ax: Axes, lim: Limits, pixel_labels: bool = False) -> None:
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.grid(False)
    if pixel_labels:  # the two-pixel world of notebook 06: x = (left pixel, right pixel)
        ax.set_xlabel("left pixel", fontsize=8)
        ax.set_ylabel("right pixel", fontsize=8)


def trajectory_density_panels(step_samples: dict[int, Any], path: dict[int, Any],
                              true_log_prob: Callable[[torch.Tensor], torch.Tensor],
                              step_log_probs: dict[int, Callable[[torch.Tensor], torch.Tensor]] | None = None,
                              lim: Limits = (-3.0, 3.0), bins: int = 80, size: float = 2.8) -> Figure:
    """One denoising trajectory over the estimated densities of x_k (seed 001, Q2).

    One panel per step k of ``step_samples`` (``{k: (N, 2)}``, largest k first): the density of
    x_k estimated from the samples (:func:`sample_density`), the path from its start down to k
    (white line, current point ●) and, when ``step_log_probs[k]`` is given, the exact density of
    x_k as dashed contours. A last panel shows the whole path over ``true_log_prob`` (the data).
    ``path``: ``{k: (2,)}`` for every step from the start down to 0.
    """
    if not step_samples:
        raise ValueError("step_samples is empty; pass {k: (N, 2) samples of x_k}")
    ks = sorted(step_samples, reverse=True)
    order = sorted(path, reverse=True)
    pts = np.stack([to_numpy(path[k]).reshape(2) for k in order])
    fig, axes = panel_grid(len(ks) + 1, ncols=len(ks) + 1, size=size)
    for ax, k in zip(axes, ks):
        xs, ys, dens = sample_density(step_samples[k], lim, bins)
        ax.pcolormesh(xs, ys, dens, cmap="viridis", shading="auto")
        if step_log_probs is not None and k in step_log_probs:
            _density_backdrop(ax, step_log_probs[k], lim, filled=False)
        upto = [i for i, kk in enumerate(order) if kk >= k]
        if upto:
            seg = pts[: upto[-1] + 1]
            ax.plot(seg[:, 0], seg[:, 1], color="w", lw=1.0)
            ax.plot(seg[-1, 0], seg[-1, 1], "o", color="tab:red", ms=5, mec="w")
        _square(ax, lim, pixel_labels=True)
        ax.set_title(f"estimated p(x_k), k = {k}", fontsize=9)
    ax = axes[-1]
    _density_backdrop(ax, true_log_prob, lim)
    ax.plot(pts[:, 0], pts[:, 1], color="tab:blue", lw=1.0)
    ax.plot(pts[0, 0], pts[0, 1], "o", mfc="none", mec="tab:blue", ms=6)
    ax.plot(pts[-1, 0], pts[-1, 1], "o", color="tab:red", ms=5)
    _square(ax, lim, pixel_labels=True)
    ax.set_title("whole path over the true p(x_0)\n(grey: log-density, 8 bands)", fontsize=9)
    fig.tight_layout()
    return fig


def samples_vs_truth_rows(samples: dict[str, Any], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                          lim: Limits = (-1.5, 1.5), bins: int = 80, size: float = 3.0,
                          notes: dict[str, str] | None = None, s: float = 1.5) -> Figure:
    """One row per sample set (seed 001, Q3): left the samples scattered over the true density,
    right the density estimated from the samples (:func:`sample_density`, shared colour scale).
    ``samples``: ``{row label: (N, 2)}``; ``notes``: optional text per row for the left title."""
    if not samples:
        raise ValueError("samples is empty; pass {label: (N, 2) samples}")
    labels = list(samples)
    dens = [sample_density(samples[k], lim, bins) for k in labels]
    vmax = max(float(d[2].max()) for d in dens)
    fig, axes = plt.subplots(len(labels), 2, figsize=(2 * size + 0.6, size * len(labels)), squeeze=False)
    for r, label in enumerate(labels):
        p = to_numpy(samples[label])
        ax = axes[r, 0]
        _density_backdrop(ax, log_prob_fn, lim)
        ax.scatter(p[:, 0], p[:, 1], s=s, color="tab:red", alpha=0.35, linewidths=0)
        _square(ax, lim)
        note = f"\n{notes[label]}" if notes and label in notes else ""
        ax.set_title(f"{label}: samples over the true PDF{note}", fontsize=9)
        ax = axes[r, 1]
        xs, ys, d = dens[r]
        ax.pcolormesh(xs, ys, d, cmap="viridis", shading="auto", vmin=0, vmax=vmax)
        _square(ax, lim)
        ax.set_title(f"{label}: estimated PDF", fontsize=9)
    fig.tight_layout()
    return fig


def paths_over_density(paths: Sequence[Any], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                       colors: Sequence[Any] | None = None, labels: Sequence[str] | None = None,
                       ax: Axes | None = None, lim: Limits = (-3.0, 3.0), lw: float = 1.2) -> Figure:
    """Trajectories ``(S, 2)`` (first row = start) drawn over a true density; start ○, end ●."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
    else:
        fig = ax.figure
    _density_backdrop(ax, log_prob_fn, lim)
    for i, path in enumerate(paths):
        p = to_numpy(path)
        if p.ndim != 2 or p.shape[1] != 2:
            raise ValueError(f"each path must have shape (S, 2), got {p.shape}")
        c = colors[i] if colors is not None else f"C{i}"
        ax.plot(p[:, 0], p[:, 1], color=c, lw=lw, label=labels[i] if labels is not None else None)
        ax.plot(p[0, 0], p[0, 1], "o", mfc="none", mec=c, ms=7)
        ax.plot(p[-1, 0], p[-1, 1], "o", color=c, ms=6, mec="k")
    _square(ax, lim, pixel_labels=True)
    if labels is not None:
        ax.legend(fontsize=8, loc="lower left")
    return fig


# --------------------------------------------------------------------------- the guidance explorer (section 3)
def draw_two_pixel_guidance(w: float, samples: dict[float, tuple[Any, Any]], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                            metrics: dict[float, dict[str, float]] | None = None, lim: tuple[float, float] = (-1.5, 1.5),
                            fig: Figure | None = None) -> Figure:
    """Left: two-pixel samples drawn with guidance weight ``w`` over the true density, coloured by
    the requested label. Right (when ``metrics`` are given): accuracy (fraction in the requested
    mode) and spread against w, the chosen w marked.

    ``samples[w] = (x (N, 2), y (N,))``; ``metrics[w] = {"accuracy": …, "spread": …}`` (extra keys ignored).
    """
    if not samples:
        raise ValueError("samples is empty; pass {w: (x, y)} for at least one guidance weight")
    ws = sorted(float(k) for k in samples)
    if isinstance(w, bool) or not isinstance(w, (int, float, np.floating)) or float(w) not in ws:
        raise ValueError(f"w must be one of the sampled guidance weights {ws}, got {w!r}")
    x, y = (torch.as_tensor(v).detach().cpu() for v in {float(k): v for k, v in samples.items()}[float(w)])
    if x.ndim != 2 or x.shape[1] != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"samples[{w}] must be (x (N, 2), y (N,)), got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if fig is None:
        fig = plt.figure(figsize=(8.6 if metrics else 4.2, 4.0))
    else:
        fig.clf()
    if metrics:
        ax, ax_m = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    else:
        ax, ax_m = fig.subplots(1, 1), None
    xs, ys, dens = density_image(log_prob_fn, lim, 150)
    ax.contourf(xs, ys, dens, levels=12, cmap="Greys")
    for c in sorted(int(v) for v in y.unique()):
        sel = (y == c).numpy()
        ax.scatter(x[sel, 0].numpy(), x[sel, 1].numpy(), s=3, alpha=0.5, linewidths=0, color=f"C{c}", label=f"y = {c}")
    ax.set_xlim(*lim)
    ax.set_ylim(*lim)
    ax.set_aspect("equal")
    ax.grid(False)
    ax.legend(fontsize=8, loc="lower left", markerscale=3)
    ax.set_title(f"guidance w = {float(w):g}", fontsize=10)
    if ax_m is not None:
        mw = sorted(float(v) for v in metrics)
        ms = {float(k): v for k, v in metrics.items()}
        acc = [100 * ms[v]["accuracy"] for v in mw]
        spread = [ms[v]["spread"] for v in mw]
        ax_m.plot(mw, acc, "o-", color="C0")
        ax_m.set_xlabel("guidance weight w")
        ax_m.set_ylabel("in the requested mode (%)", color="C0")
        ax_m.set_ylim(min(acc + [90.0]) - 1, 100.5)
        ax2 = ax_m.twinx()
        ax2.plot(mw, spread, "s--", color="C1")
        ax2.set_ylabel("spread / true spread", color="C1")
        ax2.set_ylim(0, max(spread + [1.2]) * 1.05)
        ax2.axhline(1.0, color="C1", lw=0.8, ls=":")
        ax2.grid(False)
        ax_m.axvline(float(w), color="k", lw=1.0, ls=":")
        if float(w) in ms:
            ax_m.plot([float(w)], [100 * ms[float(w)]["accuracy"]], "o", ms=10, mfc="none", mec="k")
        ax_m.set_title("accuracy and spread against w", fontsize=10)
    fig.tight_layout()
    return fig


def two_pixel_guidance_explorer(samples: dict[float, tuple[Any, Any]], log_prob_fn: Callable[[torch.Tensor], torch.Tensor],
                                metrics: dict[float, dict[str, float]] | None = None, w: float = 1.0,
                                interactive: bool | None = None) -> Figure:
    """A slider over the sampled guidance weights redrawing :func:`draw_two_pixel_guidance` (static figure when headless)."""
    ws = sorted(float(k) for k in samples)
    initial = {"w": float(w), "samples": {float(k): v for k, v in samples.items()}, "log_prob_fn": log_prob_fn,
               "metrics": {float(k): v for k, v in metrics.items()} if metrics else None}

    def controls() -> dict[str, Any]:
        import ipywidgets as widgets

        return {"w": widgets.SelectionSlider(options=ws, value=float(w), description="w", continuous_update=False)}

    return show_explorer(draw_two_pixel_guidance, initial, controls, interactive)
