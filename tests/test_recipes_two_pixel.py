"""Notebook 06's recipe (``nb.recipes.two_pixel``): its figures, widget, training and studies (the network itself:
test_models_two_pixel.py)."""
import math

import pytest
import torch

import nbhelpers as nb
from nbhelpers.ddpm import DDPM
from nbhelpers.guidance import drop_labels


# --------------------------------------------------------------------------- the notebook's figures and widget
def test_two_pixel_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gmm = nb.distributions.two_pixel()
    g = torch.Generator().manual_seed(0)
    steps = {k: torch.randn(500, 2, generator=g) for k in (50, 30, 10)}
    path = {k: torch.randn(2, generator=g) for k in range(51)}
    fig = nb.recipes.two_pixel.trajectory_density_panels(steps, path, gmm.log_prob, {50: gmm.log_prob})
    assert len(fig.axes) == 4
    fig2 = nb.recipes.two_pixel.samples_vs_truth_rows({"T = 5": gmm.sample(300, g), "T = 50": gmm.sample(300, g)}, gmm.log_prob)
    assert len(fig2.axes) == 4
    fig3 = nb.recipes.two_pixel.paths_over_density([torch.randn(10, 2, generator=g)] * 2, gmm.log_prob, labels=["y = 0", "y = 1"])
    assert len(fig3.axes) == 1
    with pytest.raises(ValueError, match=r"\(S, 2\)"):
        nb.recipes.two_pixel.paths_over_density([torch.zeros(10, 3)], gmm.log_prob)
    plt.close("all")


def test_guidance_widget_is_static_headless_and_checks_w():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gmm = nb.distributions.two_pixel()
    s = gmm.sample_with_labels(400, torch.Generator().manual_seed(0))
    samples = {0.0: (s.x, s.labels), 2.0: (s.x, s.labels)}
    metrics = {0.0: {"accuracy": 0.97, "spread": 1.0}, 2.0: {"accuracy": 1.0, "spread": 0.9}}
    fig = nb.recipes.two_pixel.two_pixel_guidance_explorer(samples, gmm.log_prob, metrics, w=2.0, interactive=False)
    assert len(fig.axes) == 3  # samples, accuracy, spread (twin axis)
    assert "w = 2" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match=r"\[0.0, 2.0\]"):
        nb.recipes.two_pixel.draw_two_pixel_guidance(1.0, samples, gmm.log_prob)
    plt.close("all")


# --------------------------------------------------------------------------- notebook 06's training and studies
tp = nb.recipes.two_pixel


class _Trained:
    """Stands in for a training result: the exact ε of the mixture is the "learned" model."""

    def __init__(self, model):
        self.sampling_model = model


def _oracle_trained(gmm, Ts):
    ddpms = {T: DDPM.from_schedule("cosine", T) for T in Ts}
    return {T: tp.TrainedDDPM(d, _Trained(nb.ddpm.GMMEpsOracle(d, gmm))) for T, d in ddpms.items()}


def test_data_schedule_and_loss_figures_draw():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gmm = nb.distributions.two_pixel()
    s = gmm.sample_with_labels(300, torch.Generator().manual_seed(0))
    fig = tp.world_figure(gmm, s.x, s.labels)
    assert len(fig.axes) == 2 and fig.axes[1].get_title() == "300 images and their labels"
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["y = 0", "y = 1"]
    fig = tp.schedules_figure((5, 50))
    assert [len(line.get_xdata()) for line in fig.axes[0].lines] == [5, 50]
    fig = tp.loss_curves_figure({"a": [1.0] * 300, "b": [2.0] * 300})
    assert [line.get_alpha() for line in fig.axes[0].lines[::2]] == [0.0, 0.0]  # only the moving averages show
    plt.close("all")


def test_loss_tail_is_the_mean_and_its_standard_error():
    tail = tp.loss_tail({"x": [9.0] * 10 + [1.0, 2.0, 3.0, 4.0]}, last=4)
    assert tail.mean == {"x": 2.5}
    assert tail.se["x"] == pytest.approx(math.sqrt(1.25) / 2)  # population std of 1..4 over √4
    two = tp.loss_tail({"a": [1.0, 3.0], "b": [4.0, 6.0]})
    assert two.separation("a", "b") == pytest.approx((5.0 - 2.0) / math.hypot(1 / math.sqrt(2), 1 / math.sqrt(2)))
    assert math.isnan(tp.loss_tail({"a": [1.0], "b": [2.0]}).separation("a", "b"))  # no spread: no s.e.


def test_noised_two_pixel_is_the_law_of_q_sample():
    gmm, d = nb.distributions.two_pixel(), DDPM.from_schedule("cosine", 50)
    ab = float(d.alphas_cumprod[19])
    p = tp.noised_two_pixel(gmm, d, 20)
    ref = gmm.noised(ab ** 0.5, (1 - ab) ** 0.5)
    torch.testing.assert_close(p.means, ref.means)
    torch.testing.assert_close(p.stds.reshape(-1), ref.stds.reshape(-1))
    x = d.q_sample(gmm.sample(40_000, torch.Generator().manual_seed(1)), 20, generator=torch.Generator().manual_seed(2))
    y = p.sample(40_000, torch.Generator().manual_seed(3))
    assert float(x.var(0).mean()) == pytest.approx(float(y.var(0).mean()), rel=0.03)
    torch.testing.assert_close(tp.noised_two_pixel(gmm, d, 0).means, gmm.means)


def test_typical_run_is_the_first_end_near_a_peak():
    means = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    assert tp.typical_run(torch.tensor([[0.5, 0.5], [3.0, 3.0], [1.05, 0.95], [0.0, 0.1]]), means) == 2
    assert tp.typical_run(torch.tensor([[0.5, 0.5]]), means) == 0  # none is near: the first


def test_truth_scorer_scores_against_one_reference_and_true_samples_score_near_the_floor():
    gmm = nb.distributions.two_pixel()
    g = torch.Generator().manual_seed(0)
    floor = nb.metrics.energy_noise_floor(gmm, 200, generator=g, repeats=4, n_pairs=20_000)
    score = tp.TruthScorer(gmm, floor, n=200, seed=0)
    good, bad = score(gmm.sample(800, g)), score(gmm.sample(800, g) + 0.3)
    assert good.energy_ratio < 3 < bad.energy_ratio
    assert torch.equal(good.reference, bad.reference)  # the same reference draw (seed + 1) for every set


def test_score_steps_scores_each_step_against_its_own_truth():
    gmm, d = nb.distributions.two_pixel(), DDPM.from_schedule("cosine", 10)
    g = torch.Generator().manual_seed(0)
    samples = {k: tp.noised_two_pixel(gmm, d, k).sample(600, g) for k in (10, 2)}
    out = tp.score_steps(samples, (10, 2), lambda k: tp.noised_two_pixel(gmm, d, k), n=200, generator=g, seed=0,
                         floor_repeats=3, n_pairs=20_000)
    assert sorted(out.metrics) == sorted(f"q2/k{k}/{m}" for k in (10, 2) for m in
                                         ("energy_ratio", "energy_ratio_se", "log_likelihood", "true_log_likelihood"))
    assert out.metrics["q2/k2/energy_ratio"] == out.scores[2].energy_ratio
    assert all(out.scores[k].energy_ratio < 4 for k in (10, 2))
    assert out.summary().splitlines()[1].startswith("k =  2: samples vs the exact density of x_k: ")
    wrong = tp.score_steps({10: samples[2]}, (10,), lambda k: tp.noised_two_pixel(gmm, d, k), n=200, generator=g,
                           seed=0, floor_repeats=3, n_pairs=20_000)
    assert wrong.scores[10].energy_ratio > 10  # the samples of step 2 are not those of step 10


def test_q3_study_and_findings_with_the_exact_eps_as_the_learned_model():
    """With the exact ε in both roles, the learned and the exact rows start from the same noise with the same
    generator, so they must agree number for number; the findings derive from them."""
    gmm = nb.distributions.two_pixel()
    g = torch.Generator().manual_seed(0)
    floor = nb.metrics.energy_noise_floor(gmm, 150, generator=g, repeats=3, n_pairs=20_000)
    score = tp.TruthScorer(gmm, floor, n=150, seed=0)
    q3 = tp.q3_study(_oracle_trained(gmm, (5, 10, 25, 50)), gmm, 150, 2, g, 0, "cpu", score)
    got = q3.metrics
    assert len(q3.rows) == 16 and [(name, a["samples"].shape) for name, a in q3.to_save.items()] == [
        (f"q3_T{T}", (300, 2)) for T in (5, 10, 25, 50)]
    assert sorted({row[1] for row in q3.rows}) == sorted(s.label for s in tp.Q3Sampler)
    assert len(got) == 16 * (len(q3.scores[5, "learned"].as_dict()) + 2)
    assert list(q3.samples) == ["T = 5", "T = 10", "T = 25", "T = 50"] and q3.samples["T = 5"].shape == (150, 2)
    for T in (5, 10, 25, 50):
        assert q3.scores[T, "learned"].energy == q3.scores[T, "exact_eps"].energy
        assert got[f"q3/T{T}/learned/mode_std"] == got[f"q3/T{T}/exact_eps/mode_std"]
    assert q3.table().count("\n") == 16 and "± 1 s.e. over 2 sets" in q3.table()
    f = tp.q3_findings(q3, n_total=300)
    assert f["ratio_T50"] == f["exact_ratio_T50"] and f["weight_se"] == pytest.approx(math.sqrt(0.35 * 0.65 / 300))
    assert f["clipped_share"] == pytest.approx(0.00621, abs=1e-5)  # P(x > 1) for N(0.75, 0.1²): 1 − Φ(2.5)
    assert f["weight_y0_T50"] == got["q3/T50/learned/mode_weights"][0]
    assert f["width_T5"] == got["q3/T5/learned/mode_std"] and f["between_T10"] == got["q3/T10/learned/between_modes"]
    assert f["width_exact_posterior_T50"] == got["q3/T50/exact_eps_posterior_var/mode_std"]
    assert f["z_posterior_T50"] == pytest.approx(nb.metrics.ratio_separation(q3.scores[50, "learned_posterior_var"],
                                                                  q3.scores[50, "learned"]))
    oracle = nb.ddpm.GMMEpsOracle(DDPM.from_schedule("cosine", 50), gmm)
    ddim = tp.ddim_study(DDPM.from_schedule("cosine", 50), {tp.EpsSource.LEARNED: oracle, tp.EpsSource.EXACT: oracle},
                         torch.randn(300, 2, generator=g), (10, 25, 50), score)
    fd = tp.ddim_findings(ddim, q3)
    assert fd["d10"] == fd["x10"] == ddim.scores[10, tp.EpsSource.LEARNED].energy_ratio
    assert fd["a25"] == q3.scores[25, "learned"].energy_ratio
    assert ddim.metrics["ddim/25_of_50/exact_eps/energy_ratio"] == ddim.scores[25, tp.EpsSource.EXACT].energy_ratio
    assert isinstance(fd["v50"], str) and "exact ε" in ddim.summary()
    with pytest.raises(ValueError, match="keyed by EpsSource"):
        tp.ddim_study(DDPM.from_schedule("cosine", 50), {"learned": oracle}, torch.randn(8, 2), (10,), score)


def test_same_noise_two_labels_and_the_guidance_sweep_with_the_exact_conditional_eps():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gmm, d = nb.distributions.two_pixel(), DDPM.from_schedule("cosine", 20)
    oracle = nb.ddpm.GMMEpsOracle(d, gmm)
    x_T = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    q4 = tp.same_noise_two_labels(d, oracle, x_T, gmm.means, seed=3)
    assert q4.paths[0].shape == (21, 64, 2) and torch.equal(q4.paths[1][0], x_T)
    assert torch.equal(q4.paths[0][-1], q4.ends[0])
    assert q4.both > 0.9  # the exact conditional ε sends each run to its own mode
    assert q4.metrics == {"q4/both_labels_reach_their_mode": q4.both}
    assert len(tp.same_noise_figure(q4, x_T, gmm.log_prob).axes) == 3
    plt.close("all")

    def guided(w):
        return lambda x, t, y: nb.guidance.guided_eps(oracle, x, t, y, w, 2)

    y = torch.arange(64) % 2
    result = tp.guidance_sweep(d, guided, x_T, y, (0.0, 2.0), gmm.means, seed=5)
    sweep, metrics = result.samples, result.per_w
    assert sorted(result.metrics) == sorted(f"guidance/w{w}/{k}" for w in ("0", "2")
                                            for k in ("accuracy", "spread", "spread_se"))
    assert result.metrics["guidance/w2/spread"] == metrics[2.0]["spread"]
    x0, _ = sweep[0.0]
    inside = torch.cdist(x0, gmm.means).argmin(1) == y
    assert metrics[0.0]["accuracy"] == float(inside.double().mean()) > 0.9
    assert metrics[0.0]["spread_se"] == pytest.approx(metrics[0.0]["spread"] / math.sqrt(2 * int(inside.sum())))
    ref = d.sample(guided(2.0), x_T, y=y, sigma="beta", generator=torch.Generator().manual_seed(5)).x
    torch.testing.assert_close(sweep[2.0][0], ref)  # the same noise for every w


def test_guidance_findings_closed_form():
    m = {0.0: {"accuracy": 0.97, "spread": 1.00, "spread_se": 0.03}, 1.0: {"accuracy": 0.995, "spread": 0.96,
         "spread_se": 0.04}, 2.0: {"accuracy": 0.999, "spread": 1.02, "spread_se": 0.04}}
    f = tp.guidance_findings(m)
    assert f["a0"] == 0.97 and f["a1"] == 0.995 and f["smin"] == 0.96 and f["smax"] == 1.02 and f["sse"] == 0.04
    assert f["dspread"] == pytest.approx(1.02 / 0.96 - 1)
    assert f["narrower"] == pytest.approx(0.04 / 0.05)  # (1.00 − 0.96) / hypot(0.03, 0.04)
    gmm = nb.distributions.two_pixel()
    x = gmm.sample(400, torch.Generator().manual_seed(0))
    floor = nb.metrics.energy_noise_floor(gmm, 200, generator=torch.Generator().manual_seed(1), repeats=3,
                                          n_pairs=20_000)
    u = nb.metrics.score_against_truth(x, gmm, generator=torch.Generator().manual_seed(2), n=200, floor=floor)
    fu = tp.guidance_findings(m, u)
    assert (fu["u0"], fu["u1"], fu["ur"], fu["uwe"]) == (float(u.mode_weights[0]), float(u.mode_weights[1]),
                                                         u.energy_ratio, u.max_weight_error)


def test_q2_findings_name_the_worst_step_and_the_end_weights():
    means = torch.tensor([[-1.0, 1.0], [1.0, -1.0]])
    ends = torch.tensor([[-0.9, 1.0]] * 1 + [[1.1, -1.0]] * 3)

    class S:
        def __init__(self, r):
            self.energy_ratio, self.energy_ratio_se = r, r / 10

    f = tp.q2_findings(ends, {50: S(0.9), 30: S(1.7), 10: S(1.2)}, means)
    assert (f["w0"], f["w1"], f["lobes"]) == (0.25, 0.75, 3.0)
    assert (f["worst_k"], f["worst"], f["worst_se"]) == (30, 1.7, pytest.approx(0.17))


def test_train_two_pixel_uses_the_given_label_dropout_and_states_its_time(tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path))
    calls = []

    def dropout(y, p, num_classes, generator):
        calls.append((p, num_classes))
        return drop_labels(y, p, num_classes, generator)

    setting = dict(data=nb.distributions.two_pixel(), net=dict(channels=(32, 64), embed_dim=32), steps=4, batch=16,
                   lr=1e-3, seed=0, device="cpu", profile="smoke")
    trained = tp.train_two_pixel(5, p_uncond=0.2, label_dropout=dropout, **setting)
    ddpm, res = trained
    assert ddpm.T == 5 and len(res.losses) == 4 and calls == [(0.2, 2)] * 4
    assert trained.metrics == {"train_seconds/06_two_pixel_T5_cfg": res.seconds}
    assert trained.summary().startswith("06_two_pixel_T5_cfg: 4 steps in ") and "trained now" in trained.summary()
    again = tp.train_two_pixel(5, p_uncond=0.2, label_dropout=dropout, **setting)
    assert again.result.loaded_from_cache and len(calls) == 4  # the cache answers; nothing is trained
    unc = tp.train_two_pixel(5, **setting)
    assert unc.result.model.num_classes == 0
