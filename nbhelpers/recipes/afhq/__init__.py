"""AFHQ cats with DDPM (seed 004, sections 4–5): notebook 08's recipe and the trainer CLI.

    python -m nbhelpers.afhq --data-path <data>/afhq/train --data-class cat --save-folder results \\
        --time-steps 50 --train-steps 10000 --image-size 32 --batch-size 32 --learning-rate 1e-3 --unet-dim 16
    torchrun --nproc_per_node 4 -m nbhelpers.afhq <same flags>       # DistributedDataParallel

(also installed as the console script ``nbhelpers-afhq``). The assignment's underscored spellings
(``--image_size``, ``--fid True``) work too; an expected failure is one ``error:`` line and exit status 2.

Direction, as in :mod:`nbhelpers.ddpm`: integer step k, k = 0 data and k = T noise; the network
receives the float t = k / T. :class:`Diffusion` is a thin layer over :class:`nbhelpers.ddpm.DDPM` with the method names of the
seed's starter code (``q_sample``, ``p_losses``, ``p_sample``, ``p_sample_loop``, ``sample``): the
buffers, the forward process and the reverse step are ``nb.ddpm``'s.

Data: the real AFHQ layout ``afhq/{train,val}/{cat,dog,wild}/``. The chosen domain is decoded once,
resized to ``image_size``, cached as one uint8 tensor under ``build/cache/afhq/`` and held on the
training device; a batch is an index draw plus a random horizontal flip, scaled to [−1, 1].
``batch_size`` is the global batch: under ``torchrun`` every rank draws the same global batch
(same seed) and keeps its slice, so a run on N processes follows a 1-process run step for step, to float
rounding (the gradient all-reduce sums in another order; the gloo test allows 1e-5). On CUDA, ``cudnn.benchmark``
lets each process time and pick its own convolution algorithms, whose sums round differently again: the runs
stay close, not bitwise equal, and two runs on one card need not match bitwise either.

Modules, each importing only those before it: ``data`` (find, download, decode, cache, batch),
``diffusion`` (the seed's ``Diffusion``, the ε-network, batches and sampling), ``figures`` (5.3 / 5.4,
notebook 08's other figures and the logs), ``trainer`` (settings, resume, periodic samples and FID,
DDP), ``cli`` (the parser, ``main`` and a worked example), ``notebook`` (notebook 08's settings per
profile, the Monte Carlo check of eq. 18, the scored and continued runs and the report lines). Every
public name is re-exported here: ``nb.recipes.afhq.make_diffusion``.
"""
from __future__ import annotations

from .data import (AFHQ_CLASSES, AFHQ_URLS, AFHQ_SHA256, IMAGE_EXTENSIONS, AFHQNotFoundError,
                   default_data_path, check_class, afhq_folder, download_afhq, fetch_afhq, find_afhq, load_folder, AFHQImages,
                   count_images, load_afhq)
from .diffusion import (LOSS_TYPES, Diffusion, afhq_unet_config, make_diffusion, make_batch_fn,
                        diffusion_loss, as_loss_fn, autocast, sample_images)
from .figures import (PROCESS_FRACTIONS, process_steps, forward_process, backward_process, library_predict_x0,
                      x0_predictions, plot_process, process_labels, schedule_figure, batch_figure, loss_figure,
                      fid_figure, long_loss_figure, copy_distance_figure, copy_pairs_figure, copy_summary,
                      save_image_grid, visualize, write_loss_log, write_fid_log)
from .trainer import (AFHQConfig, train_key, train_config, adopt_checkpoint, AFHQResult, SampleAndScore,
                      train_afhq, check_save_folder)
from .cli import (TABLE1_FLAGS, build_parser, table1, MarkdownText, table1_markdown, CLIExample, cli_example,
                  parse_args, main)
from .notebook import (NotebookSettings, notebook_settings, PosteriorRegression, posterior_regression, loss_per_step,
                       training_line, training_metrics, continue_training, continued_line, ScoredRun,
                       train_with_fid, FIDCurve, fid_curve, OfflineScores, score_offline)

__all__ = ["AFHQ_CLASSES", "AFHQ_URLS", "AFHQ_SHA256", "IMAGE_EXTENSIONS", "AFHQNotFoundError", "default_data_path",
           "check_class", "afhq_folder", "download_afhq", "fetch_afhq", "find_afhq", "load_folder", "AFHQImages", "count_images", "load_afhq",
           "LOSS_TYPES", "Diffusion", "afhq_unet_config", "make_diffusion", "make_batch_fn", "diffusion_loss",
           "as_loss_fn", "autocast", "sample_images", "PROCESS_FRACTIONS", "process_steps", "forward_process",
           "backward_process", "library_predict_x0", "x0_predictions", "plot_process", "save_image_grid", "visualize",
           "write_loss_log", "write_fid_log", "AFHQConfig", "train_key", "train_config", "adopt_checkpoint",
           "AFHQResult", "SampleAndScore", "train_afhq", "check_save_folder", "TABLE1_FLAGS", "build_parser", "table1",
           "parse_args", "main", "process_labels", "schedule_figure", "batch_figure", "loss_figure", "fid_figure",
           "long_loss_figure", "copy_distance_figure", "copy_pairs_figure", "copy_summary", "MarkdownText",
           "table1_markdown", "CLIExample", "cli_example", "NotebookSettings", "notebook_settings",
           "PosteriorRegression", "posterior_regression", "loss_per_step", "training_line", "training_metrics",
           "continue_training", "continued_line", "ScoredRun", "train_with_fid", "FIDCurve", "fid_curve",
           "OfflineScores", "score_offline"]
