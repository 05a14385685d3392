"""benchmarks.notebook_step: the notebook's training call and the roofline's, timed in turns."""
from __future__ import annotations

import json
import os

import pytest

from benchmarks import common, notebook_step
from nbhelpers.runtime import CHECKPOINT_ENV
from tests.needs import need


def test_turns_alternate_and_every_block_trains_in_an_empty_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "mine"))
    calls = []

    def side(name, seconds):
        def run(steps):
            calls.append((name, steps, os.environ[CHECKPOINT_ENV]))
            return seconds.pop(0)
        return run

    pair = notebook_step.Pair("07 attention UNet (CFG MNIST)", side("notebook", [0.21, 0.20, 0.19, 0.22]),
                              side("roofline", [0.20, 0.20, 0.20, 0.20]), 30)
    row = notebook_step.measure(pair, rounds=4)
    assert [c[0] for c in calls] == ["notebook", "roofline", "roofline", "notebook"] * 2  # neither always first
    assert {c[1] for c in calls} == {30} and len({c[2] for c in calls}) == 1
    assert calls[0][2] != str(tmp_path / "mine") and os.environ[CHECKPOINT_ENV] == str(tmp_path / "mine")
    assert row["notebook_s"] == pytest.approx(0.205) and row["roofline_s"] == pytest.approx(0.20)
    assert row["difference"] == pytest.approx(0.025)  # the median of the rounds' ratios 1.05, 1.0, 0.95, 1.1
    assert (row["ratio_min"], row["ratio_max"]) == (pytest.approx(0.95), pytest.approx(1.10))
    assert notebook_step.measure(pair_of(0.3, 0.2), rounds=1, steps=5)["steps"] == 5


def pair_of(nb_s, rf_s):
    return notebook_step.Pair("x", lambda steps: nb_s, lambda steps: rf_s, 30)


def test_main_writes_the_table_and_the_json(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(common, "RESULTS", tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n")
    monkeypatch.setattr(notebook_step, "replace_block", lambda tag, text: common.replace_block(tag, text, readme))
    seen = {}

    def fake_pairs(profile, device, only):
        seen.update(profile=profile, device=device, only=only)
        return [notebook_step.Pair("04 UNet velocity (MNIST)", lambda s: 0.189, lambda s: 0.180, 30)]

    monkeypatch.setattr(notebook_step, "pairs", fake_pairs)
    assert notebook_step.main(["--only", "04", "--rounds", "2"]) == 0
    assert seen == {"profile": "cpu", "device": "cpu", "only": {"04"}}
    payload = json.loads((tmp_path / f"notebook_step__{common.machine_tag(common.machine())}.json").read_text())
    assert payload["rows"][0]["rounds"] == 2 and payload["rows"][0]["difference"] == pytest.approx(0.05)
    assert "| 04 UNet velocity (MNIST) | 30 × 2 | 0.180 | 0.189 | +5.0% | 1.050–1.050 |" in readme.read_text()


@pytest.mark.parametrize("argv, message", [(["--only", "06"], "unknown 06; valid choices: 04, 05, 07, 08"),
                                           (["--rounds", "0"], "--rounds must be ≥ 1")])
def test_bad_arguments_are_refused_before_any_work(monkeypatch, capsys, argv, message):
    monkeypatch.setattr(notebook_step, "pairs", lambda *a: pytest.fail("no work on bad arguments"))
    with pytest.raises(SystemExit, match="^2$"):
        notebook_step.main(argv)
    assert message in capsys.readouterr().err


def test_each_training_runs_both_ways_on_the_real_data_at_smoke_sizes(tmp_path, monkeypatch):
    from nbhelpers import data, runtime

    need(data.has_mnist(), f"MNIST not under the data root {runtime.data_dir()} (set NBHELPERS_DATA_DIR)")
    need((runtime.data_dir() / "afhq" / "train" / "cat").is_dir(),
         f"offline AFHQ cats not under {runtime.data_dir()} (set NBHELPERS_DATA_DIR)")
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))
    found = notebook_step.pairs("smoke", "cpu")
    assert [p.name[:2] for p in found] == ["04", "05", "07", "08"]
    assert found[-1].steps == 10 + 10  # 08: past one checkpoint and its sampling hook (every 10 steps at smoke)
    for p in found:
        row = notebook_step.measure(p, rounds=1, steps=12 if p.name.startswith("08") else 2)
        assert 0 < row["notebook_s"] < 60 and 0 < row["roofline_s"] < 60, row
    assert list(tmp_path.iterdir()) == []  # every block trained in a temporary cache, not in the caller's
