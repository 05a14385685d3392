"""The student edition: checks that teach, the library fallback, and the generated ``exercises/``.

Every check passes on the library's implementation and on the solution written in the notebook; a wrong
implementation fails with the case, expected against got and the hint; an unsolved exercise reports
"not implemented yet" and the notebook carries on with the library's version under a banner.
"""
import json
import math
import re

import pytest
import torch

import nbhelpers as nb
from nbhelpers import exercises as ex
from nbhelpers.runtime import ROOT
from tools import make_exercises

NOTEBOOKS = ROOT / "notebooks"
EXERCISE_DIR = ROOT / "exercises"
STEMS = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _solution_cells():
    """``(notebook, exercise name, cell source, next cell source)`` for every marked cell of the solution notebooks."""
    out = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        cells = _cells(path)
        for i, c in enumerate(cells):
            name = c["metadata"].get("nbgrader", {}).get("grade_id")
            if name:
                out.append((path.stem, name, "".join(c["source"]), "".join(cells[i + 1]["source"])))
    return out


SOLUTIONS = _solution_cells()


def _flat(text):
    """Printed text with the banner's line breaks undone."""
    return re.sub(r"\n│ ", " ", text)


def _defined(src):
    return re.search(r"^(?:def|class) (\w+)", src, re.M).group(1)


def test_there_are_enough_exercises_and_each_lives_in_its_notebook():
    assert len(ex.EXERCISES) >= 8
    assert sorted(name for _, name, _, _ in SOLUTIONS) == sorted(ex.EXERCISES), "one marked cell per exercise"
    for stem, name, src, after in SOLUTIONS:
        assert ex.EXERCISES[name].notebook == stem
        assert make_exercises.BEGIN in src and make_exercises.END in src
        fn = _defined(src)
        assert re.match(rf'{fn} = nb\.exercises\.use\("{name}", {fn}\)', after), \
            f"{stem}: the cell after {name} checks it and rebinds {fn}"


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_every_check_passes_on_the_library(name):
    report = ex.check(name, ex.EXERCISES[name].reference())
    assert report.passed, str(report)
    assert len(report.results) >= 3


@pytest.mark.parametrize("stem, name, src", [s[:3] for s in SOLUTIONS], ids=[s[1] for s in SOLUTIONS])
def test_the_notebooks_solutions_pass_and_are_used(stem, name, src, capsys):
    scope = {"torch": torch, "math": math, "nb": nb}
    for earlier in [s[2] for s in SOLUTIONS if s[0] == stem]:  # a solution may call an earlier one (fm_loss)
        exec(earlier, scope)
        if earlier == src:
            break
    fn = scope[_defined(src)]
    assert ex.use(name, fn) is fn
    out = capsys.readouterr().out
    assert "cases pass ✓" in out and "┌" not in out


def _ou_with_a_sign_error():
    class OU(nb.sde.OrnsteinUhlenbeck):
        def drift(self, x, t):
            return self.theta * x

        def diffusion(self, x, t):
            return self.sigma
    return OU


def test_a_sign_error_in_the_ou_drift_names_the_case_expected_got_and_hint(capsys):
    OU = _ou_with_a_sign_error()
    report = ex.check("ornstein_uhlenbeck", OU)
    msg = str(report)
    assert not report.passed and not report.not_implemented
    assert msg.startswith("ornstein_uhlenbeck: 1 of 4 cases pass\n")
    assert "  ✗ case 1/4: the drift is −θx (θ = 2) at three points\n" in msg
    assert "      expected: tensor of shape (3, 2) [-2, 1, -0, -6, 4, -0.5]\n" in msg
    assert "      got:      tensor of shape (3, 2) [2, -1, 0, 6, -4, 0.5] (max |got − expected| = 12)\n" in msg
    assert "      hint:     the OU drift pulls x back towards 0: u(x) = −θx, with the minus sign" in msg
    assert "  ✓ case 3/4: the diffusion is σ = 0.5" in msg
    assert "✗ case 4/4: a moment: from X_0 = 0 to T = 8" in msg  # the paths explode: the variance is far off
    # the notebook carries on with the library's class, and says so
    assert ex.use("ornstein_uhlenbeck", OU) is nb.sde.OrnsteinUhlenbeck
    out = _flat(capsys.readouterr().out)
    assert _flat(msg) in out
    assert "3 of 4 cases fail. The cells below use the library's nbhelpers.sde.OrnsteinUhlenbeck" in out


def _posterior_with_a_sign_error(ddpm, x0, x_k, k):
    def at(buf):
        return buf[torch.as_tensor(k) - 1].reshape(-1, *[1] * (x_k.ndim - 1)).to(x_k)

    beta, abar, abar_prev = at(ddpm.betas), at(ddpm.alphas_cumprod), at(ddpm.alphas_cumprod_prev)
    mean = (abar_prev.sqrt() * beta * x0 - (1 - beta).sqrt() * (1 - abar_prev) * x_k) / (1 - abar)  # − for +
    return mean, (1 - abar_prev) / (1 - abar) * beta


def test_a_sign_error_in_the_posterior_mean_names_the_case_expected_got_and_hint(capsys):
    report = ex.check("q_posterior", _posterior_with_a_sign_error)
    msg = str(report)
    print(msg)  # shown with pytest -s
    assert not report.passed and not report.not_implemented
    assert msg.startswith("q_posterior: 2 of 5 cases pass\n")  # the variance is right, and at k = 1 x_k has no weight
    assert "  ✗ case 1/5: the mean at random steps k (cosine, T = 50), against nbhelpers.ddpm.DDPM.q_posterior\n" in msg
    assert "  ✓ case 2/5: the variance at the same steps" in msg and "  ✓ case 3/5: k = 1" in msg
    assert "  ✗ case 4/5: a six-step schedule at k = 3" in msg
    assert "  ✗ case 5/5: when x_k sits at its noise-free mean √ᾱ_k·x_0, the posterior mean is √ᾱ_{k−1}·x_0\n" in msg
    assert "(max |got − expected| = " in msg.split("case 5/5")[1].split("hint")[0]
    assert "      hint:     both terms of μ̃_k enter with a plus sign" in msg
    fallback = ex.use("q_posterior", _posterior_with_a_sign_error)
    assert fallback(nb.ddpm.DDPM.from_schedule("cosine", 5), torch.zeros(2, 2), torch.ones(2, 2), 2).variance.shape == (2, 1)
    out = _flat(capsys.readouterr().out)
    assert "3 of 5 cases fail. The cells below use the library's nbhelpers.ddpm.DDPM.q_posterior" in out


def _wrong(name):
    """One typical slip per exercise (the MIT labs' drifting copies among them) and the case it must trip."""
    if name == "em_step":
        def f(sde, x, t, h, generator):
            eps = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            return x + h * sde.drift(x, t) + sde.diffusion(x, t) * h * eps  # h instead of √h
        return f, "a moment: Brownian motion"
    if name == "brownian_motion":
        class B(nb.sde.BrownianMotion):
            def drift(self, x, t):
                return torch.randn_like(x)  # a drift returning noise

            def diffusion(self, x, t):
                return self.sigma
        return B, "the drift is zero"
    if name == "ornstein_uhlenbeck":
        return _ou_with_a_sign_error(), "the drift is −θx"
    if name == "cosine_schedule":
        class S(nb.schedules.CosineSchedule):
            def d_alpha(self, t):
                return torch.cos(0.5 * math.pi * t)  # the chain rule's π/2 forgotten
        return S, "the hand-written derivatives"
    if name == "sample_path":
        def f(schedule, z, t, eps):
            v = schedule(t)
            return v.alpha[:, None] * z + v.beta[:, None] * eps  # only right for 2D data
        return f, "an image batch"
    if name == "cosine_betas":
        def f(T, s=0.008):
            k = torch.arange(T + 1, dtype=torch.float64)
            fk = torch.cos((k / T + s) / (1 + s) * math.pi / 2) ** 2
            return 1.0 - (fk[1:] / fk[:-1])  # no clip
        return f, "the clip"
    if name == "target_velocity":
        def f(schedule, z, eps, t):
            v = schedule(t)
            return nb.paths.expand_time(v.d_alpha, z) * z - nb.paths.expand_time(v.d_beta, z) * eps  # sign of β̇ε
        return f, "linear schedule: the target is z − ε"
    if name == "fm_loss":
        def f(model, z, schedule, generator=None):
            t = torch.rand(z.shape[0], generator=generator, dtype=z.dtype)
            eps = torch.randn(z.shape, generator=generator, dtype=z.dtype)
            v = schedule(t)
            x_t = nb.paths.expand_time(v.alpha, z) * z + nb.paths.expand_time(v.beta, z) * eps
            target = nb.paths.expand_time(v.d_alpha, z) * z + nb.paths.expand_time(v.d_beta, z) * eps
            return (model(x_t, t) - target).square().sum(1).mean()  # a sum over coordinates
        return f, "a moment: the zero field"
    if name in ("euler_sample", "heun_sample"):
        def f(field, x0, n_steps):
            h = 1.0 / n_steps
            x = x0
            for i in range(n_steps):
                x = x + h * field(x, torch.full((x.shape[0],), (i + 1) * h, dtype=x.dtype))  # t at the step's end
            return x
        return f, "dx/dt = t from x = 1"
    if name == "q_sample":
        def f(ddpm, x0, k, eps):
            abar = ddpm.alphas_cumprod[torch.as_tensor(k) - 1].reshape(-1, *[1] * (x0.ndim - 1))
            return abar.sqrt() * x0 + (1 - abar) * eps  # the variance instead of the standard deviation
        return f, "moments:"
    if name == "q_posterior":
        return _posterior_with_a_sign_error, "when x_k sits at its noise-free mean"
    if name == "p_step":
        def f(ddpm, model, x_k, k, generator):
            eps = model(x_k, torch.full((x_k.shape[0],), k / ddpm.T))
            abar = float(ddpm.alphas_cumprod[k - 1])
            x0_hat = ((x_k - math.sqrt(1 - abar) * eps) / math.sqrt(abar)).clamp(-1, 1)
            mean = ddpm.q_posterior(x0_hat, x_k, k).mean
            z = torch.randn(x_k.shape, generator=generator)  # drawn and added at k = 1 too
            return mean + math.sqrt(float(ddpm.betas[k - 1])) * z
        return f, "k = 1 with the true ε"
    if name == "guided_eps":
        def f(model, x, t, y, w, num_classes):
            B = x.shape[0]
            out = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([y, torch.full_like(y, num_classes)]))
            return out[B:] + w * (out[:B] - out[B:])  # the other convention: s = w, so w = 0 is unconditional
        return f, "w = 0 is plain conditional sampling"
    if name == "drop_labels":
        def f(y, p_uncond, num_classes, generator=None):
            y[torch.rand(y.shape, generator=generator) < p_uncond] = num_classes  # overwrites the caller's labels
            return y
        return f, "the labels passed in are left unchanged"
    if name == "p_losses":
        def f(diffusion, x_0, t, noise):
            x_t = diffusion.q_sample(x_0, t, noise)
            return (noise - diffusion.model(x_t, t / diffusion.num_timesteps)).square().mean()  # L2, not the L1
        return f, "a network that always answers"
    if name == "predict_x0":
        def f(diffusion, x_t, t, eps):
            abar = diffusion.alphas_cumprod.to(x_t)[t - 1].reshape(-1, *[1] * (x_t.ndim - 1))
            return (x_t - (1 - abar).sqrt() * eps) / abar.sqrt()  # the clamp forgotten
        return f, "clamping at the boundary"
    if name == "vp_dsm_loss":
        def f(model, x0, sde, generator=None, eps=1e-5):
            t = eps + (1 - eps) * torch.rand(x0.shape[0], generator=generator, dtype=x0.dtype)
            noise = torch.randn(x0.shape, generator=generator, dtype=x0.dtype)
            c, std = (nb.paths.expand_time(v, x0) for v in (sde.marginal_mean_coef(t), sde.marginal_std(t)))
            return (model(c * x0 + std * noise, t) + noise / std).square().mean()  # unweighted: s + ε/σ_t
        return f, "N(0, I) data: its exact score −x"
    if name == "vp_reverse_step":
        def f(sde, score_fn, x, t, dt, generator=None):
            g = sde.diffusion(x, t)
            xi = torch.randn(x.shape, generator=generator, dtype=x.dtype)
            return x + (sde.drift(x, t) - g**2 * score_fn(x, t)) * dt + g * torch.sqrt(dt) * xi  # the forward sign
        return f, "a moment: from x = 2"
    if name == "score_from_velocity":
        def f(schedule, u, x, t):
            v = schedule(t)
            a, b, da, db = (nb.paths.expand_time(c, x) for c in (v.alpha, v.beta, v.d_alpha, v.d_beta))
            return -(da * x - a * u) / (da * b - db * a)  # ε̂, not ε̂/β: the score's 1/β forgotten
        return f, "linear schedule (α = t, β = 1 − t)"
    if name == "ddim_step":
        def f(ddpm, x, k, k_next, eps, clip_x0=True):
            abar = ddpm.alphas_cumprod.to(x)
            a, a_next = abar[k - 1], abar[k_next - 1]  # at k_next = 0 this reads ᾱ_T, not ᾱ_0 = 1
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            if clip_x0:
                x0 = x0.clamp(-1, 1)
                eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
            return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
        return f, "k' = 0"
    if name == "residual_layer":
        class R(ex.EXERCISES[name].reference()):
            def forward(self, x, emb):
                h = self.conv1(self.norm1(torch.nn.functional.silu(x))) + self.time_mlp(emb)[:, :, None, None]
                return self.conv2(self.norm2(torch.nn.functional.silu(h)))  # the residual connection forgotten
        return R, "the residual connection"
    raise AssertionError(f"no wrong implementation for {name}")


@pytest.mark.parametrize("schedule,T", [("cosine", 200), ("linear", 1000)])
def test_the_ddim_step_reference_is_eq_12_at_eta_0(schedule, T):
    """The ddim_step cases compare with a reference that shares ddim_sample's arithmetic; here it is checked
    against DDIM's η = 0 update (Song et al. 2021, eq. 12) written out in float64 from the betas alone:
    ᾱ_k = ∏_{i ≤ k} (1 − β_i), ᾱ_0 = 1, x̂_0 = (x_k − √(1 − ᾱ_k) ε̂)/√ᾱ_k (clamped to [−1, 1] and
    ε̂ = (x_k − √ᾱ_k x̂_0)/√(1 − ᾱ_k) with clipping), x_k' = √ᾱ_k' x̂_0 + √(1 − ᾱ_k') ε̂."""
    ddpm = nb.ddpm.DDPM.from_schedule(schedule, T)
    abar = [1.0]
    for b in ddpm.betas.tolist():
        abar.append(abar[-1] * (1 - b))
    g = torch.Generator().manual_seed(0)
    x = 1.5 * torch.randn(3, 1, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 1, 5, 5, generator=g, dtype=torch.float64)  # not x's noise: x̂_0 is no fixed point
    step = ex.EXERCISES["ddim_step"].reference()
    for k, k_next in ((T, 0), (120, 90), (150, 40), (2, 1), (30, 0)):
        for clip in (False, True):
            a, a_next = abar[k], abar[k_next]
            x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
            e = eps
            if clip:
                x0 = x0.clamp(-1, 1)
                e = (x - math.sqrt(a) * x0) / math.sqrt(1 - a)
            expected = math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * e
            torch.testing.assert_close(step(ddpm, x, k, k_next, eps, clip_x0=clip), expected, atol=1e-10, rtol=0,
                                       msg=f"k = {k} → {k_next}, clip_x0 = {clip}")
            got32 = step(ddpm, x.float(), k, k_next, eps.float(), clip_x0=clip)  # in x's dtype
            assert got32.dtype == torch.float32
            torch.testing.assert_close(got32, expected.float(), atol=1e-4, rtol=1e-4)


def test_a_ddim_step_that_clamps_but_keeps_the_models_eps_fails_only_the_clipped_case():
    def ddim_step(ddpm, x, k, k_next, eps, clip_x0=True):
        abar = ddpm.alphas_cumprod.to(x)
        a, a_next = abar[k - 1], (abar[k_next - 1] if k_next > 0 else torch.ones_like(abar[0]))
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        if clip_x0:
            x0 = x0.clamp(-1, 1)  # ε̂ not recomputed from the clamped x̂_0: no longer the DDIM of ddim_sample
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps

    report = ex.check("ddim_step", ddim_step)
    assert [r.passed for r in report.results] == [True, False, True, True, True], str(report)
    assert "recompute ε̂ = (x_k − √ᾱ_k·x̂_0)/√(1 − ᾱ_k)" in report.results[1].hint


@pytest.mark.parametrize("name", list(ex.EXERCISES))
def test_a_typical_mistake_fails_with_its_case_and_hint(name):
    fn, case = _wrong(name)
    report = ex.check(name, fn)
    assert not report.passed
    failed = [r for r in report.results if not r.passed]
    hit = [r for r in failed if r.case.startswith(case)]
    assert hit, f"{name}: expected case {case!r} to fail; got\n{report}"
    r = hit[0]
    assert r.expected and r.got and r.hint
    assert f"expected: {r.expected}" in str(report) and f"hint:     {r.hint}" in str(report)


def test_not_implemented_reports_it_and_falls_back_with_a_banner(capsys):
    def em_step(sde, x, t, h, generator):
        raise NotImplementedError("write one Euler–Maruyama step")

    report = ex.check("em_step", em_step)
    assert report.not_implemented and not report.passed
    assert str(report).startswith("em_step: not implemented yet — write one Euler–Maruyama step")
    step = ex.use("em_step", em_step)
    out = _flat(capsys.readouterr().out)
    assert "em_step: not implemented yet" in out and "┌" in out and "nbhelpers.solvers.euler_maruyama" in out
    ou, x = nb.sde.OrnsteinUhlenbeck(1.0, 0.5), torch.randn(4, 2)
    got = step(ou, x, torch.zeros(4), 0.01, torch.Generator().manual_seed(0))
    want = nb.solvers.euler_maruyama(ou, x, 0.0, 0.01, 1, generator=torch.Generator().manual_seed(0)).x
    torch.testing.assert_close(got, want)


def test_half_written_class_is_reported_per_case():
    class B(nb.sde.BrownianMotion):
        def drift(self, x, t):
            return torch.zeros_like(x)

        def diffusion(self, x, t):
            raise NotImplementedError("write the diffusion")

    report = ex.check("brownian_motion", B)
    assert not report.not_implemented and not report.passed
    assert [r.status for r in report.results] == ["pass", ex.NOT_IMPLEMENTED, ex.NOT_IMPLEMENTED]
    assert "✗ case 2/3: the diffusion is σ = 0.7 — not implemented yet" in str(report)


def test_an_error_in_the_students_code_is_a_failed_case_not_a_crash():
    report = ex.check("cosine_betas", lambda T, s=0.008: 1 / 0)
    assert not report.passed
    assert all(r.got.startswith("it raised ZeroDivisionError") for r in report.results)


def test_unknown_exercise_lists_the_choices():
    with pytest.raises(ValueError, match="unknown exercise 'em_stp'; valid choices: em_step, "):
        ex.check("em_stp", print)


def test_blanking_replaces_each_marked_region_by_the_task():
    src = ("class A:\n    def f(self):\n        ### BEGIN SOLUTION\n        return 1\n        ### END SOLUTION\n\n"
           "    def g(self):\n        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION\n")
    out = make_exercises.blank_solutions(src, "do it")
    assert out == ("class A:\n    def f(self):\n        raise NotImplementedError(\"do it\")\n\n"
                   "    def g(self):\n        raise NotImplementedError(\"do it\")\n")
    with pytest.raises(ValueError, match="without"):
        make_exercises.blank_solutions("### BEGIN SOLUTION\nx = 1\n", "t")


def test_regenerating_gives_the_committed_files():
    assert make_exercises.out_of_date() == [], "run make exercises"


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), ids=lambda p: p.stem)
def test_the_student_edition_holds_no_solution_and_no_output(path):
    student = _cells(EXERCISE_DIR / path.name)
    solution = _cells(path)
    assert [c["id"] for c in student] == [c["id"] for c in solution]
    text = json.dumps(student, ensure_ascii=False)
    assert "BEGIN SOLUTION" not in text and "run.answer(" not in "".join(
        "".join(c["source"]) for c in student if "answer" in c["metadata"].get("tags", []))
    for s, c in zip(student, solution):
        if s["cell_type"] == "code":
            assert s["outputs"] == [] and s["execution_count"] is None
        name = c["metadata"].get("nbgrader", {}).get("grade_id")
        if name:
            assert json.dumps(ex.EXERCISES[name].task[:60], ensure_ascii=False)[1:-1] in "".join(s["source"])
            assert "raise NotImplementedError(" in "".join(s["source"])
        if "answer" in c["metadata"].get("tags", []):
            assert s["cell_type"] == "markdown" and "YOUR ANSWER HERE" in "".join(s["source"])
    head = "".join(student[0]["source"])
    assert "**Student edition**" in head
    if "Open In Colab" in head:
        assert f"/blob/main/exercises/{path.name})" in head


@pytest.mark.parametrize("stem", STEMS)
def test_student_edition_runs_with_every_exercise_unsolved(stem, tmp_path, monkeypatch):
    """The smoke profile end to end (papermill raises on any failing cell): each check says "not implemented
    yet", each fallback shows its banner. A notebook without exercises runs as its solution edition does."""
    import papermill as pm

    monkeypatch.setenv("NBHELPERS_PROFILE", "smoke")
    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))  # train with the fallback loss
    out = tmp_path / f"{stem}.ipynb"
    pm.execute_notebook(str(EXERCISE_DIR / f"{stem}.ipynb"), str(out), kernel_name="python3", progress_bar=False,
                        cwd=str(EXERCISE_DIR))
    cells = {c["id"]: c for c in _cells(out)}
    names = ex.exercises_in(stem)
    for name in names:
        outputs = cells[f"ex-{name}-check"]["outputs"]
        text = _flat("".join("".join(o["text"]) for o in outputs if o["output_type"] == "stream"))
        assert text.startswith(f"{name}: not implemented yet — "), text
        assert "┌" in text and f"The cells below use the library's {ex.EXERCISES[name].reference_name}" in text


def test_the_readme_counts_the_exercises_there_are():
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"\b(\d+) functions the assignments ask for", readme)
    assert m, "README.md's student edition section names how many exercises there are"
    assert int(m.group(1)) == len(ex.EXERCISES) >= 20
    assert f"{len(ex.EXERCISES)} checked exercises in all." in (EXERCISE_DIR / "README.md").read_text()
