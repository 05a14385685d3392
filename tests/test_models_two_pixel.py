"""nbhelpers.models.two_pixel: the conditional UNet of seed 001 §2.2 (architecture, shapes, labels and the null
label, a short training run)."""
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
