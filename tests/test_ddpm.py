"""nbhelpers.ddpm: buffers against their formulas, q_sample moments, the reverse step against
seed 004 eq. 18, the sampling loops (trajectories, editing start, DDIM) and an end-to-end check
with the exact ε of a Gaussian mixture."""
import math

import pytest
import torch

import nbhelpers as nb
from nbhelpers.ddpm import DDPM, GMMEpsOracle, SampleResult


def _abar_reference(betas):
    """ᾱ_k = ∏_{i ≤ k} (1 − β_i) as Python floats, index k = 0 … T (ᾱ_0 = 1)."""
    out = [1.0]
    for b in betas.tolist():
        out.append(out[-1] * (1.0 - b))
    return out


def _cosine_f(k, T, s=0.008):
    return math.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2


# --------------------------------------------------------------------------- a non-degenerate exact ε
_M = torch.tensor([0.6, -0.3], dtype=torch.float64)
_S = 0.5


def _gaussian_eps(d, m, s):
    """The exact E[ε | x_k] for data x_0 ~ N(m, s² I): x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε is Gaussian with
    Cov(ε, x_k) = √(1 − ᾱ_k) and Var(x_k) = ᾱ_k s² + 1 − ᾱ_k, so E[ε | x_k] = √(1 − ᾱ_k)(x_k − √ᾱ_k m)/(ᾱ_k s² + 1 − ᾱ_k).
    Its x̂_0 = E[x_0 | x_k] moves with x_k (unlike a single point's), so a wrong update shows."""
    ab = torch.tensor(_abar_reference(d.betas), dtype=torch.float64)

    def eps(x, t):
        a = ab[torch.round(t.double() * d.T).long()].reshape(-1, *([1] * (x.ndim - 1)))
        return (1 - a).sqrt() * (x - a.sqrt() * m) / (a * s**2 + 1 - a)

    return eps


def test_the_gaussian_eps_is_the_one_component_mixture_oracle():
    d = DDPM.from_schedule("cosine", 40)
    gmm = nb.distributions.GaussianMixture(torch.ones(1, dtype=torch.float64), _M[None], _S)
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for k in (1, 13, 40):
        t = torch.full((16,), k / 40, dtype=torch.float64)
        assert torch.allclose(_gaussian_eps(d, _M, _S)(x, t), GMMEpsOracle(d, gmm)(x, t), atol=1e-12)


# --------------------------------------------------------------------------- buffers
@pytest.mark.parametrize("name,T", [("linear", 1000), ("linear", 50), ("cosine", 1000), ("cosine", 50), ("cosine", 5)])
def test_buffers_match_their_formulas(name, T):
    d = DDPM.from_schedule(name, T)
    assert d.T == T
    ab = _abar_reference(d.betas)
    for n in DDPM.BUFFERS:
        assert getattr(d, n).shape == (T,), n
    for k in (1, 2, T // 2, T - 1, T):
        i = k - 1
        b = float(d.betas[i])
        assert float(d.alphas[i]) == pytest.approx(1 - b, rel=1e-12)
        assert float(d.alphas_cumprod[i]) == pytest.approx(ab[k], rel=1e-9)
        assert float(d.alphas_cumprod_prev[i]) == pytest.approx(ab[k - 1], rel=1e-9)
        assert float(d.sqrt_alphas_cumprod[i]) == pytest.approx(math.sqrt(ab[k]), rel=1e-9)
        assert float(d.sqrt_one_minus_alphas_cumprod[i]) == pytest.approx(math.sqrt(1 - ab[k]), rel=1e-9)
        # seed 004 eq. 18
        var = (1 - ab[k - 1]) / (1 - ab[k]) * b
        assert float(d.posterior_variance[i]) == pytest.approx(var, rel=1e-9, abs=1e-300)
        assert float(d.posterior_mean_coef1[i]) == pytest.approx(math.sqrt(ab[k - 1]) * b / (1 - ab[k]), rel=1e-9)
        assert float(d.posterior_mean_coef2[i]) == pytest.approx(math.sqrt(1 - b) * (1 - ab[k - 1]) / (1 - ab[k]), rel=1e-9)
    # the first step has nothing to add: x_0 is x̂_0 itself
    assert float(d.posterior_variance[0]) == 0.0
    assert float(d.posterior_mean_coef1[0]) == pytest.approx(1.0, rel=1e-12)
    assert float(d.posterior_mean_coef2[0]) == 0.0
    assert float(d.posterior_log_variance_clipped[0]) == pytest.approx(math.log(float(d.posterior_variance[1])), rel=1e-12)
    assert torch.allclose(d.posterior_log_variance_clipped[1:], d.posterior_variance[1:].log())
    # posterior variance never exceeds β (β̃_k ≤ β_k since ᾱ_{k-1} ≥ ᾱ_k)
    assert (d.posterior_variance <= d.betas + 1e-15).all()


def test_linear_schedule_endpoints():
    d = DDPM.from_schedule("linear", 1000)
    assert float(d.betas[0]) == pytest.approx(1e-4, rel=1e-12)
    assert float(d.betas[-1]) == pytest.approx(0.02, rel=1e-12)
    steps = d.betas[1:] - d.betas[:-1]
    assert torch.allclose(steps, torch.full_like(steps, (0.02 - 1e-4) / 999), rtol=1e-8)


@pytest.mark.parametrize("T", [5, 50, 1000])
def test_cosine_alpha_bar_and_clipping(T):
    """ᾱ_k = f(k)/f(0) wherever α_k = ᾱ_k/ᾱ_{k-1} ≥ 0.001; at k = T f(T) = 0 so α_T is clipped to 0.001."""
    d = DDPM.from_schedule("cosine", T)
    f0 = _cosine_f(0, T)
    for k in range(1, T):
        assert float(d.alphas_cumprod[k - 1]) == pytest.approx(_cosine_f(k, T) / f0, rel=1e-9)
    assert float(d.alphas[-1]) == pytest.approx(0.001, rel=1e-12)
    assert float(d.betas[-1]) == pytest.approx(0.999, rel=1e-12)
    assert float(d.betas.max()) <= 0.999 + 1e-15
    assert float(d.alphas_cumprod[-1]) == pytest.approx(0.001 * _cosine_f(T - 1, T) / f0, rel=1e-9)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="linear"):
        DDPM.from_schedule("quadratic", 10)
    with pytest.raises(ValueError, match=r"open interval \(0, 1\)"):
        DDPM(torch.tensor([0.1, 1.5]))
    d = DDPM.from_schedule("linear", 10)
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="1..10"):
        d.predict_x0(x, 11, x)
    with pytest.raises(ValueError, match="1..10"):
        d.q_posterior(x, x, 0)
    with pytest.raises(ValueError, match="integer step"):
        d.q_sample(x, torch.tensor([0.5, 0.5, 0.5]))
    with pytest.raises(ValueError, match="l2, l1, huber"):
        d.loss(lambda x, t: x, x, kind="l3")
    with pytest.raises(ValueError, match="posterior, beta"):
        d.p_step(lambda x, t: x, x, 5, sigma="sqrt")
    with pytest.raises(ValueError, match=r"labels y must be an integer tensor of shape \(3,\).*CFGModel"):
        d.p_step(lambda x, t, y: x, x, 5, y=torch.zeros(3))
    with pytest.raises(ValueError, match="n_steps"):
        d.ddim_sample(lambda x, t: x, (3, 2), n_steps=11)


def test_to_returns_a_moved_copy():
    d = DDPM.from_schedule("cosine", 20)
    e = d.to("cpu")
    assert e is not d and e.T == d.T
    for n in DDPM.BUFFERS:
        assert torch.equal(getattr(e, n), getattr(d, n))


# --------------------------------------------------------------------------- forward process
def test_q_sample_moments():
    """x_k | x_0 ~ N(√ᾱ_k x_0, (1 − ᾱ_k) I) (Ho eq. 4), within Monte-Carlo error."""
    d = DDPM.from_schedule("cosine", 50)
    g = torch.Generator().manual_seed(0)
    n = 200_000
    x0 = torch.tensor([0.7, -0.4], dtype=torch.float64).expand(n, 2)
    for k in (1, 10, 25, 50):
        xk = d.q_sample(x0, k, generator=g)
        ab = float(d.alphas_cumprod[k - 1])
        mean, var = xk.mean(0), xk.var(0)
        se_mean = math.sqrt((1 - ab) / n)
        assert torch.allclose(mean, math.sqrt(ab) * x0[0], atol=5 * se_mean)
        assert torch.allclose(var, torch.full_like(var, 1 - ab), rtol=5 * math.sqrt(2 / n))
    assert torch.equal(d.q_sample(x0[:4], 0, generator=g), x0[:4])


def test_q_sample_per_sample_steps_and_given_noise():
    d = DDPM.from_schedule("linear", 100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(5, 3, 4, 4, generator=g)
    eps = torch.randn(5, 3, 4, 4, generator=g)
    k = torch.tensor([0, 1, 17, 60, 100])
    xk = d.q_sample(x0, k, eps)
    ab = _abar_reference(d.betas)
    for i, kk in enumerate(k.tolist()):
        assert torch.allclose(xk[i], math.sqrt(ab[kk]) * x0[i] + math.sqrt(1 - ab[kk]) * eps[i], atol=1e-6)

    # without the range check (a training step's k from sample_steps): the same numbers; a non-tensor k is refused
    assert torch.equal(d.q_sample(x0, k, eps, check_steps=False), xk)
    with pytest.raises(ValueError, match="check_steps=False needs k as an integer tensor"):
        d.q_sample(x0, 3, eps, check_steps=False)
    with pytest.raises(ValueError, match="check_steps=False needs k as an integer tensor"):
        d.q_sample(x0, k.float(), eps, check_steps=False)


def test_predict_x0_inverts_q_sample():
    d = DDPM.from_schedule("cosine", 50)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(64, 2, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(64, 2, generator=g, dtype=torch.float64)
    k = d.sample_steps(64, g)
    assert torch.allclose(d.predict_x0(d.q_sample(x0, k, eps), k, eps), x0, atol=1e-9)


def test_sample_steps_uniform_on_1_to_T():
    d = DDPM.from_schedule("linear", 7)
    k = d.sample_steps(70_000, torch.Generator().manual_seed(0))
    assert k.dtype == torch.long and int(k.min()) == 1 and int(k.max()) == 7
    freq = torch.bincount(k, minlength=8)[1:].double() / k.numel()
    assert torch.allclose(freq, torch.full_like(freq, 1 / 7), atol=5 * math.sqrt((1 / 7) * (6 / 7) / 70_000))


# --------------------------------------------------------------------------- loss
class _Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append((x.clone(), t.clone(), None if y is None else y.clone()))
        return 0.5 * x


@pytest.mark.parametrize("kind", ["l2", "l1", "huber"])
def test_loss_is_the_epsilon_objective(kind):
    """Replaying the generator: the network sees x_k = q_sample(x0, k, ε) at t = k/T and the loss
    is the mean of ρ(ε − ε_θ)."""
    d = DDPM.from_schedule("cosine", 30)
    x0 = torch.randn(256, 2, generator=torch.Generator().manual_seed(3))
    model = _Recorder()
    y = torch.randint(0, 2, (256,), generator=torch.Generator().manual_seed(4))
    loss = d.loss(model, x0, y, kind=kind, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    k = torch.randint(1, 31, (256,), generator=g)
    eps = torch.randn(256, 2, generator=g)
    xk, t, yy = model.calls[0]
    assert torch.allclose(xk, d.q_sample(x0, k, eps), atol=1e-6)
    assert torch.allclose(t, k.float() / 30)
    assert torch.equal(yy, y)
    r = (eps - 0.5 * xk).abs()
    expected = {"l2": r.square().mean(), "l1": r.mean(), "huber": torch.where(r < 1, 0.5 * r.square(), r - 0.5).mean()}[kind]
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_loss_calls_unconditional_model_without_y():
    d = DDPM.from_schedule("linear", 10)
    seen = []
    d.loss(lambda x, t: seen.append(t) or x, torch.zeros(8, 2))
    assert len(seen) == 1 and seen[0].shape == (8,)


# --------------------------------------------------------------------------- reverse step
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_reverse_step_with_true_noise_gives_posterior_mean(name):
    """Given the true ε, x̂_0 = x_0 and the step mean is μ̃_k(x_k, x_0) of seed 004 eq. 18, which also
    equals Ho's form 1/√α_k (x_k − β_k/√(1 − ᾱ_k) ε); the noise is σ_k z with σ_k² = β̃_k or β_k."""
    T = 40
    d = DDPM.from_schedule(name, T)
    ab = _abar_reference(d.betas)
    g = torch.Generator().manual_seed(0)
    x0 = (torch.rand(32, 2, generator=g, dtype=torch.float64) * 1.8 - 0.9)
    eps = torch.randn(32, 2, generator=g, dtype=torch.float64)
    true_eps = lambda x, t: eps  # noqa: E731
    for k in (1, 2, 17, T):
        xk = d.q_sample(x0, k, eps)
        b = float(d.betas[k - 1])
        mu = (math.sqrt(ab[k - 1]) * b / (1 - ab[k])) * x0 + (math.sqrt(1 - b) * (1 - ab[k - 1]) / (1 - ab[k])) * xk
        mu_ho = (xk - b / math.sqrt(1 - ab[k]) * eps) / math.sqrt(1 - b)
        assert torch.allclose(mu, mu_ho, atol=1e-9)
        post = d.q_posterior(x0, xk, k)
        assert torch.allclose(post.mean, mu, atol=1e-9)
        assert float(post.variance.flatten()[0]) == pytest.approx((1 - ab[k - 1]) / (1 - ab[k]) * b, rel=1e-9, abs=1e-300)
        for sigma, var in (("posterior", (1 - ab[k - 1]) / (1 - ab[k]) * b), ("beta", b)):
            out = d.p_step(true_eps, xk, k, generator=torch.Generator().manual_seed(9), clip_x0=False, sigma=sigma)
            assert torch.allclose(out.x0_pred, x0, atol=1e-9)
            assert torch.equal(out.eps, eps)
            z = torch.randn(32, 2, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
            expected = mu if k == 1 else mu + math.sqrt(var) * z
            assert torch.allclose(out.x_prev, expected, atol=1e-9)


def test_clip_x0_clamps_the_prediction():
    d = DDPM.from_schedule("cosine", 20)
    xk = torch.full((4, 2), 3.0)
    out = d.p_step(lambda x, t: torch.zeros_like(x), xk, 10, clip_x0=True, generator=torch.Generator().manual_seed(0))
    assert float(out.x0_pred.abs().max()) == 1.0
    expected = d.q_posterior(torch.ones(4, 2), xk, 10).mean
    z = torch.randn(4, 2, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out.x_prev, expected + d.posterior_variance[9].sqrt().float() * z, atol=1e-6)


def test_per_sample_steps_in_p_step():
    """A (B,) step tensor gives each row its own coefficients: row i is μ̃_{k_i}(x_i, x̂_0,i) + σ_{k_i} z_i
    (seed 004 eq. 18) with z the one (B, …) draw of the step; rows at k = 1 get no noise."""
    T = 30
    d = DDPM.from_schedule("cosine", T)
    ab = _abar_reference(d.betas)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    model = _gaussian_eps(d, _M, _S)
    k = torch.tensor([1, 5, 30, 2, 17, 5])
    for sigma in ("posterior", "beta"):
        out = d.p_step(model, x, k, generator=torch.Generator().manual_seed(1), clip_x0=False, sigma=sigma)
        z = torch.randn(6, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        for i, kk in enumerate(k.tolist()):
            a, a_prev, b = ab[kk], ab[kk - 1], 1 - ab[kk] / ab[kk - 1]
            eps = math.sqrt(1 - a) * (x[i] - math.sqrt(a) * _M) / (a * _S**2 + 1 - a)
            x0 = (x[i] - math.sqrt(1 - a) * eps) / math.sqrt(a)
            mean = math.sqrt(a_prev) * b / (1 - a) * x0 + math.sqrt(1 - b) * (1 - a_prev) / (1 - a) * x[i]
            var = (1 - a_prev) / (1 - a) * b if sigma == "posterior" else b
            expected = mean if kk == 1 else mean + math.sqrt(var) * z[i]
            assert torch.allclose(out.eps[i], eps, atol=1e-12), (sigma, kk)
            assert torch.allclose(out.x0_pred[i], x0, atol=1e-10), (sigma, kk)
            assert torch.allclose(out.x_prev[i], expected, atol=1e-10), (sigma, kk)


# --------------------------------------------------------------------------- loops
def _toy_model(x, t, y=None):
    return 0.3 * x + 0.2 * torch.sin(3 * t)[:, None]


def test_sample_is_reproducible_and_returns_requested_steps():
    d = DDPM.from_schedule("cosine", 25)
    a = d.sample(_toy_model, (16, 2), generator=torch.Generator().manual_seed(0), return_steps=[25, 10, 0])
    b = d.sample(_toy_model, (16, 2), generator=torch.Generator().manual_seed(0))
    c = d.sample(_toy_model, (16, 2), generator=torch.Generator().manual_seed(1))
    assert isinstance(a, SampleResult) and a.nfe == 25
    assert torch.equal(a.x, b.x) and not torch.equal(a.x, c.x)
    assert b.trajectory is None and b.x0_preds is None
    assert sorted(a.trajectory) == [0, 10, 25] and sorted(a.x0_preds) == [10, 25]
    x_T = torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.trajectory[25], x_T)
    assert torch.equal(a.trajectory[0], a.x)
    # starting from the same x_T as a tensor (and the generator after that draw) gives the same run
    g = torch.Generator().manual_seed(0)
    x_T2 = torch.randn(16, 2, generator=g)
    e = d.sample(_toy_model, x_T2, generator=g)
    assert torch.equal(e.x, a.x)
    with pytest.raises(ValueError, match="return_steps"):
        d.sample(_toy_model, (4, 2), return_steps=[26])


def test_sample_from_a_partially_noised_start():
    """Editing (seed 003): x_start is noised to start_step, then start_step reverse steps run."""
    d = DDPM.from_schedule("linear", 100)
    x_start = torch.rand(8, 2, generator=torch.Generator().manual_seed(0)) - 0.5
    out = d.sample(_toy_model, x_start=x_start, start_step=30, generator=torch.Generator().manual_seed(1), return_steps=[30, 0])
    assert out.nfe == 30
    g = torch.Generator().manual_seed(1)
    expected_start = d.q_sample(x_start, 30, torch.randn(8, 2, generator=g))
    assert torch.allclose(out.trajectory[30], expected_start)
    untouched = d.sample(_toy_model, x_start=x_start, start_step=0)
    assert torch.equal(untouched.x, x_start) and untouched.nfe == 0
    with pytest.raises(ValueError, match="not both"):
        d.sample(_toy_model, (8, 2), x_start=x_start)


def test_ddim_eta0_is_deterministic_given_x_T():
    d = DDPM.from_schedule("cosine", 50)
    x_T = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    a = d.ddim_sample(_toy_model, x_T, n_steps=10, generator=torch.Generator().manual_seed(1))
    b = d.ddim_sample(_toy_model, x_T, n_steps=10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a.x, b.x) and a.nfe == 10
    assert d.ddim_steps(10) == [50, 45, 39, 34, 28, 23, 17, 12, 6, 1]
    c = d.ddim_sample(_toy_model, x_T, n_steps=10, eta=1.0, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(a.x, c.x)


@pytest.mark.parametrize("clip", [False, True])
def test_ddim_eta1_on_every_step_is_ancestral_sampling(clip):
    """σ_DDIM(η = 1)² = (1 − ᾱ_{k-1})/(1 − ᾱ_k)·(1 − ᾱ_k/ᾱ_{k-1}) = β̃_k and the DDIM mean equals μ̃_k,
    so with the same draws DDIM(η = 1, all T steps) reproduces DDPM with σ² = β̃."""
    d = DDPM.from_schedule("cosine", 20)
    a = d.sample(_toy_model, (64, 2), generator=torch.Generator().manual_seed(0), clip_x0=clip, sigma="posterior")
    b = d.ddim_sample(_toy_model, (64, 2), n_steps=20, eta=1.0, generator=torch.Generator().manual_seed(0), clip_x0=clip)
    assert torch.allclose(a.x, b.x, atol=1e-4)


def test_ddim_with_true_noise_lands_on_x0():
    """With the exact ε of a single point x_0 (ε = (x − √ᾱ x_0)/√(1 − ᾱ)) DDIM(η = 0) returns x_0 in any number of steps."""
    d = DDPM.from_schedule("linear", 200)
    x0 = torch.tensor([[0.3, -0.6]], dtype=torch.float64)

    def exact(x, t):
        ab = d.alphas_cumprod[torch.round(t * 200).long() - 1][:, None]
        return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    x_T = torch.randn(5, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for n in (1, 3, 200):
        out = d.ddim_sample(exact, x_T, n_steps=n, clip_x0=False, return_steps=[0])
        assert torch.allclose(out.x, x0.expand(5, 2), atol=1e-8)


def _noised(ab, x0, eps):
    """x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε with ᾱ_k a Python float (from :func:`_abar_reference`)."""
    return math.sqrt(ab) * x0 + math.sqrt(1 - ab) * eps


@pytest.mark.parametrize("k, k_next", [(150, 90), (90, 2), (2, 1), (40, 0)])
def test_ddim_step_with_the_true_noise_lands_on_the_closed_form(k, k_next):
    """Song et al. eq. 12 at η = 0: given the true ε of x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε (x_0 and ε random, so every
    pixel has its own x̂_0), x̂_0 = x_0 and the step lands on √ᾱ_k' x_0 + √(1 − ᾱ_k') ε — strided steps in the
    middle (k ≥ 2), the last one to k' = 1 and the end k' = 0 (ᾱ_0 = 1, the data)."""
    d = DDPM.from_schedule("cosine", 200)
    ab = _abar_reference(d.betas)
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(6, 1, 4, 4, dtype=torch.float64, generator=g) * 1.8 - 0.9
    eps = torch.randn(6, 1, 4, 4, dtype=torch.float64, generator=g)
    out = d.ddim_step(_noised(ab[k], x0, eps), k, k_next, eps, clip_x0=False)
    torch.testing.assert_close(out.x0_pred, x0, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.x_prev, _noised(ab[k_next], x0, eps), atol=1e-10, rtol=0)
    clipped = d.ddim_step(_noised(ab[k], x0, eps), k, k_next, eps)  # x_0 inside [−1, 1]: clamping changes nothing
    torch.testing.assert_close(clipped.x_prev, out.x_prev, atol=1e-10, rtol=0)


def test_ddim_step_with_eta_adds_sigma_z():
    """η > 0: x_k' = √ᾱ_k' x_0 + √(1 − ᾱ_k' − σ²) ε + σ z with σ² = η² (1 − ᾱ_k')/(1 − ᾱ_k) · (1 − ᾱ_k/ᾱ_k') (eq. 16),
    here from the true ε; at η = 1 the step is the posterior q(x_k' | x_k, x_0): σ² = β̃ when k' = k − 1."""
    d = DDPM.from_schedule("linear", 100)
    ab = _abar_reference(d.betas)
    g = torch.Generator().manual_seed(4)
    x0, eps, z = (torch.randn(5, 3, dtype=torch.float64, generator=g) for _ in range(3))
    x0 = x0.clamp(-1, 1)
    for eta, k, k_next in ((0.5, 60, 35), (1.0, 60, 59)):
        var = eta**2 * (1 - ab[k_next]) / (1 - ab[k]) * (1 - ab[k] / ab[k_next])
        got = d.ddim_step(_noised(ab[k], x0, eps), k, k_next, eps, eta=eta, noise=z, clip_x0=False).x_prev
        want = math.sqrt(ab[k_next]) * x0 + math.sqrt(1 - ab[k_next] - var) * eps + math.sqrt(var) * z
        torch.testing.assert_close(got, want, atol=1e-10, rtol=0)
    beta = float(d.betas[59])
    assert var == pytest.approx((1 - ab[59]) / (1 - ab[60]) * beta, rel=1e-12)  # η = 1, one step: β̃_60


def test_ddim_step_clamps_x0_and_recomputes_eps():
    """With clip_x0, x̂_0 is clamped to [−1, 1] and ε̂ recomputed so that √ᾱ_k x̂_0 + √(1 − ᾱ_k) ε̂ is still x_k."""
    d = DDPM.from_schedule("cosine", 50)
    ab = _abar_reference(d.betas)
    x0 = torch.tensor([[2.5, -0.4, -3.0]], dtype=torch.float64)
    eps = torch.tensor([[0.3, -1.2, 0.8]], dtype=torch.float64)
    k, k_next = 30, 12
    x = _noised(ab[k], x0, eps)
    out = d.ddim_step(x, k, k_next, eps)
    x0c = torch.tensor([[1.0, -0.4, -1.0]], dtype=torch.float64)
    eps_c = (x - math.sqrt(ab[k]) * x0c) / math.sqrt(1 - ab[k])
    torch.testing.assert_close(out.x0_pred, x0c, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.eps, eps_c, atol=1e-10, rtol=0)
    torch.testing.assert_close(out.x_prev, _noised(ab[k_next], x0c, eps_c), atol=1e-10, rtol=0)


def test_ddim_step_names_bad_steps_and_missing_noise():
    d = DDPM.from_schedule("cosine", 50)
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match=r"need integer steps 0 <= k_next < k <= T = 50, got k = 10, k_next = 10"):
        d.ddim_step(x, 10, 10, x)
    with pytest.raises(ValueError, match=r"need integer steps 0 <= k_next < k <= T = 50, got k = 51"):
        d.ddim_step(x, 51, 3, x)
    with pytest.raises(ValueError, match=r"eta = 0.5 > 0 to k_next = 3 > 0 needs noise"):
        d.ddim_step(x, 10, 3, x, eta=0.5)
    assert torch.equal(d.ddim_step(x, 10, 0, x, eta=0.5).x_prev, x)  # k' = 0: no noise to add, none needed


@pytest.mark.parametrize("eta", [0.0, 0.7])
@pytest.mark.parametrize("clip", [False, True])
def test_ddim_strided_steps_follow_eq_12(eta, clip):
    """Every strided step k → k' of DDIM (Song et al. 2021, eq. 12), checked on its own from the state at k:
    x̂_0 = (x_k − √(1 − ᾱ_k) ε̂)/√ᾱ_k (clamped, ε̂ recomputed from it, with clip_x0),
    x_k' = √ᾱ_k' x̂_0 + √(1 − ᾱ_k' − σ²) ε̂ + σ z, σ² = η² (1 − ᾱ_k')/(1 − ᾱ_k) · (1 − ᾱ_k/ᾱ_k'), ᾱ_0 = 1,
    with the exact ε̂ of Gaussian data (x̂_0 ≠ x_0) and z the generator's draws in step order (none at k' = 0)."""
    T = 60
    d = DDPM.from_schedule("cosine", T)
    ab = _abar_reference(d.betas)
    x_T = 1.5 * torch.randn(8, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ks = d.ddim_steps(7)
    assert ks == [60, 50, 40, 30, 21, 11, 1]
    out = d.ddim_sample(_gaussian_eps(d, _M, _S), x_T, n_steps=7, eta=eta, clip_x0=clip,
                        generator=torch.Generator().manual_seed(1), return_steps=ks + [0])
    draws = torch.Generator().manual_seed(1)
    clamped = 0
    for k, k_next in zip(ks, ks[1:] + [0]):
        x, a, a_next = out.trajectory[k], ab[k], ab[k_next]
        eps = math.sqrt(1 - a) * (x - math.sqrt(a) * _M) / (a * _S**2 + 1 - a)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        if clip:
            clamped += int((x0.abs() > 1).sum())
            x0 = x0.clamp(-1, 1)
            eps = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
        var = eta**2 * (1 - a_next) / (1 - a) * (1 - a / a_next)
        expected = math.sqrt(a_next) * x0 + math.sqrt(1 - a_next - var) * eps
        if eta > 0 and k_next > 0:
            expected = expected + math.sqrt(var) * torch.randn(8, 2, dtype=torch.float64, generator=draws)
        assert torch.allclose(out.x0_preds[k], x0, atol=1e-10), k
        assert torch.allclose(out.trajectory[k_next], expected, atol=1e-10), (k, k_next)
    assert torch.equal(out.trajectory[0], out.x)
    assert not clip or clamped > 0  # the clamp is exercised


# --------------------------------------------------------------------------- end to end with the exact ε
def test_sampling_with_the_exact_eps_recovers_the_mixture():
    """Ho's setting (linear β, T = 1000) with the exact E[ε | x_k] of the two-pixel mixture samples the
    mixture: weights within Monte-Carlo error and within-mode std ≈ 0.1."""
    gmm = nb.distributions.two_pixel()
    d = DDPM.from_schedule("linear", 1000)
    oracle = GMMEpsOracle(d, gmm)
    n = 4000
    x = d.sample(oracle, (n, 2), generator=torch.Generator().manual_seed(0), clip_x0=False).x
    w = nb.metrics.mode_weights(x, gmm.means)
    assert abs(float(w[0]) - 0.35) < 4 * math.sqrt(0.35 * 0.65 / n)
    near = torch.cdist(x.double(), gmm.means.double()).argmin(1)
    for j in range(2):
        xj = x[near == j]
        assert torch.allclose(xj.mean(0).double(), gmm.means[j].double(), atol=0.02)
        assert torch.allclose(xj.std(0).double(), torch.full((2,), 0.1, dtype=torch.float64), rtol=0.1)


def test_oracle_eps_is_minus_scaled_score_of_the_noised_mixture():
    """E[ε | x_k] = −√(1 − ᾱ_k) ∇log p_k(x_k); check against autograd of log p_k."""
    gmm = nb.distributions.two_pixel()
    d = DDPM.from_schedule("cosine", 50)
    oracle = GMMEpsOracle(d, gmm)
    k = 20
    ab = float(d.alphas_cumprod[k - 1])
    noised = nb.distributions.GaussianMixture(gmm.weights.double(), math.sqrt(ab) * gmm.means.double(),
                                              math.sqrt(ab * 0.01 + 1 - ab))
    x = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    (grad,) = torch.autograd.grad(noised.log_prob(x).sum(), x)
    eps = oracle(x.detach(), torch.full((16,), k / 50, dtype=torch.float64))
    assert torch.allclose(eps, -math.sqrt(1 - ab) * grad, atol=1e-10)
