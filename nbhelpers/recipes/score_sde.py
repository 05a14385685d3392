"""Notebook 05 (score-based models): the VP-SDE's reverse sampler built from one step, the studies and figures.

* :func:`reverse_sample` — the reverse-time VP-SDE integrated from t = 1 down to ``t_min`` by a one-step
  function ``step(sde, score_fn, x, t, dt, generator)`` (the notebook's exercise, or the library's step);
  with the library's step it is exactly ``nb.solvers.euler_maruyama(sde.reverse(score_fn), …)``.
* :class:`TruthJudge` — 2D samples scored against the true mixture (energy distance over its noise floor,
  mode weights, log-likelihood), one reference draw for every table (:meth:`TruthJudge.judge` → :class:`Judged`).
* Part I: the VP-SDE's SDE-vs-ODE study (:func:`vp_nfe_study`, the samplers a :class:`VPMethod`); task 5b in 2D —
  the flow and score MLPs (:func:`train_flow_and_score`), the σ sweep's summaries (the sweep itself is a loop in
  notebook 05) and the equal-NFE study (:func:`flowscore_nfe_study`, the samplers a :class:`FlowScoreMethod`).
* Part II (MNIST): the agreement of the score UNet with the score read from the flow UNet
  (:func:`score_flow_agreement`) and the σ sweep on images (:func:`image_sigma_sweep`).

Every study returns a frozen dataclass with ``.metrics`` (for ``run.report_all``) and ``.summary()``; samples
worth keeping come back in ``to_save`` for ``run.save_samples``. Nothing here reports, saves or prints. The
figures are in :mod:`nbhelpers.recipes.score_sde_figures`.

Time: the VP-SDE keeps Song's direction (**t = 0 data, t = 1 noise**, :class:`nbhelpers.sde.VPSDE`); task 5b and
Part II use the flow convention of :mod:`nbhelpers.paths` (**t = 0 noise, t = 1 data**, linear path).
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..dryrun import capped, sampler
from ..losses import flow_matching_loss, score_matching_loss
from ..metrics.toy import NoiseFloor, SampleScore, score_against_truth
from ..models.mlp import ScoreFromNoise, TimeMLP
from ..paths import GaussianPath
from ..sde import FlowScoreSDE
from ..solvers import Solution, euler, euler_maruyama, heun, sample_from_noise, time_grid
from ..checkpoints import checkpoint_path
from ..training import TrainConfig, TrainResult, train
from .flow_2d import FlowModelSpec

__all__ = ["reverse_sample", "TruthJudge", "Judged", "VPMethod", "vp_sample", "VPNfeStudy", "vp_nfe_study",
           "vp_nfe_summary", "FlowAndScore", "train_flow_and_score", "SIGMA_SHAPES", "sigma_settings",
           "sigma_sweep_summary", "sweep_table", "FlowScoreMethod", "FlowScoreNfeStudy", "flowscore_nfe_study",
           "flowscore_nfe_summary", "score_flow_agreement", "ImageSigmaSweep", "image_sigma_sweep",
           "image_sweep_summary"]

Step = Callable[..., Tensor]


@sampler
def reverse_sample(step: Step, sde: Any, score_fn: Callable[[Tensor, Tensor], Tensor], x1: Tensor, t_min: float,
                   n_steps: int, generator: torch.Generator | None = None,
                   return_trajectory: bool = False) -> Solution:
    """Integrate the reverse VP-SDE dX = [f − g² s] dt + g dW̄ from t = 1 down to ``t_min`` in ``n_steps`` steps.

    Each step is ``step(sde, score_fn, x, t, dt, generator)`` with ``t`` the step's start, shape ``(B,)``, and
    ``dt = t_i − t_{i+1} > 0`` a 0-d tensor in x's dtype; the grid is :func:`nbhelpers.solvers.time_grid`
    (1, t_min, n_steps) in x's dtype, as in :func:`nbhelpers.solvers.euler_maruyama`, so the library's step
    reproduces that solver exactly.
    In a dry run (``$NBHELPERS_MAX_STEPS``) a network behind ``score_fn`` is capped like the solvers' fields.
    Shapes: x1 (B, ...); returns a :class:`~nbhelpers.solvers.Solution` (trajectory (n_steps + 1, B, ...) when asked).
    """
    if not callable(step) or not callable(score_fn):
        raise ValueError(f"step and score_fn must be callables, got {step!r} and {score_fn!r}")
    if not isinstance(x1, Tensor) or x1.ndim < 1 or not x1.is_floating_point():
        raise ValueError(f"x1 must be a floating-point tensor (B, ...), got {type(x1).__name__}")
    if not 0.0 <= float(t_min) < 1.0:
        raise ValueError(f"t_min must lie in [0, 1), got {t_min!r}")
    ts = time_grid(1.0, t_min, n_steps, x1)
    score = capped(score_fn)  # the step evaluates it: a dry run caps the network behind it
    x, traj = x1, [x1] if return_trajectory else None
    with torch.no_grad():
        for i in range(len(ts) - 1):
            x = step(sde, score, x, ts[i].expand(x.shape[0]), ts[i] - ts[i + 1], generator)
            if traj is not None:
                traj.append(x)
    return Solution(x, ts, torch.stack(traj) if traj is not None else None, len(ts) - 1)


# --------------------------------------------------------------------------- scoring 2D samples against the truth
@dataclass(frozen=True)
class TruthJudge:
    """Scores 2D sample sets against a true mixture, every one against the same reference draw (``ref_seed``).

    The energy distance is in units of ``floor`` (:func:`nbhelpers.metrics.energy_noise_floor` at set size
    ``n_set``), so equal samples get equal scores in every table of the notebook.
    """

    truth: Any
    floor: NoiseFloor
    n_set: int
    ref_seed: int

    def ratio_se(self, n_total: int) -> float:
        """The standard error of a perfect sampler's energy ratio over ``n_total // n_set`` sets."""
        return self.floor.std / self.floor.mean / np.sqrt(n_total // self.n_set)

    def score(self, x: Tensor) -> SampleScore:
        """``x (N, 2)`` scored by :func:`nbhelpers.metrics.score_against_truth` (sets of ``n_set``)."""
        return score_against_truth(x.cpu(), self.truth, generator=torch.Generator().manual_seed(self.ref_seed),
                                   n=self.n_set, floor=self.floor)

    def judge(self, name: str, x: Tensor, perfect_se: bool = True) -> "Judged":
        """``x`` scored under ``name``, with the perfect sampler's s.e. at its size when ``perfect_se``."""
        return Judged(name, x.cpu(), self.score(x), self.ratio_se(len(x)) if perfect_se else None)


@dataclass(frozen=True)
class Judged:
    """A named sample set ``x`` and its :class:`~nbhelpers.metrics.toy.SampleScore`; ``perfect_se``: the s.e. of a
    perfect sampler's energy ratio at its size (None when not wanted)."""

    name: str
    x: Tensor
    score: SampleScore
    perfect_se: float | None = None

    @property
    def metrics(self) -> dict[str, Any]:
        """Every number of the score as ``<name>/<key>`` (and ``<name>/energy_ratio_se_perfect``)."""
        out = {f"{self.name}/{k}": v for k, v in self.score.as_dict().items()}
        if self.perfect_se is not None:
            out[f"{self.name}/energy_ratio_se_perfect"] = self.perfect_se
        return out

    @property
    def to_save(self) -> dict[str, Tensor]:
        """The samples with their reference draw, for ``run.save_samples(name, **to_save)``."""
        return {"samples": self.x, "reference": self.score.reference}

    def summary(self) -> str:
        return f"{self.name:<24} {self.score.summary()}"


# --------------------------------------------------------------------------- the VP-SDE: SDE vs ODE at equal NFE
class _Labelled(Enum):
    """An enum whose value is its ``label``: how tables, figures and metric names call it."""

    @property
    def label(self) -> str:
        return self.value


class VPMethod(_Labelled):
    """The VP-SDE's samplers at equal network evaluations (NFE); ``label`` names them in tables and metrics."""

    REVERSE_SDE = "reverse SDE (EM)"
    PF_ODE_EULER = "PF-ODE (Euler)"
    PF_ODE_HEUN = "PF-ODE (Heun)"


def vp_sample(method: VPMethod, sde: Any, step: Step, score_fn: Callable, x1: Tensor, t_min: float, nfe: int,
              noise: Callable[[], torch.Generator]) -> Tensor:
    """Samples from ``x1`` at t = 1 to ``t_min`` with a :class:`VPMethod` at ``nfe`` network evaluations:
    the reverse SDE by ``step`` (Euler–Maruyama, 1 per step, noise from ``noise()``), the probability-flow ODE
    by Euler (1 per step) or Heun (2 per step)."""
    if method is VPMethod.REVERSE_SDE:
        return reverse_sample(step, sde, score_fn, x1, t_min, nfe, noise()).x
    if method is VPMethod.PF_ODE_EULER:
        return euler(sde.probability_flow(score_fn), x1, 1.0, t_min, nfe).x
    if method is VPMethod.PF_ODE_HEUN:
        return heun(sde.probability_flow(score_fn), x1, 1.0, t_min, nfe // 2).x
    raise ValueError(f"unknown method {method!r}; valid choices: {', '.join(f'VPMethod.{m.name}' for m in VPMethod)}")


@dataclass(frozen=True)
class VPNfeStudy:
    """:func:`vp_nfe_study`'s scores: ``rows[method, score name, nfe] = {"ratio", "weight_error", "loglik"}``."""

    rows: dict[tuple[VPMethod, str, int], dict[str, float]]
    nfe_grid: tuple[int, ...]

    @property
    def metrics(self) -> dict[str, Any]:
        """``vp_nfe_study``: ``{"<method label>|<score name>|<nfe>": row}``."""
        return {"vp_nfe_study": {f"{m.label}|{w}|{n}": v for (m, w, n), v in self.rows.items()}}

    def summary(self, which: str = "learned") -> str:
        """The energy ratio of each method at each budget, with the score ``which``."""
        return "\n".join(f"{m.label:<18} " + "  ".join(f"{n}: {self.rows[m, which, n]['ratio']:.2f}×"
                                                       for n in self.nfe_grid) for m in VPMethod)


def vp_nfe_study(sde: Any, step: Step, scores: dict[str, Callable], x1: Tensor, t_min: float,
                 nfe_grid: Sequence[int], judge: TruthJudge, noise: Callable[[], torch.Generator]) -> VPNfeStudy:
    """Every :class:`VPMethod` × every score of ``scores`` (name → field) × every NFE, scored by ``judge``."""
    out = {}
    for m in VPMethod:
        for which, score in scores.items():
            for nfe in nfe_grid:
                sc = judge.score(vp_sample(m, sde, step, score, x1, t_min, nfe, noise))
                out[m, which, nfe] = {"ratio": sc.energy_ratio, "weight_error": sc.max_weight_error,
                                      "loglik": sc.log_likelihood}
    return VPNfeStudy(out, tuple(nfe_grid))


def vp_nfe_summary(study: dict[tuple[VPMethod, str, int], dict[str, float]], nfe_grid: Sequence[int],
                   se: float) -> dict[str, Any]:
    """The numbers the SDE-vs-ODE answer cites from :func:`vp_nfe_study` (learned score), ``se`` the s.e. of a
    perfect sampler's ratio: the smallest and largest budgets, the better ODE solver at the smallest one
    (``ode_m``), the end gap in words (``gap_text``) and the budgets ≥ 100 where the SDE leaves the ±2 s.e. band
    (``zig``, in words; ``outside``). ``study``: :attr:`VPNfeStudy.rows`."""
    sde_m, heun_m = VPMethod.REVERSE_SDE, VPMethod.PF_ODE_HEUN
    lr = {m: [study[m, "learned", n]["ratio"] for n in nfe_grid] for m in VPMethod}
    gap = lr[heun_m][-1] - lr[sde_m][-1]
    outside = [n for n, r in zip(nfe_grid, lr[sde_m]) if abs(r - 1) > 2 * se and n >= 100]
    ode_m = min((VPMethod.PF_ODE_EULER, heun_m), key=lambda m: lr[m][0])  # the better ODE at the smallest budget
    if gap > 2 * se:
        gap_text = f"the SDE ends closer to the truth, {gap / se:.1f} s.e. lower"
    elif -gap > 2 * se:
        gap_text = f"the ODE ends closer to the truth, {-gap / se:.1f} s.e. lower"
    else:
        gap_text = (f"{'the SDE' if gap > 0 else 'the ODE'} ends lower, but by {abs(gap) / se:.1f} s.e., which this "
                    "sample size cannot tell from chance")
    zig = ("and at " + ", ".join(map(str, outside)) + " evaluations the learned SDE's ratio leaves the band, more "
           "than the scatter of a perfect sampler explains" if outside else "within the scatter of a perfect sampler")
    return {"lo": nfe_grid[0], "top": nfe_grid[-1], "se": se, "ode_m": ode_m.label, "sde_lo": lr[sde_m][0],
            "ode_lo": lr[ode_m][0], "ll_sde_lo": study[sde_m, "learned", nfe_grid[0]]["loglik"],
            "ll_ode_lo": study[ode_m, "learned", nfe_grid[0]]["loglik"], "sde": lr[sde_m][-1], "ode": lr[heun_m][-1],
            "gap_text": gap_text, "zig": zig, "outside": outside}


# --------------------------------------------------------------------------- 5b in 2D: flow + score = a family of SDEs
@dataclass
class FlowAndScore:
    """The two 2D networks of task 5b on one linear path (t = 0 noise, t = 1 data) and their training results."""

    path: GaussianPath
    flow: TrainResult
    score: TrainResult


def train_flow_and_score(truth: Any, batch: int, config: TrainConfig, device: torch.device | str, profile: str,
                         seed: int, retrain: bool = False) -> FlowAndScore:
    """Train (or load from the checkpoint cache) notebook 03's flow MLP by flow matching and a score MLP
    s_θ = −ε_θ/β_t by β²-weighted score matching (t ≤ 0.999) on ``truth``, the linear path, ``batch`` per step.

    The flow model's key is notebook 03's, so a model trained there is reused. Weights are initialised from the
    global seed (``seed`` and ``seed + 1``), as a notebook cell would.
    """
    path = GaussianPath("linear")
    data = lambda g: truth.sample(batch, generator=g)  # noqa: E731
    torch.manual_seed(seed)
    flow = FlowModelSpec(batch=batch)  # notebook 03's model and key
    u_net = TimeMLP(dim=flow.dim, hidden=flow.hidden, depth=flow.depth).to(device)
    fm = train(u_net, lambda m, z, g: flow_matching_loss(m, z, path, g), data, config,
               checkpoint=flow.checkpoint(profile), key=flow.key(), retrain=retrain)
    torch.manual_seed(seed + 1)
    s_net = ScoreFromNoise(TimeMLP(dim=2, hidden=64, depth=4), lambda t: path.schedule(t).beta).to(device)
    sm_key = {"data": "toy_gmm", "schedule": "linear", "model": "ScoreFromNoise(TimeMLP(2,64,4,raw t))",
              "loss": "score_matching_beta2", "t_max": 0.999, "batch": batch}
    sm = train(s_net, lambda m, z, g: score_matching_loss(m, z, path, g, weighting="beta2", t_max=0.999), data,
               config, checkpoint=checkpoint_path("05_score_mlp", sm_key, profile=profile), key=sm_key, retrain=retrain)
    return FlowAndScore(path, fm, sm)



SIGMA_SHAPES: dict[str, Callable[[float], Any]] = {
    "constant": lambda sig: sig,
    "vanishing": lambda sig: (lambda t: sig * (1 - t)),
}
"""The two shapes of σ_t with scale σ: constant σ_t = σ, and vanishing σ_t = σ(1 − t) = σβ_t (linear path)."""


def sigma_settings(sigmas: Sequence[float]) -> list[tuple[str, float]]:
    """(shape, σ) for every shape of :data:`SIGMA_SHAPES` and σ, σ = 0 once (it is the same ODE for both)."""
    return [("constant", s) for s in sigmas] + [("vanishing", s) for s in sigmas if s > 0]




class FlowScoreMethod(_Labelled):
    """The learned flow + score pair's samplers at equal NFE (task 5b); ``label`` names them in tables and metrics."""

    SDE_VANISHING = "SDE, σ_t = 1 − t (EM)"
    SDE_CONSTANT = "SDE, σ_t = 1 (EM)"
    ODE_EULER = "ODE (Euler)"
    ODE_HEUN = "ODE (Heun)"


@dataclass(frozen=True)
class FlowScoreNfeStudy:
    """:func:`flowscore_nfe_study`'s scores: ``rows[method, nfe] = {"ratio", "loglik"}``."""

    rows: dict[tuple[FlowScoreMethod, int], dict[str, float]]

    @property
    def metrics(self) -> dict[str, Any]:
        """``flowscore_nfe_study``: ``{"<method label>|<nfe>": row}``."""
        return {"flowscore_nfe_study": {f"{m.label}|{n}": v for (m, n), v in self.rows.items()}}

    def summary(self) -> str:
        return "\n".join(f"{m.label:<22} NFE {n:>5}: ratio {v['ratio']:.2f}, log-likelihood {v['loglik']:.2f}"
                         for (m, n), v in self.rows.items())


def flowscore_nfe_study(u_fn: Callable, s_fn: Callable, x0: Tensor, nfe_grid: Sequence[int],
                        noise: Callable[[], torch.Generator], judge: TruthJudge) -> FlowScoreNfeStudy:
    """The learned pair at equal NFE: the SDE with σ_t = 1 − t and σ_t = 1 (Euler–Maruyama, 2 NFE per step), the
    ODE by Euler (1 per step) and Heun (2 per step), from ``x0`` at t = 0, scored by ``judge``."""
    out = {}
    for nfe in nfe_grid:
        runs = {
            FlowScoreMethod.SDE_VANISHING: euler_maruyama(FlowScoreSDE(u_fn, s_fn, sigma=lambda t: 1 - t), x0, 0.0,
                                                          1.0, nfe // 2, generator=noise()).x,
            FlowScoreMethod.SDE_CONSTANT: euler_maruyama(FlowScoreSDE(u_fn, s_fn, sigma=1.0), x0, 0.0, 1.0, nfe // 2,
                                                         generator=noise()).x,
            FlowScoreMethod.ODE_EULER: euler(u_fn, x0, 0.0, 1.0, nfe).x,
            FlowScoreMethod.ODE_HEUN: heun(u_fn, x0, 0.0, 1.0, nfe // 2).x,
        }
        for m, x in runs.items():
            sc = judge.score(x)
            out[m, nfe] = {"ratio": sc.energy_ratio, "loglik": sc.log_likelihood}
    return FlowScoreNfeStudy(out)


def sigma_sweep_summary(sweep: dict, sigmas: Sequence[float], se: float) -> dict[str, Any]:
    """The numbers the 2D σ-sweep answer cites from the sweep (notebook 05): the exact fields' energy ratios (``ex``,
    every shape and σ), the learned vanishing ones (``van``), the largest constant σ's ratio and log-likelihood,
    the log-likelihood of true samples and the learned constant σ ≥ 1's log-likelihoods (``big_ll``)."""
    ex = [sweep["exact", sh, s].energy_ratio for sh in SIGMA_SHAPES for s in sigmas]
    van = [sweep["learned", "vanishing", s].energy_ratio for s in sigmas]
    top = sweep["learned", "constant", sigmas[-1]]
    return {"se": se, "ex": ex, "van": van, "ex_lo": min(ex), "ex_hi": max(ex), "van_lo": min(van),
            "van_hi": max(van), "s_max": sigmas[-1], "con_max": top.energy_ratio, "ll_max": top.log_likelihood,
            "true_ll": sweep["exact", "constant", sigmas[0]].true_log_likelihood,
            "big_ll": {s: sweep["learned", "constant", s].log_likelihood for s in sigmas if s >= 1}}


def flowscore_nfe_summary(study: dict[tuple[FlowScoreMethod, int], dict[str, float]], nfe_grid: Sequence[int], ode0: float, se: float,
                          true_ll: float) -> dict[str, Any]:
    """The numbers the equal-NFE answer of task 5b cites from :func:`flowscore_nfe_study`: Heun at 50 NFE (or the
    smallest budget) and at the largest, where the Euler ODE, the vanishing-σ SDE and the constant-σ SDE's
    log-likelihood end; ``ode0`` is the σ = 0 entry of the σ sweep, ``se`` a perfect sampler's s.e.
    ``study``: :attr:`FlowScoreNfeStudy.rows`."""
    M = FlowScoreMethod
    n_lo, top = (50 if 50 in nfe_grid else nfe_grid[0]), nfe_grid[-1]
    heun = [study[M.ODE_HEUN, n]["ratio"] for n in nfe_grid]
    return {"n_lo": n_lo, "n_hi": top, "h_lo": study[M.ODE_HEUN, n_lo]["ratio"], "h_hi": heun[-1], "heun": heun,
            "ode_end": study[M.ODE_EULER, top]["ratio"], "ode0": ode0, "van_end": study[M.SDE_VANISHING, top]["ratio"],
            "se": se, "ll": study[M.SDE_CONSTANT, top]["loglik"], "true_ll": true_ll}


# --------------------------------------------------------------------------- Part II: images
def score_flow_agreement(score_net: Callable, flow_net: Callable, path: GaussianPath, z: Tensor, t_grid: Tensor,
                         to_score: Callable, generator: torch.Generator | None,
                         device: torch.device | str) -> list[float]:
    """At each t of ``t_grid``: noise the images ``z`` along ``path`` (one draw from ``generator``) and compare
    the score network with the score ``to_score(path.schedule, u, x, t)`` read from the flow network's velocity
    (t of shape (B,)): mean ‖s_θ − s(u_θ)‖ over mean ‖s_θ‖, one number per t. The networks run on ``device``."""
    agreement = []
    for t in t_grid.tolist():
        x = path.sample(z, t, generator=generator).x
        with torch.no_grad():
            s_a = score_net(x.to(device), torch.full((len(x),), t, device=device)).cpu()
            u_b = flow_net(x.to(device), torch.full((len(x),), t, device=device)).cpu()
        s_b = to_score(path.schedule, u_b, x, torch.full((len(x),), t))
        agreement.append(float((s_a - s_b).flatten(1).norm(dim=1).mean() / s_a.flatten(1).norm(dim=1).mean()))
    return agreement



@dataclass(frozen=True)
class ImageSigmaSweep:
    """:func:`image_sigma_sweep`'s evaluations and digits keyed by ``(shape, σ)`` (σ = 0 shared by both shapes),
    judged against ``bars`` (None: no pass/fail)."""

    results: dict[tuple[str, float], Any]
    samples: dict[tuple[str, float], Tensor]
    bars: Any = None

    def _runs(self) -> list[tuple[str, Any, Tensor]]:
        """(name, evaluation, digits) for each setting run, σ = 0 once."""
        return [(f"image/{shape}_sigma{sigma:g}", r, self.samples[shape, sigma])
                for (shape, sigma), r in self.results.items() if sigma != 0 or shape == "constant"]

    @property
    def metrics(self) -> dict[str, Any]:
        """Every number of each evaluation as ``image/<shape>_sigma<σ>/<key>`` (and ``…/passes`` against the bars)."""
        out: dict[str, Any] = {}
        for name, r, _ in self._runs():
            d = r.as_dict()
            if self.bars is not None:
                d["passes"] = r.passes(self.bars)
            out |= {f"{name}/{k}": v for k, v in d.items()}
        return out

    @property
    def to_save(self) -> dict[str, dict[str, Tensor]]:
        """The digits of each setting as ``image_<shape>_sigma<σ>``, for ``run.save_samples(name, **arrays)``."""
        return {name.replace("/", "_"): {"images": x} for name, _, x in self._runs()}

    def summary(self) -> str:
        return "\n".join(f"{name[6:].replace('_sigma', '  σ = '):<22} {r.summary()}"
                         + ("" if self.bars is None else f"  {'passes' if r.passes(self.bars) else 'misses'} the bars")
                         for name, r, _ in self._runs())


def image_sigma_sweep(u_net: Callable, s_net: Callable, sigmas: Sequence[float], n: int, n_steps: int,
                      evaluator: Any, bars: Any, device: torch.device | str, seed: int) -> ImageSigmaSweep:
    """The flow + score SDE on MNIST for every shape of :data:`SIGMA_SHAPES` and σ: ``n`` digits from the same
    starting noise (``seed``), ``n_steps`` Euler–Maruyama steps from t = 0 to 1, clamped to [−1, 1], scored by the
    MNIST ``evaluator``; σ = 0 is run once and shared by both shapes."""
    results, samples = {}, {}
    for shape, make in SIGMA_SHAPES.items():
        for sigma in sigmas:
            if sigma == 0 and shape != "constant":  # σ = 0 is the same ODE for both shapes
                results[shape, sigma], samples[shape, sigma] = results["constant", 0.0], samples["constant", 0.0]
                continue
            sde = FlowScoreSDE(u_net, s_net, sigma=make(sigma))
            x = sample_from_noise(sde, n, (1, 28, 28), n_steps, method="euler_maruyama", device=device,
                                  seed=seed).x.clamp(-1, 1)
            results[shape, sigma], samples[shape, sigma] = evaluator.evaluate(x), x
    return ImageSigmaSweep(results, samples, bars)


def image_sweep_summary(results: dict, sigmas: Sequence[float]) -> dict[str, Any]:
    """The numbers the image σ-sweep answer cites from :func:`image_sigma_sweep`: the ODE (``r0``, σ = 0), the
    vanishing-σ results (``van``) and their ranges, the constant-σ results (``con``, σ → result), the smallest
    constant σ (``s1``, ``c1``), the constant σ that end in pure noise (one class takes over 90 %: ``noisy``) with
    their confidence and FD range, and two standard errors of a difference from the ODE (``se_fd``, ``se_rec``)."""
    r0 = results["constant", 0.0]
    van = [results["vanishing", s] for s in sigmas if s > 0]
    con = {s: results["constant", s] for s in sigmas if s > 0}
    noisy = [s for s in con if con[s].class_max > 0.9]  # one class takes (nearly) every sample: pure noise
    noisy_fd, nan, s1 = [con[s].fd_ratio for s in noisy], float("nan"), min(con)
    return {"r0": r0, "van": van, "con": con, "noisy_sigmas": noisy, "s1": s1, "c1": con[s1], "smax": max(sigmas),
            "rec_lo": min(r.recognised_fraction for r in van), "rec_hi": max(r.recognised_fraction for r in van),
            "cls_lo": min(r.class_min for r in van), "cls_hi": max(r.class_max for r in van),
            "fd_lo": min(r.fd_ratio for r in van), "fd_hi": max(r.fd_ratio for r in van),
            "noisy": ", ".join(f"{s:g}" for s in noisy) or "none",
            "conf": min((con[s].mean_confidence for s in noisy), default=nan),
            "nfd_lo": min(noisy_fd, default=nan), "nfd_hi": max(noisy_fd, default=nan),
            "se_fd": 2 * np.sqrt(2) * r0.fd_ratio_se, "se_rec": 2 * np.sqrt(2) * r0.recognised_se}


def sweep_table(sweep: dict) -> dict[str, dict[str, float]]:
    """The σ sweep's scores (notebook 05) as plain numbers for ``run.report``: ``{"<fields>|<shape>|<σ>": {"ratio",
    "weight_error", "loglik"}}``."""
    return {f"{w}|{sh}|{s:g}": {"ratio": sc.energy_ratio, "weight_error": sc.max_weight_error,
                                "loglik": sc.log_likelihood} for (w, sh, s), sc in sweep.items()}
