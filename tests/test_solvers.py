"""Solvers: Euler first order, Heun second order, Euler–Maruyama moments (Brownian, OU, time-dependent g)."""
import math

import pytest
import torch

from nbhelpers import solvers as V

LAM = -1.3


def linear_field(x, t):
    return LAM * x


def _error(method, n):
    x0 = torch.tensor([[1.0], [2.0]], dtype=torch.float64)
    sol = method(linear_field, x0, 0.0, 1.0, n)
    return float((sol.x - x0 * math.exp(LAM)).abs().max())


@pytest.mark.parametrize("method, order", [(V.euler, 1), (V.heun, 2)])
def test_convergence_order_on_linear_ode(method, order):
    errs = [_error(method, n) for n in (20, 40, 80, 160)]
    ratios = [a / b for a, b in zip(errs, errs[1:])]
    for r in ratios:
        assert 2 ** order * 0.9 < r < 2 ** order * 1.1, (errs, ratios)


def test_time_dependent_field_and_backwards_integration():
    # dx/dt = cos(t) → x(1) = x(0) + sin(1); integrating 1 → 0 undoes it
    f = lambda x, t: torch.cos(t)[:, None].expand_as(x)  # noqa: E731
    x0 = torch.zeros(3, 2, dtype=torch.float64)
    fwd = V.heun(f, x0, 0.0, 1.0, 200)
    torch.testing.assert_close(fwd.x, x0 + math.sin(1.0), rtol=1e-5, atol=1e-5)
    back = V.heun(f, fwd.x, 1.0, 0.0, 200)
    torch.testing.assert_close(back.x, x0, rtol=1e-5, atol=1e-5)
    assert back.ts[0] == 1.0 and back.ts[-1] == 0.0


def test_solution_fields():
    x0 = torch.randn(5, 3, 4, 4)
    sol = V.euler(lambda x, t: -x, x0, 0.0, 1.0, 10, return_trajectory=True)
    assert sol.trajectory.shape == (11, 5, 3, 4, 4) and sol.ts.shape == (11,) and sol.nfe == 10
    torch.testing.assert_close(sol.trajectory[0], x0)
    torch.testing.assert_close(sol.trajectory[-1], sol.x)
    assert V.heun(lambda x, t: -x, x0, 0.0, 1.0, 10).nfe == 20
    assert V.euler(lambda x, t: -x, x0, 0.0, 1.0, 10).trajectory is None
    # the field receives t of shape (B,)
    seen = []
    V.euler(lambda x, t: seen.append(t.shape) or torch.zeros_like(x), x0, 0.0, 1.0, 2)
    assert seen == [(5,), (5,)]


def test_em_with_zero_diffusion_is_euler():
    x0 = torch.randn(100, 2)
    drift = lambda x, t: -x * t[:, None]  # noqa: E731
    em = V.euler_maruyama(drift, 0.0, x0, 0.0, 1.0, 50, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(em.x, V.euler(drift, x0, 0.0, 1.0, 50).x)


@pytest.mark.parametrize("sigma", [0.5, 2.0])
def test_brownian_variance(sigma):
    n = 20000
    sol = V.euler_maruyama(lambda x, t: torch.zeros_like(x), lambda x, t: sigma, torch.zeros(n, 1, dtype=torch.float64),
                           0.0, 1.0, 50, generator=torch.Generator().manual_seed(1), return_trajectory=True)
    for idx in (25, 50):
        t = float(sol.ts[idx])
        var = float(sol.trajectory[idx].var())
        se = sigma ** 2 * t * math.sqrt(2 / n)
        assert abs(var - sigma ** 2 * t) < 4 * se
        assert abs(float(sol.trajectory[idx].mean())) < 4 * sigma * math.sqrt(t / n)


def test_em_ou_mean_and_variance():
    theta, sigma, x0v, T, n, steps = 1.0, 0.8, 1.5, 1.0, 20000, 200
    sol = V.euler_maruyama(lambda x, t: -theta * x, sigma, torch.full((n, 1), x0v, dtype=torch.float64),
                           0.0, T, steps, generator=torch.Generator().manual_seed(2))
    mean = x0v * math.exp(-theta * T)
    var = sigma ** 2 / (2 * theta) * (1 - math.exp(-2 * theta * T))
    h = T / steps
    bias_mean = abs(x0v * ((1 - theta * h) ** steps - math.exp(-theta * T)))  # EM's own discretisation bias
    assert abs(float(sol.x.mean()) - mean) < 4 * math.sqrt(var / n) + 2 * bias_mean
    assert abs(float(sol.x.var()) - var) < 4 * var * math.sqrt(2 / n) + theta * h * var


def test_time_dependent_diffusion_and_backwards_noise_scale():
    n = 20000
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    # g(t) = t: Var X_1 = ∫_0^1 t² dt = 1/3 (per-sample g of shape (B,) is broadcast)
    sol = V.euler_maruyama(zero, lambda x, t: t, torch.zeros(n, 2, dtype=torch.float64), 0.0, 1.0, 100,
                           generator=torch.Generator().manual_seed(3))
    assert abs(float(sol.x.var()) - 1 / 3) < 4 * (1 / 3) * math.sqrt(2 / (2 * n)) + 0.01
    # running backwards 1 → 0 with g = 1 accumulates variance |t1 − t0| = 1
    sol = V.euler_maruyama(zero, 1.0, torch.zeros(n, 1, dtype=torch.float64), 1.0, 0.0, 20,
                           generator=torch.Generator().manual_seed(4))
    assert abs(float(sol.x.var()) - 1.0) < 4 * math.sqrt(2 / n)


class _OU:
    def drift(self, x, t):
        return -x

    def diffusion(self, x, t):
        return 0.5


def test_sde_object_calling_forms_agree():
    x0 = torch.ones(10, 2)
    ref = V.euler_maruyama(_OU().drift, _OU().diffusion, x0, 0.0, 1.0, 20, generator=torch.Generator().manual_seed(5)).x
    for call in (
        lambda g: V.euler_maruyama(_OU(), x0, 0.0, 1.0, 20, generator=g),
        lambda g: V.euler_maruyama(_OU(), None, x0, 0.0, 1.0, 20, generator=g),
        lambda g: V.euler_maruyama(_OU(), x0=x0, t0=0.0, t1=1.0, n_steps=20, generator=g),
        lambda g: V.simulate_sde(_OU(), x0, 0.0, 1.0, 20, generator=g),
    ):
        torch.testing.assert_close(call(torch.Generator().manual_seed(5)).x, ref)


def test_bad_inputs():
    x0 = torch.zeros(3, 2)
    f = lambda x, t: x  # noqa: E731
    for n in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="n_steps"):
            V.euler(f, x0, 0.0, 1.0, n)
    with pytest.raises(ValueError, match="x0"):
        V.heun(f, [1.0, 2.0], 0.0, 1.0, 5)
    with pytest.raises(ValueError, match="callable"):
        V.euler("f", x0, 0.0, 1.0, 5)
    with pytest.raises(ValueError, match="shaped like x"):
        V.euler(lambda x, t: x[:, :1], x0, 0.0, 1.0, 5)
    with pytest.raises(ValueError, match="t1"):
        V.euler(f, x0, 0.0, float("nan"), 5)
    with pytest.raises(ValueError, match="diffusion"):
        V.euler_maruyama(f, None, x0, 0.0, 1.0, 5)
    with pytest.raises(ValueError, match="drift"):
        V.simulate_sde(object(), x0, 0.0, 1.0, 5)


def test_sample_from_noise_is_chunk_independent_and_matches_the_solvers():
    f = lambda x, t: -x * t[:, None, None]  # noqa: E731
    whole = V.sample_from_noise(f, 10, (2, 3), 8, method="heun", seed=3, chunk=10, return_trajectory=True)
    parts = V.sample_from_noise(f, 10, (2, 3), 8, method="heun", seed=3, chunk=3, return_trajectory=True)
    torch.testing.assert_close(whole.x, parts.x)
    torch.testing.assert_close(whole.trajectory, parts.trajectory)
    x0 = torch.randn(10, 2, 3, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(whole.trajectory[0], x0)
    torch.testing.assert_close(whole.x, V.heun(f, x0, 0.0, 1.0, 8).x)
    assert whole.trajectory.shape == (9, 10, 2, 3) and whole.nfe == 16


def test_sample_from_noise_with_an_sde_reproduces_its_noise():
    class OU:
        def drift(self, x, t):
            return -x

        def diffusion(self, x, t):
            return 0.5

    a = V.sample_from_noise(OU(), 6, (2,), 20, method="euler_maruyama", seed=1)
    b = V.sample_from_noise(OU(), 6, (2,), 20, method="euler_maruyama", seed=1)
    x0 = torch.randn(6, 2, generator=torch.Generator().manual_seed(1))
    ref = V.euler_maruyama(OU(), x0, 0.0, 1.0, 20, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(a.x, b.x)
    torch.testing.assert_close(a.x, ref.x)
    assert a.nfe == 20


@pytest.mark.parametrize("kwargs, match", [
    ({"method": "rk4"}, "valid choices: euler, heun, euler_maruyama"),
    ({"method": "euler_maruyama"}, "needs an SDE object"),
    ({"chunk": 0}, "chunk must be a positive integer"),
])
def test_sample_from_noise_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        V.sample_from_noise(lambda x, t: x, 4, (2,), 3, **kwargs)
