"""End to end on 2D data: exact fields + solvers reproduce the data (checked by the metrics), and a
small flow-matching run learns the mode weights. These tie paths, distributions, solvers, sde,
losses, training and metrics together."""
import pytest
import torch

import nbhelpers as nb
from nbhelpers.distributions import GaussianMixture
from nbhelpers.metrics import toy
from tests.conftest import generator as _gen

N, N_SET = 2000, 500


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny 2D batches: one thread is fastest (and does not spin on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _mixture():
    return GaussianMixture([0.3, 0.7], [[-1.5, 0.5], [1.5, -0.5]], 0.3)


def _score(x, gmm, seed=1):
    floor = toy.energy_noise_floor(gmm, N_SET, generator=_gen(seed), repeats=2, n_pairs=100_000)
    return toy.score_against_truth(x, gmm, generator=_gen(seed + 1), n=N_SET, floor=floor)


def test_exact_flow_ode_reproduces_the_mixture_and_one_euler_step_does_not():
    gmm, path = _mixture(), nb.paths.GaussianPath("linear")
    field = lambda x, t: gmm.marginal_velocity(x, t, path.schedule)  # noqa: E731
    x0 = torch.randn(N, 2, generator=_gen(2))
    good = _score(nb.solvers.heun(field, x0, 0.0, 1.0, 50).x, gmm)
    assert good.energy_ratio < 2.5  # ≈ 1 expected; a single set fluctuates by about its own size
    assert good.max_weight_error < 0.04  # 4 standard errors of a fraction at N = 2000
    # one Euler step lands every sample on E[z] = the mixture mean: far from the data
    bad = _score(nb.solvers.euler(field, x0, 0.0, 1.0, 1).x, gmm)
    assert bad.energy_ratio > 20 * good.energy_ratio


def test_exact_flow_score_sde_reproduces_the_mixture():
    gmm, path = _mixture(), nb.paths.GaussianPath("linear")
    sde = nb.sde.FlowScoreSDE(lambda x, t: gmm.marginal_velocity(x, t, path.schedule),
                              lambda x, t: gmm.marginal_score(x, t, path.schedule), sigma=1.0)
    x = nb.solvers.euler_maruyama(sde, torch.randn(N, 2, generator=_gen(3)), 0.0, 1.0, 200, generator=_gen(4)).x
    sc = _score(x, gmm)
    assert sc.energy_ratio < 2.5 and sc.max_weight_error < 0.04


def test_vp_reverse_sde_and_probability_flow_with_the_exact_score():
    gmm, vp = _mixture(), nb.sde.VPSDE()
    sched = vp.marginal_schedule  # the VP marginal as a path in τ = 1 − t
    score = lambda x, t: gmm.marginal_score(x, 1 - t, sched)  # noqa: E731
    x1 = vp.prior_sample((N, 2), generator=_gen(5))
    x_sde = nb.solvers.euler_maruyama(vp.reverse(score), None, x1, 1.0, 1e-3, 300, generator=_gen(6)).x
    x_ode = nb.solvers.heun(vp.probability_flow(score), x1, 1.0, 1e-3, 100).x
    for x in (x_sde, x_ode):
        sc = _score(x, gmm)
        assert sc.energy_ratio < 2.5 and sc.max_weight_error < 0.04


def test_short_flow_matching_run_learns_the_mode_weights():
    gmm, path = _mixture(), nb.paths.GaussianPath("linear")
    torch.manual_seed(0)
    model = nb.models.mlp.TimeMLP(dim=2, hidden=32, depth=3)
    res = nb.training.train(model, lambda m, z, g: nb.losses.flow_matching_loss(m, z, path, g),
                            lambda g: gmm.sample(256, generator=g),
                            nb.training.TrainConfig(steps=500, lr=3e-3, ema_decay=0.99, warmup_steps=50), progress=False)
    # the loss settles well below its value at the start
    assert sum(res.losses[-100:]) / 100 < 0.8 * sum(res.losses[:20]) / 20
    with torch.no_grad():
        x = nb.solvers.euler(res.sampling_model, torch.randn(N, 2, generator=_gen(7)), 0.0, 1.0, 20).x
    w = toy.mode_weights(x, gmm.means)
    assert (w - gmm.weights.double()).abs().max() < 0.05
