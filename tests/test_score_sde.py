"""Notebook 05's recipe (``nb.recipes.score_sde``): the reverse VP-SDE sampler built from one step, and the studies."""
import math

import pytest
import torch

import nbhelpers as nb
from nbhelpers.recipes import score_sde as R

VP = nb.sde.VPSDE(0.1, 20.0)


def _library_step(sde, score_fn, x, t, dt, generator=None):
    """The reverse step as Euler–Maruyama takes it (h = −dt), written from the library's reverse SDE."""
    rev = sde.reverse(score_fn)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x - dt * rev.drift(x, t) + rev.diffusion(x, t) * torch.sqrt(dt) * noise


def _gmm_score(x, t):
    return nb.distributions.toy_gmm().marginal_score(x, 1 - t, VP.marginal_schedule)


@pytest.mark.parametrize("n_steps", [1, 7, 100])
def test_reverse_sample_with_the_library_step_is_euler_maruyama_bit_for_bit(n_steps):
    x1 = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    got = R.reverse_sample(_library_step, VP, _gmm_score, x1, 1e-3, n_steps, torch.Generator().manual_seed(1),
                           return_trajectory=True)
    want = nb.solvers.euler_maruyama(VP.reverse(_gmm_score), None, x1, 1.0, 1e-3, n_steps,
                                     generator=torch.Generator().manual_seed(1), return_trajectory=True)
    assert torch.equal(got.x, want.x) and torch.equal(got.trajectory, want.trajectory)
    assert torch.equal(got.ts, want.ts) and got.nfe == n_steps
    assert R.reverse_sample(_library_step, VP, _gmm_score, x1, 1e-3, n_steps).trajectory is None


def test_reverse_sample_passes_each_step_its_start_and_a_positive_length():
    seen = []

    def step(sde, score_fn, x, t, dt, generator):
        seen.append((t.clone(), dt.clone()))
        return x

    R.reverse_sample(step, VP, _gmm_score, torch.zeros(3, 2), 0.2, 4)
    starts = [float(t[0]) for t, _ in seen]
    assert [tuple(t.shape) for t, _ in seen] == [(3,)] * 4
    assert starts == pytest.approx([1.0, 0.8, 0.6, 0.4])
    assert all(float(dt) == pytest.approx(0.2) and dt.ndim == 0 for _, dt in seen)


def test_reverse_sample_of_the_exact_gaussian_score_keeps_n01():
    """N(0, I) is the VP-SDE's stationary law and its score is −x: the reverse SDE from N(0, I) stays there."""
    n = 20_000
    x1 = torch.randn(n, 1, generator=torch.Generator().manual_seed(3))
    x = R.reverse_sample(_library_step, VP, lambda x, t: -x, x1, 1e-3, 400, torch.Generator().manual_seed(4)).x
    assert abs(x.mean().item()) < 4 / math.sqrt(n)
    assert abs(x.var().item() - 1) < 4 * math.sqrt(2 / n) + 0.03  # + the O(h) bias of Euler–Maruyama


def test_reverse_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="t_min must lie in"):
        R.reverse_sample(_library_step, VP, _gmm_score, torch.zeros(2, 2), 1.0, 3)
    with pytest.raises(ValueError, match="x1 must be a floating-point tensor"):
        R.reverse_sample(_library_step, VP, _gmm_score, torch.zeros(2, 2, dtype=torch.long), 0.1, 3)
    with pytest.raises(ValueError, match="must be callables"):
        R.reverse_sample(None, VP, _gmm_score, torch.zeros(2, 2), 0.1, 3)
