"""Figure helpers: readable axes."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nbhelpers import plotting as P  # noqa: E402


def test_loss_curve_log_axis_has_plain_labels_and_no_minor_clutter():
    losses = np.linspace(0.35, 0.12, 400) + 0.01 * np.sin(np.arange(400))
    fig = P.loss_curve(losses, smooth=20)
    ax = fig.axes[0]
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    shown = [t.get_text() for t in ax.yaxis.get_majorticklabels() if lo <= t.get_position()[1] <= hi]
    assert ax.get_yscale() == "log" and 1 <= len(shown) <= 6
    assert all(float(s) > 0 for s in shown)  # plain numbers, no mathtext 10^k / m×10^k
    assert all(t.get_text() == "" for t in ax.yaxis.get_minorticklabels())
    plt.close(fig)


def test_scatter_gif_writes_frames_and_strip(tmp_path):
    from PIL import Image

    sets = [torch.zeros(5, 2), torch.ones(5, 2)]
    path = tmp_path / "sub" / "a.gif"
    frames = P.scatter_gif(sets, ["t = 0", "t = 1"], path, dpi=40, size=2.0)
    assert len(frames) == 2 and path.exists()
    with Image.open(path) as gif:
        assert gif.n_frames == 2 and gif.size == (80, 80)
    fig = P.frame_strip(frames, 3)
    assert len(fig.axes) == 3 and all(not ax.axison for ax in fig.axes)
    with pytest.raises(ValueError, match="title"):
        P.scatter_gif(sets, ["one"], path)
    plt.close("all")
