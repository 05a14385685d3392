"""The evidence behind notebook 07's written answers.

Each ``*_evidence`` function returns the values a written answer cites and the claims it checks (``claims``,
:func:`nbhelpers.answers.claim`), for ``run.answer(template, **evidence)``; every claim compares with a
standard error where one applies. :func:`variant_table` is the two variants' table as a template of
:func:`nbhelpers.answers.render`, each number ± its standard error.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ...ddpm import DDPM
from ...metrics.stats import binomial_se, max_binomial_se
from .scores import VariantScore, verdict
from .settle import SettleSummary

__all__ = [
    "diversity_evidence", "settle_evidence", "guidance_evidence", "edit_evidence", "ddim_evidence",
    "forward_evidence", "VARIANT_ROWS", "variant_table", "variant_evidence",
]


def diversity_evidence(rows: dict[float, dict[str, Any]], real_diversity: np.ndarray) -> dict[str, Any]:
    """Diversity at w = 0 against real digits (± s.e. over the classes) and against w = 2, class by class."""
    from ...answers import claim

    d0, d2 = rows[0.0]["diversity_per_class"], rows[2.0]["diversity_per_class"]
    se = float(np.nanstd(d0, ddof=1) / np.sqrt(np.isfinite(d0).sum()))  # s.e. of the mean over the ten classes
    digits = np.argsort(real_diversity)
    gap = rows[0.0]["diversity"] - 1
    vs_real = ("more varied than real handwriting: the malformed samples lie far from every real style" if gap > 2 * se
               else "as varied as real handwriting, within 2 s.e." if abs(gap) <= 2 * se
               else "less varied than real handwriting")
    return {"claims": [claim("guidance at w = 2 makes every class less varied than w = 0", bool(np.all(d2 < d0)),
                             f"{int(np.sum(d2 < d0))} of 10 classes")],
            "se": se, "n_less": int(np.sum(d2 < d0)), "top": f"{digits[-1]} and {digits[-2]}",
            "bottom": f"{digits[0]} and {digits[1]}", "vs_real": vs_real}


def settle_evidence(summary: SettleSummary) -> dict[str, Any]:
    """The quadrants' spread against the spread of single ink pixels, and coarse shape against pixels."""
    from ...answers import claim

    ink = summary.ink_q90 - summary.ink_q10
    return {"claims": [claim("the quadrants settle much closer together than single pixels",
                             summary.quadrant_spread < 0.5 * ink,
                             f"quadrants {summary.quadrant_spread:.2f}·T, ink pixels {ink:.2f}·T"),
                       claim("the coarse shape settles before single pixels",
                             summary.coarse_median > summary.ink_median,
                             f"median k/T {summary.coarse_median:.2f} vs {summary.ink_median:.2f}")],
            "frac": summary.quadrant_spread / ink, "ink": ink}


def guidance_evidence(rows: dict[float, dict[str, Any]], n: int) -> dict[str, Any]:
    """Accuracy, diversity and FD/floor along the sweep (``rows`` of :func:`score_samples`, n samples per w)."""
    from ...answers import claim

    W = list(rows)
    acc_w, div_w, fd_w = ([rows[w][k] for w in W] for k in ("accuracy", "diversity", "fd_ratio"))
    se_fd = max(rows[w]["fd_ratio_se"] for w in W)
    acc_se = binomial_se(acc_w[0], n)  # at the first w
    return {"claims": [claim("guidance raises class accuracy", acc_w[-1] - acc_w[0] > 2 * acc_se,
                             f"{acc_w[0]:.1%} → {acc_w[-1]:.1%}, s.e. {acc_se:.1%}"),
                       claim("diversity falls steadily with w", bool(np.all(np.diff(div_w) < 0)),
                             ", ".join(f"{d:.2f}" for d in div_w)),
                       claim("the FD grows at large w", fd_w[-1] - min(fd_w) > 2 * np.sqrt(2) * se_fd,
                             f"{fd_w[-1]:.2f} vs lowest {min(fd_w):.2f}, s.e. {se_fd:.2f}")],
            "a0": acc_w[0], "a0_se": acc_se, "a2": rows[2.0]["accuracy"], "amax": acc_w[-1], "wmax": W[-1],
            "d0": div_w[0], "dmax": div_w[-1], "wb": W[int(np.argmin(fd_w))], "fdb": min(fd_w), "se": se_fd,
            "fd0": fd_w[0], "fdmax": fd_w[-1]}


def edit_evidence(rows: dict[float, dict[str, Any]], ref_same: float, ref_diff: float) -> dict[str, Any]:
    """Distances and readings of the edits (``rows`` of :func:`score_edits`) against the real-digit yardsticks."""
    from ...answers import claim

    t0s = list(rows)
    own = [rows[f]["acc_same"] for f in t0s]
    new = [rows[f]["acc_new"] for f in t0s]
    rms_own = [rows[f]["rms_same"].mean().item() for f in t0s]
    n = len(rows[t0s[0]]["rms_same"])
    return {"claims": [claim("the distance to the original grows with t0", bool(np.all(np.diff(rms_own) > 0)),
                             ", ".join(f"{r:.2f}" for r in rms_own)),
                       claim("a small-t0 edit stays far closer than another real digit of the class",
                             rms_own[0] < 0.5 * ref_same, f"{rms_own[0]:.2f} vs {ref_same:.2f}"),
                       claim("the requested digit takes over only at the largest t0",
                             new[-1] >= 0.5 and max(new[:-1]) < 0.5, ", ".join(f"{a:.0%}" for a in new))],
            "f0": t0s[0], "r0": rms_own[0], "ref_same": ref_same, "f1": t0s[-1], "r1": rms_own[-1],
            "r1n": rows[t0s[-1]]["rms_new"].mean().item(), "ref_diff": ref_diff, "own_lo": min(own),
            "own_hi": max(own), "n": n, "se": max_binomial_se(n),  # the largest s.e. of a fraction of n
            "new_txt": ", ".join(f"{a:.0%} at t₀ = {f:g}" for f, a in zip(t0s, new))}


def ddim_evidence(rows: dict[str, dict[str, Any]], n: int, T: int) -> dict[str, Any]:
    """DDIM at each step count against ancestral sampling (``rows`` of :func:`score_sets`, n samples per set)."""
    from ...answers import claim

    anc, dd = rows["ancestral"], {k: r for k, r in rows.items() if k.startswith("DDIM")}
    few, many = min(dd, key=lambda k: dd[k]["nfe"]), max(dd, key=lambda k: dd[k]["nfe"])
    se2 = 2 * np.sqrt(2) * max(r["fd_ratio_se"] for r in rows.values())
    fd_dd = [r["fd_ratio"] for r in dd.values()]
    d_ref = "DDIM-50" if "DDIM-50" in dd else many  # DDIM-50 whenever T allows it
    acc_se = max_binomial_se(n)  # the largest s.e. of an accuracy over these samples
    anc_text = ("higher than every DDIM set by more than two standard errors" if anc["fd_ratio"] - max(fd_dd) > se2
                else "lower than every DDIM set by more than two standard errors" if min(fd_dd) - anc["fd_ratio"] > se2
                else "within two standard errors of the DDIM sets")
    return {"claims": [claim("DDIM with a fraction of the steps matches the class accuracy of ancestral sampling",
                             abs(dd[d_ref]["accuracy"] - anc["accuracy"]) <= 2 * acc_se,
                             f"{dd[d_ref]['accuracy']:.1%} vs {anc['accuracy']:.1%}")],
            "d_ref": d_ref, "few": few, "many": many, "acc_few": dd[few]["accuracy"], "acc_anc": anc["accuracy"],
            "T": T, "fd_lo": min(fd_dd), "fd_hi": max(fd_dd), "fd_anc": anc["fd_ratio"], "anc_text": anc_text,
            "dd_text": ("differences within two standard errors, so more steps do not measurably improve the FD"
                        if max(fd_dd) - min(fd_dd) < se2 else "differences beyond two standard errors")}


def forward_evidence(read: dict[int, float], ddpm: DDPM, n: int) -> dict[str, Any]:
    """What the judge reads of the noised digits (``read[k]``, n digits) and where noise outweighs the digit."""
    from ...answers import claim

    se = binomial_se(read[ddpm.T], n)
    return {"claims": [claim("the judge reads the clean digits", read[0] >= 0.9, f"{read[0]:.0%}"),
                       claim("at k = T the digits are lost to the judge (chance level)",
                             read[ddpm.T] <= 0.1 + 3 * max(se, 0.02), f"{read[ddpm.T]:.0%}")],
            "k_equal": int((ddpm.alphas_cumprod < 0.5).nonzero()[0]) + 1}  # the first k where noise outweighs it


VARIANT_ROWS = (("class accuracy, w = 2", "accuracy_w2", ".1%"), ("class accuracy, w = 0", "accuracy_w0", ".1%"),
                ("recognised, w = 0", "recognised", ".1%"), ("FD / floor, w = 0", "fd_ratio", ".2f"),
                ("rarest digit, unconditional", "class_min", ".1%"),
                ("commonest digit, unconditional", "class_max", ".1%"))


def variant_table() -> str:
    """The Markdown table of the two variants as a template of :func:`nbhelpers.answers.render`: each number
    cited from the run's metrics (``cosine/…``, ``ddpm_paper/…``), ± its standard error."""
    def cell(v: str, m: str, f: str) -> str:
        return f"{{{v}/{m}:{f}}} ± {{{v}/{m}_se:{f}}}"

    lines = ["| | `cosine` (seed 001) | `ddpm_paper` (seed 003) |", "|---|---|---|",
             "| schedule, T | cosine, {cosine/T} | linear, {ddpm_paper/T} |",
             "| training steps | {cosine/train_steps} | {ddpm_paper/train_steps} |",
             "| training seconds | {cosine/train_seconds:.0f} | {ddpm_paper/train_seconds:.0f} |"]
    lines += [f"| {name} | {cell('cosine', m, f)} | {cell('ddpm_paper', m, f)} |" for name, m, f in VARIANT_ROWS]
    return "\n".join(lines)


def variant_evidence(cosine: VariantScore, paper: VariantScore, train_steps: tuple[int, int]) -> dict[str, Any]:
    """Seed 003's model against the cosine one, metric by metric (``<metric>_cmp``: "higher than the cosine
    model's", … by :func:`verdict`), and the share of near-pure-noise steps of each schedule. ``train_steps``:
    the steps of the two trainings (this run's variant first)."""
    from ...answers import claim

    noise_share = {n: (DDPM.from_schedule(n, T).alphas_cumprod < 0.01).double().mean().item()
                   for n, T in (("linear", 1000), ("cosine", 200))}
    say = {"higher": "higher than the cosine model's", "lower": "lower than the cosine model's",
           "indistinguishable": "indistinguishable from the cosine model's"}
    words = {f"{m}_cmp": say[verdict(getattr(paper, m), getattr(paper, f"{m}_se"), getattr(cosine, m),
                                     getattr(cosine, f"{m}_se"))]
             for m in ("accuracy_w2", "accuracy_w0", "recognised", "fd_ratio", "class_min")}
    a, b = train_steps
    return {"claims": [claim("both variants are trained for the same number of steps", b == a, f"{a} and {b}"),
                       claim("both models draw the requested digit far more often than chance at w = 2",
                             min(cosine.accuracy_w2, paper.accuracy_w2) > 0.5,
                             f"{cosine.accuracy_w2:.1%} and {paper.accuracy_w2:.1%}"),
                       claim("the linear schedule spends more of its steps near pure noise",
                             noise_share["linear"] > noise_share["cosine"], f"{noise_share}")],
            "noise_lin": noise_share["linear"], "noise_cos": noise_share["cosine"], **words}
