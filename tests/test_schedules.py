"""Schedules: boundary values, hand-written derivatives vs autograd (float64), validation, DDPM betas."""
import math

import numpy as np
import pytest
import torch

from nbhelpers import schedules as S

BUILTIN = [S.LinearSchedule(), S.CosineSchedule(), S.PolynomialSchedule(2.0), S.PolynomialSchedule(3.0),
           S.PolynomialSchedule(0.5)]


@pytest.mark.parametrize("sched", BUILTIN, ids=repr)
def test_boundary_values(sched):
    v = sched(torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(v.alpha, torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(v.beta, torch.tensor([1.0, 0.0], dtype=torch.float64))
    S.validate_schedule(sched)  # monotone and derivatives consistent: must not raise


@pytest.mark.parametrize("sched", [*BUILTIN, S.VPMarginalSchedule(0.1, 20.0)], ids=repr)
def test_derivatives_match_autograd(sched):
    t = torch.linspace(0.02, 0.98, 49, dtype=torch.float64, requires_grad=True)
    v = sched(t)
    (da,) = torch.autograd.grad(v.alpha.sum(), t)
    (db,) = torch.autograd.grad(sched.beta(t).sum(), t)
    torch.testing.assert_close(v.d_alpha, da, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(v.d_beta, db, rtol=1e-10, atol=1e-12)


def test_closed_forms_and_snr():
    t = torch.tensor([0.25, 0.5], dtype=torch.float64)
    c = S.CosineSchedule()(t)
    torch.testing.assert_close(c.alpha, torch.sin(math.pi * t / 2))
    torch.testing.assert_close(c.alpha ** 2 + c.beta ** 2, torch.ones(2, dtype=torch.float64))
    p = S.PolynomialSchedule(3)(t)
    torch.testing.assert_close(p.alpha, t ** 3)
    torch.testing.assert_close(p.beta, 1 - t ** 3)
    assert float(S.LinearSchedule().snr(0.5)) == pytest.approx(1.0)
    assert float(S.LinearSchedule().snr(torch.tensor(0.0))) == 0.0
    assert float(S.CosineSchedule().log_snr(torch.tensor(0.5, dtype=torch.float64))) == pytest.approx(0.0, abs=1e-12)
    # float input works and gives tensors
    assert isinstance(S.LinearSchedule()(0.3).alpha, torch.Tensor)


def test_get_schedule():
    assert isinstance(S.get_schedule("linear"), S.LinearSchedule)
    assert isinstance(S.get_schedule("Cosine"), S.CosineSchedule)
    poly = S.get_schedule("polynomial", p=3)
    assert isinstance(poly, S.PolynomialSchedule) and poly.p == 3
    s = S.CosineSchedule()
    assert S.get_schedule(s) is s
    with pytest.raises(ValueError, match="linear, cosine, polynomial"):
        S.get_schedule("quadratic")
    with pytest.raises(ValueError, match="exponent"):
        S.get_schedule("linear", p=2)
    for bad in (0, -1.0, float("nan"), "2"):
        with pytest.raises(ValueError, match="p > 0"):
            S.PolynomialSchedule(bad)


def test_custom_schedule_accepts_valid_one():
    sched = S.CustomSchedule(lambda t: t ** 2, lambda t: 1 - t, lambda t: 2 * t, lambda t: -torch.ones_like(t))
    v = sched(torch.tensor([0.5]))
    assert float(v.alpha) == 0.25 and float(v.d_alpha) == 1.0


@pytest.mark.parametrize("fns, message", [
    ((lambda t: 0.1 + 0.9 * t, lambda t: 1 - t, lambda t: 0.9 + 0 * t, lambda t: -1 + 0 * t), r"alpha\(0\)"),
    ((lambda t: t, lambda t: 1 - 0.5 * t, lambda t: 1 + 0 * t, lambda t: -0.5 + 0 * t), r"beta\(1\)"),
    ((lambda t: 2 * t ** 2 - t, lambda t: 1 - t, lambda t: 4 * t - 1, lambda t: -1 + 0 * t), "non-decreasing"),
    ((lambda t: t, lambda t: (1 - t) * (1 + 2 * t), lambda t: 1 + 0 * t, lambda t: 1 - 4 * t), "non-increasing"),
    ((lambda t: t ** 2, lambda t: 1 - t, lambda t: t, lambda t: -1 + 0 * t), "d_alpha"),
    ((lambda t: t, lambda t: 1 - t, lambda t: 1 + 0 * t, lambda t: 1 + 0 * t), "d_beta"),
    ((lambda t: t / t, lambda t: 1 - t, lambda t: 0 * t, lambda t: -1 + 0 * t), "not finite"),
])
def test_broken_custom_schedules_raise_clear_errors(fns, message):
    with pytest.raises(ValueError, match=message):
        S.CustomSchedule(*fns)


def test_custom_schedule_rejects_non_callables():
    with pytest.raises(ValueError, match="callable"):
        S.CustomSchedule(1.0, lambda t: 1 - t, lambda t: 1 + 0 * t, lambda t: -1 + 0 * t)


# ------------------------------------------------------------------ discrete
def test_ddpm_linear():
    b = S.ddpm_betas("linear", 1000)
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert float(b[0]) == pytest.approx(1e-4) and float(b[-1]) == pytest.approx(0.02)
    np.testing.assert_allclose(b.numpy(), np.linspace(1e-4, 0.02, 1000), rtol=1e-12)
    abar = S.alphas_cumprod(b)
    np.testing.assert_allclose(abar.numpy(), np.cumprod(1 - np.linspace(1e-4, 0.02, 1000)), rtol=1e-12)
    assert float(abar[-1]) < 1e-4  # k = T is (almost) pure noise


@pytest.mark.parametrize("T", [5, 50, 1000])
def test_ddpm_cosine_against_formula(T):
    s = 0.008
    k = np.arange(T + 1)
    f = np.cos((k / T + s) / (1 + s) * np.pi / 2) ** 2
    abar_ref = f / f[0]
    alpha_ref = np.clip(abar_ref[1:] / abar_ref[:-1], 0.001, 1.0)
    b = S.ddpm_betas("cosine", T)
    assert b.dtype == torch.float64 and b.shape == (T,)
    np.testing.assert_allclose(b.numpy(), 1 - alpha_ref, rtol=1e-12, atol=1e-15)
    # f(T) = 0 so the last ratio is 0 and the clip makes alpha_T = 0.001, beta_T = 0.999
    assert float(b[-1]) == pytest.approx(0.999, abs=1e-12)
    assert float(b.max()) <= 0.999 + 1e-12 and float(b.min()) > 0
    # where nothing is clipped the cumulative product telescopes back to f(k)/f(0)
    abar = S.alphas_cumprod(b).numpy()
    unclipped = np.cumprod(alpha_ref > 0.001) == 1
    np.testing.assert_allclose(abar[unclipped], abar_ref[1:][unclipped], rtol=1e-10)


def test_ddpm_bad_inputs():
    with pytest.raises(ValueError, match="linear, cosine"):
        S.ddpm_betas("sigmoid", 10)
    for T in (0, -3, 2.5, True, "10"):
        with pytest.raises(ValueError, match="T"):
            S.ddpm_betas("linear", T)
    with pytest.raises(ValueError, match="1-D"):
        S.alphas_cumprod(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        S.alphas_cumprod(torch.tensor([0.1, 1.5]))
    snr = S.discrete_snr(S.alphas_cumprod(S.ddpm_betas("linear", 10)))
    assert (torch.diff(snr) < 0).all()


# --------------------------------------------------------------------------- VP-SDE marginal as a path
def test_vp_marginal_schedule_solves_the_vpsde_moment_odes():
    """α_τ, β_τ are the mean factor and std of the VP-SDE at s = 1 − τ: integrate its moment ODEs
    dm/ds = f(m, s) and dv/ds = 2 (∂f/∂x) v + g² (linear drift f(x) = −½ b x) by RK4 from m = 1, v = 0."""
    from nbhelpers.sde import VPSDE
    vp = VPSDE(0.1, 20.0)
    sched = vp.marginal_schedule
    assert isinstance(sched, S.VPMarginalSchedule) and (sched.beta_min, sched.beta_max) == (0.1, 20.0)
    one = torch.ones(1, 1, dtype=torch.float64)

    def rhs(s, mv):
        ts = torch.full((1,), s, dtype=torch.float64)
        f = vp.drift(one, ts)[0, 0]  # −½ b(s) (the drift at x = 1)
        g2 = vp.diffusion(one, ts)[0, 0] ** 2
        return torch.stack([f * mv[0], 2 * f * mv[1] + g2])

    n, mv, s_grid, out = 2000, torch.tensor([1.0, 0.0], dtype=torch.float64), [0.0], [torch.tensor([1.0, 0.0])]
    h = 1.0 / n
    for i in range(n):
        s = i * h
        k1 = rhs(s, mv)
        k2 = rhs(s + h / 2, mv + h / 2 * k1)
        k3 = rhs(s + h / 2, mv + h / 2 * k2)
        k4 = rhs(s + h, mv + h * k3)
        mv = mv + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        if (i + 1) % 100 == 0:
            s_grid.append(s + h)
            out.append(mv.clone())
    s = torch.tensor(s_grid, dtype=torch.float64)
    ref = torch.stack(out).to(torch.float64)
    v = sched(1 - s)
    torch.testing.assert_close(v.alpha, ref[:, 0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(v.beta ** 2, ref[:, 1], rtol=1e-9, atol=1e-12)
    # and the SDE's own closed forms read the same numbers (one formula)
    torch.testing.assert_close(vp.marginal_mean_coef(s), sched.mean_coef(s), rtol=0, atol=0)
    torch.testing.assert_close(vp.marginal_std(s), sched.std(s), rtol=0, atol=0)
    # the path never reaches pure noise: α_0 = c_1 ≈ 0.0066, β_1 = σ_0 = 0
    assert 0.005 < float(v.alpha[-1]) < 0.01 and float(v.beta[0]) == 0.0


def test_vp_marginal_schedule_rejects_bad_betas():
    for kwargs, message in (({"beta_min": 0.0}, "beta_min must be a finite number > 0"),
                            ({"beta_max": float("nan")}, "beta_max must be a finite number > 0"),
                            ({"beta_min": 5.0, "beta_max": 1.0}, "need beta_min <= beta_max")):
        with pytest.raises(ValueError, match=message):
            S.VPMarginalSchedule(**kwargs)
