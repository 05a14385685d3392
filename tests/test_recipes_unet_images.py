"""Notebook 04's studies and figures, with a stub evaluator so no classifier is trained here."""
import dataclasses
import types

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from nbhelpers.metrics.images import EvalResult, QualityBars
from nbhelpers.recipes import unet_images as ui


def _result(n=100, recognised=0.8, fd_ratio=2.0, hist=None, floor_std=0.1):
    hist = np.full(10, 0.1) if hist is None else np.asarray(hist, dtype=float)
    return EvalResult(n=n, class_histogram=hist, recognised_fraction=recognised, fd=fd_ratio, fd_floor=1.0,
                      mean_confidence=0.9, predicted=torch.zeros(n, dtype=torch.long), confidence=torch.ones(n),
                      fd_floor_std=floor_std)


class _StubEvaluator:
    """Recognised fraction = mean pixel mapped to [0, 1]; FD ratio = 1 + mean |pixel|."""

    def evaluate(self, images):
        x = images.float()
        return _result(n=len(x), recognised=float((x.mean() + 1) / 2), fd_ratio=1.0 + float(x.abs().mean()))


def test_corruption_grid_rows_are_digits_and_columns_times():
    z, eps = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)), torch.randn(2, 1, 4, 4)
    grid = ui.corruption_grid("linear", z, eps, [0.0, 0.5, 1.0])
    assert grid.shape == (6, 1, 4, 4)
    torch.testing.assert_close(grid[0], eps[0])  # digit 0 at t = 0: pure noise
    torch.testing.assert_close(grid[1], 0.5 * z[0] + 0.5 * eps[0])
    torch.testing.assert_close(grid[5], z[1])  # digit 1 at t = 1: the data


def test_reference_sets_shapes_ranges_and_seed():
    test_images = torch.arange(10_000, dtype=torch.float32).reshape(10_000, 1, 1, 1).expand(-1, 1, 28, 28)
    refs = ui.reference_sets(test_images, 50, torch.Generator().manual_seed(3))
    assert list(refs) == ["real test digits", "uniform noise", "Gaussian noise"]
    assert all(v.shape == (50, 1, 28, 28) for v in refs.values())
    assert refs["real test digits"][:, 0, 0, 0].min() >= 5000  # the second half of the test set
    assert refs["uniform noise"].min() >= -1 and refs["Gaussian noise"].abs().max() <= 1
    again = ui.reference_sets(test_images, 50, torch.Generator().manual_seed(3))
    torch.testing.assert_close(refs["Gaussian noise"], again["Gaussian noise"])
    study = ui.reference_study(_StubEvaluator(), {"all ones": torch.ones(4, 1, 28, 28)})
    assert study.metrics["reference/all_ones_recognised"] == 1.0
    assert study.metrics["reference/all_ones_fd_ratio"] == 2.0
    assert set(study.metrics) == {f"reference/all_ones_{k}" for k in ui.REFERENCE_KEYS}


def test_sample_images_with_a_zero_field_returns_the_clamped_noise_and_frames():
    zero = types.SimpleNamespace(eval=lambda: (lambda x, t: torch.zeros_like(x)))
    x, traj = ui.sample_images(zero, 5, 4, "cpu", seed=11, trajectory=True)
    noise = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(x, noise.clamp(-1, 1))
    assert traj.shape == (5, 5, 1, 28, 28)
    frames = ui.trajectory_frames(traj, 3)
    assert frames.shape == (15, 1, 28, 28)
    torch.testing.assert_close(frames[0], noise[0].clamp(-1, 1))
    with pytest.raises(ValueError, match="trajectory"):
        ui.trajectory_frames(traj[0], 3)


def test_euler_steps_study_metrics_and_rows():
    study = ui.euler_steps_study(lambda k: torch.full((20, 1, 28, 28), k / 10 - 1), [2, 10], _StubEvaluator(),
                                 per_row=4)
    assert study.metrics["euler_steps/2_recognised"] == pytest.approx(0.1)
    assert study.metrics["euler_steps/10_fd_ratio"] == pytest.approx(1.0)
    assert [t.get_text() for t in study.figure.axes[0].get_yticklabels()] == ["2 steps", "10 steps"]
    assert len(study.summary.splitlines()) == 2
    plt.close("all")


def test_schedule_and_loss_and_evaluation_figures():
    fig = ui.schedule_curves_figure(["linear", "polynomial"], n=11)
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(fig.axes[0].get_lines()[1].get_ydata(), t ** 2, atol=1e-6)
    fig = ui.loss_curves_figure({"a": np.ones(20), "b": 2 * np.ones(20)}, smooth=5)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]
    bars = QualityBars(0.7, (0.04, 0.16), 15.0)
    evals = {"lin": _result(recognised=0.8), "cos": _result(recognised=0.6)}
    fig = ui.evaluation_figure(evals, bars)
    np.testing.assert_allclose([p.get_height() for p in fig.axes[0].patches], [80, 60])
    assert fig.axes[1].get_title() == "classifier FD / real-vs-real floor"
    plt.close("all")


def test_compare_schedules_ranks_only_beyond_two_standard_errors():
    close = ui.compare_schedules({"a": _result(fd_ratio=2.0), "b": _result(fd_ratio=2.1)})
    assert "cannot rank" in close.fd_text and "less than two standard errors" in close.rec_text
    assert close.table.count("\n") == 3 and "| a | 80.0% ± 4.0% |" in close.table
    far = ui.compare_schedules({"a": _result(fd_ratio=2.0, recognised=0.9), "b": _result(fd_ratio=5.0, recognised=0.5)})
    assert far.fd_text.startswith("a has the lowest FD ratio and b the highest, 3.00 apart")
    assert far.rec_text.startswith("a is recognised most often and b least")


def test_scored_images_carry_their_metrics_and_images():
    bars = QualityBars(0.7, (0.0, 1.0), 15.0)
    images = torch.ones(3, 1, 28, 28)
    s = ui.score_images(_StubEvaluator(), bars, "lin", images)
    assert s.result.recognised_fraction == 1.0 and s.passes is True and s.images is images
    assert s.metrics["lin/recognised"] == 1.0 and s.metrics["lin/passes"] is True
    assert set(s.metrics) == {f"lin/{k}" for k in s.result.as_dict()} | {"lin/passes"}
    assert s.summary().startswith("lin ") and s.summary().endswith("passes the quality bars")
    strict = ui.score_images(_StubEvaluator(), QualityBars(1.01, (0.0, 1.0), 15.0), "lin", images)
    assert strict.metrics["lin/passes"] is False and strict.summary().endswith("misses the quality bars")
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'name'"):
        s.name = "other"