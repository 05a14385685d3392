"""Class-conditional DDPM with classifier-free guidance on MNIST: notebook 07_mnist_cfg's recipe.

Model presets per profile and variant, the guided training loss and the cached training, guided sampling in
chunks, seed 003's partial-diffusion editing, the "when does each pixel settle" measurement, seed 003's
forward process on digits, the scores (with standard errors) that compare the two variants, the guidance
explorer, and the notebook's sweeps (guidance weight, editing t₀, DDIM step counts) with their scores,
tables, recorded numbers and figures. The digits are scored by :func:`nbhelpers.recipes.mnist.mnist_evaluator`.

Direction (as in :mod:`nbhelpers.ddpm`): integer step k = 0 is data, k = T is noise, and the
network receives the float t = k / T. Guidance (as in :mod:`nbhelpers.guidance`):
ε̄ = (w + 1)·ε(x, t, y) − w·ε(x, t, ∅) with ∅ = ``num_classes``; w = 0 is plain conditional sampling.
The variants (``"cosine"``, seed 001 Q5; ``"ddpm_paper"``, seed 003) are described in :mod:`.presets`.

Modules, each importing only those before it:

* ``presets`` — the variants, :func:`preset` per profile, seed 003's :class:`PaperTimeEncoding`, :func:`build_model`;
* ``training`` — :func:`cfg_loss` (the ε-loss with label dropout) and the cached :func:`train_cfg_model`;
* ``sampling`` — class-ordered labels, :func:`generate` (over :func:`nbhelpers.ddpm_sampling.guided_sample`), seed 003's
  :func:`forward_process` and :func:`edit`, and the sample sets the notebook builds from them: the guidance
  sweep, the edit sweep, DDIM step counts against ancestral sampling;
* ``settle`` — part by part or all at once: when each pixel of a digit settles (:func:`settle_summary`);
* ``scores`` — the evaluator's scores of those sets, the numbers recorded and the tables, and the two variants
  compared (:func:`score_variant`, :func:`verdict`);
* ``evidence`` — the values and checked claims behind the written answers (``*_evidence``, :func:`variant_table`);
* ``figures`` — every figure of the notebook and the guidance explorer.

The split follows what each piece needs rather than the notebook's sections: a sweep's sampling, scoring and
figure sit in ``sampling``, ``scores`` and ``figures``, so the scores import no plotting and the figures draw
rows they are handed. The evidence is a module of its own, above the scores and the settle summary it reads,
because it is the prose's side of the numbers, not a score. Generic pieces live below the recipes: guided
sampling in chunks in :mod:`nbhelpers.ddpm`, the digit grids (:func:`class_grid_figure`) in
:mod:`nbhelpers.plotting`, the binomial standard error in :mod:`nbhelpers.metrics.stats`; they are re-exported
here. Every public name is: ``nb.recipes.cfg_mnist.generate``.
"""
from __future__ import annotations

from ...metrics.stats import binomial_se
from ...plotting import class_grid_figure
from .presets import (VARIANTS, GPU_SIZES, NUM_CLASSES, DIGIT_SHAPE, PaperTimeEncoding, MnistCFGPreset, preset,
                      build_model)
from .training import cfg_loss, train_cfg_model
from .sampling import (SAMPLERS, class_labels, device_generator, first_per_class, generate, edit, forward_process,
                       GuidanceSweep, guidance_sweep, edit_sweep, ddim_and_ancestral_sets)
from .settle import settle_steps, SettleSummary, settle_summary
from .scores import (rms_distance, real_pair_distances, SWEEP_METRICS, score_samples, sweep_metrics, sweep_table,
                     diversity_text, score_edits, edit_metrics, edit_table, score_sets, sets_metrics, sets_table,
                     verdict, VariantScore, score_variant, sample_and_score_variant)
from .evidence import (diversity_evidence, settle_evidence, guidance_evidence, edit_evidence, ddim_evidence,
                       forward_evidence, VARIANT_ROWS, variant_table, variant_evidence)
from .figures import (forward_process_figure, schedule_and_time_input_figure, diversity_figure,
                      guidance_tradeoff_figure, trajectory_figure, settling_figure, edits_figure, edit_distance_figure,
                      ddim_vs_ancestral_figure, draw_guidance_explorer, guidance_explorer)

__all__ = [
    "binomial_se", "class_grid_figure",
    "VARIANTS", "GPU_SIZES", "NUM_CLASSES", "DIGIT_SHAPE", "PaperTimeEncoding", "MnistCFGPreset", "preset",
    "build_model",
    "cfg_loss", "train_cfg_model",
    "SAMPLERS", "class_labels", "device_generator", "first_per_class", "generate", "edit", "forward_process",
    "GuidanceSweep", "guidance_sweep", "edit_sweep", "ddim_and_ancestral_sets",
    "settle_steps", "SettleSummary", "settle_summary",
    "rms_distance", "real_pair_distances", "SWEEP_METRICS", "score_samples", "sweep_metrics", "sweep_table",
    "diversity_text", "score_edits", "edit_metrics", "edit_table", "score_sets", "sets_metrics", "sets_table",
    "verdict", "VariantScore", "score_variant", "sample_and_score_variant",
    "diversity_evidence", "settle_evidence", "guidance_evidence", "edit_evidence", "ddim_evidence",
    "forward_evidence", "VARIANT_ROWS", "variant_table", "variant_evidence",
    "forward_process_figure", "schedule_and_time_input_figure", "diversity_figure", "guidance_tradeoff_figure",
    "trajectory_figure", "settling_figure", "edits_figure", "edit_distance_figure", "ddim_vs_ancestral_figure",
    "draw_guidance_explorer", "guidance_explorer",
]
