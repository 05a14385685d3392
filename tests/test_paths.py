"""Gaussian conditional path: moments, velocity vs finite difference, score vs autograd, conversions."""
import itertools
import math

import pytest
import torch

from nbhelpers import paths as P
from nbhelpers import schedules as S

SCHEDS = ["linear", "cosine", S.PolynomialSchedule(2.0)]


@pytest.mark.parametrize("sched", SCHEDS, ids=str)
def test_sample_is_alpha_z_plus_beta_eps_with_right_moments(sched):
    path = P.GaussianPath(sched)
    g = torch.Generator().manual_seed(0)
    n, t0 = 20000, 0.4
    z = torch.tensor([[1.5, -2.0]], dtype=torch.float64).expand(n, 2)
    s = path.sample(z, torch.full((n,), t0, dtype=torch.float64), generator=g)
    v = path.schedule(torch.tensor(t0, dtype=torch.float64))
    torch.testing.assert_close(s.x, v.alpha * z + v.beta * s.eps)
    # mean α z and std β within Monte-Carlo error (4 standard errors)
    se_mean = float(v.beta) / math.sqrt(n)
    assert (s.x.mean(0) - v.alpha * z[0]).abs().max() < 4 * se_mean
    se_std = float(v.beta) / math.sqrt(2 * n)
    assert (s.x.std(0) - v.beta).abs().max() < 4 * se_std
    assert s.t.shape == (n,)


def test_sample_reproducible_and_scalar_time_and_images():
    path = P.GaussianPath("linear")
    z = torch.randn(4, 3, 8, 8)
    a = path.sample(z, torch.rand(4), generator=torch.Generator().manual_seed(1))
    b = path.sample(z, a.t, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.x, b.x)
    # per-sample t broadcasts over (C, H, W): sample i uses its own t_i
    t = torch.tensor([0.0, 0.25, 0.5, 1.0])
    s = path.sample(z, t, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(s.x[0], s.eps[0])
    torch.testing.assert_close(s.x[3], z[3])
    torch.testing.assert_close(s.x[1], 0.25 * z[1] + 0.75 * s.eps[1])
    s = path.sample(z, 0.5)
    assert s.t.shape == (4,)


def test_sample_with_given_eps_draws_nothing_and_reuses_it():
    path = P.GaussianPath("cosine")
    g = torch.Generator().manual_seed(3)
    z = torch.randn(5, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(5, 2, generator=g, dtype=torch.float64)
    t = torch.linspace(0.1, 0.9, 5, dtype=torch.float64)
    state = g.get_state()
    s = path.sample(z, t, generator=g, eps=eps)
    assert torch.equal(g.get_state(), state)  # no draw
    assert s.eps is eps
    v = path.schedule(t)
    torch.testing.assert_close(s.x, v.alpha[:, None] * z + v.beta[:, None] * eps, rtol=0, atol=0)
    # the draw it replaces: the same ε as a fresh sample from the same generator state
    fresh = path.sample(z, t, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(path.sample(z, t, eps=fresh.eps).x, fresh.x, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"eps must be a tensor shaped like z \(5, 2\)"):
        path.sample(z, t, eps=eps[:3])


@pytest.mark.parametrize("sched", SCHEDS, ids=str)
def test_velocity_is_time_derivative_of_path(sched):
    path = P.GaussianPath(sched)
    g = torch.Generator().manual_seed(3)
    z = torch.randn(16, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(16, 2, generator=g, dtype=torch.float64)
    t = torch.linspace(0.1, 0.9, 16, dtype=torch.float64)
    h = 1e-6

    def x_at(tt):
        return path.sample(z, tt, eps=eps).x

    fd = (x_at(t + h) - x_at(t - h)) / (2 * h)
    u = path.velocity_from_noise(z, eps, t)
    torch.testing.assert_close(u, fd, rtol=1e-6, atol=1e-7)
    # the general formula agrees on the path
    torch.testing.assert_close(path.conditional_velocity(x_at(t), z, t), u, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("sched", SCHEDS, ids=str)
def test_conditional_score_is_autograd_of_log_density(sched):
    path = P.GaussianPath(sched)
    g = torch.Generator().manual_seed(4)
    z = torch.randn(8, 3, generator=g, dtype=torch.float64)
    x = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.linspace(0.1, 0.9, 8, dtype=torch.float64)
    mean, std = path.mean_std(z, t)
    logp = torch.distributions.Normal(mean, std.expand_as(mean)).log_prob(x).sum()
    (ref,) = torch.autograd.grad(logp, x)
    torch.testing.assert_close(path.conditional_score(x.detach(), z, t), ref)


@pytest.mark.parametrize("sched", SCHEDS, ids=str)
def test_all_conversions_are_consistent(sched):
    path = P.GaussianPath(sched)
    g = torch.Generator().manual_seed(5)
    z = torch.randn(10, 2, generator=g, dtype=torch.float64)
    eps = torch.randn(10, 2, generator=g, dtype=torch.float64)
    t = torch.linspace(0.05, 0.95, 10, dtype=torch.float64)
    x = path.sample(z, t, eps=eps).x
    truth = {"eps": eps, "data": z, "score": path.conditional_score(x, z, t),
             "velocity": path.velocity_from_noise(z, eps, t)}
    for src, tgt in itertools.product(P.PREDICTION_KINDS, repeat=2):
        got = path.convert(truth[src], x, t, src, tgt)
        torch.testing.assert_close(got, truth[tgt], rtol=1e-9, atol=1e-9, msg=f"{src} -> {tgt}")
    torch.testing.assert_close(path.score_to_velocity(truth["score"], x, t), truth["velocity"])
    torch.testing.assert_close(path.velocity_to_score(truth["velocity"], x, t), truth["score"])
    torch.testing.assert_close(path.eps_to_data(eps, x, t), z)


def test_velocity_conversion_is_finite_at_the_ends():
    path = P.GaussianPath("linear")
    z, eps = torch.randn(2, 2), torch.randn(2, 2)
    t = torch.tensor([0.0, 1.0])
    x = path.sample(z, t, eps=eps).x
    u = path.velocity_from_noise(z, eps, t)
    torch.testing.assert_close(path.convert(u, x, t, "velocity", "data"), z)
    torch.testing.assert_close(path.convert(u, x, t, "velocity", "eps"), eps)


def test_bad_inputs():
    path = P.GaussianPath("linear")
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="eps, score, velocity, data"):
        path.convert(x, x, 0.5, "noise", "score")
    with pytest.raises(ValueError, match="match x"):
        path.convert(torch.zeros(3, 3), x, 0.5, "eps", "score")
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        path.sample(x, torch.rand(4))
    with pytest.raises(ValueError, match="linear, cosine"):
        P.GaussianPath("sigmoid")
