"""The numbers notebook 06's written answers cite and check, derived from its studies' results.

Each ``*_findings`` returns plain numbers (and verdicts in words) by the names the answer's template cites; the
claims themselves are made in the notebook, beside their prose.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ...metrics.stats import binomial_se
from ...metrics.toy import SampleScore, mode_weights, ratio_separation
from .studies import TWO_PIXEL_STD, DdimStudy, EpsSource, Q3Study, StepScores

__all__ = ["q2_findings", "q3_findings", "ddim_findings", "guidance_findings"]


def q2_findings(ends: torch.Tensor, steps: StepScores | dict[int, SampleScore], means: torch.Tensor) -> dict[str, Any]:
    """The numbers the Q2 answer cites and checks: the nearest-mode weights ``w0``, ``w1`` of the end points
    ``ends (N, 2)`` and their ratio ``lobes`` (w1 / w0); the step ``worst_k`` whose samples score worst against
    the exact density of x_k, that score ``worst`` ± ``worst_se``."""
    scores = steps.scores if isinstance(steps, StepScores) else steps
    w = mode_weights(ends, means)
    worst_k = max(scores, key=lambda k: scores[k].energy_ratio)
    return {"w0": float(w[0]), "w1": float(w[1]), "lobes": float(w[1] / w[0]), "worst_k": worst_k,
            "worst": scores[worst_k].energy_ratio, "worst_se": scores[worst_k].energy_ratio_se}


def q3_findings(q3: Q3Study, n_total: int, T_list: tuple[int, ...] = (5, 10, 25, 50)) -> dict[str, Any]:
    """The numbers the Q3 answer cites and checks, by name. Per T: the learned σ² = β sampler's energy ratio
    ``ratio_T<T>`` ± ``ratio_se_T<T>``, its mode weights ``weight_y0_T<T>`` / ``weight_y1_T<T>`` (as recorded: 4
    decimals), width ``width_T<T>`` and share between the modes ``between_T<T>``, and the exact-ε ratio
    ``exact_ratio_T<T>``. Then the binomial s.e. ``weight_se`` of a weight over ``n_total`` samples; separations in
    s.e.: ``z_T25_vs_T50``, ``z_fewer_steps`` (the smaller of T = 10 vs 50 and 5 vs 10), ``z_exact_vs_floor``
    (exact ε at T = 10, 5 against the floor), ``z_posterior_min`` (σ² = β̃ against β at T ≤ 25, both ε) and
    ``z_posterior_T50``, with the verdicts in words ``verdict_T25``, ``verdict_posterior_T50``; the exact-ε widths
    with β̃ and β at T = 50 (``width_exact_posterior_T50``, ``width_exact_beta_T50``), the learned β̃ score at
    T = 50 (``posterior_ratio_T50`` ± ``posterior_ratio_se_T50``), ``narrower_posterior`` (β̃ narrows every mode,
    exact ε) and ``clipped_share``, the share of the lower-right mode beyond the pixel range, P(x > 1) for
    N(0.75, 0.1²)."""
    L, E, LP, EP = "learned", "exact_eps", "learned_posterior_var", "exact_eps_posterior_var"
    scores = q3.scores

    def sep(a: tuple[int, str], b: tuple[int, str]) -> float:
        return ratio_separation(scores[a], scores[b])

    f: dict[str, Any] = {}
    for T in T_list:
        f[f"ratio_T{T}"], f[f"ratio_se_T{T}"] = scores[T, L].energy_ratio, scores[T, L].energy_ratio_se
        f[f"exact_ratio_T{T}"] = scores[T, E].energy_ratio
        w = scores[T, L].as_dict()["mode_weights"]
        f[f"weight_y0_T{T}"], f[f"weight_y1_T{T}"] = w[0], w[1]
        f[f"width_T{T}"], f[f"between_T{T}"] = q3.mode_std[T, L], q3.between_modes[T, L]
    f["weight_se"] = binomial_se(0.35, n_total)
    z25, zp50 = f["z_T25_vs_T50"], f["z_posterior_T50"] = sep((25, L), (50, L)), sep((50, LP), (50, L))
    f["verdict_T25"] = ("within 2 s.e. of $T = 50$: this score cannot tell the two apart" if abs(z25) < 2
                        else f"{z25:+.1f} s.e. from $T = 50$")
    f["verdict_posterior_T50"] = "within 2 s.e. of it" if abs(zp50) < 2 else f"{zp50:+.1f} s.e. from it"
    f["z_posterior_min"] = min(sep((T, tag + "_posterior_var"), (T, tag)) for T in (5, 10, 25) for tag in (L, E))
    f["z_fewer_steps"] = min(sep((10, L), (50, L)), sep((5, L), (10, L)))
    f["z_exact_vs_floor"] = min(ratio_separation(scores[T, E], 1.0) for T in (5, 10))
    f["width_exact_posterior_T50"], f["width_exact_beta_T50"] = q3.mode_std[50, EP], q3.mode_std[50, E]
    f["posterior_ratio_T50"], f["posterior_ratio_se_T50"] = scores[50, LP].energy_ratio, scores[50, LP].energy_ratio_se
    f["narrower_posterior"] = all(q3.mode_std[T, EP] < q3.mode_std[T, E] for T in T_list)
    f["clipped_share"] = 0.5 * math.erfc((1 - 0.75) / (TWO_PIXEL_STD * math.sqrt(2)))
    return f


def ddim_findings(ddim: DdimStudy, q3: Q3Study) -> dict[str, Any]:
    """The numbers the DDIM answer cites and checks: DDIM ratios ``d<n>`` (learned) and ``x<n>`` (exact ε) for
    n = 10, 25, the ancestral ones at T = n ``a<n>`` and ``b<n>``; ``zmin``, the smallest separation (in s.e.) of
    DDIM with n steps from ancestral sampling with T = n for n = 10, 25; ``v50`` the verdict at n = 50 in words."""
    L, E = EpsSource.LEARNED, EpsSource.EXACT
    d, scores = ddim.scores, q3.scores
    z = {(n, eps): ratio_separation(d[n, eps], scores[n, eps.tag]) for n, eps in d}
    f: dict[str, Any] = {"zmin": min(z[n, eps] for n in (10, 25) for eps in EpsSource)}
    for n in (10, 25):
        f[f"d{n}"], f[f"x{n}"] = d[n, L].energy_ratio, d[n, E].energy_ratio
        f[f"a{n}"], f[f"b{n}"] = scores[n, L.tag].energy_ratio, scores[n, E.tag].energy_ratio
    f["v50"] = ("within 2 s.e. of ancestral sampling for both: at this step size the two cannot be told apart"
                if max(abs(z[50, eps]) for eps in EpsSource) < 2 else
                f"{z[50, L]:+.1f} s.e. (learned) and {z[50, E]:+.1f} s.e. (exact ε) "
                "away from ancestral sampling (positive: worse)")
    return f


def guidance_findings(per_w: dict[float, dict[str, float]], unconditional: SampleScore | None = None
                      ) -> dict[str, float]:
    """The numbers the guidance answer cites and checks (``per_w`` of :class:`GuidanceSweep`): accuracy at w = 0
    (``a0``) and the lowest from w = 1 on (``a1``); the spread's relative change over w (``dspread``), its range
    (``smin``, ``smax``) and largest s.e. (``sse``); ``narrower``: the largest narrowing against w = 0, in standard
    errors. With the score of the same network sampled unconditionally: its mode weights ``u0``, ``u1``, energy
    ratio ``ur`` ± ``us`` and largest weight error ``uwe``."""
    acc = {w: m["accuracy"] for w, m in per_w.items()}
    spr = {w: m["spread"] for w, m in per_w.items()}
    f = {"a0": acc[0.0], "a1": min(a for w, a in acc.items() if w >= 1),
         "dspread": max(spr.values()) / min(spr.values()) - 1, "smin": min(spr.values()), "smax": max(spr.values()),
         "sse": max(m["spread_se"] for m in per_w.values()),
         "narrower": max((spr[0.0] - spr[w]) / math.hypot(per_w[w]["spread_se"], per_w[0.0]["spread_se"])
                         for w in per_w)}
    if unconditional is not None:
        u = unconditional
        f |= {"u0": float(u.mode_weights[0]), "u1": float(u.mode_weights[1]), "ur": u.energy_ratio,
              "us": u.energy_ratio_se, "uwe": u.max_weight_error}
    return f
