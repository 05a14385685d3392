"""nbhelpers.recipes.cfg_mnist (notebook 07): presets, the conditioning path on the real UNet (null label, label
dropout, guided-output algebra), seed 003's sinusoidal time encoding, sampling plumbing, editing from the
partially diffused input, DDIM with all T steps and η = 1 against the ancestral step, the settle measurement,
figures, the guidance explorer, the evidence behind the written answers, and the package's layout (each module
imports only those before it; every public name re-exported)."""
import math

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nbhelpers.data import Batch  # noqa: E402
from nbhelpers.ddpm import DDPM  # noqa: E402
from nbhelpers.guidance import CFGModel, guided_eps  # noqa: E402
from nbhelpers.models.embeddings import sinusoidal_frequencies  # noqa: E402
from nbhelpers.models.unet import ResidualLayer, SelfAttention, UNet, UNetConfig  # noqa: E402
from nbhelpers.recipes import cfg_mnist  # noqa: E402
from nbhelpers.recipes.cfg_mnist import draw_guidance_explorer, guidance_explorer  # noqa: E402

NULL = cfg_mnist.NUM_CLASSES


def _model(variant="cosine", seed=0):
    torch.manual_seed(seed)
    return cfg_mnist.build_model(cfg_mnist.preset(variant, "smoke")).eval()


def _inputs(b=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 28, 28, generator=g), torch.rand(b, generator=g), torch.randint(0, 10, (b,), generator=g)


# --------------------------------------------------------------------------- the package
MODULES = ("presets", "training", "sampling", "settle", "scores", "evidence", "figures")


def test_each_module_imports_only_those_before_it_and_stays_short():
    import ast
    from pathlib import Path

    folder = Path(cfg_mnist.__file__).parent
    assert sorted(p.stem for p in folder.glob("*.py")) == sorted(MODULES + ("__init__",))
    for i, name in enumerate(MODULES):
        text = (folder / f"{name}.py").read_text()
        assert len(text.splitlines()) <= 500, name
        siblings = {node.module for node in ast.walk(ast.parse(text))
                    if isinstance(node, ast.ImportFrom) and node.level == 1}
        assert siblings <= set(MODULES[:i]), f"{name} imports {sorted(siblings - set(MODULES[:i]))}"


def test_the_package_re_exports_every_public_name_of_its_modules_and_the_moved_ones():
    from nbhelpers import ddpm, plotting
    from nbhelpers.metrics import stats

    for name in MODULES:
        module = getattr(cfg_mnist, name)
        for public in module.__all__:
            assert getattr(cfg_mnist, public) is getattr(module, public), (name, public)
            assert public in cfg_mnist.__all__, (name, public)
    assert cfg_mnist.class_grid_figure is plotting.class_grid_figure and cfg_mnist.binomial_se is stats.binomial_se
    assert cfg_mnist.SAMPLERS is ddpm.SAMPLERS and cfg_mnist.preset("cosine", "smoke").variant == "cosine"


@pytest.mark.parametrize("variant", cfg_mnist.VARIANTS)
@pytest.mark.parametrize("profile,gpu_size", [("smoke", "t4"), ("cpu", "t4"), ("gpu", "t4"), ("gpu", "large")])
def test_presets_have_four_blocks_per_pathway_with_attention(variant, profile, gpu_size):
    p = cfg_mnist.preset(variant, profile, gpu_size=gpu_size)
    model = cfg_mnist.build_model(p)
    d = model.describe()
    assert d.encoders == 4 and d.decoders == 4 and d.class_conditional
    assert all(n >= 1 for n in d.res_layers_per_encoder + d.res_layers_per_decoder)
    # attention after the residual layers of every block below 28×28 (and at 28×28 in the large gpu model)
    for i, (enc, dec) in enumerate(zip(model.encoders, reversed(model.decoders))):
        has = [isinstance(a, SelfAttention) for a in list(enc.stage.attention) + list(dec.stage.attention)]
        assert all(has) if (i > 0 or gpu_size == "large") else not any(has)
    assert p.p_uncond == 0.1
    T = 1000 if variant == "ddpm_paper" else 200
    assert (p.schedule, p.T) == ("linear" if variant == "ddpm_paper" else "cosine", T if profile != "smoke" else T // 5)


@pytest.mark.parametrize("profile", ["cpu", "gpu"])
def test_real_presets_write_resumable_checkpoints(profile):
    # an interrupted training run resumes from the last of these (nb.training.train)
    cfg = cfg_mnist.preset("cosine", profile).train_config()
    assert 0 < cfg.checkpoint_every < cfg.steps


def test_preset_errors_name_the_choices():
    with pytest.raises(ValueError, match="cosine, ddpm_paper"):
        cfg_mnist.preset("ddim", "cpu")
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        cfg_mnist.preset("cosine", "fast")
    with pytest.raises(ValueError, match="sampler"):
        cfg_mnist.generate(DDPM.from_schedule("cosine", 4), cfg_mnist.build_model(cfg_mnist.preset("cosine", "smoke")),
                           torch.zeros(2, dtype=torch.long), 1.0, sampler="euler")


def test_preset_key_separates_variants_and_profiles():
    keys = {str(cfg_mnist.preset(v, p).key()) for v in cfg_mnist.VARIANTS for p in ("smoke", "cpu", "gpu")}
    assert len(keys) == 6


def test_class_labels_are_ordered_by_class():
    assert cfg_mnist.class_labels(2, 3).tolist() == [0, 0, 1, 1, 2, 2]


def test_generate_is_chunk_invariant_and_counts_evaluations():
    torch.manual_seed(0)
    model = cfg_mnist.build_model(cfg_mnist.preset("cosine", "smoke")).eval()
    ddpm = DDPM.from_schedule("cosine", 12)
    y = cfg_mnist.class_labels(1)
    x_T = torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    a = cfg_mnist.generate(ddpm, model, y, 2.0, sampler="ddim", n_steps=5, x_T=x_T, chunk=3, return_steps=[0, 12])
    b = cfg_mnist.generate(ddpm, model, y, 2.0, sampler="ddim", n_steps=5, x_T=x_T, chunk=100, return_steps=[0, 12])
    assert torch.allclose(a.x, b.x, atol=2e-3) and a.nfe == b.nfe == 5  # batch-size round-off only
    assert torch.equal(a.trajectory[12], x_T) and torch.allclose(a.trajectory[0], a.x)
    c = cfg_mnist.generate(ddpm, model, y, 1.0, generator=torch.Generator().manual_seed(1), return_steps=[3])
    assert c.nfe == 12 and c.x.shape == (10, 1, 28, 28) and set(c.x0_preds) == {3}


def test_settle_steps_on_a_constructed_trajectory():
    final = torch.zeros(1, 1, 2, 2)
    preds = {}
    for k in range(1, 11):
        p = final.clone()
        p[0, 0, 0, 0] = 1.0 if k <= 7 else 0.0  # off until the very end: settles only at k = 0
        p[0, 0, 0, 1] = 1.0 if k >= 3 else 0.0  # off from k = 10 down to 3, then right: settled from k = 2
        p[0, 0, 1, 0] = 0.4  # always within tol: settled from the start, k = T = 10
        preds[k] = p
    s = cfg_mnist.settle_steps(preds, final, tol=0.5)
    assert s[0, 0].tolist() == [[0, 2], [10, 10]]


def test_settle_summary_tells_part_by_part_from_all_at_once():
    T, H = 100, 28
    final = -torch.ones(1, 1, H, H)
    final[..., 6:22, 6:22] = 1.0  # a square of ink

    def trajectory(settle_left, settle_right):
        preds = {}
        for k in range(1, T + 1):
            p = final.clone()
            if k > settle_left:
                p[..., :, :14] = -final[..., :, :14]
            if k > settle_right:
                p[..., :, 14:] = -final[..., :, 14:]
            preds[k] = p
        return preds

    at_once = cfg_mnist.settle_summary(trajectory(40, 40), final, T)
    by_part = cfg_mnist.settle_summary(trajectory(80, 20), final, T)
    assert at_once.quadrant_spread == pytest.approx(0.0)
    assert at_once.ink_median == pytest.approx(0.40)
    assert by_part.quadrant_spread == pytest.approx(0.60)
    assert by_part.ink_q10 == pytest.approx(0.20) and by_part.ink_q90 == pytest.approx(0.80)
    # fraction of ink settled grows from 0 (k = T) to 1 (k = 0)
    assert by_part.fraction_settled[0] == 1.0 and by_part.fraction_settled[-1] == 0.0
    assert by_part.steps[0] == 0 and by_part.steps[-1] == T


def test_rms_distance():
    a = torch.zeros(2, 1, 4, 4)
    b = torch.full((2, 1, 4, 4), 0.5)
    b[1] = 0.0
    assert cfg_mnist.rms_distance(a, b).tolist() == [0.5, 0.0]


def _tile(canvas, r, c, h=28, w=28):
    """Image (r, c) of a tiled canvas: 2 pixels between images, 1 around (nbhelpers.plotting.tile_images)."""
    return torch.as_tensor(np.asarray(canvas)[1 + r * (h + 2):1 + r * (h + 2) + h, 1 + c * (w + 2):1 + c * (w + 2) + w])


def test_guidance_explorer_draws_the_chosen_w():
    g = torch.Generator().manual_seed(0)
    samples = {w: torch.rand(30, 1, 28, 28, generator=g) * 2 - 1 for w in (0, 1, 2)}
    metrics = {w: {"accuracy": 0.7 + 0.1 * w, "diversity": 1.0 - 0.2 * w} for w in samples}
    fig = draw_guidance_explorer(1, samples, metrics, per_class=3)
    assert "w = 1" in fig.axes[0].get_title()
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (10 * 30, 3 * 30)
    # row c shows the first samples requested for digit c
    for c, j in ((0, 0), (4, 1), (9, 2)):
        assert torch.allclose(_tile(img, c, j), ((samples[1][c * 3 + j, 0] + 1) / 2).clamp(0, 1), atol=1e-6)
    # right: accuracy (%) and diversity against w, and the chosen w marked
    ax_m, ax_div = fig.axes[1], fig.axes[2]
    acc_line, marker = ax_m.get_lines()[0], ax_m.get_lines()[-1]
    assert acc_line.get_xdata().tolist() == [0, 1, 2]
    assert acc_line.get_ydata() == pytest.approx([100 * metrics[w]["accuracy"] for w in (0, 1, 2)])
    assert ax_div.get_lines()[0].get_ydata() == pytest.approx([metrics[w]["diversity"] for w in (0, 1, 2)])
    assert (list(marker.get_xdata()), list(marker.get_ydata())) == ([1.0], [pytest.approx(80.0)])
    plt.close(fig)
    fig = draw_guidance_explorer(2.0, samples)
    assert len(fig.axes) == 1  # no metrics, no curves
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (10 * 30, 3 * 30)  # per_class = 8, but only 3 per class were sampled
    assert torch.allclose(_tile(img, 7, 2), ((samples[2][7 * 3 + 2, 0] + 1) / 2).clamp(0, 1), atol=1e-6)
    plt.close(fig)
    with pytest.raises(ValueError, match="sampled guidance weights"):
        draw_guidance_explorer(3.0, samples)
    fig = guidance_explorer(samples, metrics, w=0, interactive=False)
    assert "w = 0" in fig.axes[0].get_title()
    plt.close(fig)


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


class _Spy(torch.nn.Module):
    """An ε-network that records every call; ε = 0.1 x, so each reverse step stays finite."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))  # a device to read
        self.calls = []

    def forward(self, x, t, y=None):
        self.calls.append((x.clone(), t.clone(), None if y is None else y.clone()))
        return 0.1 * x


@pytest.mark.parametrize("w", [0.0, 2.0])
def test_editing_starts_from_the_diffused_input(w):
    """Seed 003's partial diffusion: the first network call sees x_{k₀} = √ᾱ_{k₀} x₀ + √(1 − ᾱ_{k₀}) ε at
    t = k₀/T, k₀ = round(t₀ T) and ε the generator's first draw; then k₀ reverse steps k₀, …, 1 follow.
    Guided (w > 0) the batch is [x; x] with labels [y; ∅]."""
    T, t0, k0 = 20, 0.37, 7
    ddpm = DDPM.from_schedule("cosine", T)
    abar = math.prod(1 - float(b) for b in ddpm.betas[:k0])  # ᾱ_{k₀} = ∏_{i ≤ k₀} (1 − β_i)
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 1.6 - 0.8
    y = torch.arange(4)
    spy = _Spy()
    out = cfg_mnist.edit(ddpm, spy, x, y, t0, guidance_w=w, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    eps = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    x_k0 = math.sqrt(abar) * x + math.sqrt(1 - abar) * eps
    seen, t, labels = spy.calls[0]
    assert torch.allclose(seen[:4], x_k0, atol=1e-6)
    assert torch.allclose(t, torch.full_like(t, k0 / T))
    assert [round(float(c[1][0]) * T) for c in spy.calls] == list(range(k0, 0, -1))
    if w:
        assert torch.equal(seen[4:], seen[:4]) and labels.tolist() == y.tolist() + [NULL] * 4
    else:
        assert labels.tolist() == y.tolist()


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


# --------------------------------------------------------------------------- seed 003: forward process, variant comparison
def test_variants_train_into_separate_checkpoints():
    from nbhelpers.checkpoints import checkpoint_path

    paths = {checkpoint_path(f"mnist_cfg_{v}", cfg_mnist.preset(v, "cpu").key(), profile="cpu") for v in cfg_mnist.VARIANTS}
    assert len(paths) == 2
    k_cos, k_paper = cfg_mnist.preset("cosine", "cpu").key(), cfg_mnist.preset("ddpm_paper", "cpu").key()
    assert (k_paper["schedule"], k_paper["T"], k_paper["time_input"]) == ("linear", 1000, "paper-10freq")
    assert (k_cos["schedule"], k_cos["T"], k_cos["time_input"]) == ("cosine", 200, "unet")


def test_forward_process_follows_the_closed_form_with_one_noise_per_image():
    ddpm = DDPM.from_schedule("linear", 1000)
    x0 = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1
    steps = list(range(0, 1001, 100))
    frames = cfg_mnist.forward_process(ddpm, x0, steps, generator=torch.Generator().manual_seed(1))
    assert frames.shape == (3, 11, 1, 6, 6)
    assert torch.equal(frames[:, 0], x0)  # k = 0 is the image
    ab = ddpm.alphas_cumprod.double()
    # recover ε from two columns: it must be the same ε for every k (x_k = √ᾱ x0 + √(1−ᾱ) ε)
    eps = [(frames[:, j].double() - ab[k - 1].sqrt() * x0.double()) / (1 - ab[k - 1]).sqrt() for j, k in enumerate(steps) if k]
    for e in eps[1:]:
        assert torch.allclose(e, eps[0], atol=1e-4)
    # Ho et al.'s linear schedule leaves √ᾱ_T ≈ 0.0064 of the image at k = 1000
    assert ab[-1].sqrt().item() == pytest.approx(math.sqrt(math.prod(1 - (1e-4 + (0.02 - 1e-4) * i / 999) for i in range(1000))), rel=1e-6)
    with pytest.raises(ValueError, match=r"integers in \[0, 1000\]"):
        cfg_mnist.forward_process(ddpm, x0, [0, 1001])


def test_forward_process_figure_has_a_row_per_image_and_a_column_per_step():
    ddpm = DDPM.from_schedule("linear", 1000)
    steps = [0, 500, 1000]
    frames = cfg_mnist.forward_process(ddpm, torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 2 - 1,
                                       steps, generator=torch.Generator().manual_seed(0))
    fig = cfg_mnist.forward_process_figure(frames, steps, ddpm)
    axes = fig.axes
    assert len(axes) == 6
    for i in range(2):  # row i is image i, column j its state at steps[j], clipped to the shared scale
        for j in range(3):
            assert torch.equal(torch.as_tensor(axes[i * 3 + j].images[0].get_array()), frames[i, j, 0].clamp(-1, 1))
    assert axes[0].get_title().startswith("k = 0\n√ᾱ = 1.00") and axes[2].get_title().startswith("k = 1000")
    assert axes[0].images[0].get_clim() == (-1, 1) and axes[5].images[0].get_clim() == (-1, 1)  # one fixed scale
    plt.close(fig)
    with pytest.raises(ValueError, match="frames must have shape"):
        cfg_mnist.forward_process_figure(frames, [0, 500], ddpm)


def test_binomial_se_and_verdict():
    assert cfg_mnist.binomial_se(0.5, 100) == pytest.approx(0.05)
    assert cfg_mnist.binomial_se(1.0, 10) == 0.0
    assert cfg_mnist.verdict(0.9, 0.01, 0.8, 0.01) == "higher"  # 0.1 apart, 2 s.e. of the difference = 0.028
    assert cfg_mnist.verdict(0.8, 0.01, 0.9, 0.01) == "lower"
    assert cfg_mnist.verdict(0.82, 0.01, 0.80, 0.01) == "indistinguishable"
    assert cfg_mnist.verdict(1.0, 0.0, 1.0, 0.0) == "indistinguishable"
    with pytest.raises(ValueError, match="p must be a fraction"):
        cfg_mnist.binomial_se(1.5, 10)
    with pytest.raises(ValueError, match="standard errors >= 0"):
        cfg_mnist.verdict(1.0, -0.1, 0.0, 0.1)


def test_score_variant_agrees_with_the_evaluator():
    from nbhelpers.metrics.images import MNISTClassifier, MNISTEvaluator

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    ev = MNISTEvaluator(MNISTClassifier(width=4), reference=torch.rand(60, 1, 28, 28, generator=g) * 2 - 1,
                        held_out=torch.rand(60, 1, 28, 28, generator=g) * 2 - 1)
    labels = cfg_mnist.class_labels(2)
    w0, w2, un = (torch.rand(20, 1, 28, 28, generator=g) * 2 - 1 for _ in range(3))
    s = cfg_mnist.score_variant(ev, labels, w0, w2, un, n_boot=5, generator=torch.Generator().manual_seed(1))
    e0, eu = ev.evaluate(w0), ev.evaluate(un)
    assert s.n == 20 and s.recognised == e0.recognised_fraction and s.fd_ratio == pytest.approx(e0.fd_ratio)
    assert s.accuracy_w2 == ev.class_accuracy(w2, labels)
    assert (s.class_min, s.class_max) == (eu.class_min, eu.class_max)
    assert s.accuracy_w2_se == pytest.approx(math.sqrt(s.accuracy_w2 * (1 - s.accuracy_w2) / 20))
    assert s.fd_ratio_se > 0
    assert set(s.as_dict()) >= {"recognised", "recognised_se", "fd_ratio", "fd_ratio_se", "class_min", "class_max"}
    with pytest.raises(ValueError, match="one entry per sample"):
        cfg_mnist.score_variant(ev, labels[:5], w0, w2, un)


# --------------------------------------------------------------------------- the notebook's sweeps, scores and figures
def _tiny_evaluator():
    from nbhelpers.metrics.images import MNISTClassifier, MNISTEvaluator

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    return MNISTEvaluator(MNISTClassifier(width=4), reference=torch.rand(60, 1, 28, 28, generator=g) * 2 - 1,
                          held_out=torch.rand(60, 1, 28, 28, generator=g) * 2 - 1)


def _images(n, seed):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_train_cfg_model_caches_under_the_variant_and_its_key(tmp_path, monkeypatch):
    from nbhelpers.data import ImageDataset
    from nbhelpers.checkpoints import checkpoint_path

    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path))
    p = cfg_mnist.preset("cosine", "smoke")
    data = ImageDataset(_images(32, 1), torch.arange(32) % 10)
    first = cfg_mnist.train_cfg_model(p, cfg_mnist.build_model(p), data, steps=2, seed=0)
    assert not first.loaded_from_cache and first.steps == 2 and len(first.losses) == 2
    assert first.checkpoint == checkpoint_path("mnist_cfg_cosine", p.key(), profile="smoke")
    assert tmp_path in first.checkpoint.parents
    again = cfg_mnist.train_cfg_model(p, cfg_mnist.build_model(p), data, steps=2, seed=0)
    assert again.loaded_from_cache and again.checkpoint == first.checkpoint


def test_schedule_and_time_input_figure_shows_both_schedules_and_every_step():
    p = cfg_mnist.preset("ddpm_paper", "smoke")
    fig = cfg_mnist.schedule_and_time_input_figure(cfg_mnist.build_model(p), p.T, p.schedule)
    ax_a, ax_e = fig.axes[:2]
    lines = {ln.get_label(): ln for ln in ax_a.get_lines()}
    assert set(lines) == {"cosine, T = 200", "linear, T = 1000  (this run)"}
    assert lines["linear, T = 1000  (this run)"].get_linewidth() > lines["cosine, T = 200"].get_linewidth()
    y = lines["cosine, T = 200"].get_ydata()
    assert y[0] < 1 and y[-1] < 1e-3 and (y[1:] <= y[:-1]).all()  # ᾱ_k falls from ≈ 1 to ≈ 0
    assert ax_e.images[0].get_array().shape == (20, p.T + 1)  # seed 003: 20 features of each k = 0…T
    plt.close(fig)


def test_guidance_sweep_gives_every_weight_the_same_noise():
    model, ddpm = _model(), DDPM.from_schedule("cosine", 6)
    y, x_T = cfg_mnist.class_labels(1), torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(5)
    sweep = cfg_mnist.guidance_sweep(ddpm, model, y, [1.0, 0.0, 1.0], x_T=x_T, generator=g)
    assert list(sweep.samples) == [1.0, 0.0] and sweep.nfe == {1.0: 6, 0.0: 6} and sweep.seconds > 0
    one = cfg_mnist.generate(ddpm, model, y, 1.0, x_T=x_T, generator=torch.Generator().manual_seed(5))
    assert torch.equal(sweep.samples[1.0], one.x)  # each weight starts from the generator's given state
    assert torch.equal(g.get_state(), torch.Generator().manual_seed(5).get_state())  # which is left unchanged
    ddim = cfg_mnist.guidance_sweep(ddpm, model, y, [0.0], x_T=x_T, sampler="ddim", n_steps=3)
    assert ddim.nfe[0.0] == 3


def test_first_per_class_takes_the_first_k_of_each_class():
    x = torch.arange(12.0).reshape(12, 1)  # three classes of four
    assert cfg_mnist.first_per_class(x, 4, 2).flatten().tolist() == [0, 1, 4, 5, 8, 9]
    assert torch.equal(cfg_mnist.first_per_class(x, 4), x)
    with pytest.raises(ValueError, match="not a multiple of per_class = 5"):
        cfg_mnist.first_per_class(x, 5)


def test_score_samples_table_and_metrics_agree_with_the_evaluator():
    ev, labels = _tiny_evaluator(), cfg_mnist.class_labels(2)
    samples = {0.0: _images(20, 1), 2.0: _images(20, 2)}
    real = ev.reference_diversity(per_class=2)
    rows = cfg_mnist.score_samples(ev, samples, labels, real)
    e = ev.evaluate(samples[2.0])
    assert rows[2.0]["accuracy"] == ev.class_accuracy(samples[2.0], labels) and rows[2.0]["fd"] == e.fd
    rel = ev.diversity(samples[2.0], labels) / real
    assert rows[2.0]["diversity"] == pytest.approx(float(np.nanmean(rel)))
    m = cfg_mnist.sweep_metrics(rows)
    assert len(m) == 2 * len(cfg_mnist.SWEEP_METRICS) and m["w2_fd_ratio"] == rows[2.0]["fd_ratio"]
    table = cfg_mnist.sweep_table(rows).splitlines()
    assert len(table) == 3 and table[2].startswith("   2 | ") and f"{rows[2.0]['fd']:7.2f}" in table[2]
    text = cfg_mnist.diversity_text(2.0, rows[2.0])
    assert text.startswith(f"w = 2: diversity / real = {rows[2.0]['diversity']:.2f}")
    fig = cfg_mnist.diversity_figure(rows, (0.0, 2.0))
    assert len(fig.axes[0].patches) == 30  # real, w = 0, w = 2 for each digit
    plt.close(fig)
    fig = cfg_mnist.guidance_tradeoff_figure(rows)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["w = 0", "w = 2"]
    assert ax.collections[0].get_offsets()[1].tolist() == pytest.approx([rows[2.0]["diversity"],
                                                                        100 * rows[2.0]["accuracy"]])
    plt.close(fig)


def test_trajectory_and_settling_figures():
    g = torch.Generator().manual_seed(7)
    states = {k: torch.randn(2, 1, 4, 4, generator=g) for k in (0, 4, 8)}  # some beyond [−1, 1]: clipped
    preds = {k: torch.randn(2, 1, 4, 4, generator=g) for k in (4, 8)}
    final = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1
    fig = cfg_mnist.trajectory_figure(states, preds, final, 1, [8, 4, 0])
    assert len(fig.axes) == 6 and [a.get_title() for a in fig.axes[:3]] == ["k = 8", "k = 4", "k = 0"]
    shown = [torch.as_tensor(a.images[0].get_array()) for a in fig.axes]
    # top: the states of sample 1; bottom: its x̂₀ at each k and, at k = 0, the final digit
    for j, k in enumerate((8, 4, 0)):
        assert torch.equal(shown[j], states[k][1, 0].clamp(-1, 1)), k
    for j, expected in ((3, preds[8][1, 0]), (4, preds[4][1, 0]), (5, final[1, 0])):
        assert torch.equal(shown[j], expected.clamp(-1, 1)), j
    plt.close(fig)
    x0 = {k: torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(k)) * 2 - 1 for k in (1, 2, 3, 4)}
    digits = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(9)) * 2 - 1
    summary = cfg_mnist.settle_summary(x0, digits, 4)
    settle = cfg_mnist.settle_steps(x0, digits)
    fig = cfg_mnist.settling_figure(digits[0, 0], settle[0, 0], summary)
    assert torch.equal(torch.as_tensor(fig.axes[0].images[0].get_array()), digits[0, 0])
    assert torch.equal(torch.as_tensor(fig.axes[1].images[0].get_array()), settle[0, 0])
    assert fig.axes[1].images[0].get_clim() == (0, 4) and fig.axes[2].get_xlim() == (4, 0)  # generation runs right
    assert fig.axes[2].get_lines()[0].get_xdata().tolist() == summary.steps.tolist()
    assert fig.axes[2].get_lines()[0].get_ydata().tolist() == summary.fraction_settled.tolist()
    plt.close(fig)


def test_edit_sweep_scores_and_figures():
    model, ddpm = _model(), DDPM.from_schedule("cosine", 10)
    x, y = _images(4, 3), torch.tensor([0, 1, 2, 3])
    y_new = (y + 1) % 10
    edits = cfg_mnist.edit_sweep(ddpm, model, x, y, y_new, [0.0, 0.5], [None, torch.Generator().manual_seed(1)])
    assert torch.equal(edits[0.0][0], x) and torch.equal(edits[0.0][1], x)  # t0 = 0 changes nothing
    both = cfg_mnist.edit(ddpm, model, torch.cat([x, x]), torch.cat([y, y_new]), 0.5,
                          generator=torch.Generator().manual_seed(1))
    assert torch.equal(edits[0.5][1], both[4:])
    with pytest.raises(ValueError, match="one generator per t0"):
        cfg_mnist.edit_sweep(ddpm, model, x, y, y_new, [0.2, 0.4], [None])
    ev = _tiny_evaluator()
    rows = cfg_mnist.score_edits(ev, edits, x, y, y_new)
    assert rows[0.0]["rms_same"].tolist() == [0.0] * 4 and rows[0.0]["still_original"] == ev.class_accuracy(x, y)
    m = cfg_mnist.edit_metrics(rows)
    assert set(m) == {f"edit_t{f}_{k}" for f in ("0", "0.5") for k in ("rms_own", "rms_other", "acc_own", "acc_other")}
    assert m["edit_t0.5_rms_other"] == pytest.approx(cfg_mnist.rms_distance(edits[0.5][1], x).mean().item())
    assert cfg_mnist.edit_table(rows).splitlines()[1].startswith(" 0.0 |          0.000 |")
    fig = cfg_mnist.edits_figure(x, y, y_new, edits, n_show=2)
    assert fig.axes[0].get_title() == "own label: original, t₀ = 0, 0.5"
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["0 → 0/1", "3 → 3/4"]
    plt.close(fig)
    fig = cfg_mnist.edit_distance_figure(rows, 0.7, 0.9)
    assert sorted(ln.get_ydata()[0] for ln in fig.axes[0].get_lines() if len(ln.get_ydata()) == 2
                  and ln.get_ydata()[0] == ln.get_ydata()[1])[-2:] == [0.7, 0.9]  # the two yardsticks
    assert len(fig.axes[1].get_lines()) == 3
    plt.close(fig)


def test_real_pair_distances_on_two_constant_classes():
    images = torch.cat([torch.full((5, 1, 4, 4), -1.0), torch.full((5, 1, 4, 4), 1.0)])
    labels = torch.tensor([0] * 5 + [1] * 5)
    same, diff = cfg_mnist.real_pair_distances(images, labels, 200, generator=torch.Generator().manual_seed(0))
    assert (same, diff) == (0.0, 2.0)  # RMS of 0 within a class, |1 − (−1)| = 2 across


def test_ddim_and_ancestral_sets_reuse_what_they_have_and_are_scored():
    model, ddpm = _model(), DDPM.from_schedule("cosine", 8)
    y, x_T = cfg_mnist.class_labels(1), torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    have = {"DDIM-4": (torch.zeros(10, 1, 28, 28), 4)}
    sets = cfg_mnist.ddim_and_ancestral_sets(ddpm, model, y, 2.0, x_T, [2, 4], have=have,
                                             generator=torch.Generator().manual_seed(1))
    assert list(sets) == ["DDIM-2", "DDIM-4", "ancestral"] and sets["DDIM-4"] is have["DDIM-4"]
    assert sets["DDIM-2"][1] == 2 and sets["ancestral"][1] == 8
    ddim2 = cfg_mnist.generate(ddpm, model, y, 2.0, sampler="ddim", n_steps=2, x_T=x_T)
    assert torch.equal(sets["DDIM-2"][0], ddim2.x)
    ev = _tiny_evaluator()
    rows = cfg_mnist.score_sets(ev, sets, y)
    assert rows["DDIM-2"]["accuracy"] == ev.class_accuracy(ddim2.x, y) and rows["ancestral"]["nfe"] == 8
    m = cfg_mnist.sets_metrics(rows)
    assert m["ddim4_nfe"] == 4 and m["ancestral_fd_ratio"] == rows["ancestral"]["fd_ratio"] and len(m) == 18
    assert cfg_mnist.sets_table(rows).splitlines()[3].startswith(" ancestral |     8 |")
    fig = cfg_mnist.ddim_vs_ancestral_figure(rows, 2.0, 8)
    ax = fig.axes[0]
    assert ax.get_lines()[0].get_xdata().tolist() == [2, 4] and ax.get_lines()[1].get_label() == "ancestral, all T = 8"
    assert ax.get_title() == "fidelity at w = 2" and ax.get_xscale() == "log"
    plt.close(fig)


class _ClassPoints(torch.nn.Module):
    """The exact ε of data that is one constant image μ_y per label y (μ_∅ for the null label):
    ε(x_k, y) = (x_k − √ᾱ_k μ_y)/√(1 − ᾱ_k). Guided, (w + 1) ε(x, y) − w ε(x, ∅) is the exact ε of the
    single point (w + 1) μ_y − w μ_∅, on which DDIM with η = 0 lands in any number of steps."""

    def __init__(self, ddpm):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # generate reads the device off the parameters
        self.abar = torch.cat([torch.ones(1, dtype=torch.float64), ddpm.alphas_cumprod])
        self.T = ddpm.T
        self.mu = torch.cat([(torch.arange(10, dtype=torch.float64) - 4.5) / 20, torch.tensor([0.05], dtype=torch.float64)])

    def forward(self, x, t, y):
        a = self.abar[torch.round(t.double() * self.T).long()].reshape(-1, 1, 1, 1)
        mu = self.mu[y].reshape(-1, 1, 1, 1)
        return ((x.double() - a.sqrt() * mu) / (1 - a).sqrt()).to(x.dtype)


def test_sample_and_score_variant_samples_what_it_is_not_given(monkeypatch):
    """The three sets are w = 0 for the labels (μ_y), w = 2 for the labels (3 μ_y − 2 μ_∅) and w = 0 for ∅ (μ_∅),
    each from x_T by the given sampler; a set in ``have`` is scored as given; the generator drives the scoring."""
    ddpm = DDPM.from_schedule("cosine", 6)
    model = _ClassPoints(ddpm)
    y, x_T = cfg_mnist.class_labels(1), torch.randn(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    mu = model.mu.float()
    point = lambda m: m.reshape(-1, 1, 1, 1).expand(-1, 1, 28, 28)  # noqa: E731
    scored = []

    def score_variant(ev, labels, w0, w2, uncond, generator=None):  # the scoring has its own test above
        scored.append((ev, labels, w0, w2, uncond, generator))
        return "score"

    monkeypatch.setattr(cfg_mnist.scores, "score_variant", score_variant)
    ev, g = object(), torch.Generator().manual_seed(2)
    assert cfg_mnist.sample_and_score_variant(ev, ddpm, model, y, x_T, sampler="ddim", n_steps=3, generator=g) == "score"
    got_ev, labels, w0, w2, uncond, got_g = scored[-1]
    assert got_ev is ev and got_g is g and torch.equal(labels, y)
    torch.testing.assert_close(w0, point(mu[y]), atol=1e-5, rtol=0)
    torch.testing.assert_close(w2, point(3 * mu[y] - 2 * mu[NULL]), atol=1e-5, rtol=0)
    torch.testing.assert_close(uncond, point(mu[NULL]).expand(10, 1, 28, 28), atol=1e-5, rtol=0)
    have = _images(10, 4)
    cfg_mnist.sample_and_score_variant(ev, ddpm, model, y, x_T, sampler="ddim", n_steps=3, have={"w0": have})
    assert scored[-1][2] is have and torch.equal(scored[-1][3], w2) and torch.equal(scored[-1][4], uncond)


# --------------------------------------------------------------------------- the evidence behind the written answers
def test_the_evidence_holds_numbers_and_the_claims_sit_in_the_notebook():
    """The recipe returns numbers only; notebook 07's answer cells make every claim beside its prose."""
    import inspect
    import json

    from nbhelpers.layout import ROOT

    assert "claim(" not in inspect.getsource(cfg_mnist.evidence)
    nb = json.loads((ROOT / "notebooks" / "07_mnist_cfg.ipynb").read_text())
    answers = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "_evidence(" in c["source"][0]]
    assert len(answers) == 7 and all("claims=[" in a and "run.answer(" in a for a in answers)


def test_diversity_evidence_counts_classes_and_compares_with_real_within_two_se():
    d0 = np.linspace(1.0, 1.2, 10)
    rows = {0.0: {"diversity_per_class": d0, "diversity": float(d0.mean())},
            2.0: {"diversity_per_class": d0 - 0.1, "diversity": float(d0.mean()) - 0.1}}
    real = np.arange(10.0)[::-1]  # digit 9 least varied, digit 0 most
    e = cfg_mnist.diversity_evidence(rows, real)
    assert e["se"] == pytest.approx(np.std(d0, ddof=1) / np.sqrt(10)) and e["n_less"] == 10
    assert (e["top"], e["bottom"]) == ("0 and 1", "9 and 8")
    assert e["vs_real"].startswith("more varied than real")  # mean 1.1 is more than 2 s.e. (0.04) above 1
    assert e["n_classes"] == 10 and "claims" not in e
    rows[2.0]["diversity_per_class"] = np.r_[d0[:9] - 0.1, d0[9] + 0.1]  # one class more varied at w = 2
    assert cfg_mnist.diversity_evidence(rows, real)["n_less"] == 9


def test_settle_evidence():
    s = cfg_mnist.SettleSummary(T=10, n=3, ink_q10=0.2, ink_median=0.4, ink_q90=0.6, coarse_median=0.5,
                                quadrant_spread=0.1, steps=np.zeros(1), fraction_settled=np.zeros(1),
                                fraction_settled_coarse=np.zeros(1))
    e = cfg_mnist.settle_evidence(s)
    assert e == pytest.approx({"ink": 0.4, "frac": 0.25})  # 0.6 − 0.2 and 0.1 / 0.4


def test_guidance_evidence_reads_the_sweep():
    W = [0.0, 1.0, 2.0, 4.0]
    rows = {w: {"accuracy": a, "diversity": d, "fd_ratio": f, "fd_ratio_se": 0.1}
            for w, a, d, f in zip(W, [0.5, 0.8, 0.9, 0.95], [1.0, 0.9, 0.8, 0.7], [3.0, 2.0, 2.5, 4.0])}
    e = cfg_mnist.guidance_evidence(rows, 100)
    assert (e["a0"], e["a2"], e["amax"], e["wmax"], e["wb"], e["fdb"]) == (0.5, 0.9, 0.95, 4.0, 1.0, 2.0)
    assert e["a0_se"] == pytest.approx(0.05)  # √(0.5 · 0.5 / 100)
    assert (e["fdmax"], e["se"], e["div_w"]) == (4.0, 0.1, [1.0, 0.9, 0.8, 0.7])


def test_edit_evidence_reads_the_edits():
    rows = {f: {"rms_same": torch.full((4,), r), "rms_new": torch.full((4,), r + 0.1), "acc_same": 1.0, "acc_new": a}
            for f, r, a in ((0.2, 0.1, 0.0), (0.5, 0.3, 0.25), (0.8, 0.6, 0.75))}
    e = cfg_mnist.edit_evidence(rows, ref_same=0.8, ref_diff=1.0)
    assert (e["f0"], e["f1"], e["n"], e["se"]) == (0.2, 0.8, 4, 0.25)
    assert e["r1n"] == pytest.approx(0.7) and e["new_txt"] == "0% at t₀ = 0.2, 25% at t₀ = 0.5, 75% at t₀ = 0.8"
    assert e["rms_own"] == pytest.approx([0.1, 0.3, 0.6]) and e["acc_new"] == [0.0, 0.25, 0.75]


def test_ddim_evidence_prefers_ddim50_and_ranks_the_fd_by_its_standard_error():
    rows = {f"DDIM-{n}": {"nfe": n, "accuracy": 0.9, "fd_ratio": 2.0, "fd_ratio_se": 0.1} for n in (10, 50, 100)}
    rows["ancestral"] = {"nfe": 200, "accuracy": 0.92, "fd_ratio": 3.0, "fd_ratio_se": 0.1}
    e = cfg_mnist.ddim_evidence(rows, 100, 200)
    assert (e["few"], e["many"], e["d_ref"]) == ("DDIM-10", "DDIM-100", "DDIM-50")
    assert e["anc_text"].startswith("higher than every DDIM set") and e["dd_text"].startswith("differences within")
    assert (e["acc_ref"], e["acc_anc"], e["acc_se"]) == (0.9, 0.92, 0.05)  # DDIM-50's; 0.05 = √(¼ / 100)


def test_forward_evidence_finds_where_noise_outweighs_the_digit():
    lin = DDPM.from_schedule("linear", 1000)
    e = cfg_mnist.forward_evidence({0: 0.95, 500: 0.3, 1000: 0.1}, lin, 100)
    k = e["k_equal"]
    assert lin.alphas_cumprod[k - 1] < 0.5 <= lin.alphas_cumprod[k - 2]  # ᾱ_k < 1/2 from step k on
    assert (e["read_clean"], e["read_noise"]) == (0.95, 0.1) and e["read_se"] == pytest.approx(0.03)  # √(.1·.9/100)


def test_variant_table_and_evidence():
    from nbhelpers.answers import render

    table = cfg_mnist.variant_table()
    assert table.count("\n") == 10 and "{cosine/fd_ratio:.2f} ± {cosine/fd_ratio_se:.2f}" in table
    fields = {f"{v}/{m}": 0.5 for v in ("cosine", "ddpm_paper") for _, m, _ in cfg_mnist.VARIANT_ROWS}
    fields.update({f"{k}_se": 0.01 for k in list(fields)})
    fields.update({f"{v}/{k}": 7 for v in ("cosine", "ddpm_paper") for k in ("T", "train_steps", "train_seconds")})
    assert "| FD / floor, w = 0 | 0.50 ± 0.01 | 0.50 ± 0.01 |" in render(table, fields, [])

    def score(acc):
        return cfg_mnist.VariantScore(n=100, recognised=0.9, recognised_se=0.03, fd_ratio=2.0, fd_ratio_se=0.1,
                                      accuracy_w0=0.8, accuracy_w0_se=0.04, accuracy_w2=acc, accuracy_w2_se=0.02,
                                      class_min=0.08, class_min_se=0.01, class_max=0.12, class_max_se=0.01)
    e = cfg_mnist.variant_evidence(score(0.9), score(0.7))
    assert e["accuracy_w2_cmp"] == "lower than the cosine model's"
    assert e["fd_ratio_cmp"] == "indistinguishable from the cosine model's"
    ab_lin = DDPM.from_schedule("linear", 1000).alphas_cumprod
    assert e["noise_lin"] == pytest.approx(float((ab_lin < 0.01).double().mean())) and e["noise_lin"] > e["noise_cos"]
