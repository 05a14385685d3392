"""Marks the longer unit tests ``slow`` so ``make unit`` has a fast subset (``-m "not slow"``).

``make test`` runs every test. The list is by name so test files stay free of bookkeeping; an entry
that names no test is caught by ``tests/test_package.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nbhelpers import runtime

SLOW: frozenset[str] = frozenset({
    "tests/test_recipes_afhq.py::test_flags_are_honoured",
    "tests/test_bench_dryrun.py::test_notebook_06_dry_run_at_gpu_sizes",
    "tests/test_bench_gpu_check.py::test_the_device_check_runs_every_training_on_the_cpu",
    "tests/test_bench_roofline.py::test_every_training_of_the_series_runs_through_the_roofline",
    "tests/test_bench_notebook_step.py::test_each_training_runs_both_ways_on_the_real_data_at_smoke_sizes",
    "tests/test_bench_variants04.py::test_a_tiny_run_writes_one_scored_row",
    "tests/test_recipes_afhq.py::test_resume_after_kill",
    "tests/test_recipes_afhq_ddp.py::test_two_gloo_processes_match_one_process",
    "tests/test_checkpoint_cache.py::test_kill_minus_nine_then_resume_with_a_unet",
    "tests/test_exercises.py::test_student_edition_runs_with_every_exercise_unsolved",
    "tests/test_losses.py::test_flow_matching_loss_is_minimised_by_the_oracle_field",
    "tests/test_metrics_images.py::test_class_accuracy_and_diversity",
    "tests/test_metrics_images.py::test_fd_is_zero_for_identical_sets_and_grows_with_noise",
    "tests/test_metrics_images.py::test_real_digits_pass_and_noise_or_an_untrained_network_fail",
    "tests/test_metrics_toy.py::test_score_against_truth_separates_good_and_bad_samples",
    "tests/test_metrics_toy.py::test_sliced_wasserstein_shift_and_duplicates",
    "tests/test_recipes_cfg_mnist.py::test_ddim_all_steps_eta1_matches_one_ancestral_step",
    "tests/test_recipes_cfg_mnist.py::test_generate_uses_the_guided_noise_and_skips_the_null_pass_at_w0",
    "tests/test_recipes_cfg_mnist.py::test_guided_output_algebra_on_the_real_unet",
    "tests/test_recipes_cfg_mnist.py::test_null_label_is_the_unconditional_input_and_labels_change_the_output",
    "tests/test_recipes_cfg_mnist.py::test_paper_variant_adds_the_encoding_to_every_residual_block",
    "tests/test_recipes_mnist.py::test_the_mnist_score_is_minus_eps_over_beta_and_its_loss_is_the_eps_loss",
    "tests/test_package.py::test_star_import_loads_every_listed_name",
    "tests/test_project.py::test_papermill_missing_device_stops_at_setup",
    "tests/test_project.py::test_papermill_unknown_profile_lists_choices",
    "tests/test_sde.py::test_flow_score_sde_reaches_the_data",
    "tests/test_sde.py::test_langevin_samples_its_target",
    "tests/test_sde.py::test_vpsde_em_matches_marginal",
    "tests/test_sde.py::test_vpsde_reverse_sde_and_probability_flow_recover_data",
    "tests/test_strict_device.py::test_notebook_06_runs_whole_under_the_strict_mode",
    "tests/test_solvers.py::test_time_dependent_diffusion_and_backwards_noise_scale",
    "tests/test_training.py::test_kill_minus_nine_then_resume",
    "tests/test_training.py::test_loss_decreases_and_history_length",
    "tests/test_training.py::test_resume_matches_uninterrupted_run",
    "tests/test_models_two_pixel.py::test_short_training_lowers_the_loss",
    "tests/test_recipes_two_pixel.py::test_two_pixel_figures_draw",
    "tests/test_recipes_two_pixel.py::test_q3_study_and_findings_with_the_exact_eps_as_the_learned_model",
    "tests/test_models_unet.py::test_28x28_goes_down_to_4x4_and_back",
    "tests/test_models_unet.py::test_channels_last_gives_the_same_result",
    "tests/test_models_unet.py::test_fourier_embedding_and_shared_mlp",
    "tests/test_models_unet.py::test_later_notebooks_configs_train",
    "tests/test_models_unet.py::test_samples_are_processed_independently_in_eval_mode",
    "tests/test_models_unet.py::test_scalar_time_is_broadcast",
    "tests/test_models_unet.py::test_time_and_class_change_the_output",
    "tests/test_widgets.py::test_path_explorer_interactive_builds_widgets",
    "tests/test_widgets.py::test_plotting_helpers_shapes",
})
"""``file::test`` (parametrised variants included) that take more than ~1 s on two cores."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("[", 1)[0] in SLOW:
            item.add_marker(pytest.mark.slow)



@pytest.fixture(autouse=True)
def _environment_restored():
    """Whatever a test (or the code it calls, e.g. a benchmark's ``main``) sets in ``os.environ`` is undone
    after it, so no test's outcome depends on which ran before it."""
    saved = dict(os.environ)
    yield
    if dict(os.environ) != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def live_pid():
    """The pid of a live process of this test's own, killed when the test ends (the parent's pid is no
    such process: it is 0 when pytest runs as PID 1 in a container)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert runtime.pid_alive(proc.pid)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


# --------------------------------------------------------------------------- helpers shared by several test files
def generator(seed: int = 0) -> torch.Generator:
    """A CPU generator seeded with ``seed``: every test draws its data from one of its own."""
    return torch.Generator().manual_seed(seed)


def read_notebook(path: Path) -> dict:
    """A notebook file as its JSON (``["cells"]``, ``["metadata"]``, …)."""
    return json.loads(Path(path).read_text())


def cell_source(cell: dict) -> str:
    """A notebook cell's source as one string."""
    return "".join(cell["source"])
