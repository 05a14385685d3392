"""nbhelpers.guidance: label dropout, the guided ε of seed 001 (algebra, one forward pass),
the wrapper, and guided DDPM sampling with the exact conditional ε of the two-pixel mixture."""
import math

import pytest
import torch

import nbhelpers as nb
from nbhelpers.ddpm import DDPM, GMMEpsOracle
from nbhelpers.guidance import CFGModel, drop_labels, guided_eps, null_labels


class _Counting(torch.nn.Module):
    """A label-dependent toy ε-network that counts its forward passes and batch sizes."""

    def __init__(self, num_classes=3):
        super().__init__()
        self.emb = torch.nn.Parameter(torch.randn(num_classes + 1, 2, generator=torch.Generator().manual_seed(0)))
        self.batches = []

    def forward(self, x, t, y):
        self.batches.append(x.shape[0])
        return torch.tanh(x) * (1 + t[:, None]) + self.emb[y]


def _inputs(B=10, K=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(B, 2, generator=g), torch.rand(B, generator=g), torch.randint(0, K, (B,), generator=g)


def test_w0_is_the_conditional_output_and_one_forward_pass():
    m = _Counting()
    x, t, y = _inputs()
    out = guided_eps(m, x, t, y, 0.0, 3)
    assert m.batches == [20]  # one batched pass over [x; x]
    assert torch.allclose(out, m(x, t, y))


def test_guidance_is_the_stated_combination_and_linear_in_w():
    m = _Counting()
    x, t, y = _inputs()
    eps_c, eps_u = m(x, t, y), m(x, t, null_labels(10, 3))
    for w in (0.5, 1.0, 4.0):
        assert torch.allclose(guided_eps(m, x, t, y, w, 3), (w + 1) * eps_c - w * eps_u, atol=1e-6)
    g0, g1, g3 = (guided_eps(m, x, t, y, w, 3) for w in (0.0, 1.0, 3.0))
    assert torch.allclose(g3, g0 + 3.0 * (g1 - g0), atol=1e-6)
    # the other convention: ε_u + s (ε_c − ε_u) with s = w + 1; s = 0 (w = −1) is unconditional
    assert torch.allclose(guided_eps(m, x, t, y, -1.0, 3), eps_u, atol=1e-6)


def test_per_sample_guidance_weights():
    m = _Counting()
    x, t, y = _inputs()
    w = torch.linspace(0, 2, 10)
    out = guided_eps(m, x, t, y, w, 3)
    for i in (0, 4, 9):
        assert torch.allclose(out[i], guided_eps(m, x[i : i + 1], t[i : i + 1], y[i : i + 1], float(w[i]), 3)[0], atol=1e-6)


def test_cfg_model_keeps_the_signature():
    m = _Counting()
    x, t, y = _inputs()
    wrapped = CFGModel(m, 2.0, 3)
    assert torch.allclose(wrapped(x, t, y), guided_eps(m, x, t, y, 2.0, 3))
    assert torch.allclose(wrapped(x, t), m(x, t, null_labels(10, 3)))
    assert set(dict(wrapped.named_parameters())) == {"model.emb"}


def test_guided_ddpm_sampling_is_the_guided_eps_step_by_step():
    """Guidance enters sampling as a model: DDPM with a CFGModel takes, at every step, the step of the
    plain sampler whose ε is guided_eps; one batched network call per step; a (B,) weight per sample."""
    d = DDPM.from_schedule("cosine", 20)
    m = _Counting()
    y = torch.randint(0, 3, (16,), generator=torch.Generator().manual_seed(0))
    x = torch.randn(16, 2, generator=torch.Generator().manual_seed(1))
    a = d.sample(CFGModel(m, 1.5, 3), x, y=y, generator=torch.Generator().manual_seed(2))
    assert a.nfe == 20 and m.batches == [32] * 20
    gen, ref = torch.Generator().manual_seed(2), x
    for k in range(20, 0, -1):
        ref = d.p_step(lambda x_, t, y_: guided_eps(m, x_, t, y_, 1.5, 3), ref, k, y=y, generator=gen).x_prev
    assert torch.equal(a.x, ref)
    w = torch.linspace(0, 3, 16)
    per_sample = d.ddim_sample(CFGModel(m, w, 3), x, 5, y=y).x
    for i in (0, 7, 15):
        one = d.ddim_sample(CFGModel(m, float(w[i]), 3), x[i:i + 1], 5, y=y[i:i + 1]).x
        assert torch.allclose(per_sample[i:i + 1], one, atol=1e-6)


def test_drop_labels_rate_and_values():
    n, p = 200_000, 0.3
    y = torch.randint(0, 10, (n,), generator=torch.Generator().manual_seed(0))
    out = drop_labels(y, p, 10, generator=torch.Generator().manual_seed(1))
    dropped = out == 10
    assert abs(float(dropped.double().mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert torch.equal(out[~dropped], y[~dropped])
    assert out.dtype == torch.long and y.max() < 10  # input untouched
    assert torch.equal(drop_labels(y, 0.0, 10), y)
    assert bool((drop_labels(y, 1.0, 10) == 10).all())
    with pytest.raises(ValueError, match="p_uncond"):
        drop_labels(y, 1.5, 10)
    with pytest.raises(ValueError, match="num_classes"):
        drop_labels(y, 0.1, 0)


def test_guided_sampling_with_the_exact_conditional_eps_lands_in_the_requested_mode():
    """With the exact conditional/unconditional ε of the two-pixel mixture, guided samples (w = 1)
    land in the requested mode, and w = 0 conditional samples of class 0 are component 0."""
    gmm = nb.distributions.two_pixel()
    d = DDPM.from_schedule("cosine", 50)
    oracle = GMMEpsOracle(d, gmm)
    n = 2000
    y = torch.arange(n) % 2
    for w in (0.0, 1.0):
        x = d.sample(CFGModel(oracle, w, 2), (n, 2), y=y, sigma="beta", generator=torch.Generator().manual_seed(0)).x
        nearest = torch.cdist(x.double(), gmm.means.double()).argmin(1)
        assert float((nearest == y).double().mean()) >= 0.99


# --------------------------------------------------------------------------- autoguidance
def test_autoguidance_is_the_stated_extrapolation_with_both_ends():
    from nbhelpers.guidance import AutoGuided

    g = torch.Generator().manual_seed(3)
    strong = torch.nn.Linear(4, 4)
    weak = torch.nn.Linear(4, 4)
    field = lambda net: (lambda x, t: net(x) * (1 + t[:, None]))  # noqa: E731
    x, t = torch.randn(6, 4, generator=g), torch.rand(6, generator=g)
    with torch.no_grad():
        s, w_ = field(strong)(x, t), field(weak)(x, t)
        torch.testing.assert_close(AutoGuided(field(strong), field(weak), 1.0)(x, t), s)
        assert torch.equal(AutoGuided(field(strong), field(weak), 0.0)(x, t), w_)
        torch.testing.assert_close(AutoGuided(field(strong), field(weak), 2.5)(x, t), 2.5 * s - 1.5 * w_)
    ag = AutoGuided(strong, weak, 2.0)
    assert sum(p.numel() for p in ag.parameters()) == 2 * 20 and "w=2" in repr(ag)


def test_autoguidance_is_the_same_field_in_every_parameterisation():
    """Weights summing to one commute with the affine conversions of GaussianPath.convert."""
    from nbhelpers.guidance import AutoGuided

    path = nb.paths.GaussianPath("cosine")
    g = torch.Generator().manual_seed(4)
    x, t = torch.randn(5, 3, generator=g), torch.rand(5, generator=g) * 0.9 + 0.05
    v1, v0 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    guided_v = AutoGuided(lambda x, t: v1, lambda x, t: v0, 2.0)(x, t)
    for target in ("score", "eps", "data"):
        c1, c0 = (path.convert(v, x, t, "velocity", target) for v in (v1, v0))
        guided_c = AutoGuided(lambda x, t: c1, lambda x, t: c0, 2.0)(x, t)
        torch.testing.assert_close(path.convert(guided_v, x, t, "velocity", target), guided_c)


def test_autoguidance_of_gaussian_scores_sharpens_by_the_closed_form():
    """Exact scores of N(0, σ₁²) (strong) and a wider N(0, σ₀²) (weak): the guided score is the score of
    N(0, σ²) with 1/σ² = w/σ₁² − (w − 1)/σ₀², i.e. p₁^w / p₀^(w−1) normalised — narrower than p₁ for w > 1."""
    from nbhelpers.guidance import AutoGuided

    s1, s0, w = 0.8, 1.3, 2.0
    x = torch.linspace(-3, 3, 13, dtype=torch.float64)[:, None]
    t = torch.zeros(13, dtype=torch.float64)
    guided = AutoGuided(lambda x, t: -x / s1 ** 2, lambda x, t: -x / s0 ** 2, w)(x, t)
    var = 1 / (w / s1 ** 2 - (w - 1) / s0 ** 2)
    torch.testing.assert_close(guided, -x / var)
    assert var < s1 ** 2


def test_autoguidance_names_bad_inputs():
    from nbhelpers.guidance import AutoGuided

    net = torch.nn.Linear(2, 2)
    with pytest.raises(TypeError, match="weak must be a model"):
        AutoGuided(net, "early", 2.0)
    with pytest.raises(ValueError, match="the same model"):
        AutoGuided(net, net, 2.0)
    with pytest.raises(ValueError, match="guidance weight w"):
        AutoGuided(net, torch.nn.Linear(2, 2), float("nan"))
