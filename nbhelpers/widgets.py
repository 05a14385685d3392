"""Interactive explorers for the notebooks (ipywidgets), each backed by a plain, tested drawing function.

Pattern: ``draw_*(...) -> Figure`` does all the work; ``*_explorer(...)`` wires sliders/dropdowns to
it with :func:`show_explorer`. In a live frontend (JupyterLab, Notebook, VS Code, Colab) the widget
appears and redraws on every change; when the notebook runs headless (papermill, nbval, a plain
script) nothing interactive is created and the function returns one static figure at the initial
values. Either way the returned figure can be saved with ``run.savefig``.

Headless detection: not inside an IPython kernel, or a kernel executing without stdin (how
papermill/nbclient run cells), or the environment variable ``NBHELPERS_HEADLESS=1``.
"""
from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure

from . import schedules as _schedules
from .paths import GaussianPath
from .progress import in_interactive_frontend

__all__ = ["in_interactive_frontend", "show_explorer", "draw_path_explorer", "path_explorer"]

REOPEN_HINT = ("Sliders not answering? Re-run this cell: the controls need the kernel that drew them "
               "(a reopened notebook shows the last figure only).")


def _reopen_hint() -> Any:
    from IPython.display import Markdown

    return Markdown(f"<small><i>{REOPEN_HINT}</i></small>")


def show_explorer(draw: Callable[..., Figure], initial: dict[str, Any],
                  make_controls: Callable[[], dict[str, Any]], interactive: bool | None = None) -> Figure:
    """Draw ``draw(**initial)``; in a live frontend also display widgets that redraw on change.

    ``make_controls()`` returns ``{name: ipywidget}`` for some of ``draw``'s keyword arguments
    (imported lazily so headless runs never build widgets). The figure is shown as a plain image output
    that each change replaces (``update_display``), not inside an Output widget, so a saved notebook
    reopened without a kernel (or on GitHub) still shows the last figure. Returns the figure at ``initial``,
    detached from pyplot so it is not shown twice.
    """
    fig = draw(**initial)
    if interactive is None:
        interactive = in_interactive_frontend()
    if not interactive:
        return fig
    import ipywidgets as w
    from IPython.display import display

    controls = make_controls()
    errors = w.Output()  # a failing redraw shows its traceback here instead of vanishing into the kernel log
    display(w.VBox([w.HBox(list(controls.values())), errors]))
    # a plain output, saved with the notebook: reopened later, the sliders are drawn but no kernel answers them
    display(_reopen_hint())
    handle = display(fig, display_id=True)
    plt.close(fig)

    def redraw(change: Any = None) -> None:
        with errors:
            errors.clear_output()
            f = draw(**{**initial, **{k: c.value for k, c in controls.items()}})
            handle.update(f)
            plt.close(f)

    for control in controls.values():
        control.observe(redraw, names="value")
    return fig


# --------------------------------------------------------------------------- 02: path explorer
def draw_path_explorer(t: float, schedule_name: str, z: Any, eps: Any | None = None, fig: Figure | None = None,
                       lim: float = 3.5, bins: int = 60, schedules: tuple[str, ...] = ("linear", "cosine", "polynomial"),
                       seed: int = 0) -> Figure:
    """Two panels: the 2D histogram of x_t = α_t z + β_t ε for ``schedule_name`` at time ``t``
    (t = 0 noise, t = 1 data), and log₁₀ SNR(t) = log₁₀(α_t²/β_t²) of ``schedules`` with the
    chosen one highlighted and the current t marked.

    ``z``: (N, 2) data; ``eps``: (N, 2) noise (fixed, so moving t morphs the same points;
    drawn with ``seed`` when omitted). ``fig``: an existing figure to draw into (cleared).
    """
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating)) or not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"t must be a number in [0, 1], got {t!r}")
    sched = _schedules.get_schedule(schedule_name)
    z = torch.as_tensor(z)
    if z.ndim != 2 or z.shape[1] != 2:
        raise ValueError(f"z must have shape (N, 2), got {tuple(z.shape)}")
    if eps is None:
        eps = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed), dtype=z.dtype)
    eps = torch.as_tensor(eps, dtype=z.dtype)
    if eps.shape != z.shape:
        raise ValueError(f"eps must have the shape of z {tuple(z.shape)}, got {tuple(eps.shape)}")
    path = GaussianPath(sched)
    x = path.sample(z, float(t), eps=eps).x.numpy()
    c = path.coefficients(float(t), z)

    if fig is None:
        fig = plt.figure(figsize=(9, 4))
    else:
        fig.clf()
    ax_h, ax_s = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1, 1.25]})
    ax_h.hist2d(x[:, 0], x[:, 1], bins=bins, range=[[-lim, lim], [-lim, lim]], cmap="viridis")
    ax_h.set_aspect("equal")
    ax_h.grid(False)
    a, b = float(c.alpha.reshape(-1)[0]), float(c.beta.reshape(-1)[0])
    ax_h.set_title(f"{schedule_name}: t = {float(t):.2f}  (α = {a:.2f}, β = {b:.2f})", fontsize=10)

    tt = torch.linspace(0.005, 0.995, 199, dtype=torch.float64)
    names = list(dict.fromkeys([*schedules, schedule_name]))
    for name in names:
        s = _schedules.get_schedule(name)
        chosen = name == schedule_name
        ax_s.plot(tt.numpy(), torch.log10(s.snr(tt)).numpy(), lw=2.4 if chosen else 1.0,
                  alpha=1.0 if chosen else 0.5, label=name)
    if 0.0 < float(t) < 1.0:
        ax_s.plot([float(t)], [float(torch.log10(sched.snr(torch.tensor(float(t), dtype=torch.float64))))], "ko", ms=7)
    ax_s.axvline(float(t), color="k", lw=0.8, ls=":")
    ax_s.axhline(0.0, color="grey", lw=0.8)
    ax_s.set_xlim(0, 1)
    ax_s.set_ylim(-4.5, 4.5)
    ax_s.set_xlabel("t  (0 = noise, 1 = data)")
    ax_s.set_ylabel("log₁₀ SNR = log₁₀(α²/β²)")
    ax_s.set_title("signal-to-noise ratio", fontsize=10)
    ax_s.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def path_explorer(z: Any, eps: Any | None = None, t: float = 0.5, schedule_name: str = "linear",
                  schedules: tuple[str, ...] = ("linear", "cosine", "polynomial"), interactive: bool | None = None,
                  seed: int = 0) -> Figure:
    """t slider + schedule dropdown over :func:`draw_path_explorer` (static figure when headless)."""
    if eps is None:
        z_t = torch.as_tensor(z)
        eps = torch.randn(z_t.shape, generator=torch.Generator().manual_seed(seed), dtype=z_t.dtype)
    initial = {"t": float(t), "schedule_name": schedule_name, "z": z, "eps": eps, "schedules": tuple(schedules)}

    def controls() -> dict[str, Any]:
        import ipywidgets as w

        return {
            "t": w.FloatSlider(value=float(t), min=0.0, max=1.0, step=0.01, description="t", continuous_update=False),
            "schedule_name": w.Dropdown(options=list(schedules), value=schedule_name, description="schedule"),
        }

    return show_explorer(draw_path_explorer, initial, controls, interactive)
