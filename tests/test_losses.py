"""Losses: closed-form expectations, and the oracle (exact marginal field / score of a Gaussian
mixture) minimises each loss: L(oracle + δg) − L(oracle) = δ²·E|g|²/d (the cross term has mean 0)."""
import math

import pytest
import torch

import nbhelpers as nb
from nbhelpers.distributions import toy_gmm
from nbhelpers.losses import flow_matching_loss, score_matching_loss, vpsde_dsm_loss
from nbhelpers.paths import GaussianPath
from tests.conftest import generator as _gen

N = 100_000  # large batch: the statistical error of a loss difference is ~1e-3·δ


@pytest.fixture(scope="module")
def gmm():
    return toy_gmm().to(dtype=torch.float64)


@pytest.fixture(scope="module")
def data(gmm):
    return gmm.sample(N, generator=_gen(123))


def _perturbations():
    """Fields g(x, t) of different kinds (constant, linear in x, time-dependent, non-linear)."""
    A = torch.tensor([[0.3, -1.0], [0.7, 0.2]], dtype=torch.float64)
    return {
        "constant": lambda x, t: torch.tensor([1.0, -0.5], dtype=x.dtype).expand_as(x),
        "linear": lambda x, t: x @ A.T,
        "time": lambda x, t: (1 - t)[:, None] * torch.ones_like(x),
        "nonlinear": lambda x, t: torch.sin(2 * x.flip(1)) * t[:, None],
    }


def _check_oracle_is_minimum(loss, oracle, data, deltas, weight=None):
    """L(oracle + δg) − L(oracle) > 0 and ≈ δ²·E[λ(t)|g(x_t, t)|²]/d for every perturbation g.

    All evaluations use the same generator seed, hence the same (t, ε) draws (common random
    numbers); the cross term E[λ (s* − s_cond)·g] vanishes in expectation, its sampling error is
    covered by the tolerance.
    """
    draws = {}

    def spy(x, t):
        draws["x"], draws["t"] = x, t
        return oracle(x, t)

    base = float(loss(spy, data, _gen(7)))
    x, t = draws["x"], draws["t"]
    w = torch.ones_like(t) if weight is None else weight(t)
    for name, g in _perturbations().items():
        for delta in deltas:
            gap = float(loss(lambda x, t: oracle(x, t) + delta * g(x, t), data, _gen(7))) - base
            expected = float(delta**2 * (w[:, None] * g(x, t).square()).mean())
            assert gap > 0, f"{name}, δ={delta}: the perturbed field has a lower loss than the oracle"
            assert gap == pytest.approx(expected, rel=0.15, abs=2e-3), f"{name}, δ={delta}"


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_flow_matching_loss_is_minimised_by_the_oracle_field(gmm, data, schedule):
    path = GaussianPath(schedule)
    loss = lambda m, z, g: flow_matching_loss(m, z, path, g)  # noqa: E731
    oracle = lambda x, t: gmm.marginal_velocity(x, t, path.schedule)  # noqa: E731
    _check_oracle_is_minimum(loss, oracle, data, deltas=(0.1, 0.3))


def test_flow_matching_loss_with_logit_normal_times_has_the_same_minimiser(gmm, data):
    path = GaussianPath("linear")
    loss = lambda m, z, g: flow_matching_loss(m, z, path, g, time_sampling="logit_normal")  # noqa: E731
    oracle = lambda x, t: gmm.marginal_velocity(x, t, path.schedule)  # noqa: E731
    _check_oracle_is_minimum(loss, oracle, data, deltas=(0.1, 0.3))


def test_logit_normal_training_times():
    """t = sigmoid(n), n ~ N(0, 1): median 1/2, P(t < sigmoid(−1)) = Φ(−1), never at the ends."""
    from nbhelpers.losses import sample_training_times

    z = torch.zeros(200_000, 2, dtype=torch.float64)
    t = sample_training_times(z, "logit_normal", _gen(3))
    assert t.shape == (200_000,) and t.dtype == torch.float64 and 0 < float(t.min()) and float(t.max()) < 1
    assert float(t.median()) == pytest.approx(0.5, abs=0.005)
    phi_minus_1 = 0.158655
    assert float((t < torch.sigmoid(torch.tensor(-1.0))).double().mean()) == pytest.approx(phi_minus_1, abs=0.003)
    u = sample_training_times(z, "uniform", _gen(3))
    assert float(u.mean()) == pytest.approx(0.5, abs=0.003) and float((u < 0.1).double().mean()) == pytest.approx(0.1, abs=0.003)
    with pytest.raises(ValueError, match=r"unknown time_sampling 'beta'; valid choices: uniform, logit_normal"):
        sample_training_times(z, "beta")


def test_flow_matching_loss_closed_form_at_zero_field(gmm, data):
    # linear schedule: target z − ε, so E‖0 − (z − ε)‖²/d = (E|z|² + d)/d with
    # E|z|² = Σ_k w_k (|μ_k|² + d s²) = 4 + 2·0.09 for toy_gmm (radius 2, σ = 0.3)
    loss = flow_matching_loss(lambda x, t: torch.zeros_like(x), data, GaussianPath("linear"), _gen(1))
    expected = (4 + 2 * 0.09 + 2) / 2
    assert float(loss) == pytest.approx(expected, rel=0.02)


@pytest.mark.parametrize("weighting", ["beta2", "none"])
def test_score_matching_loss_is_minimised_by_the_oracle_score(gmm, data, weighting):
    path = GaussianPath("linear")
    t_max = 0.9 if weighting == "beta2" else 0.6  # unweighted: the target's variance 1/β² grows fast
    loss = lambda m, z, g: score_matching_loss(m, z, path, g, weighting=weighting, t_max=t_max)  # noqa: E731
    oracle = lambda x, t: gmm.marginal_score(x, t, path.schedule)  # noqa: E731
    weight = (lambda t: (1 - t) ** 2) if weighting == "beta2" else None
    _check_oracle_is_minimum(loss, oracle, data, deltas=(0.3,), weight=weight)


def test_score_matching_loss_closed_form_at_zero_score(gmm, data):
    # β²-weighted at s = 0: E‖ε‖²/d = 1; unweighted: E[1/β_t²] = (1/t_max)∫_0^{t_max} (1−t)^−2 dt = 1/(1 − t_max)
    path = GaussianPath("linear")
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    assert float(score_matching_loss(zero, data, path, _gen(2))) == pytest.approx(1.0, rel=0.02)
    assert float(score_matching_loss(zero, data, path, _gen(2), weighting="none", t_max=0.5)) == pytest.approx(2.0, rel=0.02)


def test_losses_work_for_images_and_labels():
    z = torch.rand(6, 1, 4, 4) * 2 - 1
    y = torch.arange(6)
    seen = {}

    def model(x, t, y=None):
        seen["y"] = y
        assert t.shape == (6,)
        return torch.zeros_like(x)

    path = GaussianPath("cosine")
    for fn in (flow_matching_loss, score_matching_loss):
        out = fn(model, z, path, _gen(), y=y)
        assert out.shape == () and torch.isfinite(out)
        assert torch.equal(seen["y"], y)


def test_reproducible_under_a_generator(data):
    path = GaussianPath("linear")
    net = nb.models.mlp.TimeMLP()
    z = data[:64].float()
    assert torch.equal(flow_matching_loss(net, z, path, _gen(3)), flow_matching_loss(net, z, path, _gen(3)))


def test_errors():
    z = torch.randn(4, 2)
    path = GaussianPath("linear")
    with pytest.raises(ValueError, match="must match"):
        flow_matching_loss(lambda x, t: x[:, :1], z, path)
    with pytest.raises(ValueError, match="GaussianPath"):
        flow_matching_loss(lambda x, t: x, z, "linear")
    with pytest.raises(ValueError, match="weighting"):
        score_matching_loss(lambda x, t: x, z, path, weighting="sigma")
    with pytest.raises(ValueError, match="t_max"):
        score_matching_loss(lambda x, t: x, z, path, t_max=1.0)


# --------------------------------------------------------------------------- VP-SDE (t = 0 data)
def test_vpsde_dsm_loss_closed_forms():
    sde = nb.sde.VPSDE()
    x0 = torch.randn(N, 2, generator=_gen(5), dtype=torch.float64)
    # s = 0: E‖σ·0 + ε‖²/d = 1
    assert float(vpsde_dsm_loss(lambda x, t: torch.zeros_like(x), x0, sde, _gen(1))) == pytest.approx(1.0, rel=0.02)
    # N(0, I) data stays N(0, I) (c² + σ² = 1), true score −x: σ s + ε = −σ c x0 + c² ε, so
    # E‖·‖²/d = σ²c² + c⁴ = c_t², averaged over t ~ U[eps, 1]
    eps = 1e-5
    t = torch.linspace(eps, 1, 100_001, dtype=torch.float64)
    expected = float(torch.trapezoid(sde.marginal_mean_coef(t) ** 2, t)) / (1 - eps)
    got = float(vpsde_dsm_loss(lambda x, t: -x, x0, sde, _gen(1), eps=eps))
    assert got == pytest.approx(expected, rel=0.03)


def test_vpsde_dsm_loss_is_minimised_by_the_exact_score(gmm, data):
    sde = nb.sde.VPSDE()
    # the exact score of the VP marginal Σ_k w_k N(c_t μ_k, (c_t² s_k² + σ_t²) I): a mixture path in τ = 1 − t
    oracle = lambda x, t: gmm.marginal_score(x, 1 - t, sde.marginal_schedule)  # noqa: E731
    loss = lambda m, z, g: vpsde_dsm_loss(m, z, sde, g)  # noqa: E731
    _check_oracle_is_minimum(loss, oracle, data, deltas=(0.3,), weight=lambda t: sde.marginal_std(t) ** 2)
