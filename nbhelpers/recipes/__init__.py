"""Recipes: the top floor of the package, one module per notebook that needs more than calls.

A recipe holds one notebook's presets, trainer, sweeps and figures; it imports the core
(``nb.training``, ``nb.ddpm``, ``nb.models``, …) and the core never imports a recipe
(``tests/test_layers.py`` checks it; ``ARCHITECTURE.md`` draws the floors).

* ``sdes`` — notebook 01: the Brownian, Ornstein–Uhlenbeck and Langevin studies (figure and numbers);
* ``paths_schedules`` — notebook 02: schedule checks, path moments, recognisability, DDPM chains;
* ``flow_2d`` — notebook 03: the loss and field figures, the n_t sweep, the learned field against the exact one;
* ``mnist`` — notebooks 04 and 05: the Figure-1 UNet on MNIST along a Gaussian path, and the
  offline MNIST evaluator's classifier (trained and cached here, scored by ``nb.metrics.images``;
  04, 05 and 07 use it);
* ``unet_images`` — notebook 04's own studies and figures over ``mnist``: corrupted grids, references,
  the Euler-step sweep, the schedule comparison;
* ``score_sde`` — notebook 05: the VP-SDE's reverse sampler built from one step, the 2D and image studies and
  the numbers its answers cite; ``score_sde_figures`` — its figures;
* ``two_pixel`` — notebook 06 (a package): training, the studies scored against the known mixture, the numbers
  its answers cite, the figures and the guidance explorer;
* ``cfg_mnist`` — notebook 07: class-conditional DDPM with classifier-free guidance on MNIST: presets,
  training, sampling, the settle measurement, scores, the answers' evidence, figures;
* ``afhq`` — notebook 08 and the ``python -m nbhelpers.afhq`` trainer: data, the seed's
  ``Diffusion``, trainer, figures, CLI.

Submodules load on first use: ``nb.recipes.mnist``.
"""
from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("sdes", "paths_schedules", "flow_2d", "mnist", "unet_images", "score_sde", "score_sde_figures",
               "two_pixel", "cfg_mnist", "afhq")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'nbhelpers.recipes' has no attribute {name!r}")
