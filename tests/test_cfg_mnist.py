"""nbhelpers.recipes.cfg_mnist: presets, sampling plumbing, the settle measurement, figures and the guidance explorer."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nbhelpers.ddpm import DDPM  # noqa: E402
from nbhelpers.models.unet import SelfAttention  # noqa: E402
from nbhelpers.recipes import cfg_mnist  # noqa: E402
from nbhelpers.recipes.cfg_mnist import draw_guidance_explorer, guidance_explorer  # noqa: E402


@pytest.mark.parametrize("variant", cfg_mnist.VARIANTS)
@pytest.mark.parametrize("profile", ["smoke", "cpu", "gpu"])
def test_presets_have_four_blocks_per_pathway_with_attention(variant, profile):
    p = cfg_mnist.preset(variant, profile)
    model = cfg_mnist.build_model(p)
    d = model.describe()
    assert d.encoders == 4 and d.decoders == 4 and d.class_conditional
    assert all(n >= 1 for n in d.res_layers_per_encoder + d.res_layers_per_decoder)
    # attention after the residual layers of every block below 28×28 (and at 28×28 on the GPU)
    for i, (enc, dec) in enumerate(zip(model.encoders, reversed(model.decoders))):
        has = [isinstance(a, SelfAttention) for a in list(enc.stage.attention) + list(dec.stage.attention)]
        assert all(has) if (i > 0 or profile == "gpu") else not any(has)
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


def test_class_grid_figure():
    x = torch.rand(20, 1, 28, 28) * 2 - 1
    fig = cfg_mnist.class_grid_figure([x, x[:10]], ["a", "b"], per_row=2, row_labels=[str(i) for i in range(10)])
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError, match="title"):
        cfg_mnist.class_grid_figure([x], ["a", "b"])


def test_guidance_explorer_draws_the_chosen_w():
    g = torch.Generator().manual_seed(0)
    samples = {w: torch.rand(30, 1, 28, 28, generator=g) * 2 - 1 for w in (0, 1, 2)}
    metrics = {w: {"accuracy": 0.7 + 0.1 * w, "diversity": 1.0 - 0.2 * w} for w in samples}
    fig = draw_guidance_explorer(1, samples, metrics, per_class=3)
    assert len(fig.axes) == 3 and "w = 1" in fig.axes[0].get_title()
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (10 * 30, 3 * 30)
    # row c shows the first samples requested for digit c
    c, j = 4, 1
    tile = img[c * 30 + 1:c * 30 + 29, j * 30 + 1:j * 30 + 29]
    assert torch.allclose(torch.as_tensor(tile), ((samples[1][c * 3 + j, 0] + 1) / 2).clamp(0, 1), atol=1e-6)
    plt.close(fig)
    fig = draw_guidance_explorer(2.0, samples)
    assert len(fig.axes) == 1
    plt.close(fig)
    with pytest.raises(ValueError, match="sampled guidance weights"):
        draw_guidance_explorer(3.0, samples)
    fig = guidance_explorer(samples, metrics, w=0, interactive=False)
    assert "w = 0" in fig.axes[0].get_title()
    plt.close(fig)


# --------------------------------------------------------------------------- seed 003: forward process, variant comparison
def test_variants_train_into_separate_checkpoints():
    from nbhelpers.training import checkpoint_path

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
    frames = cfg_mnist.forward_process(ddpm, torch.zeros(2, 1, 8, 8), steps, generator=torch.Generator().manual_seed(0))
    fig = cfg_mnist.forward_process_figure(frames, steps, ddpm)
    axes = fig.axes
    assert len(axes) == 6
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
