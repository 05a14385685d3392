"""Notebook 07's guarantees: the conditioning path on the real UNet (null label, label dropout,
guided-output algebra), seed 003's sinusoidal time encoding, editing at t0 = 0, and DDIM with all
T steps and η = 1 reproducing the ancestral step's distribution."""
import math

import pytest
import torch

from nbhelpers.data import Batch
from nbhelpers.ddpm import DDPM
from nbhelpers.guidance import CFGModel, drop_labels, guided_eps
from nbhelpers.models.embeddings import sinusoidal_frequencies
from nbhelpers.models.unet import ResidualLayer, UNet, UNetConfig
from nbhelpers.recipes import cfg_mnist

NULL = cfg_mnist.NUM_CLASSES


def _model(variant="cosine", seed=0):
    torch.manual_seed(seed)
    return cfg_mnist.build_model(cfg_mnist.preset(variant, "smoke")).eval()


def _inputs(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 28, 28, generator=g), torch.rand(b, generator=g), torch.randint(0, 10, (b,), generator=g)


# --------------------------------------------------------------------------- conditioning path
def test_null_label_is_the_unconditional_input_and_labels_change_the_output():
    model = _model()
    x, t, y = _inputs()
    with torch.no_grad():
        out_none = model(x, t)
        out_null = model(x, t, torch.full_like(y, NULL))
        out_y = model(x, t, y)
        out_other = model(x, t, (y + 1) % 10)
    assert torch.equal(out_none, out_null)  # y=None means ∅ = num_classes
    assert (out_y - out_null).abs().max() > 1e-4
    assert (out_y - out_other).abs().max() > 1e-4


def test_training_loss_feeds_dropped_labels_at_rate_p_uncond():
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, x, t, y=None):
            seen.append(y.clone())
            return torch.zeros_like(x)

    ddpm = DDPM.from_schedule("cosine", 20)
    y = torch.arange(10).repeat(500)  # 5000 labels
    x = torch.zeros(y.shape[0], 1, 2, 2)
    gen = torch.Generator().manual_seed(0)
    for p in (0.0, 0.1, 1.0):
        seen.clear()
        cfg_mnist.cfg_loss(ddpm, p)(Spy(), Batch(x, y), gen)
        got = seen[0]
        dropped = got == NULL
        assert torch.equal(got[~dropped], y[~dropped])  # kept labels are untouched
        n = y.numel()
        sd = math.sqrt(n * p * (1 - p))
        assert abs(dropped.sum().item() - n * p) <= 4 * sd + 1e-9  # binomial(n, p) within 4σ


@pytest.mark.parametrize("w", [0.0, 0.5, 2.0, 8.0])
def test_guided_output_algebra_on_the_real_unet(w):
    model = _model()
    x, t, y = _inputs()
    with torch.no_grad():
        eps_c = model(x, t, y)
        eps_u = model(x, t, torch.full_like(y, NULL))
        guided = guided_eps(model, x, t, y, w, NULL)
        wrapped = CFGModel(model, w, NULL)(x, t, y)
    expected = (w + 1) * eps_c - w * eps_u  # seed 001 eq. 18
    tol = 2e-5 * (2 * w + 1)  # float32 round-off of the batched [x; x] pass, amplified by the weights
    assert torch.allclose(guided, expected, atol=tol, rtol=0)
    assert torch.allclose(wrapped, expected, atol=tol, rtol=0)
    # linear in w: ε̄(w) − ε̄(0) = w (ε_c − ε_u)
    assert torch.allclose(guided - eps_c, w * (eps_c - eps_u), atol=tol, rtol=0)


def test_generate_uses_the_guided_noise_and_skips_the_null_pass_at_w0():
    model = _model()
    ddpm = DDPM.from_schedule("cosine", 8)
    y = cfg_mnist.class_labels(1)
    x_T = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    for w in (0.0, 2.0):
        got = cfg_mnist.generate(ddpm, model, y, w, sampler="ddim", n_steps=4, x_T=x_T)
        ref = ddpm.ddim_sample(CFGModel(model, w, NULL), x_T, 4, y=y)
        assert torch.allclose(got.x, ref.x, atol=2e-3)  # round-off only; a wrong weight moves pixels by O(1)
    calls = []
    hook = model.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    cfg_mnist.generate(ddpm, model, y, 0.0, sampler="ddim", n_steps=2, x_T=x_T)
    cfg_mnist.generate(ddpm, model, y, 1.0, sampler="ddim", n_steps=2, x_T=x_T)
    hook.remove()
    assert calls == [10, 10, 20, 20]  # w = 0: conditional pass only; w > 0: [x; x] in one batch


# --------------------------------------------------------------------------- seed 003's time encoding
def test_paper_encoding_shape_and_frequencies():
    enc = cfg_mnist.PaperTimeEncoding(T=1000, n_freqs=10)
    t = torch.rand(7)
    out = enc(t)
    assert out.shape == (7, 20) and enc.dim == 20
    sin, cos = out[:, :10], out[:, 10:]
    assert torch.allclose(sin**2 + cos**2, torch.ones_like(sin), atol=1e-5)
    # d/dt sin(2π f t) at t = 0 is 2π f: read the frequencies off the encoding with autograd
    t0 = torch.zeros(1, requires_grad=True)
    f = torch.stack([torch.autograd.grad(enc(t0)[0, j], t0)[0][0] for j in range(10)]) / (2 * math.pi)
    expected = 500.0 ** (torch.arange(10, dtype=torch.float64) / 9)  # geometric, 1 … T/2 (Nyquist of k/T)
    assert torch.allclose(f.double(), expected, rtol=1e-4)
    assert torch.allclose(enc.freqs.double(), sinusoidal_frequencies(10, 500.0), rtol=1e-6)
    # every pair of distinct steps k/T gets a distinct code
    codes = enc(torch.arange(1001, dtype=torch.float32) / 1000).double()
    d = torch.cdist(codes, codes) + torch.eye(1001, dtype=torch.float64) * 1e9
    assert d.min() > 0.05


def test_paper_variant_adds_the_encoding_to_every_residual_block():
    p = cfg_mnist.preset("ddpm_paper", "smoke")
    assert (p.schedule, p.n_freqs) == ("linear", 10)
    model = _model("ddpm_paper")
    layers = [m for m in model.modules() if isinstance(m, ResidualLayer)]
    inputs = []
    hooks = [m.time_mlp.register_forward_hook(lambda mod, i, o: inputs.append(i[0])) for m in layers]
    x, t, y = _inputs(3)
    with torch.no_grad():
        model(x, t, y)
    for h in hooks:
        h.remove()
    expected = cfg_mnist.PaperTimeEncoding(p.T, 10)(t) + model.class_embed(y)
    assert len(layers) >= 9 and len(inputs) == len(layers)  # 4 encoders + bottleneck + 4 decoders
    for got in inputs:
        assert got.shape == (3, 20) and torch.allclose(got, expected, atol=1e-6)
    full = cfg_mnist.preset("ddpm_paper", "cpu")
    betas = full.ddpm().betas
    assert full.T == 1000 and betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)


# --------------------------------------------------------------------------- editing
def test_editing_at_t0_zero_returns_the_input_unchanged():
    model = _model()
    ddpm = DDPM.from_schedule("cosine", 20)
    x, _, y = _inputs(4)
    out = cfg_mnist.edit(ddpm, model, x, (y + 1) % 10, 0.0, guidance_w=2.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, x)
    with pytest.raises(ValueError, match="t0"):
        cfg_mnist.edit(ddpm, model, x, y, 1.5)


def test_editing_starts_from_the_diffused_input():
    """At t0 = 1/T one reverse step from x_1 ~ q(x_1 | x_0): the result stays within a few √β_1 of x_0."""
    model = _model()
    ddpm = DDPM.from_schedule("cosine", 200)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    out = cfg_mnist.edit(ddpm, model, x, torch.arange(4), 1 / 200, generator=torch.Generator().manual_seed(0))
    # x_1 = √ᾱ_1 x0 + √(1−ᾱ_1) ε; the last step returns x̂0 = (x_1 − √(1−ᾱ_1) ε_θ)/√ᾱ_1 clamped,
    # so |out − x0| ≤ √(1−ᾱ_1)/√ᾱ_1 · |ε − ε_θ| (no fresh noise at the last step)
    s = (ddpm.sqrt_one_minus_alphas_cumprod[0] / ddpm.sqrt_alphas_cumprod[0]).item()
    assert s < 0.05 and (out - x).abs().max() < s * 12


# --------------------------------------------------------------------------- DDIM η = 1 ≡ ancestral
def test_ddim_all_steps_eta1_matches_one_ancestral_step():
    torch.manual_seed(0)
    model = UNet(UNetConfig(base_channels=8, channel_mults=(1, 2), res_layers=1, bottleneck_layers=1, norm="group",
                            norm_groups=4, num_classes=10, time_embed_dim=16)).eval()
    T, k0, n = 10, 6, 4000
    ddpm = DDPM.from_schedule("cosine", T)
    x_k = torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(1)).expand(n, -1, -1, -1).contiguous()
    y = torch.full((n,), 3)
    assert ddpm.ddim_steps(k0, k0) == list(range(k0, 0, -1))  # all steps
    anc = ddpm.sample(model, x_k, y=y, start_step=k0, return_steps=[k0 - 1], generator=torch.Generator().manual_seed(2))
    ddim = ddpm.ddim_sample(model, x_k, k0, eta=1.0, y=y, start_step=k0, return_steps=[k0 - 1],
                            generator=torch.Generator().manual_seed(3))
    # closed form of one step: N(μ̃_k(x_k, x̂0), β̃_k)
    with torch.no_grad():
        eps = model(x_k[:1], torch.full((1,), k0 / T), y[:1])
    x0 = ddpm.predict_x0(x_k[:1], k0, eps).clamp(-1, 1)
    mean = ddpm.q_posterior(x0, x_k[:1], k0).mean[0]
    var = ddpm.posterior_variance[k0 - 1].item()
    for name, out in (("ancestral", anc.trajectory[k0 - 1]), ("ddim", ddim.trajectory[k0 - 1])):
        m, v = out.mean(0), out.var(0)
        assert (m - mean).abs().max() < 5 * math.sqrt(var / n), name
        assert ((v / var) - 1).abs().max() < 5 * math.sqrt(2 / n) + 0.02, name
    a, d = anc.trajectory[k0 - 1], ddim.trajectory[k0 - 1]
    assert (a.mean(0) - d.mean(0)).abs().max() < 6 * math.sqrt(2 * var / n)
