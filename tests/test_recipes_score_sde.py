"""Notebook 05's recipe (``nb.recipes.score_sde``): the reverse VP-SDE sampler built from one step, and the studies."""
import math

import pytest
import torch

import nbhelpers as nb
from nbhelpers.recipes import score_sde as R
from nbhelpers.recipes import score_sde_figures as F

VP = nb.sde.VPSDE(0.1, 20.0)


def _library_step(sde, score_fn, x, t, dt, generator=None):
    """The reverse step as Euler–Maruyama takes it (h = −dt), written from the library's reverse SDE."""
    rev = sde.reverse(score_fn)
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x - dt * rev.drift(x, t) + rev.diffusion(x, t) * torch.sqrt(dt) * noise


def _gmm_score(x, t):
    return nb.distributions.toy_gmm().marginal_score(x, 1 - t, VP.marginal_schedule)


@pytest.mark.parametrize("n_steps", [1, 7, 100])
def test_reverse_sample_with_the_library_step_is_euler_maruyama_bit_for_bit(n_steps):
    x1 = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    got = R.reverse_sample(_library_step, VP, _gmm_score, x1, 1e-3, n_steps, torch.Generator().manual_seed(1),
                           return_trajectory=True)
    want = nb.solvers.euler_maruyama(VP.reverse(_gmm_score), None, x1, 1.0, 1e-3, n_steps,
                                     generator=torch.Generator().manual_seed(1), return_trajectory=True)
    assert torch.equal(got.x, want.x) and torch.equal(got.trajectory, want.trajectory)
    assert torch.equal(got.ts, want.ts) and got.nfe == n_steps
    assert R.reverse_sample(_library_step, VP, _gmm_score, x1, 1e-3, n_steps).trajectory is None


def test_reverse_sample_passes_each_step_its_start_and_a_positive_length():
    seen = []

    def step(sde, score_fn, x, t, dt, generator):
        seen.append((t.clone(), dt.clone()))
        return x

    R.reverse_sample(step, VP, _gmm_score, torch.zeros(3, 2), 0.2, 4)
    starts = [float(t[0]) for t, _ in seen]
    assert [tuple(t.shape) for t, _ in seen] == [(3,)] * 4
    assert starts == pytest.approx([1.0, 0.8, 0.6, 0.4])
    assert all(float(dt) == pytest.approx(0.2) and dt.ndim == 0 for _, dt in seen)


def test_reverse_sample_of_the_exact_gaussian_score_keeps_n01():
    """N(0, I) is the VP-SDE's stationary law and its score is −x: the reverse SDE from N(0, I) stays there."""
    n = 20_000
    x1 = torch.randn(n, 1, generator=torch.Generator().manual_seed(3))
    x = R.reverse_sample(_library_step, VP, lambda x, t: -x, x1, 1e-3, 400, torch.Generator().manual_seed(4)).x
    assert abs(x.mean().item()) < 4 / math.sqrt(n)
    assert abs(x.var().item() - 1) < 4 * math.sqrt(2 / n) + 0.03  # + the O(h) bias of Euler–Maruyama


def test_reverse_sample_rejects_bad_arguments():
    with pytest.raises(ValueError, match="t_min must lie in"):
        R.reverse_sample(_library_step, VP, _gmm_score, torch.zeros(2, 2), 1.0, 3)
    with pytest.raises(ValueError, match="x1 must be a floating-point tensor"):
        R.reverse_sample(_library_step, VP, _gmm_score, torch.zeros(2, 2, dtype=torch.long), 0.1, 3)
    with pytest.raises(ValueError, match="must be callables"):
        R.reverse_sample(None, VP, _gmm_score, torch.zeros(2, 2), 0.1, 3)


# --------------------------------------------------------------------------- scoring and the 2D studies
GMM = nb.distributions.toy_gmm()
PATH = nb.paths.GaussianPath("linear")


def _judge(n_set=100):
    floor = nb.metrics.energy_noise_floor(GMM, n_set, generator=torch.Generator().manual_seed(0), repeats=3,
                                          n_pairs=10_000)
    return R.TruthJudge(GMM, floor, n_set, ref_seed=5)


def test_truth_judge_scores_against_one_reference_draw_and_returns_every_number():
    judge = _judge()
    x = GMM.sample(300, generator=torch.Generator().manual_seed(1))
    want = nb.metrics.score_against_truth(x, GMM, generator=torch.Generator().manual_seed(5), n=100, floor=judge.floor)
    assert judge.score(x).energy == want.energy == judge.score(x).energy
    assert judge.ratio_se(300) == pytest.approx(judge.floor.std / judge.floor.mean / math.sqrt(3))
    got = judge.judge("set", x)
    assert {k.split("/", 1)[1] for k in got.metrics} == set(want.as_dict()) | {"energy_ratio_se_perfect"}
    assert got.metrics["set/energy_ratio"] == got.score.energy_ratio == want.energy_ratio
    assert got.metrics["set/energy_ratio_se_perfect"] == judge.ratio_se(300)
    assert torch.equal(got.to_save["samples"], x) and torch.equal(got.to_save["reference"], want.reference)
    assert got.summary().startswith("set ") and want.summary() in got.summary()
    assert "set/energy_ratio_se_perfect" not in judge.judge("set", x, perfect_se=False).metrics


def test_vp_sample_is_the_library_sampler_of_each_method():
    x1 = torch.randn(50, 2, generator=torch.Generator().manual_seed(2))
    noise = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    pf = VP.probability_flow(_gmm_score)
    M = R.VPMethod
    want = {M.REVERSE_SDE: nb.solvers.euler_maruyama(VP.reverse(_gmm_score), None, x1, 1.0, 1e-3, 20,
                                                     generator=noise()).x,
            M.PF_ODE_EULER: nb.solvers.euler(pf, x1, 1.0, 1e-3, 20).x,
            M.PF_ODE_HEUN: nb.solvers.heun(pf, x1, 1.0, 1e-3, 10).x}
    for m in M:
        assert torch.equal(R.vp_sample(m, VP, _library_step, _gmm_score, x1, 1e-3, 20, noise), want[m]), m
    assert [m.label for m in M] == ["reverse SDE (EM)", "PF-ODE (Euler)", "PF-ODE (Heun)"]  # the metric names
    with pytest.raises(ValueError, match="unknown method 'PF-ODE \\(Heun\\)'; valid choices: VPMethod.REVERSE_SDE"):
        R.vp_sample("PF-ODE (Heun)", VP, _library_step, _gmm_score, x1, 1e-3, 20, noise)  # a label is not a method


def test_vp_nfe_study_scores_every_method_score_and_budget():
    judge, x1 = _judge(), torch.randn(200, 2, generator=torch.Generator().manual_seed(4))
    noise = lambda: torch.Generator().manual_seed(6)  # noqa: E731
    study = R.vp_nfe_study(VP, _library_step, {"exact": _gmm_score}, x1, 1e-3, [4, 8], judge, noise)
    assert set(study.rows) == {(m, "exact", n) for m in R.VPMethod for n in (4, 8)}
    sc = judge.score(R.vp_sample(R.VPMethod.PF_ODE_HEUN, VP, _library_step, _gmm_score, x1, 1e-3, 8, noise))
    row = {"ratio": sc.energy_ratio, "weight_error": sc.max_weight_error, "loglik": sc.log_likelihood}
    assert study.rows[R.VPMethod.PF_ODE_HEUN, "exact", 8] == row
    assert study.metrics["vp_nfe_study"]["PF-ODE (Heun)|exact|8"] == row and len(study.metrics["vp_nfe_study"]) == 6
    assert study.summary("exact").splitlines()[2] == ("PF-ODE (Heun)      4: "
                                                      f"{study.rows[R.VPMethod.PF_ODE_HEUN, 'exact', 4]['ratio']:.2f}×"
                                                      f"  8: {sc.energy_ratio:.2f}×")


def _vp_study(sde_ratios, euler_ratios, heun_ratios, grid):
    out = {}
    for m, rs in zip(R.VPMethod, (sde_ratios, euler_ratios, heun_ratios)):
        for n, r in zip(grid, rs):
            out[m, "learned", n] = {"ratio": r, "weight_error": 0.0, "loglik": -r}
    return out


def test_vp_nfe_summary_reads_the_ends_the_better_ode_and_the_gap():
    grid = [10, 100, 1000]
    v = R.vp_nfe_summary(_vp_study([9.0, 1.5, 1.0], [3.0, 1.1, 1.0], [2.0, 1.0, 1.4], grid), grid, se=0.1)
    assert (v["lo"], v["top"], v["ode_m"], v["sde_lo"], v["ode_lo"], v["ll_ode_lo"]) == (10, 1000, "PF-ODE (Heun)",
                                                                                       9.0, 2.0, -2.0)
    assert v["outside"] == [100] and "at 100 evaluations" in v["zig"]
    assert v["gap_text"] == "the SDE ends closer to the truth, 4.0 s.e. lower"
    v = R.vp_nfe_summary(_vp_study([9.0, 1.0, 1.05], [3.0, 1.1, 1.0], [2.0, 1.0, 1.0], grid), grid, se=0.1)
    assert v["gap_text"].startswith("the ODE ends lower, but by 0.5 s.e.") and v["outside"] == []


def test_sweep_table_reads_each_setting_of_the_sigma_sweep():
    judge = _judge()
    x0 = torch.randn(200, 2, generator=torch.Generator().manual_seed(7))
    u = lambda x, t: GMM.marginal_velocity(x, t, PATH.schedule)  # noqa: E731
    s = lambda x, t: GMM.marginal_score(x, t, PATH.schedule)  # noqa: E731
    sweep = {}
    for shape, sigma_of in R.SIGMA_SHAPES.items():  # notebook 05's loop
        for sigma in (0.0, 0.5):
            sde = nb.sde.FlowScoreSDE(u, s, sigma=sigma_of(sigma))
            x = nb.solvers.euler_maruyama(sde, x0, 0.0, 1.0, 20, generator=torch.Generator().manual_seed(8)).x
            sweep["exact", shape, sigma] = judge.score(x)
    # the vanishing shape is σ_t = σ(1 − t)
    want = nb.solvers.euler_maruyama(nb.sde.FlowScoreSDE(u, s, sigma=lambda t: 0.5 * (1 - t)), x0, 0.0, 1.0, 20,
                                     generator=torch.Generator().manual_seed(8)).x
    assert sweep["exact", "vanishing", 0.5].energy == judge.score(want).energy
    table = R.sweep_table(sweep)
    assert table["exact|vanishing|0.5"]["ratio"] == sweep["exact", "vanishing", 0.5].energy_ratio
    assert set(table) == {f"exact|{sh}|{sig:g}" for sh in R.SIGMA_SHAPES for sig in (0.0, 0.5)}
    assert R.sigma_settings([0.0, 0.5]) == [("constant", 0.0), ("constant", 0.5), ("vanishing", 0.5)]


def test_sigma_sweep_summary_and_flowscore_nfe_summary_cite_the_right_entries():
    from types import SimpleNamespace as NS
    sc = lambda r, ll: NS(energy_ratio=r, log_likelihood=ll, true_log_likelihood=-3.0)  # noqa: E731
    sweep = {("exact", "constant", 0.0): sc(1.0, -3), ("exact", "constant", 2.0): sc(1.2, -3),
             ("exact", "vanishing", 0.0): sc(1.0, -3), ("exact", "vanishing", 2.0): sc(0.9, -3),
             ("learned", "constant", 0.0): sc(1.1, -3), ("learned", "constant", 2.0): sc(4.0, -2.5),
             ("learned", "vanishing", 0.0): sc(1.1, -3), ("learned", "vanishing", 2.0): sc(1.3, -3)}
    v = R.sigma_sweep_summary(sweep, [0.0, 2.0], 0.1)
    assert (v["ex_lo"], v["ex_hi"], v["van_lo"], v["van_hi"]) == (0.9, 1.2, 1.1, 1.3)
    assert (v["con_max"], v["ll_max"], v["true_ll"], v["big_ll"]) == (4.0, -2.5, -3.0, {2.0: -2.5})
    grid = [20, 50, 200]
    study = {(m, n): {"ratio": r + i, "loglik": -i} for i, m in enumerate(R.FlowScoreMethod)
             for n, r in zip(grid, [3, 2, 1])}
    v = R.flowscore_nfe_summary(study, grid, ode0=3.0, se=0.1, true_ll=-2.0)
    assert (v["n_lo"], v["n_hi"], v["h_lo"], v["h_hi"], v["ode_end"], v["van_end"], v["ll"]) == (50, 200, 5, 4, 3,
                                                                                              1, -1)
    assert R.flowscore_nfe_summary(study, [20, 200], 3.0, 0.1, -2.0)["n_lo"] == 20


def test_flowscore_nfe_study_matches_the_solvers():
    judge = _judge()
    x0 = torch.randn(200, 2, generator=torch.Generator().manual_seed(9))
    u = lambda x, t: GMM.marginal_velocity(x, t, PATH.schedule)  # noqa: E731
    s = lambda x, t: GMM.marginal_score(x, t, PATH.schedule)  # noqa: E731
    noise = lambda: torch.Generator().manual_seed(10)  # noqa: E731
    study = R.flowscore_nfe_study(u, s, x0, [4, 8], noise, judge)
    M = R.FlowScoreMethod
    assert len(study.rows) == 8
    assert study.rows[M.ODE_HEUN, 8]["ratio"] == judge.score(nb.solvers.heun(u, x0, 0.0, 1.0, 4).x).energy_ratio
    em = nb.solvers.euler_maruyama(nb.sde.FlowScoreSDE(u, s, sigma=1.0), x0, 0.0, 1.0, 2, generator=noise()).x
    assert study.rows[M.SDE_CONSTANT, 4]["loglik"] == judge.score(em).log_likelihood
    assert study.metrics["flowscore_nfe_study"]["SDE, σ_t = 1 (EM)|4"] == study.rows[M.SDE_CONSTANT, 4]
    assert [m.label for m in M] == ["SDE, σ_t = 1 − t (EM)", "SDE, σ_t = 1 (EM)", "ODE (Euler)", "ODE (Heun)"]


# --------------------------------------------------------------------------- Part II
def test_score_flow_agreement_is_zero_for_the_exact_fields_and_not_for_a_wrong_conversion():
    z = GMM.sample(256, generator=torch.Generator().manual_seed(11))
    u = lambda x, t: GMM.marginal_velocity(x, t, PATH.schedule)  # noqa: E731
    s = lambda x, t: GMM.marginal_score(x, t, PATH.schedule)  # noqa: E731
    t_grid = torch.linspace(0.1, 0.9, 5)

    def to_score(schedule, v, x, t):
        return nb.paths.GaussianPath(schedule).velocity_to_score(v, x, t)

    exact = R.score_flow_agreement(s, u, PATH, z, t_grid, to_score, torch.Generator().manual_seed(12), "cpu")
    assert len(exact) == 5 and max(exact) < 1e-4
    wrong = R.score_flow_agreement(s, u, PATH, z, t_grid, lambda sch, v, x, t: v, torch.Generator().manual_seed(12),
                                   "cpu")
    assert min(wrong) > 0.1


class FakeEvaluation:
    def __init__(self, x):
        self.fd_ratio, self.recognised_fraction = float(x.abs().mean()), 0.9
        self.class_min, self.class_max, self.mean_confidence = 0.05, 0.15, 0.8
        self.fd_ratio_se, self.recognised_se = 0.1, 0.01

    def as_dict(self):
        return {"fd_ratio": self.fd_ratio}

    def passes(self, bars):
        return True

    def summary(self):
        return f"FD {self.fd_ratio:.2f}"


def test_image_sigma_sweep_runs_each_setting_once_from_the_same_noise():
    evaluator = type("E", (), {"evaluate": staticmethod(FakeEvaluation)})()
    u = lambda x, t: -x  # noqa: E731
    s = lambda x, t: -x  # noqa: E731
    sweep = R.image_sigma_sweep(u, s, [0.0, 1.0], 6, 3, evaluator, "bars", "cpu", 13)
    results, samples = sweep.results, sweep.samples
    assert results["vanishing", 0.0] is results["constant", 0.0]
    assert sorted(sweep.to_save) == ["image_constant_sigma0", "image_constant_sigma1", "image_vanishing_sigma1"]
    assert torch.equal(sweep.to_save["image_vanishing_sigma1"]["images"], samples["vanishing", 1.0])
    assert sweep.metrics == {f"image/{k}/{m}": v for k, r in (("constant_sigma0", results["constant", 0.0]),
                                                              ("constant_sigma1", results["constant", 1.0]),
                                                              ("vanishing_sigma1", results["vanishing", 1.0]))
                             for m, v in (("fd_ratio", r.fd_ratio), ("passes", True))}
    assert len(sweep.summary().splitlines()) == 3 and "passes the bars" in sweep.summary()
    ode = nb.solvers.sample_from_noise(u, 6, (1, 28, 28), 3, method="euler", seed=13).x.clamp(-1, 1)
    torch.testing.assert_close(samples["constant", 0.0], ode)
    assert samples["constant", 1.0].abs().max() <= 1.0 and sweep.metrics["image/constant_sigma1/fd_ratio"] > 0
    assert "image/constant_sigma1/passes" not in R.image_sigma_sweep(u, s, [1.0], 6, 3, evaluator, None, "cpu",
                                                                     13).metrics
    v = R.image_sweep_summary(results, [0.0, 1.0])
    assert v["s1"] == 1.0 and v["noisy"] == "none" and math.isnan(v["conf"])
    assert v["se_fd"] == pytest.approx(2 * math.sqrt(2) * 0.1)


def test_every_figure_draws_its_panels():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    traj = torch.randn(11, 20, 2, generator=torch.Generator().manual_seed(14))
    x = traj[-1]
    figs = {
        "samples": (F.samples_figure(x, x, torch.zeros(20, dtype=torch.long)), 2),
        "loss": (F.loss_floor_figure([1.0, 0.5, 0.4] * 50, 0.3, "loss"), 1),
        "trajectories": (F.trajectories_figure(traj, x, 1e-3, n_show=3), 4),  # three panels and a colour bar
        "snapshots": (F.snapshots_figure(traj, 1e-3, [1.0, 0.5, 1e-3]), 3),
        "losses": (F.flow_score_losses_figure([1.0] * 200, [0.5] * 200), 2),
        "agreement": (F.agreement_figure(torch.linspace(0.1, 0.9, 3), [0.1, 0.2, 0.3]), 1),
    }
    for name, (fig, n_axes) in figs.items():
        assert len([ax for ax in fig.axes if ax.get_visible()]) == n_axes, name
        plt.close(fig)


def test_every_study_figure_draws_its_panels():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from types import SimpleNamespace as NS
    grid, sigmas = [10, 100], [0.0, 1.0]
    vp = {(m, w, n): {"ratio": 1.0 + 1 / n, "loglik": -3.0} for m in R.VPMethod for w in ("learned", "exact")
          for n in grid}
    sc = NS(energy_ratio=1.1, max_weight_error=0.01, log_likelihood=-3.0, true_log_likelihood=-3.1)
    sweep = {(w, sh, s): sc for w in ("learned", "exact") for sh in R.SIGMA_SHAPES for s in sigmas}
    samples = {k: torch.zeros(5, 2) for k in sweep}
    fs = {(m, n): {"ratio": 1.0, "loglik": -3.0} for m in (R.FlowScoreMethod.ODE_EULER, R.FlowScoreMethod.ODE_HEUN)
          for n in grid}
    res = NS(recognised_fraction=0.9, fd_ratio=2.0, class_max=0.15, class_min=0.05)
    images = {(sh, s): res for sh in R.SIGMA_SHAPES for s in sigmas}
    bars = nb.metrics.bars_for("smoke")
    settings = R.sigma_settings(sigmas)
    figs = {
        "vp_nfe": (F.vp_nfe_figure(vp, grid, 0.1, -3.0), 2),
        "sigma_samples": (F.sigma_samples_figure(samples, sigmas), 4),
        "sigma_sweep": (F.sigma_sweep_figure(sweep, sigmas, 0.1, 10), 3),
        "flowscore_nfe": (F.flowscore_nfe_figure(fs, grid, 0.1, -3.0), 2),
        "image_samples": (F.image_sigma_samples_figure({k: torch.zeros(12, 1, 28, 28) for k in images}, settings), 1),
        "image_sweep": (F.image_sigma_sweep_figure(images, sigmas, bars), 3),
    }
    legend = lambda fig: [t.get_text() for t in fig.axes[0].get_legend().get_texts()]  # noqa: E731
    assert legend(figs["flowscore_nfe"][0])[:2] == ["ODE (Euler)", "ODE (Heun)"]  # the methods' labels
    assert legend(figs["vp_nfe"][0])[:2] == ["reverse SDE (EM), learned", "reverse SDE (EM), exact"]
    for name, (fig, n_axes) in figs.items():
        assert len([ax for ax in fig.axes if ax.get_visible()]) == n_axes, name
        plt.close(fig)


def test_train_flow_and_score_trains_both_networks_with_their_cache_keys(tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path))
    config = nb.training.TrainConfig(steps=3, lr=1e-3, warmup_steps=0, seed=0)
    pair = R.train_flow_and_score(GMM, 16, config, "cpu", "smoke", seed=0)
    assert isinstance(pair.flow.model, nb.models.mlp.TimeMLP) and pair.flow.steps == 3
    assert isinstance(pair.score.model, nb.models.mlp.ScoreFromNoise) and pair.score.steps == 3
    assert pair.flow.checkpoint == nb.recipes.flow_2d.FlowModelSpec(batch=16).checkpoint("smoke")  # notebook 03's model
    assert pair.score.checkpoint.name.startswith("05_score_mlp-")
    again = R.train_flow_and_score(GMM, 16, config, "cpu", "smoke", seed=0)
    assert again.flow.loaded_from_cache and again.score.loaded_from_cache
    x, t = torch.randn(4, 2), torch.full((4,), 0.5)
    torch.testing.assert_close(again.score.model(x, t), pair.score.model(x, t))
    torch.testing.assert_close(pair.score.model(x, t), -pair.score.model.net(x, t) / 0.5)  # s = −ε_θ/β_t, β = 1 − t
