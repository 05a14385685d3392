"""Widget drawing functions (tested headless) and the shared plotting helpers."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
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


def _hist(points, bins=60, lim=3.5):
    """The counts a 2D histogram of ``points`` over [−lim, lim]² shows: rows are y bins, columns x bins."""
    p = np.asarray(points, dtype=np.float64)
    return np.histogram2d(p[:, 0], p[:, 1], bins=bins, range=[[-lim, lim], [-lim, lim]])[0].T


def _shown(ax):
    """The counts drawn by ``ax.hist2d`` (its mesh, one value per cell)."""
    return np.asarray(ax.collections[0].get_array()).reshape(60, 60)


def _x_t(name, t, z, eps):
    from nbhelpers.schedules import get_schedule

    v = get_schedule(name)(torch.tensor(t))
    return v.alpha * z + v.beta * eps


@pytest.mark.parametrize("name", ["linear", "cosine", "polynomial"])
def test_draw_path_explorer_axes_and_content(name):
    z = _z()
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(1))
    fig = W.draw_path_explorer(0.25, name, z, eps)
    assert len(fig.axes) == 2
    ax_h, ax_s = fig.axes
    assert name in ax_h.get_title() and "t = 0.25" in ax_h.get_title()
    # the histogram counts, cell by cell, the points x_t = α z + β ε inside the plotted square
    from nbhelpers.schedules import get_schedule
    x = _x_t(name, 0.25, z, eps)
    np.testing.assert_array_equal(_shown(ax_h), _hist(x))
    assert int(_shown(ax_h).sum()) == int((x.abs() <= 3.5).all(1).sum())
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
    np.testing.assert_array_equal(_shown(fig.axes[0]), _hist(eps))  # t = 0 is pure noise
    fig2 = W.draw_path_explorer(1.0, "cosine", z, eps, fig=fig)
    assert fig2 is fig and len(fig.axes) == 2  # redrawn in place, not stacked
    np.testing.assert_array_equal(_shown(fig.axes[0]), _hist(z))  # t = 1 is the data
    assert not [ln for ln in fig.axes[1].get_lines() if ln.get_marker() == "o"]  # no SNR marker at the ends


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
    z = _z(100)
    fig = W.path_explorer(z, t=0.75, schedule_name="cosine")
    assert len(fig.axes) == 2 and "cosine" in fig.axes[0].get_title()
    eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(0), dtype=z.dtype)  # the default noise, seed 0
    np.testing.assert_array_equal(_shown(fig.axes[0]), _hist(_x_t("cosine", 0.75, z, eps)))
    assert plt.fignum_exists(fig.number)  # left open so plt.show() displays it


def test_plotting_helpers_shapes():
    g = torch.Generator().manual_seed(0)
    pts = [torch.randn(50, 2, generator=g) for _ in range(5)]
    fig = P.scatter_panels(pts, [str(i) for i in range(5)])
    assert [a.get_title() for a in fig.axes] == ["0", "1", "2", "3", "4"]
    for ax, p in zip(fig.axes, pts):  # each panel scatters its own points
        np.testing.assert_allclose(ax.collections[0].get_offsets(), p.numpy(), rtol=0, atol=1e-6)
    fig = P.hist2d_panels(pts * 2, row_labels=["a", "b"])
    assert len(fig.axes) == 10 and [fig.axes[i].get_ylabel() for i in (0, 5)] == ["a", "b"]
    for ax, p in zip(fig.axes, pts * 2):
        np.testing.assert_array_equal(np.asarray(ax.collections[0].get_array()).reshape(60, 60), _hist(p))
    with pytest.raises(ValueError, match="titles"):
        P.scatter_panels(pts, ["only one"])
    ts, paths = torch.linspace(0, 1, 11), torch.randn(11, 4, 1, generator=g)
    fig = P.plot_paths(ts, paths, envelope=lambda t: np.sqrt(t))
    lines = fig.axes[0].get_lines()
    assert len(lines) == 6  # four paths, then ±envelope
    for b in range(4):
        np.testing.assert_allclose(lines[b].get_xdata(), ts.numpy())
        np.testing.assert_allclose(lines[b].get_ydata(), paths[:, b, 0].numpy())
    np.testing.assert_allclose(lines[4].get_ydata(), np.sqrt(ts.numpy()))
    np.testing.assert_allclose(lines[5].get_ydata(), -np.sqrt(ts.numpy()))
    x = torch.rand(10, 1, 8, 8, generator=g) * 2 - 1
    canvas = P.image_grid(x, nrow=5).axes[0].get_images()[0].get_array()
    assert canvas.shape == (2 * 10, 5 * 10)
    for i in (0, 4, 7):  # image i at row i // 5, column i % 5: 2 pixels between images, 1 around
        r, c = divmod(i, 5)
        np.testing.assert_allclose(canvas[1 + 10 * r:9 + 10 * r, 1 + 10 * c:9 + 10 * c], ((x[i, 0] + 1) / 2).numpy(),
                                   atol=1e-6)
    with pytest.raises(ValueError, match="B, C, H, W"):
        P.image_grid(torch.zeros(3, 8, 8))
    np.testing.assert_allclose(P.smooth_curve([1.0, 3.0, 5.0, 7.0], 2), [1.0, 2.0, 4.0, 6.0])
    losses = np.linspace(2, 1, 100)
    raw, smoothed = P.loss_curve(losses, smooth=10).axes[0].get_lines()
    np.testing.assert_array_equal(raw.get_xdata(), np.arange(1, 101))
    np.testing.assert_allclose(raw.get_ydata(), losses)
    np.testing.assert_allclose(smoothed.get_ydata(), P.smooth_curve(losses, 10))
    # the density backdrop: exp(log p) on the grid, rows y and columns x
    xs, ys, dens = P.density_image(D.toy_gmm().log_prob, n=50)
    for i, j in ((0, 0), (20, 31), (49, 7)):
        at = torch.tensor([[xs[j], ys[i]]])
        assert dens[i, j] == pytest.approx(float(torch.exp(D.toy_gmm().log_prob(at))[0]), rel=1e-5)
    assert P.plot_density(D.toy_gmm().log_prob, n=50).axes[0].get_xlim() == (-3.5, 3.5)
    tr = torch.randn(5, 3, 2, generator=g)
    ax = P.plot_trajectories_2d(tr).axes[0]
    for b in range(3):  # each path, then its start and end marked
        np.testing.assert_allclose(ax.get_lines()[b].get_xydata(), tr[:, b].numpy(), atol=1e-6)
    np.testing.assert_allclose(ax.collections[0].get_offsets(), tr[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(ax.collections[1].get_offsets(), tr[-1].numpy(), atol=1e-6)


def test_path_explorer_interactive_builds_widgets(monkeypatch):
    """The live branch builds a t slider and a schedule dropdown wired to the tested drawing function; the
    figure is a plain display output each change replaces, so a saved notebook keeps it without a kernel."""
    w = pytest.importorskip("ipywidgets")
    import IPython.display
    from matplotlib.figure import Figure

    shown, updates = [], []

    class Handle:
        def update(self, obj):
            updates.append(obj)

    def fake_display(obj, display_id=None):
        shown.append((obj, display_id))
        return Handle() if display_id else None

    monkeypatch.setattr(IPython.display, "display", fake_display)
    calls = []
    real_draw = W.draw_path_explorer
    monkeypatch.setattr(W, "draw_path_explorer", lambda **kw: calls.append(kw) or real_draw(**kw))
    fig = W.path_explorer(_z(100), t=0.3, schedule_name="linear", interactive=True)
    assert len(fig.axes) == 2 and len(calls) == 1  # drawn once, not again by a widget's first refresh
    assert not plt.fignum_exists(fig.number)  # detached: shown once, by display
    box = [o for o, _ in shown if isinstance(o, w.VBox)][0]
    assert [(o, d) for o, d in shown if isinstance(o, Figure)] == [(fig, True)]  # a static output, not a widget's
    hints = [o for o, _ in shown if W.REOPEN_HINT in getattr(o, "data", "")]
    assert len(hints) == 1  # saved with the notebook: a reopened one says why its sliders do not answer
    controls = box.children[0].children
    slider = [c for c in controls if isinstance(c, w.FloatSlider)][0]
    dropdown = [c for c in controls if isinstance(c, w.Dropdown)][0]
    assert slider.value == 0.3 and (slider.min, slider.max) == (0.0, 1.0)
    assert list(dropdown.options) == ["linear", "cosine", "polynomial"]
    slider.value = 0.8
    dropdown.value = "cosine"
    assert calls[-1]["t"] == 0.8 and calls[-1]["schedule_name"] == "cosine" and len(calls) == 3
    assert len(updates) == 2 and all(isinstance(f, Figure) and not plt.fignum_exists(f.number) for f in updates)
    assert "cosine: t = 0.80" in updates[-1].axes[0].get_title()
    eps = torch.randn(100, 2, generator=torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(_shown(updates[-1].axes[0]), _hist(_x_t("cosine", 0.8, _z(100), eps)))


# --------------------------------------------------------------------------- executed copies keep what they show
def _execute(nb, tmp_path, **env):
    from nbclient import NotebookClient

    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def test_final_line_keeps_only_a_bars_last_state():
    import io

    from nbhelpers.progress import _FinalLine

    out = io.StringIO()
    f = _FinalLine(out)
    f.write("\rtrain:   0%|          | 0/50")
    f.write("\rtrain:  40%|####      | 20/50")
    f.write("\rtrain: 100%|##########| 50/50\n")
    f.write("\rDDPM:   0%|   | 0/9")
    f.write("\r" + " " * 20 + "\r")  # leave=False clears its line and never ends it
    assert out.getvalue() == "train: 100%|##########| 50/50\n"


def test_headless_kernel_progress_bars_leave_no_zero_percent(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "from nbhelpers.runtime import progress_bar\n"
        "for _ in progress_bar(range(50), desc='train', mininterval=0):\n    pass\n"
        "for _ in progress_bar(range(9), desc='DDPM', leave=False, mininterval=0):\n    pass")]
    _execute(nb, tmp_path)
    outputs = nb.cells[0].outputs
    assert all(o.output_type == "stream" for o in outputs), [o.output_type for o in outputs]  # no widget fallback
    text = "".join(o.text for o in outputs)
    assert text.startswith("train: 100%") and "50/50" in text and text.count("\n") == 1
    assert " 0%" not in text and "DDPM" not in text


@pytest.mark.slow
def test_executed_smoke_copy_of_02_keeps_the_explorer_figure(tmp_path, monkeypatch):
    from nbhelpers.runtime import ROOT

    monkeypatch.setenv("NBHELPERS_PROFILE", "smoke")
    nb = _execute(nbformat.read(str(ROOT / "notebooks" / "02_paths_schedules.ipynb"), as_version=4), tmp_path)
    saved = tmp_path / "02.ipynb"
    nbformat.write(nb, str(saved))
    nb = nbformat.read(str(saved), as_version=4)  # reopened: no kernel, no widget state
    cell = next(c for c in nb.cells if c.cell_type == "code" and "path_explorer(" in c.source)
    kinds = [set(o.get("data", {})) for o in cell.outputs]
    assert any("image/png" in k for k in kinds), f"the explorer cell shows no figure: {kinds}"
    assert not any("application/vnd.jupyter.widget-view+json" in k for k in kinds)
    for c in nb.cells:
        for o in c.get("outputs", []):
            text = o.get("text", "") + o.get("data", {}).get("text/plain", "")
            assert "  0%|" not in text and "application/vnd.jupyter.widget-view+json" not in o.get("data", {}), o
