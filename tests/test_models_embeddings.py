"""Time embeddings: shapes, and the frequencies they encode (by FFT and by autograd at t = 0)."""
import math

import pytest
import torch

from nbhelpers.models import embeddings as E


def test_sinusoidal_encoding_shapes():
    t = torch.rand(7)
    assert E.sinusoidal_encoding(t, 10).shape == (7, 20)
    assert E.sinusoidal_encoding(torch.tensor(0.3), 4).shape == (8,)
    assert E.sinusoidal_encoding(t[:, None], 3).shape == (7, 6)
    enc = E.sinusoidal_encoding(t, 5)
    assert torch.allclose(enc[:, :5] ** 2 + enc[:, 5:] ** 2, torch.ones(7, 5), atol=1e-6)


def test_sinusoidal_encoding_frequencies_by_fft():
    # with min 1 and max 2^(n−1) the geometric frequencies are the integers 1, 2, 4, …: on a
    # uniform grid of [0, 1) each sine column has all its spectral power in the bin f_k
    n, N = 10, 2048
    t = torch.arange(N, dtype=torch.float64) / N
    enc = E.sinusoidal_encoding(t, n, max_freq=2.0 ** (n - 1), min_freq=1.0)
    power = torch.fft.rfft(enc[:, :n], dim=0).abs()
    assert power.argmax(dim=0).tolist() == [2**k for k in range(n)]
    assert torch.allclose(E.sinusoidal_frequencies(n, 2.0 ** (n - 1)), 2.0 ** torch.arange(n, dtype=torch.float64), rtol=1e-12)


def test_ddpm_recipe_top_frequency_is_nyquist():
    # seed 003: t = k/T, 10 frequencies up to T/2 = 500 for T = 1000 → consecutive steps differ
    f = E.sinusoidal_frequencies(10)
    assert float(f[0]) == pytest.approx(1.0) and float(f[-1]) == pytest.approx(500.0)
    T = 1000
    enc = E.sinusoidal_encoding(torch.arange(T + 1, dtype=torch.float64) / T, 10)
    assert (enc[1:] - enc[:-1]).norm(dim=1).min() > 1e-3


def test_sinusoidal_embedding_frequencies_by_autograd():
    # d/dt sin(ω_k s t) at t = 0 is s·ω_k with ω_k = max_period^(−k/half)
    emb = E.SinusoidalEmbedding(16, max_period=10000.0, scale=1000.0).double()
    t = torch.zeros(1, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda s: emb(s)[0, :8], t)[:, 0]
    expected = 1000.0 * 10000.0 ** (-torch.arange(8, dtype=torch.float64) / 8)
    assert torch.allclose(jac, expected, rtol=1e-6)
    assert emb(torch.rand(5)).shape == (5, 16)
    assert emb(torch.tensor(0.5)).shape == (16,)


def test_gaussian_fourier_embedding():
    g = torch.Generator().manual_seed(0)
    emb = E.GaussianFourierEmbedding(4000, scale=30.0, generator=g)
    assert emb(torch.rand(3)).shape == (3, 4000)
    # W is a fixed buffer (saved, not trained) with standard deviation ≈ scale
    assert "W" in emb.state_dict() and not list(emb.parameters())
    assert float(emb.W.std()) == pytest.approx(30.0, rel=0.05)
    # d/dt sin(2π W t) at t = 0 is 2π W
    small = E.GaussianFourierEmbedding(8, scale=2.0, generator=torch.Generator().manual_seed(1)).double()
    t = torch.zeros(1, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda s: small(s)[0, :4], t)[:, 0]
    assert torch.allclose(jac, 2 * math.pi * small.W, rtol=1e-6)
    # same generator seed, same features
    again = E.GaussianFourierEmbedding(8, scale=2.0, generator=torch.Generator().manual_seed(1)).double()
    assert torch.equal(again.W, small.W)


def test_get_time_embedding_and_errors():
    assert E.get_time_embedding(None) is None and E.get_time_embedding("none") is None
    assert E.get_time_embedding("fourier", 12).dim == 12
    assert E.get_time_embedding("sinusoidal", 10).dim == 10
    with pytest.raises(ValueError, match="valid choices"):
        E.get_time_embedding("fourrier")
    with pytest.raises(ValueError, match="even"):
        E.SinusoidalEmbedding(7)
    with pytest.raises(ValueError, match="n_freqs"):
        E.sinusoidal_encoding(torch.rand(3), 0)
    with pytest.raises(ValueError, match="shape"):
        E.sinusoidal_encoding(torch.rand(3, 2), 2)


def test_sinusoidal_is_the_transformer_convention_not_ho_et_al():
    """ω_k = 10000^(−k/half) (diffusers' downscale_freq_shift=0); Ho et al.'s code divides by half − 1."""
    half = 32
    k = torch.arange(1000, dtype=torch.float64)
    emb = E.SinusoidalEmbedding(2 * half, scale=1.0).double()(k)

    def table(shift):
        omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / (half - shift))
        x = k[:, None] * omega
        return torch.cat([x.sin(), x.cos()], dim=1)

    assert torch.allclose(emb, table(0), atol=1e-3)  # ω is stored in float32
    assert float((emb - table(1)).abs().max()) > 1.9
