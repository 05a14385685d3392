"""The MNIST evaluator: Fréchet distance against closed forms and scipy, and the pass marks
(real digits pass; uniform noise and an untrained network's samples fail)."""
import numpy as np
import pytest
import scipy.linalg
import torch

from nbhelpers import data
from nbhelpers.metrics import images as mi
from nbhelpers.recipes import mnist as recipes_mnist
from nbhelpers.runtime import data_dir
from tests.needs import need
from nbhelpers.metrics.images import (CPU_BARS, EvalResult, MNISTEvaluator, feature_statistics, frechet_distance,
                                      mean_pairwise_distance)


# --------------------------------------------------------------------------- Fréchet distance
def test_fd_of_1d_gaussians_is_the_w2_closed_form():
    # W2²(N(m1, s1²), N(m2, s2²)) = (m1 − m2)² + (s1 − s2)²
    fd = frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[0.25]]))
    assert fd == pytest.approx(9.0 + (2.0 - 0.5) ** 2)


def test_fd_of_diagonal_gaussians():
    a, b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    mu1, mu2 = np.zeros(3), np.array([1.0, 0.0, -1.0])
    expected = 2.0 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected)


def test_fd_matches_the_scipy_sqrtm_formula_and_is_symmetric():
    rng = np.random.default_rng(0)
    A, B = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = A @ A.T + 0.1 * np.eye(6), B @ B.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    ref = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(ref, rel=1e-8)
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(ref, rel=1e-8)


def test_fd_of_a_set_with_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(1)
    f = np.maximum(rng.normal(size=(50, 20)), 0)  # ReLU-like features
    f[:, :5] = 0.0  # dead units: singular covariance
    mu, s = feature_statistics(f)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8


def test_feature_statistics_and_pairwise_distance():
    f = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    mu, s = feature_statistics(torch.tensor(f))
    assert np.allclose(mu, f.mean(0)) and np.allclose(s, np.cov(f.T))
    pts = torch.tensor([[0.0], [1.0], [3.0]])  # pairwise distances 1, 3, 2
    assert mean_pairwise_distance(pts) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="N >= 2"):
        feature_statistics(np.zeros((1, 3)))


def test_eval_result_checks_each_bar():
    hist = np.full(10, 0.1)

    def result(rec, hist, fd):
        return EvalResult(100, hist, rec, fd, 10.0, 0.9, torch.zeros(100), torch.zeros(100))

    assert result(0.8, hist, 100.0).passes(CPU_BARS)
    assert result(0.6, hist, 100.0).checks()["recognised"] is False
    skewed = hist.copy()
    skewed[0], skewed[1] = 0.02, 0.18
    assert result(0.8, skewed, 100.0).checks()["class_balance"] is False
    assert result(0.8, hist, 151.0).checks()["fd"] is False
    assert result(0.8, hist, 151.0).fd_ratio == pytest.approx(15.1)


def test_eval_result_states_its_uncertainty():
    hist = np.array([0.5, 0.5] + [0.0] * 8)
    r = EvalResult(400, hist, 0.75, 30.0, 20.0, 0.9, torch.zeros(400), torch.zeros(400), fd_floor_std=4.0)
    assert r.recognised_se == pytest.approx(np.sqrt(0.75 * 0.25 / 400))  # binomial s.e.
    assert r.fd_ratio_se == pytest.approx(0.2)
    assert r.class_se[0] == pytest.approx(0.025) and r.class_se[2] == 0.0
    d = r.as_dict()
    old = {"n", "recognised", "class_histogram", "class_min", "class_max", "fd", "fd_floor", "fd_ratio", "mean_confidence"}
    assert old | {"recognised_se", "fd_floor_std", "fd_ratio_se"} == set(d)
    assert d["fd_ratio"] == pytest.approx(1.5) and d["recognised_se"] == pytest.approx(r.recognised_se)
    assert "± 2.2 %" in r.summary() and "± 0.20×" in r.summary()


# --------------------------------------------------------------------------- the evaluator on MNIST
@pytest.fixture(scope="module")
def needs_mnist():
    """MNIST under the data root; skips (locally) or fails (under CI=true) naming where it was looked for."""
    need(data.has_mnist(), f"MNIST not under the data root {data_dir()} (set NBHELPERS_DATA_DIR)")


@pytest.fixture(scope="module")
def tiny_evaluator(needs_mnist):
    """A small classifier trained here on 10 000 MNIST training images (no cache)."""
    res = recipes_mnist.train_mnist_classifier("cpu", steps=150, width=8, train_limit=10000, checkpoint=None, progress=False)
    test = data.load_mnist("test", download=False)
    return MNISTEvaluator(res.model, test.images[:3000], test.images[5000:8000], test.labels[5000:8000]), test


def test_fd_is_zero_for_identical_sets_and_grows_with_noise(tiny_evaluator):
    ev, test = tiny_evaluator
    x = test.images[:500]
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    assert abs(ev.fd_between(x, x)) < 1e-6
    fds = [ev.fd_between(x, (x + s * noise).clamp(-1, 1)) for s in (0.1, 0.3, 0.6)]
    assert 0 < fds[0] < fds[1] < fds[2]


def test_real_digits_pass_and_noise_or_an_untrained_network_fail(tiny_evaluator):
    ev, test = tiny_evaluator
    n = 500
    real = ev.evaluate(test.images[8000:8000 + n])
    assert real.passes(CPU_BARS), real.summary()
    assert real.fd_ratio < 2.0  # real held-out digits sit at the floor

    gen = torch.Generator().manual_seed(0)
    uniform = ev.evaluate(torch.rand(n, 1, 28, 28, generator=gen) * 2 - 1)
    assert not uniform.passes(CPU_BARS), uniform.summary()
    assert not uniform.checks()["fd"]

    from nbhelpers.models.unet import UNet, UNetConfig

    torch.manual_seed(0)
    net = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2, 2), time_embed_dim=16)).eval()
    x = torch.randn(n, 1, 28, 28, generator=gen)
    with torch.no_grad():  # Euler on dX = u_θ(X) dt with the untrained field
        for k in range(10):
            x = x + 0.1 * net(x, torch.full((n,), k / 10))
    untrained = ev.evaluate(x.clamp(-1, 1))
    assert not untrained.passes(CPU_BARS), untrained.summary()
    assert not untrained.checks()["fd"]


def test_floor_is_the_mean_and_spread_over_disjoint_real_splits(tiny_evaluator):
    ev, test = tiny_evaluator
    held = ev.held_out_features.shape[0]
    mean, std = ev.floor(300)
    order = torch.randperm(held, generator=torch.Generator().manual_seed(1234))
    f = ev.held_out_features[order]
    by_hand = [frechet_distance(*feature_statistics(f[i * 300:(i + 1) * 300]), *ev.reference_stats) for i in range(held // 300)]
    assert mean == pytest.approx(np.mean(by_hand)) and std == pytest.approx(np.std(by_hand, ddof=1))
    assert ev.fd_floor(300) == mean and ev.fd_floor_std(300) == std
    # FD's bias and fluctuation both fall like 1/n: a 4x larger set has a clearly smaller spread
    assert ev.floor(75)[1] > 2 * ev.floor(300)[1] > 0
    # more than half the held-out images: one set for the mean, the spread scaled from half-size splits
    big_mean, big_std = ev.floor(held)
    assert big_mean < mean and 0 < big_std < std
    # a real set that the floor did not see scores a ratio within a few of its s.e. of 1
    real = ev.evaluate(test.images[8000:8300])
    assert abs(real.fd_ratio - 1) < 3 * real.fd_ratio_se
    assert real.fd_floor_std == std
    with pytest.raises(ValueError, match="at least 2"):
        ev.floor(1)


def test_class_accuracy_and_diversity(tiny_evaluator):
    ev, test = tiny_evaluator
    x, y = test.images[8000:8300], test.labels[8000:8300]
    assert ev.class_accuracy(x, y) > 0.8
    assert ev.class_accuracy(x, (y + 1) % 10) < 0.2
    div = ev.diversity(x, y)
    assert div.shape == (10,) and np.all(div > 0)
    # one image repeated has zero diversity
    same = x[:1].expand(20, 1, 28, 28)
    assert np.nanmax(ev.diversity(same, torch.zeros(20, dtype=torch.long))) == pytest.approx(0.0, abs=1e-5)
    assert ev.reference_diversity(per_class=30).shape == (10,)


def test_evaluator_rejects_wrong_shapes():
    clf = mi.MNISTClassifier(width=4)
    ev = MNISTEvaluator(clf, torch.zeros(4, 1, 28, 28).uniform_(-1, 1), torch.zeros(4, 1, 28, 28).uniform_(-1, 1))
    with pytest.raises(ValueError, match=r"\(N, 1, 28, 28\)"):
        ev.evaluate(torch.zeros(3, 3, 32, 32))
