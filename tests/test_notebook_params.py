"""Each notebook checks its parameters in the cell right after the parameters cell: ``None`` means
the profile's value; 0, negative, fractional or boolean sizes and ``steps`` together with ``epochs``
stop there with one line naming the parameter."""
import json
import re
from pathlib import Path

import pytest

from nbhelpers import runtime

NOTEBOOKS = Path(runtime.ROOT) / "notebooks"


def _first_cells(name: str) -> tuple[str, str]:
    cells = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())["cells"]
    i = next(k for k, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    return "".join(cells[i]["source"]), "".join(cells[i + 1]["source"])


def _run_setup(name: str, overrides: dict, monkeypatch, tmp_path) -> dict:
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    monkeypatch.setattr(runtime, "metrics_dir", lambda: tmp_path)  # setup() starts a fresh record: not the real one
    params, setup = _first_cells(name)
    scope: dict = {}
    exec(params, scope)
    for key in overrides:
        assert key in scope, f"{name} declares no parameter {key!r}"
    scope.update(overrides)
    exec(setup, scope)
    return scope


BAD = [
    ("01_sdes", {"n_paths": 0}, ["n_paths", "in [1, 20000000]"]),  # 100× the gpu default
    ("01_sdes", {"n_paths": 2.5}, ["n_paths", "integer"]),
    ("03_flow_matching_2d", {"steps": -3}, ["steps", "in [1, 2000000]"]),
    ("03_flow_matching_2d", {"retrain": "yes"}, ["retrain", "True or False"]),
    ("04_unet_images", {"steps": 0}, ["steps", ">= 1"]),
    ("04_unet_images", {"steps": 5, "epochs": 1}, ["steps", "epochs", "both"]),
    ("05_score_sde", {"steps": True}, ["steps", "integer"]),
    ("05_score_sde", {"image_steps": 0}, ["image_steps", ">= 1"]),
    ("05_score_sde", {"image_steps": 5, "epochs": 1}, ["image_steps", "epochs", "both"]),
    ("06_two_pixel_ddpm_cfg", {"steps": 0}, ["steps", "in [1, 400000]"]),
    ("07_mnist_cfg", {"epochs": -1}, ["epochs", "> 0"]),
    ("07_mnist_cfg", {"steps": 2, "epochs": 2}, ["steps", "epochs", "both"]),
    ("08_afhq_ddpm", {"steps": 2.0}, ["steps", "integer"]),
    ("08_afhq_ddpm", {"steps": 3, "epochs": 1}, ["steps", "epochs", "both"]),
]


@pytest.mark.parametrize("name, overrides, words", BAD, ids=[f"{n[:2]}-{o}" for n, o, _ in BAD])
def test_bad_parameter_stops_the_cell_after_the_parameters(name, overrides, words, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match=re.escape(words[0])) as info:
        _run_setup(name, overrides, monkeypatch, tmp_path)
    msg = str(info.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


@pytest.mark.parametrize("name, variable", [("04_unet_images", "recipe"), ("07_mnist_cfg", "n_steps")])
def test_epochs_become_steps_and_are_printed(name, variable, monkeypatch, tmp_path, capsys):
    scope = _run_setup(name, {"epochs": 0.01}, monkeypatch, tmp_path)
    steps = scope[variable].steps if variable == "recipe" else scope[variable]
    batch = scope["recipe"].batch_size if variable == "recipe" else scope["P"].batch_size
    assert steps == runtime.steps_for_epochs(0.01, 60_000, batch)
    assert f"epochs=0.01 → {steps:,} steps at batch {batch}" in capsys.readouterr().out


def test_none_keeps_the_profile_default(monkeypatch, tmp_path):
    scope = _run_setup("06_two_pixel_ddpm_cfg", {}, monkeypatch, tmp_path)
    assert scope["n_steps"] == 30  # the smoke value written in the notebook
