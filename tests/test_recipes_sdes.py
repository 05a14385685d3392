"""Notebook 01's studies: numbers against closed forms, figures by their axes and data."""
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import nbhelpers as nb
from nbhelpers.recipes import sdes
from tests.conftest import generator as _gen


def test_brownian_study_variance_matches_sigma2_t_and_panels():
    n = 4000
    study = sdes.brownian_study(nb.sde.BrownianMotion, [0.5, 2.0], 1.0, 50, n, generator=_gen(), n_show=7)
    assert set(study.metrics) == {"bm_var_rel_err_sigma0.5", "bm_var_rel_err_sigma2"}
    assert all(v < 4 * math.sqrt(2 / (n - 1)) for v in study.metrics.values())
    axes = study.figure.axes
    assert len(axes) == 2 and axes[0].get_title().startswith("σ = 0.5") and axes[0].get_ylabel() == "$X_t$"
    # 7 paths, then the ±σ√t envelope: its last value is σ√1
    lines = axes[1].get_lines()
    assert len(lines) == 9 and lines[7].get_ydata()[-1] == pytest.approx(2.0)
    # a process with twice the noise is off by a factor 4 in variance
    wrong = sdes.brownian_study(lambda s: nb.sde.BrownianMotion(2 * s), [1.0], 1.0, 50, n, generator=_gen())
    assert wrong.metrics["bm_var_rel_err_sigma1"] == pytest.approx(3.0, rel=0.1)
    plt.close("all")


def test_ou_endpoint_study_stationary_variance_and_layout():
    n = 3000
    study = sdes.ou_endpoint_study(nb.sde.OrnsteinUhlenbeck, [(1.0, 1.0), (2.0, 0.5)], n, 400, 40, generator=_gen())
    keys = {"ou_stationary_var_rel_err_theta1_sigma1", "ou_stationary_var_rel_err_theta2_sigma0.5",
            "ou_stationary_var_rel_err_max"}
    assert set(study.metrics) == keys
    assert study.metrics["ou_stationary_var_rel_err_max"] == max(v for k, v in study.metrics.items() if "max" not in k)
    assert study.metrics["ou_stationary_var_rel_err_max"] < 0.02 + 4 * math.sqrt(2 / (n - 1))
    assert len(study.figure.axes) == 4 and len(study.summary.splitlines()) == 2
    top_right = study.figure.axes[1]  # subplots are (row, col) ordered: [0,0], [0,1], [1,0], [1,1]
    assert study.figure.axes[2].get_xlabel() == "$X_T$, T = 8"
    density = study.figure.axes[2].get_lines()[0]  # N(0, 1/2) at its grid
    x = density.get_xdata()
    np.testing.assert_allclose(density.get_ydata(), np.exp(-x**2) / math.sqrt(math.pi), rtol=1e-12)
    assert top_right.get_title().startswith("θ = 2, σ = 0.5")
    plt.close("all")


def test_ou_moments_study_matches_closed_forms():
    proc = nb.sde.OrnsteinUhlenbeck(2.0, 1.0)
    study = sdes.ou_moments_study(proc, 3.0, 4000, 2.0, 100, generator=_gen())
    ax_m, ax_v = study.figure.axes
    sim_m, ref_m = ax_m.get_lines()
    t = ref_m.get_xdata()
    np.testing.assert_allclose(ref_m.get_ydata(), 3.0 * np.exp(-2.0 * t), rtol=1e-6)
    np.testing.assert_allclose(ax_v.get_lines()[1].get_ydata(), 0.25 * (1 - np.exp(-4.0 * t)), rtol=1e-5, atol=1e-7)
    assert np.abs(sim_m.get_ydata() - ref_m.get_ydata()).max() < 0.1
    assert ax_m.get_title() == "mean, X₀ = 3"
    with pytest.raises(ValueError, match="len"):
        sdes.moments_figure(torch.linspace(0, 1, 5), torch.zeros(4, 3, 1), torch.zeros(5), torch.zeros(5), "m", "v")
    plt.close("all")


def test_langevin_mode_study_reports_tv_and_draws_weights():
    gmm = nb.distributions.toy_gmm()
    study = sdes.langevin_mode_study(gmm, 2000, 1.0, 50, generator=_gen())
    assert set(study.metrics) == {"langevin_gmm_mode_fraction_tv", "exact_samples_mode_fraction_tv"}
    assert 0 <= study.metrics["exact_samples_mode_fraction_tv"] < 0.05  # exact samples: sampling noise only
    axes = study.figure.axes
    assert len(axes) == 3 and axes[1].get_title() == "Langevin from a uniform start, T = 1"
    heights = [p.get_height() for p in axes[2].patches]
    np.testing.assert_allclose(heights[:5], gmm.weights.numpy(), rtol=1e-6)
    assert sum(heights[5:]) == pytest.approx(1.0, abs=1e-6)
    assert [t.get_text() for t in axes[0].texts] == ["0", "1", "2", "3", "4"]
    plt.close("all")
