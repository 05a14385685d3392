"""TimeMLP: shapes, architecture of the assignment's 4×64 net, time and label conditioning."""
import pytest
import torch
from torch import nn

from nbhelpers.models.mlp import ScoreFromNoise, TimeMLP


def test_assignment_net_takes_x_and_t_in_R3():
    net = TimeMLP(dim=2, hidden=64, depth=4)
    linears = [m for m in net.net if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(3, 64), (64, 64), (64, 64), (64, 64), (64, 2)]
    out = net(torch.randn(10, 2), torch.rand(10))
    assert out.shape == (10, 2)  # seed 002: a [10, 2] output on a batch of 10


def test_time_is_an_input():
    torch.manual_seed(0)
    net = TimeMLP()
    x = torch.randn(5, 2)
    assert not torch.allclose(net(x, torch.zeros(5)), net(x, torch.ones(5)))
    # a scalar t and a (B, 1) t are broadcast to (B,)
    assert torch.allclose(net(x, 0.3), net(x, torch.full((5,), 0.3)))
    assert torch.allclose(net(x, torch.full((5, 1), 0.3)), net(x, torch.full((5,), 0.3)))


@pytest.mark.parametrize("emb", ["sinusoidal", "fourier"])
def test_embeddings_and_gradients(emb):
    net = TimeMLP(dim=3, hidden=16, depth=2, time_embedding=emb, time_dim=8)
    assert net.net[0].in_features == 3 + 8
    x = torch.randn(4, 3, requires_grad=True)
    net(x, torch.rand(4)).square().sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in net.parameters())


def test_flattens_any_shape():
    net = TimeMLP(dim=2 * 3 * 3, hidden=8, depth=1)
    x = torch.randn(4, 2, 3, 3)
    assert net(x, torch.rand(4)).shape == x.shape


def test_class_conditioning_with_null_label():
    torch.manual_seed(0)
    net = TimeMLP(num_classes=3)
    x, t = torch.randn(6, 2), torch.rand(6)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    assert net(x, t, y).shape == (6, 2)
    null = torch.full((6,), 3)
    assert torch.allclose(net(x, t), net(x, t, null))  # y=None means the null label
    assert not torch.allclose(net(x, t, y), net(x, t, null))


def test_errors():
    with pytest.raises(ValueError, match="activation"):
        TimeMLP(activation="swish")
    with pytest.raises(ValueError, match="depth"):
        TimeMLP(depth=0)
    net = TimeMLP()
    with pytest.raises(ValueError, match="dim=2"):
        net(torch.randn(4, 3), torch.rand(4))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        net(torch.randn(4, 2), torch.rand(3))
    with pytest.raises(ValueError, match="num_classes=None"):
        net(torch.randn(4, 2), torch.rand(4), torch.zeros(4, dtype=torch.long))


def test_score_from_noise_divides_by_sigma():
    torch.manual_seed(0)
    net = TimeMLP()
    std = lambda t: 0.5 + t  # noqa: E731
    model = ScoreFromNoise(net, std)
    x, t = torch.randn(6, 2), torch.rand(6)
    assert torch.allclose(model(x, t), -net(x, t) / (0.5 + t)[:, None])
    assert model(x, 0.25).shape == (6, 2)
    # the σ-weighted loss with this score is the ε-prediction loss: σ s + ε = ε − ε_θ
    eps = torch.randn(6, 2)
    assert torch.allclose(std(t)[:, None] * model(x, t) + eps, eps - net(x, t), atol=1e-6)
    # finite where σ = 0
    zero = ScoreFromNoise(net, lambda t: 0 * t)
    assert torch.isfinite(zero(x, t)).all()
    # labels are passed through; parameters are the wrapped network's
    cond = ScoreFromNoise(TimeMLP(num_classes=2), std)
    assert cond(x, t, torch.zeros(6, dtype=torch.long)).shape == (6, 2)
    assert len(list(model.parameters())) == len(list(net.parameters()))
    with pytest.raises(ValueError, match="std"):
        ScoreFromNoise(net, 1.0)
