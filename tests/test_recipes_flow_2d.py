"""Notebook 03's figures and studies, with the exact marginal field of the toy mixture as the model."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import nbhelpers as nb
from nbhelpers.recipes import flow_2d
from tests.conftest import generator as _gen


@pytest.fixture(scope="module")
def setup():
    gmm = nb.distributions.toy_gmm()
    path = nb.paths.GaussianPath("linear")
    exact = lambda x, t: gmm.marginal_velocity(x, t, path.schedule)  # noqa: E731
    return gmm, path, exact


def test_loss_vs_floor_figure_blocks_and_floor_line():
    losses = np.linspace(3.0, 1.0, 200)
    fig = flow_2d.loss_vs_floor_figure(losses, 0.9, smooth=10)
    left, right = fig.axes
    assert left.get_ylim() == pytest.approx((0.6, 2.4))
    floor_line = [ln for ln in left.get_lines() if ln.get_label().startswith("exact field")][0]
    assert floor_line.get_ydata()[0] == 0.9
    blocks = right.get_lines()[0]  # 20 blocks of 10 steps: means minus the floor
    np.testing.assert_allclose(blocks.get_xdata(), np.arange(1, 21) * 10)
    np.testing.assert_allclose(blocks.get_ydata(), losses.reshape(20, 10).mean(1) - 0.9)
    plt.close("all")


def test_nt_study_orders_floor_and_metrics(setup):
    gmm, path, exact = setup
    x0 = torch.randn(400, 2, generator=_gen())
    x_ref = nb.solvers.heun(exact, x0, 0.0, 1.0, 200).x
    floor = nb.metrics.energy_noise_floor(gmm, 200, generator=_gen(1), repeats=3, n_pairs=20_000)
    study = flow_2d.nt_study(exact, x0, x_ref, [5, 10, 20, 40], [5, 10, 20], gmm, 200, floor, score_seed=2)
    # Euler is first order, Heun second (closed-form field: the only error is the solver's)
    assert flow_2d.error_order(study, "euler") == pytest.approx(-1.0, abs=0.25)
    assert flow_2d.error_order(study, "heun") == pytest.approx(-2.0, abs=0.4)
    assert study.results["heun", 10]["nfe"] == 20 and study.results["euler", 10]["nfe"] == 10
    assert study.metrics["euler_max_steps_error"] == study.results["euler", 40]["error"]
    assert study.heun_match == study.metrics["heun_steps_to_match_euler_max"]
    assert study.heun_match is not None and study.heun_match <= 20
    assert set(study.metrics["nt_study"]) == {"euler_5", "euler_10", "euler_20", "euler_40", "heun_5", "heun_10",
                                              "heun_20"}
    assert "x" not in study.metrics["nt_study"]["euler_5"]
    assert flow_2d.steps_to_floor(study, "heun", level=1e9) == 5  # every score is "within" a huge level
    with pytest.raises(ValueError, match="two step counts"):
        flow_2d.error_order(study, "heun", min_steps=20)
    left = study.figure.axes[0]
    assert left.get_xscale() == "log" and left.get_xlabel() == "steps n_t"
    fig = flow_2d.nt_samples_figure(study, steps=(5, 40), n=100)
    assert [ax.get_title() for ax in fig.axes] == ["Euler, n_t = 5", "Euler, n_t = 40"]
    plt.close("all")


def test_field_error_study_zero_for_the_exact_field_and_positive_for_a_wrong_one(setup):
    gmm, path, exact = setup
    times = torch.linspace(0, 0.9, 4)
    good = flow_2d.field_error_study(gmm, exact, path, times, 300, generator=_gen())
    assert good.metrics["field_rel_error_max"] < 1e-10
    wrong = flow_2d.field_error_study(gmm, lambda x, t: 1.1 * exact(x, t), path, times, 300, generator=_gen())
    assert wrong.metrics["field_rel_error_mean"] == pytest.approx(0.01, rel=1e-4)  # ‖0.1 u‖² / ‖u‖²
    assert wrong.metrics["field_rel_error_argmax_t"] in times.tolist()
    np.testing.assert_allclose(wrong.figure.axes[0].get_lines()[0].get_xdata(), times.numpy())
    plt.close("all")


def test_field_quiver_figure_draws_both_fields(setup):
    gmm, path, exact = setup
    fig = flow_2d.field_quiver_figure(gmm, exact, path, [0.2, 0.9], n=9)
    assert [ax.get_title() for ax in fig.axes] == ["t = 0.2: exact (black), learned (red)",
                                                    "t = 0.9: exact (black), learned (red)"]
    from matplotlib.quiver import Quiver

    quivers = [c for c in fig.axes[0].collections if isinstance(c, Quiver)]
    assert len(quivers) == 2
    np.testing.assert_allclose(quivers[0].U, quivers[1].U, rtol=1e-6)  # the same field twice
    plt.close("all")


def test_mode_weight_and_trajectory_figures(setup):
    gmm, path, exact = setup
    x = gmm.sample(2000, generator=_gen())
    score = nb.metrics.score_against_truth(x, gmm, generator=_gen(1), n=500)
    fig = flow_2d.mode_weight_figure({"a": score, "b": score}, "weights")
    ax = fig.axes[0]
    heights = [p.get_height() for p in ax.patches[:5]]
    np.testing.assert_allclose(heights, score.weight_errors.numpy(), rtol=1e-6)
    assert ax.get_title() == "weights" and len(ax.patches) == 11  # 2 × 5 bars and the ±0.02 band
    x0 = torch.randn(50, 2, generator=_gen())
    traj = nb.solvers.euler(exact, x0, 0.0, 1.0, 10, return_trajectory=True).trajectory
    fig = flow_2d.samples_and_trajectories_figure(traj, gmm.log_prob)
    assert fig.axes[0].get_title() == "50 generated samples over p_data"
    plt.close("all")


def test_flow_model_spec_is_the_key_notebook_03_has_always_cached_under(tmp_path, monkeypatch):
    """Notebooks 03 and 05 take the flow model's checkpoint from ``FlowModelSpec``; its key is the one the cache
    has held since notebook 03 wrote it by hand, so models trained before keep loading. The model string follows
    the sizes: another width is another model."""
    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path))
    spec = flow_2d.FlowModelSpec(batch=256)
    key = {"data": "toy_gmm", "schedule": "linear", "model": "TimeMLP(2,64,4,raw t)", "loss": "flow_matching",
           "batch": 256}
    assert spec.key() == key
    assert spec.checkpoint("smoke") == nb.checkpoints.checkpoint_path("03_flow_mlp", key, profile="smoke")
    assert flow_2d.FlowModelSpec(batch=256, hidden=32).key()["model"] == "TimeMLP(2,32,4,raw t)"
    assert flow_2d.FlowModelSpec(batch=512).checkpoint("smoke") != spec.checkpoint("smoke")
