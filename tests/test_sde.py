"""SDE objects: closed-form moments checked by Euler–Maruyama simulation and by their defining ODEs."""
import math

import pytest
import torch

from nbhelpers import distributions as D
from nbhelpers import sde as S
from nbhelpers import solvers as V
from tests.conftest import generator as gen

N = 20000


def test_brownian_drift_is_zero_and_variance_is_sigma2_t():
    bm = S.BrownianMotion(sigma=1.5)
    x = torch.randn(7, 2)
    assert torch.equal(bm.drift(x, torch.zeros(7)), torch.zeros(7, 2))  # the classic bug: drift returning noise
    sol = bm.simulate(torch.zeros(N, 1, dtype=torch.float64), 0.0, 2.0, 40, generator=gen(0))
    want = 1.5 ** 2 * 2.0
    assert float(bm.variance(2.0)) == pytest.approx(want)
    assert abs(float(sol.x.var()) - want) < 4 * want * math.sqrt(2 / N)
    assert abs(float(sol.x.mean())) < 4 * math.sqrt(want / N)


@pytest.mark.parametrize("theta, sigma", [(1.0, 0.8), (3.0, 2.0)])
def test_ou_em_matches_closed_form_mean_and_variance(theta, sigma):
    ou = S.OrnsteinUhlenbeck(theta, sigma)
    x0 = torch.linspace(-3, 3, N, dtype=torch.float64)[:, None]  # many starting points at once
    T, steps = 0.6, 300
    sol = ou.simulate(x0, 0.0, T, steps, generator=gen(1))
    resid = sol.x - ou.mean(x0, T)
    var = float(ou.variance(torch.tensor(T, dtype=torch.float64)))
    h = T / steps
    # EM's own bias: mean factor (1 − θh)^n vs e^{−θT}; variance relative O(θh)
    bias_mean = 3.0 * abs((1 - theta * h) ** steps - math.exp(-theta * T))
    assert abs(float(resid.mean())) < 4 * math.sqrt(var / N) + bias_mean
    assert abs(float(resid.var()) - var) < 4 * var * math.sqrt(2 / N) + theta * h * var


def test_ou_closed_forms_solve_their_moment_odes():
    ou = S.OrnsteinUhlenbeck(theta=2.0, sigma=1.2)
    t = torch.linspace(0.1, 2.0, 20, dtype=torch.float64, requires_grad=True)
    v = ou.variance(t)
    (dv,) = torch.autograd.grad(v.sum(), t)
    # dV/dt = −2θ V + σ², V(0) = 0
    torch.testing.assert_close(dv, -2 * 2.0 * v.detach() + 1.2 ** 2)
    assert float(ou.variance(torch.tensor(0.0))) == 0.0
    assert ou.stationary_variance == pytest.approx(1.2 ** 2 / 4.0)
    assert float(ou.variance(torch.tensor(50.0, dtype=torch.float64))) == pytest.approx(ou.stationary_variance)
    x0 = torch.tensor([[1.0], [-2.0]], dtype=torch.float64)
    torch.testing.assert_close(ou.mean(x0, torch.tensor([0.0, 1.0], dtype=torch.float64)),
                               torch.tensor([[1.0], [-2.0 * math.exp(-2.0)]], dtype=torch.float64))


def test_ou_is_langevin_for_its_stationary_law():
    ou = S.OrnsteinUhlenbeck(theta=1.7, sigma=0.9)
    p = D.Gaussian([0.0], math.sqrt(ou.stationary_variance), dtype=torch.float64)
    lang = S.Langevin(p.score, sigma=0.9)
    x = torch.linspace(-3, 3, 11, dtype=torch.float64)[:, None]
    t = torch.zeros(11, dtype=torch.float64)
    torch.testing.assert_close(lang.drift(x, t), ou.drift(x, t))
    torch.testing.assert_close(ou.stationary_score(x), p.score(x))


def test_langevin_samples_its_target():
    target = D.Gaussian([1.0], 0.5, dtype=torch.float64)
    lang = S.Langevin(target.score, sigma=1.0)
    sol = lang.simulate(torch.zeros(N, 1, dtype=torch.float64), 0.0, 6.0, 300, generator=gen(2))
    # stationary N(1, 0.25); EM bias in the variance ≈ θh/2 relative with θ = 2, h = 0.02
    assert abs(float(sol.x.mean()) - 1.0) < 4 * 0.5 / math.sqrt(N) + 1e-3
    assert abs(float(sol.x.var()) - 0.25) < 4 * 0.25 * math.sqrt(2 / N) + 0.25 * 0.03


@pytest.mark.parametrize("sigma", [0.0, 1.0])
def test_flow_score_sde_reaches_the_data(sigma):
    """With the exact marginal fields of a Gaussian path, dX = [u + σ²/2 s] dt + σ dW carries N(0, 1) to the data."""
    data = D.Gaussian([2.0], 0.5, dtype=torch.float64)
    sde = S.FlowScoreSDE(lambda x, t: data.marginal_velocity(x, t, "linear"),
                         lambda x, t: data.marginal_score(x, t, "linear"), sigma=sigma)
    n = 10000
    x0 = torch.randn(n, 1, dtype=torch.float64, generator=gen(3))
    sol = V.euler_maruyama(sde, x0, 0.0, 1.0, 200, generator=gen(4))
    assert abs(float(sol.x.mean()) - 2.0) < 4 * 0.5 / math.sqrt(n) + 0.01
    assert abs(float(sol.x.std()) - 0.5) < 4 * 0.5 / math.sqrt(2 * n) + 0.015
    x = torch.randn(5, 1, dtype=torch.float64)
    t = torch.full((5,), 0.3, dtype=torch.float64)
    want = data.marginal_velocity(x, t, "linear") + 0.5 * sigma ** 2 * data.marginal_score(x, t, "linear")
    torch.testing.assert_close(sde.drift(x, t), want)
    # a time-dependent σ(t)
    sde_t = S.FlowScoreSDE(sde.velocity_fn, sde.score_fn, sigma=lambda t: 1 - t)
    assert sde_t.diffusion(x, t).shape == (5, 1)


def test_vpsde_closed_forms():
    vp = S.VPSDE(0.1, 20.0)
    t = torch.linspace(0.0, 1.0, 101, dtype=torch.float64)
    # ∫β by the trapezoid rule on a fine grid
    tf = torch.linspace(0.0, 1.0, 100001, dtype=torch.float64)
    integ = torch.cumulative_trapezoid(vp.beta(tf), tf)
    integ = torch.cat([torch.zeros(1, dtype=torch.float64), integ])[::1000]
    torch.testing.assert_close(vp.marginal_mean_coef(t), torch.exp(-0.5 * integ), rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(vp.marginal_std(t) ** 2, 1 - torch.exp(-integ), rtol=1e-8, atol=1e-10)
    # variance preserving: c² + σ² = 1
    torch.testing.assert_close(vp.marginal_mean_coef(t) ** 2 + vp.marginal_std(t) ** 2, torch.ones_like(t))
    assert float(vp.marginal_mean_coef(1.0)) < 0.01


def test_vpsde_em_matches_marginal():
    vp = S.VPSDE(0.1, 20.0)
    x0 = torch.full((N, 1), 1.5, dtype=torch.float64)
    sol = vp.simulate(x0, 0.0, 0.5, 200, generator=gen(5))
    t = torch.tensor(0.5, dtype=torch.float64)
    c, s = float(vp.marginal_mean_coef(t)), float(vp.marginal_std(t))
    assert (sol.x.mean(0) - 1.5 * c).abs().max() < 4 * s / math.sqrt(N) + 0.01 * c
    assert (sol.x.std(0) - s).abs().max() < 4 * s / math.sqrt(2 * N) + 0.01 * s
    m = vp.marginal(x0, torch.full((N,), 0.5, dtype=torch.float64), generator=gen(6))
    torch.testing.assert_close(m.x, c * x0 + s * m.eps)
    assert m.t.shape == (N,)


def _gaussian_vp_score(vp, m, sd):
    def score(x, t):
        c = vp.marginal_mean_coef(t)[:, None]
        var = c ** 2 * sd ** 2 + vp.marginal_std(t)[:, None] ** 2
        return -(x - c * m) / var
    return score


def test_vpsde_reverse_sde_and_probability_flow_recover_data():
    vp = S.VPSDE(0.1, 20.0)
    m, sd = 1.0, 0.3
    score = _gaussian_vp_score(vp, m, sd)
    n = 10000
    x1 = vp.prior_sample((n, 1), generator=gen(7), dtype=torch.float64)
    sol = V.euler_maruyama(vp.reverse(score), x1, 1.0, 1e-3, 250, generator=gen(8))
    assert abs(float(sol.x.mean()) - m) < 4 * sd / math.sqrt(n) + 0.02
    assert abs(float(sol.x.std()) - sd) < 4 * sd / math.sqrt(2 * n) + 0.02
    ode = V.heun(vp.probability_flow(score), x1, 1.0, 1e-3, 100)
    assert abs(float(ode.x.mean()) - m) < 4 * sd / math.sqrt(n) + 0.02
    assert abs(float(ode.x.std()) - sd) < 4 * sd / math.sqrt(2 * n) + 0.02
    # the two drifts differ exactly by ½ g² s
    x = torch.randn(4, 1, dtype=torch.float64)
    t = torch.full((4,), 0.3, dtype=torch.float64)
    s = score(x, t)
    diff = vp.probability_flow_drift(x, t, s) - vp.reverse_drift(x, t, s)
    torch.testing.assert_close(diff, 0.5 * vp.beta(t)[:, None] * s)


def test_bad_inputs():
    for bad in (-1.0, float("nan"), "1", True):
        with pytest.raises(ValueError, match="sigma"):
            S.BrownianMotion(bad)
    with pytest.raises(ValueError, match="theta"):
        S.OrnsteinUhlenbeck(theta=0.0)
    with pytest.raises(ValueError, match="beta_min <= beta_max"):
        S.VPSDE(5.0, 1.0)
    with pytest.raises(ValueError, match="beta_min"):
        S.VPSDE(-0.1, 1.0)
    with pytest.raises(ValueError, match="score_fn"):
        S.Langevin(None)
    with pytest.raises(ValueError, match="velocity_fn"):
        S.FlowScoreSDE(1.0, lambda x, t: x)
