"""Toy distributions: exact log_prob/score, path marginals checked against autograd, quadrature and
the continuity equation, presets and validation."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from nbhelpers import distributions as D
from nbhelpers import schedules as S


def _gmm64():
    return D.GaussianMixture([0.2, 0.5, 0.3], [[-2.0, 0.0], [1.0, 1.5], [1.5, -1.5]], [0.5, 0.3, 0.8],
                             dtype=torch.float64)


def _scipy_logpdf(x, w, mus, vars_):
    dens = sum(wk * stats.multivariate_normal(mk, np.diag(vk)).pdf(x) for wk, mk, vk in zip(w, mus, vars_))
    return np.log(dens)


def test_log_prob_matches_scipy_and_diagonal_components():
    g = D.GaussianMixture([0.4, 0.6], [[0.0, 1.0], [2.0, -1.0]], [[0.5, 1.0], [0.3, 0.2]], dtype=torch.float64)
    x = torch.randn(20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = _scipy_logpdf(x.numpy(), [0.4, 0.6], [[0, 1], [2, -1]], [[0.25, 1.0], [0.09, 0.04]])
    np.testing.assert_allclose(g.log_prob(x).numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("dist", [_gmm64(), D.Gaussian([1.0, -1.0], [0.5, 2.0], dtype=torch.float64)], ids=repr)
def test_score_is_autograd_of_log_prob(dist):
    x = (3 * torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))).requires_grad_()
    (ref,) = torch.autograd.grad(dist.log_prob(x).sum(), x)
    torch.testing.assert_close(dist.score(x.detach()), ref)


def test_gaussian_log_prob_matches_torch():
    d = D.Gaussian([1.0, -1.0], [0.5, 2.0], dtype=torch.float64)
    x = torch.randn(7, 2, dtype=torch.float64)
    ref = torch.distributions.Normal(torch.tensor([1.0, -1.0], dtype=torch.float64),
                                     torch.tensor([0.5, 2.0], dtype=torch.float64)).log_prob(x).sum(1)
    torch.testing.assert_close(d.log_prob(x), ref)


def test_sampling_moments_and_labels():
    gmm = _gmm64()
    n = 40000
    x, labels = gmm.sample_with_labels(n, generator=torch.Generator().manual_seed(2))
    w = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    freq = torch.bincount(labels, minlength=3).double() / n
    assert (freq - w).abs().max() < 4 * math.sqrt(0.25 / n)
    mu = torch.tensor([[-2.0, 0.0], [1.0, 1.5], [1.5, -1.5]], dtype=torch.float64)
    s = torch.tensor([0.5, 0.3, 0.8], dtype=torch.float64)
    for k in range(3):
        xk = x[labels == k]
        assert (xk.mean(0) - mu[k]).abs().max() < 4 * s[k] / math.sqrt(len(xk))
        assert (xk.std(0) - s[k]).abs().max() < 4 * s[k] / math.sqrt(2 * len(xk))
    # the mixture's mean is Σ w μ
    torch.testing.assert_close(gmm.mean(), w @ mu)
    # reproducible with a generator
    torch.testing.assert_close(gmm.sample(5, torch.Generator().manual_seed(3)), gmm.sample(5, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("sched", ["linear", "cosine", S.PolynomialSchedule(2.0)], ids=str)
def test_marginal_log_prob_closed_form_and_ends(sched):
    gmm = _gmm64()
    g = torch.Generator().manual_seed(4)
    x = 2 * torch.randn(30, 2, dtype=torch.float64, generator=g)
    t = torch.rand(30, dtype=torch.float64, generator=g)
    v = S.get_schedule(sched)(t)
    mus = np.array([[-2.0, 0.0], [1.0, 1.5], [1.5, -1.5]])
    ref = []
    for i in range(30):
        a, b = float(v.alpha[i]), float(v.beta[i])
        var = [[a ** 2 * s ** 2 + b ** 2] * 2 for s in (0.5, 0.3, 0.8)]
        ref.append(_scipy_logpdf(x[i].numpy(), [0.2, 0.5, 0.3], a * mus, var))
    np.testing.assert_allclose(gmm.marginal_log_prob(x, t, sched).numpy(), np.array(ref), rtol=1e-9)
    # t = 1 is the data, t = 0 the standard normal
    torch.testing.assert_close(gmm.marginal_log_prob(x, 1.0, sched), gmm.log_prob(x))
    std_normal = torch.distributions.Normal(0.0, 1.0).log_prob(x).sum(1)
    torch.testing.assert_close(gmm.marginal_log_prob(x, 0.0, sched), std_normal)


@pytest.mark.parametrize("sched", ["linear", "cosine"])
def test_marginal_score_is_autograd_of_marginal_log_prob(sched):
    gmm = _gmm64()
    g = torch.Generator().manual_seed(5)
    x = (2 * torch.randn(40, 2, dtype=torch.float64, generator=g)).requires_grad_()
    t = torch.rand(40, dtype=torch.float64, generator=g)
    (ref,) = torch.autograd.grad(gmm.marginal_log_prob(x, t, sched).sum(), x)
    torch.testing.assert_close(gmm.marginal_score(x.detach(), t, sched), ref)


@pytest.mark.parametrize("stds", [[0.5, 0.3, 0.8], [[0.5, 1.0], [0.3, 0.2], [0.8, 0.4]]], ids=["isotropic", "diagonal"])
def test_noised_is_the_path_marginal_at_one_time(stds):
    """noised(α_t, β_t) is p_t of the Gaussian path (the existing formula), in law and moments."""
    gmm = D.GaussianMixture([0.2, 0.5, 0.3], [[-2.0, 0.0], [1.0, 1.5], [1.5, -1.5]], stds, dtype=torch.float64)
    x = 2 * torch.randn(30, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(6))
    for sched, t in (("cosine", 0.3), ("linear", 0.7), (S.VPMarginalSchedule(), 0.4)):
        v = S.get_schedule(sched)(torch.tensor(t, dtype=torch.float64))
        noisy = gmm.noised(v.alpha, v.beta)
        assert isinstance(noisy, D.GaussianMixture) and noisy.stds.shape == gmm.stds.shape
        torch.testing.assert_close(noisy.log_prob(x), gmm.marginal_log_prob(x, t, sched), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(noisy.score(x), gmm.marginal_score(x, t, sched), rtol=1e-12, atol=1e-12)
        # Cov[αX + βε] = α² Cov[X] + β² I and E = α E[X]
        a, b = float(v.alpha), float(v.beta)
        torch.testing.assert_close(noisy.mean(), a * gmm.mean())
        torch.testing.assert_close(noisy.covariance(), a ** 2 * gmm.covariance() + b ** 2 * torch.eye(2, dtype=torch.float64))
    # DDPM's q(x_k) for the two-pixel world, written out: Σ w_j N(√ᾱ μ_j, ᾱ s² + 1 − ᾱ)
    tp, ab = D.two_pixel().to(dtype=torch.float64), 0.37
    s = float(tp.stds[0])  # 0.1 as stored (float32)
    want = D.GaussianMixture(tp.weights, math.sqrt(ab) * tp.means, math.sqrt(ab * s ** 2 + 1 - ab), dtype=torch.float64)
    got = tp.noised(math.sqrt(ab), math.sqrt(1 - ab))
    torch.testing.assert_close(got.stds, want.stds, rtol=1e-14, atol=0)
    torch.testing.assert_close(got.means, want.means, rtol=1e-14, atol=0)
    # α = 1, β = 0 is the mixture itself
    same = gmm.noised(1.0, 0.0)
    assert torch.equal(same.means, gmm.means) and torch.equal(same.stds, gmm.stds)


def test_score_restricted_to_components():
    gmm = _gmm64()
    x = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(7))
    keep = torch.zeros(6, 3, dtype=torch.bool)
    keep[:3, 1] = True  # points 0–2: component 1 alone
    keep[3:] = True  # points 3–5: the whole mixture
    got = gmm.score(x, keep)
    torch.testing.assert_close(got[:3], -(x[:3] - gmm.means[1]) / 0.3 ** 2)
    torch.testing.assert_close(got[3:], gmm.score(x[3:]))
    # two of three components: the score of the renormalised two-component mixture
    pair = D.GaussianMixture(torch.tensor([0.2, 0.3]) / 0.5, gmm.means[[0, 2]], gmm.stds[[0, 2]], dtype=torch.float64)
    torch.testing.assert_close(gmm.score(x, torch.tensor([[True, False, True]] * 6)), pair.score(x))
    with pytest.raises(ValueError, match=r"keep must be a bool tensor of shape \(6, 3\)"):
        gmm.score(x, keep[:, :2])
    with pytest.raises(ValueError, match="at least one component"):
        gmm.score(x, torch.zeros(6, 3, dtype=torch.bool))


def test_noised_rejects_bad_coefficients():
    gmm = _gmm64()
    with pytest.raises(ValueError, match="beta must be a finite number >= 0"):
        gmm.noised(1.0, -0.1)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        gmm.noised(float("nan"), 0.5)
    with pytest.raises(ValueError, match="zero variance"):
        D.GaussianMixture([1.0], [[0.0, 0.0]], 0.5).noised(0.0, 0.0)


@pytest.mark.parametrize("sched", ["linear", "cosine", S.PolynomialSchedule(2.0)], ids=str)
def test_marginal_velocity_satisfies_continuity_equation(sched):
    """∂_t log p_t + ∇·u_t + u_t·∇log p_t = 0, every term by autograd of the closed forms."""
    gmm = _gmm64()
    g = torch.Generator().manual_seed(6)
    x = (1.5 * torch.randn(25, 2, dtype=torch.float64, generator=g)).requires_grad_()
    t = (0.05 + 0.9 * torch.rand(25, dtype=torch.float64, generator=g)).requires_grad_()
    logp = gmm.marginal_log_prob(x, t, sched)
    dlogp_dt, score = torch.autograd.grad(logp.sum(), (t, x))
    u = gmm.marginal_velocity(x, t, sched)
    div = sum(torch.autograd.grad(u[:, i].sum(), x, retain_graph=True)[0][:, i] for i in range(2))
    residual = dlogp_dt + div + (u * score).sum(1)
    assert residual.abs().max() < 1e-8


def test_marginal_velocity_is_posterior_weighted_conditional_velocity():
    """u_t(x) = ∫ u_t(x|z) p(z|x_t = x) dz, computed by quadrature on a fine grid of z."""
    gmm = D.toy_gmm().to(dtype=torch.float64)
    sched = S.get_schedule("linear")
    grid = torch.linspace(-3.6, 3.6, 721, dtype=torch.float64)
    zz = torch.cartesian_prod(grid, grid)  # (M, 2)
    log_pz = gmm.log_prob(zz)
    x = torch.tensor([[0.3, 0.8], [-1.0, -0.5], [1.5, 0.2]], dtype=torch.float64)
    for t in (0.2, 0.5, 0.8):
        v = sched(torch.tensor(t, dtype=torch.float64))
        a, b, da, db = v.alpha, v.beta, v.d_alpha, v.d_beta
        for xi in x:
            logw = log_pz - ((xi - a * zz) ** 2).sum(1) / (2 * b ** 2)
            w = torch.softmax(logw, 0)
            u_cond = (da - db * a / b) * zz + (db / b) * xi
            ref = (w[:, None] * u_cond).sum(0)
            got = gmm.marginal_velocity(xi[None], torch.tensor([t], dtype=torch.float64), sched)[0]
            torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_marginal_velocity_finite_at_both_ends():
    gmm = _gmm64()
    x = torch.randn(10, 2, dtype=torch.float64)
    u0 = gmm.marginal_velocity(x, 0.0, "linear")
    torch.testing.assert_close(u0, gmm.mean()[None] - x)  # α̇ E[z] + β̇ x with α̇ = 1, β̇ = −1
    u1 = gmm.marginal_velocity(x, 1.0, "linear")
    assert torch.isfinite(u1).all()
    torch.testing.assert_close(gmm.posterior_mean(x, 0.0, "linear"), gmm.mean().expand(10, 2))


def test_two_pixel_preset():
    tp = D.two_pixel()
    torch.testing.assert_close(tp.weights, torch.tensor([0.35, 0.65]))
    torch.testing.assert_close(tp.means, torch.tensor([[-0.35, 0.65], [0.75, -0.45]]))
    x, y = tp.sample_with_labels(5000, generator=torch.Generator().manual_seed(7))
    assert ((x[:, 0] < x[:, 1]) == (y == 0)).all()  # class 0: left pixel darker
    assert abs(float((y == 1).double().mean()) - 0.65) < 4 * math.sqrt(0.35 * 0.65 / 5000)


def test_toy_gmm_preset():
    g = D.toy_gmm()
    assert g.n_components >= 4 and g.dim == 2
    assert len(set(g.weights.tolist())) > 1
    x = g.sample(5000, torch.Generator().manual_seed(8))
    assert x.abs().max() < 3.5
    dist = torch.cdist(g.means, g.means) + 1e6 * torch.eye(g.n_components)
    assert float(dist.min()) > 6 * float(g.stds.max())


def test_moons_and_checkerboard():
    m = D.Moons(noise=0.0)
    x, y = m.sample_with_labels(2000, generator=torch.Generator().manual_seed(9))
    assert x.shape == (2000, 2) and set(y.tolist()) == {0, 1}
    # noise-free: upper moon is the unit circle (scaled ×2 about (0.5, 0.25))
    up = x[y == 0] / 2 + torch.tensor([0.5, 0.25])
    torch.testing.assert_close(up.norm(dim=1), torch.ones(len(up)), rtol=1e-5, atol=1e-5)
    c = D.Checkerboard(n_cells=4, half_width=2.0)
    x = c.sample(3000, generator=torch.Generator().manual_seed(10))
    cell = torch.floor((x + 2.0) / 1.0).long()
    assert (x.abs() <= 2.0).all() and ((cell.sum(1) % 2) == 0).all()
    torch.testing.assert_close(c.sample(4, torch.Generator().manual_seed(1)), c.sample(4, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("args, message", [
    (([0.5, 0.6], [[0.0, 0.0], [1.0, 1.0]], 1.0), "sum to 1"),
    (([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], 1.0), "weights must have shape"),
    (([0.5, 0.5], [0.0, 1.0], 1.0), r"means must have shape \(K, d\)"),
    (([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [1.0, -1.0]), "positive"),
    (([0.5, 0.5], [[0.0, 0.0], [1.0, 1.0]], [1.0, 1.0, 1.0]), "stds must be"),
    (([1.5, -0.5], [[0.0, 0.0], [1.0, 1.0]], 1.0), "non-negative"),
])
def test_gmm_validation(args, message):
    with pytest.raises(ValueError, match=message):
        D.GaussianMixture(*args)


def test_other_bad_inputs():
    g = D.toy_gmm()
    for n in (-1, 2.5, True):
        with pytest.raises(ValueError, match="non-negative integer"):
            g.sample(n)
    with pytest.raises(ValueError, match=r"shape \(B, 2\)"):
        g.log_prob(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"\(3,\)"):
        g.marginal_score(torch.zeros(3, 2), torch.zeros(4), "linear")
    with pytest.raises(ValueError, match="std"):
        D.Gaussian([0.0, 0.0], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"noise >= 0.*got noise=-1"):
        D.Moons(noise=-1)
    with pytest.raises(ValueError, match="n_cells"):
        D.Checkerboard(n_cells=1)
