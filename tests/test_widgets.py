"""Widget drawing functions (tested headless) and the shared plotting helpers."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from nbhelpers import distributions as D  # noqa: E402
from nbhelpers import plotting as P  # noqa: E402
from nbhelpers import widgets as W  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _z(n=500):
    return D.toy_gmm().sample(n, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("name", ["linear", "cosine", "polynomial"])
def test_draw_path_explorer_axes_and_content(name):
    z = _z()
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    fig = W.draw_path_explorer(0.25, name, z, eps)
    assert len(fig.axes) == 2
    ax_h, ax_s = fig.axes
    assert name in ax_h.get_title() and "t = 0.25" in ax_h.get_title()
    # the histogram counts exactly the points x_t = α z + β ε that fall inside the plotted square
    from nbhelpers.schedules import get_schedule
    v = get_schedule(name)(torch.tensor(0.25))
    x = v.alpha * z + v.beta * eps
    counts = ax_h.collections[0].get_array()
    assert int(np.nansum(counts)) == int((x.abs() <= 3.5).all(1).sum())
    labels = [l.get_label() for l in ax_s.get_lines()]
    assert {"linear", "cosine", "polynomial"} <= set(labels)
    # the marker sits on the chosen curve: log10 SNR at t = 0.25
    marker = [l for l in ax_s.get_lines() if l.get_marker() == "o"][0]
    want = float(torch.log10(get_schedule(name).snr(torch.tensor(0.25, dtype=torch.float64))))
    assert marker.get_ydata()[0] == pytest.approx(want)


def test_draw_path_explorer_endpoints_and_reuse():
    z = _z(200)
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(2))
    fig = W.draw_path_explorer(0.0, "linear", z, eps)
    assert len(fig.axes) == 2
    fig2 = W.draw_path_explorer(1.0, "cosine", z, eps, fig=fig)
    assert fig2 is fig and len(fig.axes) == 2


def test_draw_path_explorer_bad_inputs():
    z = _z(10)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        W.draw_path_explorer(1.5, "linear", z)
    with pytest.raises(ValueError, match="valid choices"):
        W.draw_path_explorer(0.5, "sigmoid", z)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        W.draw_path_explorer(0.5, "linear", torch.zeros(10, 3))
    with pytest.raises(ValueError, match="eps"):
        W.draw_path_explorer(0.5, "linear", z, torch.zeros(5, 2))


def test_path_explorer_headless_returns_static_figure():
    assert not W.in_interactive_frontend()  # pytest is not a live frontend
    fig = W.path_explorer(_z(100), t=0.75, schedule_name="cosine")
    assert len(fig.axes) == 2 and "cosine" in fig.axes[0].get_title()
    assert plt.fignum_exists(fig.number)  # left open so plt.show() displays it


def test_plotting_helpers_shapes():
    pts = [torch.randn(50, 2) for _ in range(5)]
    assert len(P.scatter_panels(pts, [str(i) for i in range(5)]).axes) == 5
    assert len(P.hist2d_panels(pts * 2, row_labels=["a", "b"]).axes) == 10
    with pytest.raises(ValueError, match="titles"):
        P.scatter_panels(pts, ["only one"])
    fig = P.plot_paths(torch.linspace(0, 1, 11), torch.randn(11, 4, 1), envelope=lambda t: np.sqrt(t))
    assert len(fig.axes[0].get_lines()) == 6
    fig = P.image_grid(torch.rand(10, 1, 8, 8) * 2 - 1, nrow=5)
    assert fig.axes[0].get_images()[0].get_array().shape == (2 * 10, 5 * 10)
    with pytest.raises(ValueError, match="B, C, H, W"):
        P.image_grid(torch.zeros(3, 8, 8))
    np.testing.assert_allclose(P.smooth_curve([1.0, 3.0, 5.0, 7.0], 2), [1.0, 2.0, 4.0, 6.0])
    assert len(P.loss_curve(np.linspace(2, 1, 100), smooth=10).axes) == 1
    P.plot_density(D.toy_gmm().log_prob, n=50)
    P.plot_trajectories_2d(torch.randn(5, 3, 2))


def test_path_explorer_interactive_builds_widgets(monkeypatch):
    """The live branch builds a t slider and a schedule dropdown wired to the tested drawing function."""
    w = pytest.importorskip("ipywidgets")
    import IPython.display

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    calls = []
    real_draw = W.draw_path_explorer
    monkeypatch.setattr(W, "draw_path_explorer", lambda **kw: calls.append(kw) or real_draw(**kw))
    fig = W.path_explorer(_z(100), t=0.3, schedule_name="linear", interactive=True)
    assert len(fig.axes) == 2
    assert not plt.fignum_exists(fig.number)  # detached: the widget shows its own live copy
    box = [o for o in shown if isinstance(o, w.VBox)][0]
    controls = box.children[0].children
    slider = [c for c in controls if isinstance(c, w.FloatSlider)][0]
    dropdown = [c for c in controls if isinstance(c, w.Dropdown)][0]
    assert slider.value == 0.3 and (slider.min, slider.max) == (0.0, 1.0)
    assert list(dropdown.options) == ["linear", "cosine", "polynomial"]
    n = len(calls)
    slider.value = 0.8
    dropdown.value = "cosine"
    assert calls[-1]["t"] == 0.8 and calls[-1]["schedule_name"] == "cosine" and len(calls) >= n + 2
