"""Answers filled from the run, claims checked where they are made, and the prose rule."""
import json

import pytest
import torch

import nbhelpers as nb
from nbhelpers import answers, layout, runtime


def test_render_fills_metric_names_with_slashes_and_formats():
    text = answers.render("{linear/recognised:.1%} recognised, FD ratio {fd:.2f}, n = {n}",
                          {"linear/recognised": 0.7321, "fd": 1.557, "n": 1000})
    assert text == "73.2% recognised, FD ratio 1.56, n = 1000"


def test_a_missing_metric_is_an_error_naming_it_and_the_recorded_ones():
    with pytest.raises(ValueError, match=r"\{cosine/recognised\}.*recorded: fd, linear/recognised"):
        answers.render("{cosine/recognised:.0%}", {"linear/recognised": 0.7, "fd": 1.0})


def test_an_unmeasured_metric_renders_as_not_available():
    assert answers.render("FID {fid:.1f}", {"fid": None}) == "FID n/a"


def test_a_failed_claim_is_shown_and_a_held_one_is_not():
    ok = answers.claim("the cosine schedule keeps the modes longer", 0.70 > 0.65, "t90 0.70 vs 0.65")
    bad = answers.claim("the ring appears earlier under cosine", torch.tensor(0.675) < 0.650, "t90 0.675 vs 0.650")
    assert ok.holds and not bad.holds
    text = answers.render("Answer.", {}, [ok, bad])
    assert text.startswith("Answer.") and text.count("⚠️") == 1
    assert "“the ring appears earlier under cosine”" in text and "t90 0.675 vs 0.650" in text
    assert answers.render("Answer.", {}, [ok]) == "Answer."


def test_claim_needs_text_and_one_truth_value():
    with pytest.raises(ValueError, match="needs its text"):
        answers.claim(" ", True)
    with pytest.raises(ValueError, match="single truth value"):
        answers.claim("all positive", torch.tensor([1.0, -1.0]) > 0)


def test_run_answer_records_claims_and_shows_the_filled_text(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    monkeypatch.setattr(layout, "build_dir", lambda: tmp_path)
    run = nb.setup("99_test", device="cpu", seed=0)
    run.report("acc", 0.5)
    run.answer("accuracy {acc:.0%} (w = {w})", claims=[answers.claim("better than chance", False, "50 %")], w=2)
    recorded = json.loads(run.metrics_path.read_text())["metrics"]
    assert answers.failed_claims(recorded) == ["better_than_chance"]
    with pytest.raises(ValueError, match="nb.answers.claim"):
        run.answer("x", claims=[True])


def test_run_answer_refuses_a_keyword_that_shadows_a_metric_and_a_name_it_cannot_fill(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    monkeypatch.setattr(layout, "build_dir", lambda: tmp_path)
    run = nb.setup("99_test", device="cpu", seed=0)
    run.report("acc", 0.5)
    with pytest.raises(ValueError, match=r"passes acc=0\.75, but this run recorded acc = 0\.5"):
        run.answer("accuracy {acc:.0%}", acc=0.75)
    run.answer("accuracy {acc:.0%}", acc=torch.tensor(0.5))  # the recorded value itself is fine
    with pytest.raises(ValueError, match=r"cites \{fd\}, which this run did not record; recorded: acc"):
        run.answer("FD {fd:.2f}")


def test_claim_keys_stay_short_and_distinct():
    base = "the learned sampler scores within two standard errors of the floor at every"
    a, b = answers.claim_key(base + " step count"), answers.claim_key(base + " step size")
    assert a != b and len(a) == len("claims/") + 60 and len(b) == len(a)
    assert answers.claim_key("Guidance raises accuracy!") == "claims/guidance_raises_accuracy"


def test_run_answer_refuses_two_claims_that_would_share_a_key(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    monkeypatch.setattr(layout, "build_dir", lambda: tmp_path)
    run = nb.setup("99_test", device="cpu", seed=0)
    run.answer("a", claims=[answers.claim("w > 1 helps", True)])
    run.answer("b", claims=[answers.claim("w > 1 helps", False)])  # the same claim again: its latest value
    assert run.metrics["claims/w_1_helps"] is False
    with pytest.raises(ValueError, match=r"“w < 1 helps” and “w > 1 helps” would both be recorded as claims/w_1_helps"):
        run.answer("c", claims=[answers.claim("w < 1 helps", True)])
    with pytest.raises(ValueError, match="would both be recorded as claims/x_y"):
        run.answer("d", claims=[answers.claim("x-y", True), answers.claim("x y", False)])
    assert "claims/x_y" not in run.metrics


def test_the_warning_names_no_profile():
    text = answers.render("Answer.", {}, [answers.claim("it holds", False)])
    assert "profile" not in text and "read it against this run's numbers" in text


@pytest.mark.parametrize("markdown, found", [
    ("73 % of the samples", ["73 %"]),
    ("a ratio of 1.39 against 0.83", ["1.39", "0.83"]),
    ("the FD is 1.4× the floor", ["1.4×"]),
    ("$\\sigma = 0.1$ and `lr=4e-3` and [fig](figures/a_0.5.png)", []),
    ("Answer (2a), seed 004, T = 1000 steps, 10 frequencies", []),
    ("version 2.14.1 of torch", []),
    ("### 4.1 · Training\n28×28 images, 3 × 3 kernels", []),
    ("the posterior (4.6, 4.7); **5.2.** FID", []),
    ("<!-- run-costs:begin (make colab-badges) -->\n| `cpu` | 13.3 min |\n<!-- run-costs:end -->\n0.5 s", ["0.5"]),
    ("an error of 2.25 and 10.5 and 0.5", ["2.25", "10.5", "0.5"]),
])
def test_measured_numbers_finds_decimals_percentages_and_ratios_outside_maths_and_code(markdown, found):
    assert answers.measured_numbers(markdown) == found
