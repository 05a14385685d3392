"""The exact ε-predictor of Gaussian-mixture data under the discrete DDPM: a reference model for its samplers.

Direction as in :mod:`nbhelpers.ddpm` (k = 0 data, k = T noise; the network's t = k / T). It reads only a
:class:`nbhelpers.ddpm.DDPM`'s ``T`` and ``alphas_cumprod``, so it sits below ``ddpm``, which re-exports it.
"""
from __future__ import annotations

import torch
from torch import nn

from ._checks import batch_time, check_labels
from .devices import exact, from_exact, to_exact

__all__ = ["GMMEpsOracle"]


class GMMEpsOracle(nn.Module):
    """The exact ε-predictor E[ε | x_k] (and E[ε | x_k, y]) for Gaussian-mixture data.

    Under q(x_k | x_0) a mixture stays a mixture, p_k = ``gmm.noised(√ᾱ_k, √(1 − ᾱ_k))`` =
    Σ_j w_j N(√ᾱ_k μ_j, ᾱ_k s_j² + 1 − ᾱ_k), and E[ε | x_k] = −√(1 − ᾱ_k) ∇log p_k(x_k).
    With a label y the mixture is restricted to component y (the null label ``num_classes`` =
    K keeps all components), so it also serves as an exact conditional model for guidance.
    Called like a network: ``oracle(x, t, y=None)`` with t = k / T; k = 0 is the clean data
    (ᾱ_0 = 1, ε = 0). ``gmm``: a :class:`~nbhelpers.distributions.GaussianMixture`, evaluated in float64 on
    :func:`nbhelpers.runtime.exact_device` of the input's device (the CPU for MPS); the result comes back in the
    input's dtype on its device.
    """

    def __init__(self, ddpm: "DDPM", gmm) -> None:
        super().__init__()
        self.ddpm = ddpm
        with exact():
            self.gmm = to_exact(gmm)
        self.num_classes = self.gmm.n_components

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        B = x.shape[0]
        with exact():
            xd = to_exact(x)
            t = batch_time(to_exact(t) if isinstance(t, torch.Tensor) else t, xd, dtype=torch.float64)
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"t must be a finite scalar or a ({B},) tensor of k / T, got shape {tuple(t.shape)}")
            k = torch.round(t * self.ddpm.T).long()
            if int(k.min()) < 0 or int(k.max()) > self.ddpm.T:
                raise ValueError(f"t = k / T must lie in [0, 1] (k in 0..{self.ddpm.T}), got k in "
                                 f"{int(k.min())}..{int(k.max())}")
            keep = None
            if y is not None:
                y = to_exact(check_labels("labels y", y, self.num_classes, B))
                classes = torch.arange(self.num_classes, device=xd.device)
                keep = (y[:, None] == classes[None]) | (y[:, None] == self.num_classes)
            # ᾱ_0 = 1 in front, so that k = 0 (clean data) reads ᾱ_0 and not ᾱ_T; there ε = 0 · score = 0.
            abar = torch.cat([self.ddpm.alphas_cumprod.new_ones(1), self.ddpm.alphas_cumprod]).tolist()
            if self.gmm.device != xd.device:
                self.gmm = self.gmm.to(xd.device)  # once: the sampler keeps x on one device
            gmm = self.gmm
            eps = torch.empty_like(xd)
            for kk in torch.unique(k).tolist():  # one pass in a sampling loop, where every point shares k
                sel = k == kk
                ab = abar[kk]
                score = gmm.noised(ab ** 0.5, (1.0 - ab) ** 0.5).score(xd[sel], None if keep is None else keep[sel])
                eps[sel] = -((1.0 - ab) ** 0.5) * score
            return from_exact(eps, x)
