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
    assert np.asarray(frames[0].convert("RGB")).tolist() != np.asarray(frames[1].convert("RGB")).tolist()
    fig = P.frame_strip(frames, 3)
    assert len(fig.axes) == 3 and all(not ax.axison for ax in fig.axes)
    # k = 3 frames evenly spaced from the first to the last of two: frames 0, 0 and 1, shown as they are
    for ax, j in zip(fig.axes, (0, 0, 1)):
        np.testing.assert_array_equal(np.asarray(ax.images[0].get_array()), np.asarray(frames[j].convert("RGB")))
    with pytest.raises(ValueError, match="title"):
        P.scatter_gif(sets, ["one"], path)
    plt.close("all")


def _canvas_reference(x, ncol, border=1, gap=2):
    """The hand-written tiling the package used before tile_images: gap pixels between images, border around."""
    x = np.clip((np.asarray(x, dtype=np.float64) + 1) / 2, 0, 1).transpose(0, 2, 3, 1)
    B, H, W, C = x.shape
    rows = -(-B // ncol)
    canvas = np.ones((rows * (H + gap) - gap + 2 * border, ncol * (W + gap) - gap + 2 * border, C), np.float32)
    for i in range(B):
        r, c = divmod(i, ncol)
        y0, x0 = border + r * (H + gap), border + c * (W + gap)
        canvas[y0:y0 + H, x0:x0 + W] = x[i]
    return canvas


@pytest.mark.parametrize("B,C,nrow", [(1, 1, 4), (3, 1, 4), (7, 3, 3), (12, 1, 4)])
def test_tile_images_matches_the_hand_written_tiling(B, C, nrow):
    x = torch.rand(B, C, 5, 6, generator=torch.Generator().manual_seed(B)) * 2.4 - 1.2  # some values saturate
    ncol = min(nrow, B)
    np.testing.assert_array_equal(P.tile_images(x, nrow), _canvas_reference(x, ncol))
    np.testing.assert_array_equal(P.tile_images(x, nrow, border=2), _canvas_reference(x, ncol, border=2))
    full = P.tile_images(x, nrow, full_rows=True)
    np.testing.assert_array_equal(full, _canvas_reference(torch.cat([x, torch.ones(max(0, nrow - B), C, 5, 6)]),
                                                          max(nrow, ncol)))
    assert full.shape[1] == nrow * 8


def test_tile_images_bad_inputs():
    with pytest.raises(ValueError, match="non-empty"):
        P.tile_images(torch.zeros(0, 1, 4, 4), 2)
    with pytest.raises(ValueError, match="border"):
        P.tile_images(torch.zeros(2, 1, 4, 4), 2, padding=2, border=3)


def _tile(canvas, r, c, h=28, w=28):
    """Image (r, c) of a tiled canvas: 2 pixels between images, 1 around (tile_images)."""
    return torch.as_tensor(np.asarray(canvas)[1 + r * (h + 2):1 + r * (h + 2) + h, 1 + c * (w + 2):1 + c * (w + 2) + w])


def test_class_grid_figure():
    x = torch.rand(20, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2.2 - 1.1  # some pixels saturate
    fig = P.class_grid_figure([x, x[:10]], ["a", "b"], per_row=2, row_labels=[str(i) for i in range(10)])
    assert [a.get_title() for a in fig.axes] == ["a", "b"]
    # panel p shows its images row by row, per_row = 2 to a row, in [0, 1] = (x + 1)/2 on a fixed grey scale
    for ax, panel in zip(fig.axes, (x, x[:10])):
        canvas = ax.images[0].get_array()
        assert canvas.shape == (len(panel) // 2 * 30, 2 * 30) and ax.images[0].get_clim() == (0, 1)
        for i in (0, 3, len(panel) - 1):
            expected = ((panel[i, 0] + 1) / 2).clamp(0, 1)
            assert torch.allclose(_tile(canvas, i // 2, i % 2), expected, atol=1e-6), i
    assert [t.get_text() for t in fig.axes[1].get_yticklabels()] == ["0", "1", "2", "3", "4"]  # 5 rows of 2
    plt.close(fig)
    with pytest.raises(ValueError, match="title"):
        P.class_grid_figure([x], ["a", "b"])


def test_sample_density_estimates_a_known_density():
    """For N(0, I) samples the estimate integrates to P(inside the square) and is ≈ 1/(2π) at the centre."""
    x = torch.randn(200_000, 2, generator=torch.Generator().manual_seed(0))
    xs, ys, d = P.sample_density(x, (-4.0, 4.0), bins=80, smooth=1.0)
    cell = (xs[1] - xs[0]) ** 2
    inside = float(((x.abs() < 4).all(1)).double().mean())
    assert d.shape == (80, 80)
    assert d.sum() * cell == pytest.approx(inside, abs=2e-3)
    assert d[39:41, 39:41].mean() == pytest.approx(1 / (2 * np.pi), rel=0.05)
    # rows are y: a sample set shifted up puts its mass in the upper rows
    _, _, d_up = P.sample_density(x * 0.2 + torch.tensor([0.0, 2.0]), (-4.0, 4.0), bins=80)
    assert d_up[50:].sum() > 0.99 * d_up.sum()  # y ≥ 1 lies in rows 50 and up
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        P.sample_density(torch.zeros(5, 3))


def test_guidance_tradeoff_panel_draws_both_curves_and_marks_w():
    import matplotlib.pyplot as plt

    from nbhelpers.plotting import guidance_tradeoff_panel

    metrics = {2.0: {"accuracy": 0.9, "spread": 0.7}, 0.0: {"accuracy": 0.5, "spread": 1.0}, 1.0: {"accuracy": 0.8, "spread": 0.9}}
    fig, ax = plt.subplots()
    guidance_tradeoff_panel(ax, metrics, 1.0, second="spread", accuracy_label="acc (%)", second_label="spread",
                            accuracy_floor=90.0, accuracy_pad=1, accuracy_top=100.5, second_floor=1.2, title="t")
    acc_line, w_line, marker = ax.lines
    assert list(acc_line.get_xdata()) == [0.0, 1.0, 2.0] and list(acc_line.get_ydata()) == [50.0, 80.0, 90.0]
    assert list(w_line.get_xdata()) == [1.0, 1.0] and list(marker.get_ydata()) == [80.0]
    twin = [a for a in fig.axes if a is not ax][0]
    assert list(twin.lines[0].get_ydata()) == [1.0, 0.9, 0.7] and ax.get_ylim() == (49.0, 100.5)
    assert twin.get_ylim() == pytest.approx((0, 1.2 * 1.05)) and ax.get_title() == "t"
    plt.close(fig)
