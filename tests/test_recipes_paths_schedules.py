"""Notebook 02's studies: numbers against closed forms, figures by their axes and data."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import nbhelpers as nb
from nbhelpers.recipes import paths_schedules as ps
from tests.conftest import generator as _gen


def _sample_path(schedule, z, t, eps):
    v = schedule(t)
    return nb.paths.expand_time(v.alpha, z) * z + nb.paths.expand_time(v.beta, z) * eps


class _BadDerivative(nb.schedules.LinearSchedule):
    def d_alpha(self, t):  # off by 0.5 everywhere
        return torch.full_like(torch.as_tensor(t, dtype=torch.float64), 1.5)


def test_schedule_study_derivative_errors_and_curves():
    study = ps.schedule_study({"linear": nb.schedules.get_schedule("linear"),
                               "cosine": nb.schedules.get_schedule("cosine")}, n=11)
    assert set(study.metrics) == {"schedule_derivative_err_linear", "schedule_derivative_err_cosine"}
    assert max(study.metrics.values()) < 1e-10 and len(study.summary.splitlines()) == 2
    ax_ab, ax_d, ax_snr = study.figure.axes
    cos_alpha = ax_ab.get_lines()[2]  # α linear, β linear, α cosine, …
    np.testing.assert_allclose(cos_alpha.get_ydata(), np.sin(np.pi / 2 * np.linspace(0, 1, 11)), atol=1e-12)
    k = np.arange(1, 10)  # interior times t = k/10: SNR = (t / (1 − t))²
    np.testing.assert_allclose(ax_snr.get_lines()[0].get_ydata(), np.log10((k / (10 - k)) ** 2), atol=1e-12)
    assert ax_snr.get_title() == "log₁₀ SNR = log₁₀(α²/β²)"
    with pytest.raises(ValueError, match=r"d_alpha\(t\) disagrees with the finite difference"):  # validate_schedule
        ps.schedule_study({"bad": _BadDerivative()})
    plt.close("all")


def test_path_moment_study_small_deviation_and_catches_a_wrong_path():
    path = nb.paths.GaussianPath("linear")
    z0 = torch.tensor([[1.5, -1.0]])
    good = ps.path_moment_study(_sample_path, path, z0, [0.0, 0.5, 1.0], 4000, generator=_gen())
    assert good.figure is None and good.metrics["path_sample_worst_deviation_se"] < 5
    assert len(good.summary.splitlines()) == 4
    wrong = ps.path_moment_study(lambda s, z, t, e: _sample_path(s, z, t, 2 * e), path, z0, [0.5], 4000, _gen())
    assert wrong.metrics["path_sample_worst_deviation_se"] > 20  # std 2β instead of β


def test_fixed_corruption_and_recognisability_study():
    gmm = nb.distributions.toy_gmm()
    z, labels = gmm.sample_with_labels(2000, generator=_gen())
    eps = torch.randn(z.shape, generator=_gen(1))
    corrupt = ps.FixedCorruption(_sample_path, gmm, z, labels, eps)
    lin = nb.schedules.get_schedule("linear")
    torch.testing.assert_close(corrupt(lin, 0.25), 0.25 * z + 0.75 * eps)
    chance = float((gmm.weights ** 2).sum())  # P(true mode) when x_t says nothing
    assert corrupt.recognised(lin, 0.0) == pytest.approx(chance, abs=0.03)
    assert corrupt.recognised(lin, 1.0) > 0.95
    times = torch.linspace(0, 1, 11)
    study = ps.recognisability_study({"linear": lin}, times, corrupt)
    assert 0.5 < study.metrics["t_mode_recognisable_90_linear"] < 1.0
    # at t = 1/2 the spread per coordinate is that of 0.5 z + 0.5 ε
    assert study.metrics["xt_std_at_t0.5_linear"] == pytest.approx((0.5 * z + 0.5 * eps).std(0).mean().item(), rel=1e-5)
    acc_line = study.figure.axes[0].get_lines()[0]
    assert acc_line.get_ydata()[-1] == pytest.approx(corrupt.recognised(lin, 1.0), rel=1e-6)
    with pytest.raises(ValueError, match="never reaches"):
        ps.recognisability_study({"linear": lin}, times[:3], corrupt)
    plt.close("all")


def test_ddpm_schedule_study_closed_forms():
    T = 100
    betas = torch.full((T,), 0.02, dtype=torch.float64)
    study = ps.ddpm_schedule_study({"const": betas, "cosine": nb.schedules.ddpm_betas("cosine", T)}, short_T=10)
    assert study.metrics["ddpm_const_abar_T"] == pytest.approx(0.98 ** T)
    # SNR = ᾱ/(1 − ᾱ) < 1 ⇔ ᾱ < 1/2 ⇔ k > log(1/2)/log(0.98)
    assert study.metrics["ddpm_const_snr_below_1_from_k"] == math.ceil(math.log(0.5) / math.log(0.98))
    assert study.metrics["ddpm_cosine_clipped_steps"] >= 1
    for name in nb.schedules.DDPM_SCHEDULES:
        want = nb.schedules.alphas_cumprod(nb.schedules.ddpm_betas(name, 10))[-1].item()
        assert study.metrics[f"ddpm_{name}_T10_abar_T"] == want
    axes = study.figure.axes
    assert len(axes) == 4 and axes[0].get_yscale() == "log"
    np.testing.assert_allclose(axes[1].get_lines()[0].get_ydata(), 0.98 ** np.arange(1, T + 1), rtol=1e-12)
    plt.close("all")


def test_forward_chain_study_matches_closed_form_variance():
    gmm = nb.distributions.toy_gmm()
    x0, labels = gmm.sample_with_labels(3000, generator=_gen())
    betas = {"linear": nb.schedules.ddpm_betas("linear", 200)}
    study = ps.forward_chain_study(betas, x0, labels, gmm.means, every=50, n_shown=500, generator=_gen(2))
    rel = study.metrics["ddpm_linear_chain_vs_closed_form_var_max_rel"]
    assert rel < 4 * math.sqrt(2 / (3000 - 1))
    titles = [ax.get_title() for ax in study.figure.axes]
    assert titles == ["linear, k = 0", "linear, k = 100", "linear, k = 200"]
    assert len(study.figure.axes[0].collections[0].get_offsets()) == 500
    # the × marks: the means shrunk by √ᾱ_k at k = 200
    abar = nb.schedules.alphas_cumprod(betas["linear"])
    marks = study.figure.axes[2].collections[1].get_offsets()
    np.testing.assert_allclose(marks, (abar[199].sqrt() * gmm.means).numpy(), rtol=1e-5)
    plt.close("all")


def test_labelled_samples_figure_draws_points_and_title():
    gmm = nb.distributions.toy_gmm()
    z, labels = gmm.sample_with_labels(100, generator=_gen())
    fig = ps.labelled_samples_figure(gmm.log_prob, z, labels, "z")
    ax = fig.axes[0]
    assert ax.get_title() == "z"
    np.testing.assert_allclose(ax.collections[-1].get_offsets(), z.numpy())
    plt.close("all")
