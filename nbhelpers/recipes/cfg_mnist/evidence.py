"""The numbers behind notebook 07's written answers.

Each ``*_evidence`` function returns the values a written answer cites and the numbers its claims compare (the
standard errors they compare with included), for ``run.answer(template, claims=[...], **evidence)``; the claims
themselves — what is asserted and where the line is drawn — are made in the notebook's answer cells, beside
their prose. :func:`variant_table` is the two variants' table as a template of :func:`nbhelpers.answers.render`,
each number ± its standard error.
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
    """Diversity at w = 0 against real digits (± s.e. over the classes) and against w = 2, class by class:
    ``n_less`` of the ``n_classes`` classes are less varied at w = 2."""
    d0, d2 = rows[0.0]["diversity_per_class"], rows[2.0]["diversity_per_class"]
    se = float(np.nanstd(d0, ddof=1) / np.sqrt(np.isfinite(d0).sum()))  # s.e. of the mean over the ten classes
    digits = np.argsort(real_diversity)
    gap = rows[0.0]["diversity"] - 1
    vs_real = ("more varied than real handwriting: the malformed samples lie far from every real style" if gap > 2 * se
               else "as varied as real handwriting, within 2 s.e." if abs(gap) <= 2 * se
               else "less varied than real handwriting")
    return {"se": se, "n_classes": len(d0), "n_less": int(np.sum(d2 < d0)), "top": f"{digits[-1]} and {digits[-2]}",
            "bottom": f"{digits[0]} and {digits[1]}", "vs_real": vs_real}


def settle_evidence(summary: SettleSummary) -> dict[str, Any]:
    """The quadrants' spread against the spread of single ink pixels (``ink``: the 10–90 % range of their settle
    steps over T; ``frac``: the quadrants' spread over it)."""
    ink = summary.ink_q90 - summary.ink_q10
    return {"frac": summary.quadrant_spread / ink, "ink": ink}


def guidance_evidence(rows: dict[float, dict[str, Any]], n: int) -> dict[str, Any]:
    """Accuracy, diversity (``div_w``, one per w) and FD/floor along the sweep (``rows`` of :func:`score_samples`,
    n samples per w), with the binomial s.e. of the first accuracy (``a0_se``) and the largest FD s.e. (``se``)."""
    W = list(rows)
    acc_w, div_w, fd_w = ([rows[w][k] for w in W] for k in ("accuracy", "diversity", "fd_ratio"))
    se_fd = max(rows[w]["fd_ratio_se"] for w in W)
    acc_se = binomial_se(acc_w[0], n)  # at the first w
    return {"a0": acc_w[0], "a0_se": acc_se, "a2": rows[2.0]["accuracy"], "amax": acc_w[-1], "wmax": W[-1],
            "d0": div_w[0], "dmax": div_w[-1], "wb": W[int(np.argmin(fd_w))], "fdb": min(fd_w), "se": se_fd,
            "fd0": fd_w[0], "fdmax": fd_w[-1], "div_w": div_w}


def edit_evidence(rows: dict[float, dict[str, Any]], ref_same: float, ref_diff: float) -> dict[str, Any]:
    """Distances and readings of the edits (``rows`` of :func:`score_edits`) against the real-digit yardsticks:
    per t₀ the mean distance to the original (``rms_own``) and the share read as the requested digit (``acc_new``)."""
    t0s = list(rows)
    own = [rows[f]["acc_same"] for f in t0s]
    new = [rows[f]["acc_new"] for f in t0s]
    rms_own = [rows[f]["rms_same"].mean().item() for f in t0s]
    n = len(rows[t0s[0]]["rms_same"])
    return {"rms_own": rms_own, "acc_new": new, "f0": t0s[0], "r0": rms_own[0], "ref_same": ref_same, "f1": t0s[-1], "r1": rms_own[-1],
            "r1n": rows[t0s[-1]]["rms_new"].mean().item(), "ref_diff": ref_diff, "own_lo": min(own),
            "own_hi": max(own), "n": n, "se": max_binomial_se(n),  # the largest s.e. of a fraction of n
            "new_txt": ", ".join(f"{a:.0%} at t₀ = {f:g}" for f, a in zip(t0s, new))}


def ddim_evidence(rows: dict[str, dict[str, Any]], n: int, T: int) -> dict[str, Any]:
    """DDIM at each step count against ancestral sampling (``rows`` of :func:`score_sets`, n samples per set):
    the accuracy of the DDIM set ``d_ref`` (``acc_ref``) against the ancestral one's (``acc_anc``), and the largest
    s.e. of an accuracy over n samples (``acc_se``)."""
    anc, dd = rows["ancestral"], {k: r for k, r in rows.items() if k.startswith("DDIM")}
    few, many = min(dd, key=lambda k: dd[k]["nfe"]), max(dd, key=lambda k: dd[k]["nfe"])
    se2 = 2 * np.sqrt(2) * max(r["fd_ratio_se"] for r in rows.values())
    fd_dd = [r["fd_ratio"] for r in dd.values()]
    d_ref = "DDIM-50" if "DDIM-50" in dd else many  # DDIM-50 whenever T allows it
    acc_se = max_binomial_se(n)  # the largest s.e. of an accuracy over these samples
    anc_text = ("higher than every DDIM set by more than two standard errors" if anc["fd_ratio"] - max(fd_dd) > se2
                else "lower than every DDIM set by more than two standard errors" if min(fd_dd) - anc["fd_ratio"] > se2
                else "within two standard errors of the DDIM sets")
    return {"d_ref": d_ref, "acc_ref": dd[d_ref]["accuracy"], "acc_se": acc_se, "few": few, "many": many, "acc_few": dd[few]["accuracy"], "acc_anc": anc["accuracy"],
            "T": T, "fd_lo": min(fd_dd), "fd_hi": max(fd_dd), "fd_anc": anc["fd_ratio"], "anc_text": anc_text,
            "dd_text": ("differences within two standard errors, so more steps do not measurably improve the FD"
                        if max(fd_dd) - min(fd_dd) < se2 else "differences beyond two standard errors")}


def forward_evidence(read: dict[int, float], ddpm: DDPM, n: int) -> dict[str, Any]:
    """What the judge reads of the clean and the fully noised digits (``read[k]``, n digits; ``read_se``: the
    binomial s.e. at k = T) and where noise outweighs the digit (``k_equal``)."""
    return {"read_clean": read[0], "read_noise": read[ddpm.T], "read_se": binomial_se(read[ddpm.T], n),
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


def variant_evidence(cosine: VariantScore, paper: VariantScore) -> dict[str, Any]:
    """Seed 003's model against the cosine one, metric by metric (``<metric>_cmp``: "higher than the cosine
    model's", … by :func:`verdict`), and the share of near-pure-noise steps of each schedule (ᾱ < 0.01)."""
    noise_share = {n: (DDPM.from_schedule(n, T).alphas_cumprod < 0.01).double().mean().item()
                   for n, T in (("linear", 1000), ("cosine", 200))}
    say = {"higher": "higher than the cosine model's", "lower": "lower than the cosine model's",
           "indistinguishable": "indistinguishable from the cosine model's"}
    words = {f"{m}_cmp": say[verdict(getattr(paper, m), getattr(paper, f"{m}_se"), getattr(cosine, m),
                                     getattr(cosine, f"{m}_se"))]
             for m in ("accuracy_w2", "accuracy_w0", "recognised", "fd_ratio", "class_min")}
    return {"noise_lin": noise_share["linear"], "noise_cos": noise_share["cosine"], **words}
