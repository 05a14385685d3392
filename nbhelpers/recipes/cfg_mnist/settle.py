"""Part by part or all at once (seed 001 Q5)? When each pixel of a generated digit settles on its final value.

From the predictions x̂₀ recorded along one generation (``SampleResult.x0_preds``), :func:`settle_steps` finds
per pixel the step from which x̂₀ stays within a tolerance of the final digit; :func:`settle_summary` compares
single ink pixels, coarse 4×4 blocks and the digit's four quadrants over a batch (:class:`SettleSummary`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["settle_steps", "SettleSummary", "settle_summary"]


def settle_steps(x0_preds: dict[int, torch.Tensor], final: torch.Tensor, tol: float = 0.25) -> torch.Tensor:
    """Per pixel, the step from which the prediction x̂₀ stays on its final value:

        s(p) = max{k : |x̂₀^{(k')}(p) − x₀(p)| ≤ tol for every recorded k' ≤ k}   (0 if off at the last step)

    Generation runs k = T → 0, so when it reaches step s(p) pixel p is settled for good: s(p) = T
    means "right from the start", small s(p) means "only at the very end". ``x0_preds`` maps
    steps k to the x̂₀ predicted at k (``SampleResult.x0_preds``); ``final`` is the sample x₀.
    Shapes: each ``(B, C, H, W)`` like ``final`` → int64 ``(B, C, H, W)``.
    """
    if not x0_preds:
        raise ValueError("x0_preds is empty; sample with return_steps to record x̂0")
    final = final.float().cpu()
    out = torch.zeros(final.shape, dtype=torch.long)
    alive = torch.ones(final.shape, dtype=torch.bool)
    for k in sorted(x0_preds):  # from the end of generation backwards
        alive &= (x0_preds[k].float().cpu() - final).abs() <= tol
        out = torch.where(alive, torch.full_like(out, k), out)
    return out


@dataclass
class SettleSummary:
    """When do the parts of a digit settle (:func:`settle_steps`)? Steps are fractions of T
    (1 = settled from the start of generation, 0 = only at its end).

    ``ink_q10/median/q90``: quantiles of the settle step over ink pixels (final value > 0), averaged
    over samples; ``coarse_median``: the same for the 7×7 block means (4×4 average pooling) of the
    ink region; ``quadrant_spread``: per sample, the largest difference between the median settle
    steps of the digit's four quadrants (around its ink centroid), averaged; ``fraction_settled``:
    fraction of ink pixels (and of coarse ink blocks) already settled when generation reaches each
    recorded step ``steps`` (ascending; 1 at k = 0).
    """

    T: int
    n: int
    ink_q10: float
    ink_median: float
    ink_q90: float
    coarse_median: float
    quadrant_spread: float
    steps: np.ndarray = field(repr=False)
    fraction_settled: np.ndarray = field(repr=False)
    fraction_settled_coarse: np.ndarray = field(repr=False)

    def as_dict(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if not isinstance(v, np.ndarray)}


def settle_summary(x0_preds: dict[int, torch.Tensor], final: torch.Tensor, T: int, tol: float = 0.25) -> SettleSummary:
    """Summarise :func:`settle_steps` over a batch of single-channel digits (see :class:`SettleSummary`)."""
    final = final.float().cpu()
    s = settle_steps(x0_preds, final, tol).float() / T
    pooled = {k: F.avg_pool2d(v.float().cpu(), 4, ceil_mode=True) for k, v in x0_preds.items()}
    final_c = F.avg_pool2d(final, 4, ceil_mode=True)
    s_c = settle_steps(pooled, final_c, tol).float() / T
    ink = final[:, 0] > 0
    ink_c = final_c[:, 0] > -0.5  # blocks holding a fair share of ink
    q10, med, q90, cmed, spread = [], [], [], [], []
    H, W = final.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    for i in range(final.shape[0]):
        v = s[i, 0][ink[i]]
        if v.numel() < 4:
            continue
        q = torch.quantile(v, torch.tensor([0.1, 0.5, 0.9]))
        q10.append(q[0].item()), med.append(q[1].item()), q90.append(q[2].item())
        if ink_c[i].any():
            cmed.append(s_c[i, 0][ink_c[i]].median().item())
        cy, cx = yy[ink[i]].float().mean(), xx[ink[i]].float().mean()
        meds = []
        for up in (True, False):
            for left in (True, False):
                m = ink[i] & ((yy < cy) if up else (yy >= cy)) & ((xx < cx) if left else (xx >= cx))
                if m.sum() >= 3:
                    meds.append(s[i, 0][m].median().item())
        if len(meds) >= 2:
            spread.append(max(meds) - min(meds))
    steps = np.array(sorted(x0_preds) + ([0] if 0 not in x0_preds else []))
    steps.sort()
    s_ink = s[:, 0][ink] * T
    s_cink = s_c[:, 0][ink_c] * T
    frac = np.array([(s_ink >= k).float().mean().item() for k in steps])
    frac_c = np.array([(s_cink >= k).float().mean().item() for k in steps])
    mean = lambda a: float(np.mean(a)) if a else float("nan")  # noqa: E731
    return SettleSummary(T=T, n=len(med), ink_q10=mean(q10), ink_median=mean(med), ink_q90=mean(q90),
                         coarse_median=mean(cmed), quadrant_spread=mean(spread), steps=steps,
                         fraction_settled=frac, fraction_settled_coarse=frac_c)
