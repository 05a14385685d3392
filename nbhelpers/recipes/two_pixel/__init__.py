"""Notebook 06 (two-pixel DDPM and classifier-free guidance, seed 001): its training, studies, findings, figures
and explorer.

The "images" are two pixels, x = (left pixel, right pixel), so every density can be drawn. The network is
:class:`nbhelpers.models.two_pixel.TwoPixelUNet`, the sampler :class:`nbhelpers.ddpm.DDPM` (k = 0 data, k = T
noise, the network sees t = k / T).

Modules, each importing only those before it:

* ``training`` — :func:`train_two_pixel` (one ε-network per T, label dropout for the conditional one, cached) and
  the tails of the loss histories (:func:`loss_tail`);
* ``studies`` — samples scored against the known mixture, each study a frozen dataclass with ``.metrics`` and
  ``.summary()`` for the notebook to report and print: :func:`score_steps` (Q2), :func:`q3_study` (Q3, the four
  :class:`Q3Sampler`\\ s per T), :func:`ddim_study`, :func:`same_noise_two_labels` (Q4), :func:`guidance_sweep`;
* ``findings`` — the numbers the written answers cite and check (``*_findings``); the claims are the notebook's;
* ``figures`` — the data, the schedule, loss curves, the Q2 trajectory over the densities of x_k, the Q3 sample
  sets against the truth, the Q4 paths;
* ``explorer`` — the guidance-weight slider.

Every public name is re-exported here: ``nb.recipes.two_pixel.q3_study``.
"""
from __future__ import annotations

from .training import TrainedDDPM, train_two_pixel, LossTail, loss_tail
from .studies import (TWO_PIXEL_STD, noised_two_pixel, typical_run, StepScores, score_steps, TruthScorer, EpsSource,
                      Q3Sampler, Q3Study, q3_study, DdimStudy, ddim_study, SameNoise, same_noise_two_labels,
                      GuidanceSweep, guidance_sweep)
from .findings import q2_findings, q3_findings, ddim_findings, guidance_findings
from .figures import (world_figure, schedules_figure, loss_curves_figure, same_noise_figure, trajectory_density_panels,
                      samples_vs_truth_rows, paths_over_density)
from .explorer import draw_two_pixel_guidance, two_pixel_guidance_explorer

__all__ = [
    "TrainedDDPM", "train_two_pixel", "LossTail", "loss_tail",
    "TWO_PIXEL_STD", "noised_two_pixel", "typical_run", "StepScores", "score_steps", "TruthScorer", "EpsSource",
    "Q3Sampler", "Q3Study", "q3_study", "DdimStudy", "ddim_study", "SameNoise", "same_noise_two_labels",
    "GuidanceSweep", "guidance_sweep",
    "q2_findings", "q3_findings", "ddim_findings", "guidance_findings",
    "world_figure", "schedules_figure", "loss_curves_figure", "same_noise_figure", "trajectory_density_panels",
    "samples_vs_truth_rows", "paths_over_density",
    "draw_two_pixel_guidance", "two_pixel_guidance_explorer",
]
