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


# --------------------------------------------------------------------------- executed copies keep what they show
def _execute(nb, tmp_path, **env):
    from nbclient import NotebookClient

    NotebookClient(nb, kernel_name="python3", timeout=600, resources={"metadata": {"path": str(tmp_path)}}).execute()
    return nb


def test_final_line_keeps_only_a_bars_last_state():
    import io

    from nbhelpers.runtime import _FinalLine

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
