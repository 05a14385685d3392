"""nbhelpers.ddpm_sampling: guided sampling in chunks against one DDIM run of the guided ε̄, and its argument checks."""
import pytest
import torch

import nbhelpers as nb
from nbhelpers.ddpm import DDPM


class _LabelledEps(torch.nn.Module):
    """ε(x, t, y) = 0.3 x + 0.1 (y − 1): affine in the label, so the guided ε̄ is known in closed form; counts calls."""

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # the device is read from the parameters
        self.seen = []

    def forward(self, x, t, y):
        self.seen.append(y.clone())
        return 0.3 * x + 0.1 * (y.float() - 1.0).reshape(-1, *[1] * (x.ndim - 1))


def test_guided_sample_in_chunks_is_ddim_with_the_guided_eps():
    """Any sample shape (here 2D points): the chunks join to one DDIM run of ε̄ = (w + 1)ε(y) − wε(∅) from the same x_T,
    which for this ε is ε(x, t, y) shifted by 0.1 w (y − ∅)."""
    d = DDPM.from_schedule("cosine", 20)
    y = torch.tensor([0, 1, 0, 1, 1])
    x_T = torch.randn(5, 2, generator=torch.Generator().manual_seed(0))
    got = nb.ddpm_sampling.guided_sample(d, _LabelledEps(), y, 2.0, 2, shape=(2,), sampler="ddim", n_steps=4, x_T=x_T, chunk=2,
                                return_steps=[0, 20])
    eps = lambda x, t, yy: 0.3 * x + 0.1 * (yy.float() - 1.0)[:, None] + 0.2 * (yy.float() - 2.0)[:, None]  # noqa: E731
    ref = d.ddim_sample(eps, x_T, 4, y=y, return_steps=[0, 20])
    torch.testing.assert_close(got.x, ref.x.float(), atol=1e-6, rtol=0)
    assert got.nfe == 4 and torch.equal(got.trajectory[20], x_T) and torch.equal(got.trajectory[0], got.x)
    assert got.x.device.type == "cpu" and got.x.dtype == torch.float32


def test_guided_sample_at_w0_skips_the_null_pass_and_draws_its_start():
    d = DDPM.from_schedule("cosine", 5)
    net = _LabelledEps()
    y = torch.tensor([1, 0, 1])
    out = nb.ddpm_sampling.guided_sample(d, net, y, 0.0, 2, shape=(1, 4, 4), generator=torch.Generator().manual_seed(0), chunk=2)
    assert out.x.shape == (3, 1, 4, 4) and out.nfe == 5 and out.trajectory is None
    assert len(net.seen) == 2 * 5 and all(int(s.max()) < 2 for s in net.seen)  # two chunks, never ∅ = 2
    again = nb.ddpm_sampling.guided_sample(d, _LabelledEps(), y, 0.0, 2, shape=(1, 4, 4), generator=torch.Generator().manual_seed(0),
                                  chunk=2)
    assert torch.equal(out.x, again.x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(sampler="euler"), r"unknown sampler 'euler'; valid choices: ancestral, ddim"),
    (dict(sampler="ddim"), r"the DDIM sampler needs n_steps"),
    (dict(x_T=torch.zeros(3, 2)), r"x_T must be a tensor \(2, 1, 4, 4\) with one start per label, got Tensor \(3, 2\)"),
    (dict(chunk=0), r"chunk must be a positive integer, got 0"),
])
def test_guided_sample_names_a_bad_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        nb.ddpm_sampling.guided_sample(DDPM.from_schedule("cosine", 5), _LabelledEps(), torch.tensor([0, 1]), 1.0, 2,
                              shape=(1, 4, 4), **kwargs)
