"""Sample-set metrics: zero on identical sets, growth under a shift, agreement with SciPy's 1D
references, the closed-form noise floor of the energy distance, and mode weights."""
import math

import numpy as np
import pytest
import scipy.special
import scipy.stats
import torch

import nbhelpers as nb
from nbhelpers.metrics import toy
from tests.conftest import generator as _gen


class StdNormal2D:
    """N(0, I_2) with the mixture attributes ``score_against_truth`` reads (one mode)."""

    means = torch.zeros(1, 2)
    weights = torch.ones(1)

    def sample(self, n, generator=None):
        return torch.randn(n, 2, generator=generator)

    def log_prob(self, x):
        return -0.5 * x.square().sum(-1) - math.log(2 * math.pi)


class TwoBumps:
    """Mixture of two well-separated narrow Gaussians, weights 0.3 / 0.7."""

    means = torch.tensor([[-3.0, 0.0], [3.0, 0.0]])
    weights = torch.tensor([0.3, 0.7])
    std = 0.2

    def sample(self, n, generator=None):
        k = (torch.rand(n, generator=generator) < self.weights[1]).long()
        return self.means[k] + self.std * torch.randn(n, 2, generator=generator)

    def log_prob(self, x):
        comp = -0.5 * (x[:, None] - self.means).square().sum(-1) / self.std**2 - math.log(2 * math.pi * self.std**2)
        return torch.logsumexp(comp + self.weights.log(), dim=1)


def test_all_names_reexported():
    for name in toy.__all__:
        assert getattr(nb.metrics, name) is getattr(toy, name)


@pytest.mark.parametrize("metric", [toy.energy_distance, toy.mmd, lambda a, b: toy.sliced_wasserstein(a, b, generator=_gen(1))])
def test_zero_for_identical_sets(metric):
    x = torch.randn(300, 2, generator=_gen())
    assert metric(x, x) == pytest.approx(0.0, abs=1e-12)
    assert metric(x, x[torch.randperm(300, generator=_gen(2))]) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("metric", [toy.energy_distance, toy.mmd, lambda a, b: toy.sliced_wasserstein(a, b, generator=_gen(1))])
def test_grows_under_a_shift(metric):
    x = torch.randn(300, 2, generator=_gen())
    values = [metric(x, x + torch.tensor([c, 0.0])) for c in (0.1, 0.5, 1.0, 2.0)]
    assert all(b > a for a, b in zip(values, values[1:]))
    assert values[0] > 0


def test_energy_distance_far_shift_closed_form():
    # y = x + c·e: D² = 2·mean|x_i − x_j − c e| − 2·mean|x_i − x_j| → 2c − 2·mean|x_i − x_j| (c → ∞),
    # because the mean of the projected differences (x_i − x_j)·e over all pairs is exactly zero.
    x = torch.randn(200, 2, generator=_gen(), dtype=torch.float64)
    c = 1e4
    within = torch.cdist(x, x).mean().item()
    assert toy.energy_distance(x, x + torch.tensor([c, 0.0], dtype=torch.float64)) == pytest.approx(2 * c - 2 * within, abs=1e-3)


def test_energy_distance_matches_scipy_in_1d():
    rng = np.random.default_rng(0)
    u, v = rng.normal(size=120), rng.normal(0.3, 1.5, size=77)
    ref = scipy.stats.energy_distance(u, v) ** 2  # SciPy returns the square root of D²
    assert toy.energy_distance(torch.from_numpy(u), torch.from_numpy(v)) == pytest.approx(ref, rel=1e-9)


def test_sliced_wasserstein_matches_scipy_in_1d():
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=50), rng.exponential(size=80)  # different sizes
    ref = scipy.stats.wasserstein_distance(u, v)
    assert toy.sliced_wasserstein(torch.from_numpy(u), torch.from_numpy(v), p=1) == pytest.approx(ref, rel=1e-9)


def test_sliced_wasserstein_shift_and_duplicates():
    # W_p between a set and its translate by c is |c·θ| per direction: SW_2 = c·sqrt(E θ_1²) = c/√2 in 2D
    x = torch.randn(400, 2, generator=_gen(), dtype=torch.float64)
    sw = toy.sliced_wasserstein(x, x + torch.tensor([2.0, 0.0], dtype=torch.float64), n_projections=20000, generator=_gen(3))
    assert sw == pytest.approx(2.0 / math.sqrt(2.0), rel=0.02)
    # the same empirical distribution at a different size: distance zero
    assert toy.sliced_wasserstein(x, torch.cat([x, x]), generator=_gen(4)) == pytest.approx(0.0, abs=1e-12)


def test_mmd_matches_direct_double_sum():
    x = torch.randn(40, 2, generator=_gen(), dtype=torch.float64)
    y = torch.randn(30, 2, generator=_gen(1), dtype=torch.float64) + 0.5
    h = 0.7

    def k(a, b):
        return math.exp(-float(((a - b) ** 2).sum()) / (2 * h * h))

    kxx = sum(k(a, b) for a in x for b in x) / 40**2
    kyy = sum(k(a, b) for a in y for b in y) / 30**2
    kxy = sum(k(a, b) for a in x for b in y) / (40 * 30)
    assert toy.mmd(x, y, bandwidth=h) == pytest.approx(kxx + kyy - 2 * kxy, rel=1e-9)


def test_noise_floor_matches_closed_form():
    # For independent X, Y ~ P of size n: E[D²_V] = (2/n)·E|X − X'|; for N(0, I_2), |X − X'| is
    # Rayleigh with scale √2, so E|X − X'| = √2·√(π/2) = √π.
    n, repeats = 100, 200
    floor = toy.noise_floor(toy.energy_distance, StdNormal2D(), n, generator=_gen(), repeats=repeats)
    expected = 2 / n * math.sqrt(math.pi)
    assert len(floor.values) == repeats and floor.n == n
    assert abs(floor.mean - expected) < 4 * floor.std / math.sqrt(repeats)
    assert floor.ratio(floor.mean) == pytest.approx(1.0)


def test_energy_noise_floor_closed_form_mean():
    n = 100
    floor = toy.energy_noise_floor(StdNormal2D(), n, generator=_gen(), repeats=4, n_pairs=400_000)
    assert floor.mean == pytest.approx(2 / n * math.sqrt(math.pi), rel=0.01)
    assert len(floor.values) == 4 and floor.std > 0 and floor.n == n


def test_mode_weights_exact_counts():
    means = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([means[0].expand(5, 2), means[1].expand(3, 2) + 0.1, means[2].expand(2, 2) - 0.1])
    w = toy.mode_weights(x, means)
    assert w.tolist() == pytest.approx([0.5, 0.3, 0.2])
    assert toy.mode_weights(x[:5], means).tolist() == pytest.approx([1.0, 0.0, 0.0])


def test_posterior_mode_fractions_exact_counts_and_weights():
    gmm = nb.distributions.toy_gmm()
    means = gmm.means
    x = torch.cat([means[0].expand(4, 2), means[3].expand(6, 2) + 0.05])
    assert toy.posterior_mode_fractions(x, gmm).tolist() == pytest.approx([0.4, 0, 0, 0.6, 0])
    # exact samples: every share within 4 standard errors of its weight
    n = 20000
    f = toy.posterior_mode_fractions(gmm.sample(n, generator=_gen()), gmm)
    w = gmm.weights
    assert f.shape == (5,) and float(f.sum()) == pytest.approx(1.0)
    assert ((f - w).abs() < 4 * torch.sqrt(w * (1 - w) / n)).all()
    with pytest.raises(ValueError, match="empty"):
        toy.posterior_mode_fractions(x[:0], gmm)


def test_total_variation_closed_form():
    p, q = torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.0, 0.5, 0.5])
    assert toy.total_variation(p, q) == pytest.approx(0.5)
    assert toy.total_variation(p, p) == 0.0
    assert toy.total_variation(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        toy.total_variation(p, q[:2])


def test_gmm_log_likelihood_is_minus_entropy_on_true_samples():
    # E log N(X; 0, I_2) = −(1 + log 2π); the sample mean has std √(Var)/√n with Var(|X|²/2) = 1
    dist, n = StdNormal2D(), 20000
    x = dist.sample(n, generator=_gen())
    ll = toy.gmm_log_likelihood(x, dist)
    assert abs(ll + 1 + math.log(2 * math.pi)) < 4 / math.sqrt(n)


def test_score_against_truth_separates_good_and_bad_samples():
    dist = TwoBumps()
    good = dist.sample(1000, generator=_gen(1))
    score = toy.score_against_truth(good, dist, generator=_gen(2), repeats=8)
    assert score.energy_ratio < 4
    assert score.max_weight_error < 0.06  # ~4 standard errors of a fraction at n = 1000
    assert score.log_likelihood == pytest.approx(score.true_log_likelihood, abs=0.15)
    # wrong weights (0.5/0.5 instead of 0.3/0.7): the weight error shows it and the energy grows
    bad = torch.cat([dist.means[0] + dist.std * torch.randn(500, 2, generator=_gen(3)),
                     dist.means[1] + dist.std * torch.randn(500, 2, generator=_gen(4))])
    bad_score = toy.score_against_truth(bad, dist, generator=_gen(2), floor=score.floor)
    assert bad_score.max_weight_error == pytest.approx(0.2, abs=0.04)
    assert bad_score.energy_ratio > 5 * max(score.energy_ratio, 1.0)
    d = bad_score.as_dict()
    assert set(d) >= {"energy", "energy_floor", "energy_ratio", "max_weight_error", "log_likelihood"}
    with pytest.raises(ValueError, match="n=1000"):
        toy.score_against_truth(good[:10], dist, floor=score.floor)


def test_score_against_truth_averages_sets_of_size_n():
    dist = TwoBumps()
    x = dist.sample(1000, generator=_gen(1))
    score = toy.score_against_truth(x, dist, generator=_gen(2), n=200, repeats=3)
    assert len(score.energy_values) == 5 and score.n == 200 and score.n_total == 1000
    assert score.energy == pytest.approx(sum(score.energy_values) / 5)
    assert score.floor.n == 200 and score.reference.shape == (1000, 2)
    # each set is compared with its own slice of the reference
    assert score.energy_values[1] == pytest.approx(toy.energy_distance(x[200:400], score.reference[200:400]))
    with pytest.raises(ValueError, match="between 2"):
        toy.score_against_truth(x, dist, n=5000)


def test_bad_inputs_raise_value_error():
    x = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="same dimension"):
        toy.energy_distance(x, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="n_projections"):
        toy.sliced_wasserstein(x, x, n_projections=0)
    with pytest.raises(ValueError, match="sample set"):
        toy.energy_distance(torch.zeros(0, 2), x)
    with pytest.raises(ValueError, match="repeats"):
        toy.noise_floor(toy.energy_distance, StdNormal2D(), 10, repeats=0)


# --------------------------------------------------------------------------- standard errors
def _rice_mean(shift, s2):
    """E|Z| for Z ~ N(μ, s²·I_2) with |μ| = shift: s·√(π/2)·L_{1/2}(−|μ|²/(2s²)) (the Rice mean)."""
    x = -shift**2 / (2 * s2)
    laguerre = (1 - x) * scipy.special.i0e(-x / 2) - x * scipy.special.i1e(-x / 2)  # e^{x/2} folded into i0e, i1e
    return math.sqrt(s2) * math.sqrt(math.pi / 2) * laguerre


def _floor(n, seed=0):
    return toy.energy_noise_floor(StdNormal2D(), n, generator=_gen(seed), repeats=12, n_pairs=400_000)


def test_energy_se_matches_the_spread_of_independent_repeats():
    # the stated s.e. of one score must agree with the actual spread of the score over repeats
    dist, n, sets, repeats = StdNormal2D(), 100, 8, 40
    floor = _floor(n)
    scores = [toy.score_against_truth(dist.sample(n * sets, generator=_gen(100 + r)), dist, generator=_gen(500 + r),
                                      n=n, floor=floor) for r in range(repeats)]
    actual = torch.tensor([s.energy for s in scores], dtype=torch.float64).std().item()
    stated = sum(s.energy_se for s in scores) / repeats
    assert stated == pytest.approx(actual, rel=0.3)
    assert all(s.n_sets == sets for s in scores)


def test_energy_se_shrinks_like_one_over_sqrt_n():
    # fixed set size n, N = n·K samples: s.e. ∝ 1/√K = 1/√(N/n); fit the slope over K = 4 … 64
    dist, n = StdNormal2D(), 50
    floor = _floor(n)
    ks = (4, 16, 64)
    mean_se = []
    for k in ks:
        ses = [toy.score_against_truth(dist.sample(n * k, generator=_gen(10 * k + r)), dist, generator=_gen(7 + r),
                                       n=n, floor=floor).energy_ratio_se for r in range(12)]
        mean_se.append(sum(ses) / len(ses))
    slope = np.polyfit(np.log(ks), np.log(mean_se), 1)[0]
    assert slope == pytest.approx(-0.5, abs=0.12)


def test_shifted_sampler_is_beyond_two_se_and_matches_the_closed_form():
    # x = y + δ·e₁ with y ~ N(0, I_2): D² = 2(E|N(δe₁, 2I)| − E|N(0, 2I)|) and
    # E[ratio] = 1 + n·D²/(2·E|X − X'|) with E|X − X'| = √π
    dist, n, sets, delta = StdNormal2D(), 200, 10, 0.25
    floor = _floor(n)
    d2 = 2 * (_rice_mean(delta, 2.0) - _rice_mean(0.0, 2.0))
    expected = 1 + n * d2 / (2 * math.sqrt(math.pi))
    x = dist.sample(n * sets, generator=_gen(1)) + torch.tensor([delta, 0.0])
    shifted = toy.score_against_truth(x, dist, generator=_gen(2), n=n, floor=floor)
    true = toy.score_against_truth(dist.sample(n * sets, generator=_gen(3)), dist, generator=_gen(4), n=n, floor=floor)
    assert toy.ratio_separation(shifted, 1.0) >= 2
    assert toy.ratio_separation(shifted, true) >= 2
    assert abs(toy.ratio_separation(true, 1.0)) < 2
    assert abs(shifted.energy_ratio - expected) < 3 * shifted.energy_ratio_se
    d = shifted.as_dict()
    assert d["energy_ratio_se"] == shifted.energy_ratio_se and d["n_sets"] == sets
    assert "±" in shifted.summary()


def test_rice_mean_reference():
    # the closed form used above against Monte Carlo, and E|N(0, 2I)| = √π
    assert _rice_mean(0.0, 2.0) == pytest.approx(math.sqrt(math.pi), rel=1e-12)
    z = torch.randn(2_000_000, 2, generator=_gen(9), dtype=torch.float64) * math.sqrt(2.0) + torch.tensor([0.7, 0.0], dtype=torch.float64)
    assert z.norm(dim=1).mean().item() == pytest.approx(_rice_mean(0.7, 2.0), rel=2e-3)


def test_one_set_has_no_se_and_the_floor_has_its_own():
    dist = StdNormal2D()
    floor = _floor(300)
    # E|X − X'| = √π estimated from 400 000 pairs: within a few of its stated s.e.
    assert floor.mean_se > 0 and abs(floor.mean - 2 / 300 * math.sqrt(math.pi)) < 4 * floor.mean_se
    one = toy.score_against_truth(dist.sample(300, generator=_gen(1)), dist, generator=_gen(2), floor=floor)
    assert one.n_sets == 1 and math.isnan(one.energy_se) and math.isnan(one.energy_ratio_se)
    assert math.isnan(toy.ratio_separation(one, 1.0))
    assert "no s.e." in one.summary()
    mc = toy.noise_floor(toy.energy_distance, dist, 50, generator=_gen(3), repeats=9)
    assert mc.mean_se == pytest.approx(mc.std / 3)


def test_ratio_separation_identity_and_bad_inputs():
    dist, n = StdNormal2D(), 100
    floor = _floor(n)
    s = toy.score_against_truth(dist.sample(400, generator=_gen(1)), dist, generator=_gen(2), n=n, floor=floor)
    assert toy.ratio_separation(s, s) == 0.0
    assert toy.ratio_separation(s, s.energy_ratio) == 0.0
    other = toy.score_against_truth(dist.sample(400, generator=_gen(3)), dist, generator=_gen(4), n=200, floor=_floor(200))
    with pytest.raises(ValueError, match="n=100 and n=200"):
        toy.ratio_separation(s, other)
    with pytest.raises(ValueError, match="SampleScore or a number"):
        toy.ratio_separation(s, "floor")
    with pytest.raises(ValueError, match="must be a SampleScore"):
        toy.ratio_separation(1.0, s)
