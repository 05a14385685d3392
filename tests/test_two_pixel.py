"""nbhelpers.models.two_pixel: the conditional UNet of seed 001 §2.2; notebook 06's figures (nbhelpers.recipes.two_pixel)."""
import pytest
import torch

import nbhelpers as nb
from nbhelpers.ddpm import DDPM
from nbhelpers.guidance import drop_labels
from nbhelpers.models.two_pixel import TwoPixelUNet


def _net(**kw):
    torch.manual_seed(0)
    return TwoPixelUNet(**kw)


def test_architecture_follows_seed_001():
    m = _net()
    assert isinstance(m.enc1, torch.nn.Conv1d) and m.enc1.kernel_size == (2,) and m.enc1.in_channels == 1
    assert isinstance(m.enc2, torch.nn.Conv1d) and m.enc2.kernel_size == (1,)
    assert isinstance(m.dec1, torch.nn.ConvTranspose1d) and m.dec1.kernel_size == (1,)
    assert isinstance(m.dec2, torch.nn.ConvTranspose1d) and m.dec2.kernel_size == (1,) and m.dec2.out_channels == 2
    assert [n.num_groups for n in m.norms] == [4, 32, 4]
    assert isinstance(m.time_embed[0], nb.models.embeddings.GaussianFourierEmbedding)
    assert m.class_embed[0].in_features == 3  # one-hot over 2 classes + the null label
    assert not any("attn" in name.lower() for name, _ in m.named_modules())


@pytest.mark.parametrize("B", [1, 7])
def test_shapes(B):
    m = _net()
    x, t = torch.randn(B, 2), torch.rand(B)
    assert m(x, t, torch.zeros(B, dtype=torch.long)).shape == (B, 2)
    assert m(x, t).shape == (B, 2)
    assert m(x, torch.tensor(0.5)).shape == (B, 2)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        m(torch.randn(B, 3), t)
    with pytest.raises(ValueError, match="y must have shape"):
        m(x, t, torch.zeros(B + 1, dtype=torch.long))


def test_labels_and_the_null_label_change_the_output():
    m = _net()
    x, t = torch.randn(16, 2), torch.rand(16)
    out = {c: m(x, t, torch.full((16,), c)) for c in range(3)}
    assert not torch.allclose(out[0], out[2], atol=1e-4)
    assert not torch.allclose(out[0], out[1], atol=1e-4)
    assert torch.equal(m(x, t), out[2])  # y = None is the null label
    assert not torch.allclose(m(x, torch.zeros(16)), m(x, torch.ones(16)), atol=1e-4)  # t matters


def test_unconditional_network_and_bad_config():
    m = _net(num_classes=0, channels=(32, 64))
    assert m(torch.randn(4, 2), torch.rand(4)).shape == (4, 2)
    with pytest.raises(ValueError, match="unconditional"):
        m(torch.randn(4, 2), torch.rand(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="divisible"):
        TwoPixelUNet(channels=(30, 64))
    with pytest.raises(ValueError, match="divisible"):
        TwoPixelUNet(channels=(32, 48))


def test_short_training_lowers_the_loss():
    """A few hundred steps of the ε-loss with label dropout on the two-pixel data."""
    gmm = nb.distributions.two_pixel()
    d = DDPM.from_schedule("cosine", 20)
    m = _net(channels=(32, 64), embed_dim=32)

    def batch_fn(g):
        return gmm.sample_with_labels(256, g)

    def loss_fn(model, batch, g):
        x, y = batch
        return d.loss(model, x, drop_labels(y, 0.2, 2, g), generator=g)

    res = nb.training.train(m, loss_fn, batch_fn, nb.training.TrainConfig(steps=300, lr=3e-3), progress=False)
    first, last = sum(res.losses[:30]) / 30, sum(res.losses[-30:]) / 30
    assert last < 0.6 * first


# --------------------------------------------------------------------------- the notebook's figures and widget
def test_sample_density_estimates_a_known_density():
    """For N(0, I) samples the estimate integrates to P(inside the square) and is ≈ 1/(2π) at the centre."""
    import numpy as np

    x = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    xs, ys, d = nb.plotting.sample_density(x, (-4.0, 4.0), bins=80, smooth=1.0)
    cell = (xs[1] - xs[0]) ** 2
    inside = float(((x.abs() < 4).all(1)).double().mean())
    assert d.shape == (80, 80)
    assert d.sum() * cell == pytest.approx(inside, abs=2e-3)
    assert d[39:41, 39:41].mean() == pytest.approx(1 / (2 * np.pi), rel=0.05)
    # rows are y: a sample set shifted up puts its mass in the upper rows
    _, _, d_up = nb.plotting.sample_density(x * 0.2 + torch.tensor([0.0, 2.0]), (-4.0, 4.0), bins=80)
    assert d_up[50:].sum() > 0.99 * d_up.sum()  # y ≥ 1 lies in rows 50 and up
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        nb.plotting.sample_density(torch.zeros(5, 3))


def test_two_pixel_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gmm = nb.distributions.two_pixel()
    g = torch.Generator().manual_seed(0)
    steps = {k: torch.randn(500, 2, generator=g) for k in (50, 30, 10)}
    path = {k: torch.randn(2, generator=g) for k in range(51)}
    fig = nb.recipes.two_pixel.trajectory_density_panels(steps, path, gmm.log_prob, {50: gmm.log_prob})
    assert len(fig.axes) == 4
    fig2 = nb.recipes.two_pixel.samples_vs_truth_rows({"T = 5": gmm.sample(300, g), "T = 50": gmm.sample(300, g)}, gmm.log_prob)
    assert len(fig2.axes) == 4
    fig3 = nb.recipes.two_pixel.paths_over_density([torch.randn(10, 2, generator=g)] * 2, gmm.log_prob, labels=["y = 0", "y = 1"])
    assert len(fig3.axes) == 1
    with pytest.raises(ValueError, match=r"\(S, 2\)"):
        nb.recipes.two_pixel.paths_over_density([torch.zeros(10, 3)], gmm.log_prob)
    plt.close("all")


def test_guidance_widget_is_static_headless_and_checks_w():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gmm = nb.distributions.two_pixel()
    s = gmm.sample_with_labels(400, torch.Generator().manual_seed(0))
    samples = {0.0: (s.x, s.labels), 2.0: (s.x, s.labels)}
    metrics = {0.0: {"accuracy": 0.97, "spread": 1.0}, 2.0: {"accuracy": 1.0, "spread": 0.9}}
    fig = nb.recipes.two_pixel.two_pixel_guidance_explorer(samples, gmm.log_prob, metrics, w=2.0, interactive=False)
    assert len(fig.axes) == 3  # samples, accuracy, spread (twin axis)
    assert "w = 2" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match=r"\[0.0, 2.0\]"):
        nb.recipes.two_pixel.draw_two_pixel_guidance(1.0, samples, gmm.log_prob)
    plt.close("all")
