"""The student edition, tried by a student: a check survives whatever the learner's function does.

One exercise per notebook group (flows, score, ddpm, cfg, afhq) meets six kinds of mistake — a loop, a slow call,
a write into its input, a numpy result, a wrong shape, an error — and each gets its own message, never the maths
hint; :func:`nbhelpers.exercises.use` hands back the library's version and the next cell runs on it. The time
limit is set to 0.5 s here so the loops cost little.
"""
import inspect
import os
import re
import signal
import threading
import time

import pytest
import torch
from torch import nn

import nbhelpers as nb
from nbhelpers import exercises as ex
from nbhelpers.exercises import core, differences, observe, timeouts
from nbhelpers.recipes.afhq import Diffusion
from tests.conftest import generator as _g

LIMIT = 0.5


@pytest.fixture(autouse=True)
def _short_limit(monkeypatch):
    monkeypatch.setenv(timeouts.TIMEOUT_ENV, str(LIMIT))


# exercise -> (the input an in-place slip writes into, arguments for one call of "the next cell")
GROUPS = {
    "em_step": ("x", lambda: (nb.sde.OrnsteinUhlenbeck(1.0, 0.5), torch.randn(4, 2, generator=_g(1)),
                              torch.zeros(4), 0.01, _g(2))),
    "vp_reverse_step": ("x", lambda: (nb.sde.VPSDE(0.1, 20.0), lambda x, t: -x, torch.randn(4, 2, generator=_g(1)),
                                      torch.full((4,), 0.5), torch.tensor(0.01), _g(2))),
    "q_sample": ("x0", lambda: (nb.ddpm.DDPM.from_schedule("cosine", 10), torch.randn(4, 2, generator=_g(1)),
                                torch.tensor([1, 2, 3, 10]), torch.randn(4, 2, generator=_g(2)))),
    "ddim_step": ("x", lambda: (nb.ddpm.DDPM.from_schedule("cosine", 10), torch.randn(2, 1, 4, 4, generator=_g(1)),
                                5, 2, torch.randn(2, 1, 4, 4, generator=_g(2)))),
    "predict_x0": ("x_t", lambda: (Diffusion(nn.Identity(), 8, 3, 10), torch.randn(2, 3, 8, 8, generator=_g(1)),
                                   torch.tensor([1, 5]), torch.randn(2, 3, 8, 8, generator=_g(2)))),
}
KINDS = ["loop", "slow", "inplace", "numpy", "shape", "raises"]


def _student(name, kind):
    """A learner's function for exercise ``name`` with the notebook's parameter names and one kind of mistake."""
    ref = ex.EXERCISES[name].reference()
    sig = inspect.signature(ref)
    target = GROUPS[name][0]

    def fn(*args, **kwargs):
        if kind == "loop":
            while True:
                pass
        if kind == "slow":
            time.sleep(3 * LIMIT + 0.5)  # one long C call: it can only be left behind, not stopped
        if kind == "raises":
            return 1 / 0
        if kind == "inplace":
            bound = sig.bind(*args, **kwargs)
            x = bound.arguments[target]
            bound.arguments[target] = x.clone()  # the right answer, computed from a copy taken first …
            x.mul_(0)  # … then the caller's tensor overwritten
            return ref(*bound.args, **bound.kwargs)
        out = ref(*args, **kwargs)
        if kind == "numpy":
            return out.detach().numpy()
        return out.flatten()  # kind == "shape"

    fn.__signature__ = sig
    fn.__name__ = fn.__qualname__ = name
    return fn


def _message(name, kind):
    target = GROUPS[name][0]
    return {
        "loop": rf"it did not return within {LIMIT:g} s — an infinite loop\? It was stopped",
        "slow": rf"it did not return within {LIMIT:g} s — an infinite loop\? It is inside one long call",
        "inplace": re.escape(f"your function modified {target} in place; work on a copy "
                             f"(e.g. {target} = {target}.clone())"),
        "numpy": re.escape("(a tensor was expected, got ndarray: return a torch.Tensor, not a numpy.ndarray)"),
        "shape": r"^tensor of shape \(\d+,\) \[.*\] \(shape \(\d+,\) where the case expects \(\d+(, \d+)+\)\)$",
        "raises": r"^it raised ZeroDivisionError: division by zero \(line \d+ of fn: `return 1 / 0`\)$",
    }[kind]


def _same_as_the_reference(name, fn):
    ref = ex.EXERCISES[name].reference()
    torch.testing.assert_close(fn(*GROUPS[name][1]()), ref(*GROUPS[name][1]()), rtol=0, atol=0)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", list(GROUPS))
def test_each_mistake_gets_its_own_message_and_the_library_takes_over(name, kind, capsys, monkeypatch):
    fn = _student(name, kind)
    reports, check = [], core.check
    monkeypatch.setattr(core, "check", lambda *a: reports.append(check(*a)) or reports[-1])  # what use() saw
    start = time.monotonic()
    used = ex.use(name, fn)
    assert time.monotonic() - start < LIMIT + 1.5, "a stopped case ends the check"
    out = capsys.readouterr().out
    [report] = reports
    assert str(report) in out and "Traceback" not in out

    assert not report.passed and report.failures
    failed = [r for r in report.results if r.status not in ("pass", core.NOT_RUN)]
    message = _message(name, kind)
    assert any(re.search(message, r.got) for r in failed), str(report)
    maths = {c.name: c.hint for c in ex.EXERCISES[name].cases()}
    for r in failed:  # none of these is about the numbers: the case's maths hint stays out of it
        assert r.hint and r.hint != maths[r.case], str(report)
    if kind in ("loop", "slow"):
        assert report.results[0].status == core.TIMED_OUT
        assert [r.status for r in report.results[1:]] == [core.NOT_RUN] * (len(report.results) - 1)
        assert report.stopped == f"case 1 did not return within {LIMIT:g} s (an infinite loop?)"
        assert f"checking stopped: case 1 did not return within {LIMIT:g} s (an infinite loop?); the cases after " \
               "it were not run" in out

    # use() hands back the library's version under a banner, the next cell runs on it, the next check works
    assert used is not fn and "┌" in out
    assert f"The cells below use the library's {ex.EXERCISES[name].reference_name}" in re.sub(r"\n│ ", " ", out)
    _same_as_the_reference(name, used)
    assert check(name, ex.EXERCISES[name].reference()).passed


def test_the_slow_call_is_left_behind_as_a_daemon_thread():
    report = ex.check("q_sample", _student("q_sample", "slow"))
    assert report.results[0].status == core.TIMED_OUT
    left = [t for t in threading.enumerate() if t.name == "nbhelpers-exercise-check"]
    assert left and all(t.daemon for t in left)  # it never keeps the kernel (or pytest) alive


def test_a_keyboard_interrupt_inside_the_function_falls_back_with_a_banner(capsys):
    def q_sample(ddpm, x0, k, eps):
        raise KeyboardInterrupt

    report = ex.check("q_sample", q_sample)
    assert report.results[0].status == core.INTERRUPTED and not report.passed
    assert report.stopped == "the check was interrupted in case 1 (KeyboardInterrupt)"
    used = ex.use("q_sample", q_sample)
    out = re.sub(r"\n│ ", " ", capsys.readouterr().out)
    assert used is not q_sample
    assert "┌" in out and "q_sample: the check was interrupted in case 1 (KeyboardInterrupt). The cells below use " \
                         "the library's nbhelpers.ddpm.DDPM.q_sample instead" in out
    _same_as_the_reference("q_sample", used)


@pytest.mark.skipif(signal.getsignal(signal.SIGINT) is not signal.default_int_handler or os.name != "posix",
                    reason="needs Python's own SIGINT handler")
def test_the_stop_button_while_the_check_waits_falls_back_too(capsys):
    def q_sample(ddpm, x0, k, eps):  # what the notebook's stop button does: SIGINT to the kernel
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(200):
            time.sleep(0.01)

    used = ex.use("q_sample", q_sample)
    out = capsys.readouterr().out
    assert used is not q_sample and "interrupted" in out and "┌" in out
    _same_as_the_reference("q_sample", used)


def test_a_check_run_from_another_thread_stops_a_loop_too():
    found = {}

    def run():
        found["report"] = ex.check("ddim_step", _student("ddim_step", "loop"))

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(10)
    assert found["report"].results[0].status == core.TIMED_OUT


def test_a_check_inside_a_learners_function_does_not_deadlock():
    ref = ex.EXERCISES["q_sample"].reference()

    def q_sample(ddpm, x0, k, eps):
        assert ex.check("q_sample", ref).passed
        return ref(ddpm, x0, k, eps)

    assert ex.check("q_sample", q_sample).passed


def test_a_bug_of_the_check_itself_still_ends_in_the_fallback(monkeypatch, capsys):
    broken = core.Exercise("q_sample", "06_two_pixel_ddpm_cfg", "task", ex.EXERCISES["q_sample"].reference,
                           "nbhelpers.ddpm.DDPM.q_sample", lambda: 1 / 0)
    monkeypatch.setitem(ex.EXERCISES, "q_sample", broken)
    fn = ex.EXERCISES["q_sample"].reference()
    report = ex.check("q_sample", fn)
    assert not report.passed and report.stopped.startswith("the check itself failed (ZeroDivisionError")
    assert ex.use("q_sample", fn) is not fn
    out = capsys.readouterr().out
    assert "┌" in out and "Traceback" not in out


# --------------------------------------------------------------------------- type and shape before the maths
@pytest.mark.parametrize("name,change,message,kind", [
    ("drop_labels", lambda y: y.float(), r"dtype float32 instead of int64", "dtype"),
    ("q_sample", lambda x: x.double(), r"dtype float64 instead of float32; give the result its input's dtype", "dtype"),
    ("q_sample", lambda x: x.to("meta"), r"on the meta device", "device"),
    ("q_sample", lambda x: x.to(torch.complex64), r"a complex tensor", "dtype"),
    ("q_posterior", lambda r: (r[0], r[1], r[1]),
     r"must return two things, \(mean, variance\); it returned a 3-element", "type"),
    ("fm_loss", lambda loss: loss.detach(), r"no gradient reaches the network", "grad"),
    ("em_step", lambda x: x.numpy(),
     r"a tensor was expected, got ndarray: return a torch.Tensor, not a numpy.ndarray", "type"),
    ("em_step", lambda x: None, r"return a torch.Tensor, not None \(a missing return\?\)", "type"),
    ("cosine_betas", lambda b: b.tolist(),
     r"^a 1000-element list \(.*, …\) \(a tensor was expected, got list", "type"),
    ("p_losses", lambda loss: loss.expand(3), r"a single number|shape \(3,\) where the case expects \(\)", "shape"),
])
def test_type_dtype_device_and_shape_come_first_with_a_short_hint(name, change, message, kind):
    ref = ex.EXERCISES[name].reference()
    report = ex.check(name, lambda *a, **k: change(ref(*a, **k)))
    maths = {c.name: c.hint for c in ex.EXERCISES[name].cases()}
    hit = [r for r in report.failures if re.search(message, r.got)]
    assert hit, str(report)
    assert hit[0].kind == kind and hit[0].hint == differences.HINTS[kind] != maths[hit[0].case]
    assert len(str(report)) < 6000  # no array printed in full


def test_a_shape_error_raised_inside_names_the_shapes_not_the_maths():
    def sample_path(schedule, z, t, eps):
        v = schedule(t)  # [:, None] below: only right for 2D data
        return v.alpha[:, None] * z + v.beta[:, None] * eps

    report = ex.check("sample_path", sample_path)
    r = next(r for r in report.failures if r.case.startswith("an image batch"))
    assert r.kind == "shape"
    assert r.got.startswith("a shape problem: it raised RuntimeError: The size of tensor a (3) must match the size "
                            "of tensor b (4)")
    assert "`return v.alpha[:, None] * z + v.beta[:, None] * eps`" in r.got
    assert r.got.endswith("its inputs: z (3, 1, 4, 4), t (3,), eps (3, 1, 4, 4)")
    assert r.hint == differences.HINTS["shape"]


def test_a_tensor_mixed_with_numpy_is_a_type_problem():
    def q_sample(ddpm, x0, k, eps):
        return torch.cat([x0.numpy(), eps])

    r = ex.check("q_sample", q_sample).results[0]
    assert r.kind == "type" and r.got.startswith("a type problem: it raised TypeError: expected Tensor")
    assert "its inputs: x0 (6, 2), k (6,), eps (6, 2)" in r.got


def test_a_wrong_signature_shows_the_notebooks_def_line():
    def q_sample(ddpm, x0, k):
        return x0

    r = ex.check("q_sample", q_sample).results[0]
    assert re.match(r"it raised TypeError: .*q_sample\(\) takes 3 positional arguments but 4 were given$", r.got)
    assert r.hint == "keep the parameters the notebook gives: def q_sample(ddpm, x0, k, eps)"


def test_an_off_by_one_index_is_an_indexing_problem():
    def q_sample(ddpm, x0, k, eps):
        abar = ddpm.alphas_cumprod.to(x0)[torch.as_tensor(k)].reshape(-1, *[1] * (x0.ndim - 1))  # k, not k − 1
        return abar.sqrt() * x0 + (1 - abar).sqrt() * eps

    r = ex.check("q_sample", q_sample).results[1]  # k = 6 of a six-step schedule
    assert r.kind == "index" and "IndexError: index 6 is out of bounds" in r.got
    assert r.hint == differences.HINTS["index"]


# --------------------------------------------------------------------------- inputs left as they were
def test_expected_is_computed_first_and_a_written_input_is_named_and_put_back():
    x = torch.arange(4.0)
    case = core.Case("doubles x", lambda f: f(x), lambda: x * 2, "x·2")

    def double(x):
        y = x.clone() * 2
        x.zero_()
        return y

    r = core._run_case(case, double, 1.0)
    assert r.kind == "mutation" and not r.passed
    assert r.got == "your function modified x in place; work on a copy (e.g. x = x.clone())"
    assert r.expected == "tensor of shape (4,) [0, 2, 4, 6]"
    assert torch.equal(x, torch.arange(4.0))  # restored for the later cases


def test_an_input_too_large_to_copy_is_watched_through_its_version(monkeypatch):
    monkeypatch.setattr(observe.Snapshot, "MAX_COPY", 2)
    x = torch.arange(4.0)
    case = core.Case("doubles x", lambda f: f(x), lambda: x * 2, "x·2")

    def double(x):
        x.mul_(2)
        return x

    r = core._run_case(case, double, 1.0)
    assert r.kind == "mutation" and r.got.startswith("your function modified x in place")


def test_an_attribute_replaced_on_an_input_is_named_and_put_back():
    ref = ex.EXERCISES["q_sample"].reference()

    def q_sample(ddpm, x0, k, eps):
        ddpm.alphas_cumprod = ddpm.alphas_cumprod.to(x0)  # "moves the buffer" on the caller's object
        return ref(ddpm, x0, k, eps)

    r = ex.check("q_sample", q_sample).results[0]
    assert r.got.startswith("your function replaced ddpm.alphas_cumprod, an attribute of its input")
    assert r.hint == differences.HINTS["replaced"]

    class Schedule:
        buf = None

    s = Schedule()
    s.buf = held = torch.ones(3)
    case = core.Case("reads s.buf", lambda f: f(s), lambda: torch.ones(3), "")

    def rescale(s):
        s.buf = s.buf * 2
        return torch.ones(3)

    r = core._run_case(case, rescale, 1.0)
    assert r.got.startswith("your function replaced s.buf") and s.buf is held


def test_a_class_that_writes_into_x_is_named_by_the_case():
    class OU(nb.sde.OrnsteinUhlenbeck):
        def drift(self, x, t):
            return x.mul_(-self.theta)

    r = ex.check("ornstein_uhlenbeck", OU).results[0]
    assert r.got == "your function modified x in place; work on a copy (e.g. x = x.clone())"


# --------------------------------------------------------------------------- the limit
def test_the_time_limit_reads_the_environment(monkeypatch):
    assert timeouts.time_limit() == LIMIT
    monkeypatch.setenv(timeouts.TIMEOUT_ENV, "off")
    assert timeouts.time_limit() is None
    monkeypatch.setenv(timeouts.TIMEOUT_ENV, "0")
    assert timeouts.time_limit() is None
    monkeypatch.delenv(timeouts.TIMEOUT_ENV)
    assert timeouts.time_limit() == timeouts.CHECK_TIMEOUT == 10.0
    monkeypatch.setattr(timeouts, "CHECK_TIMEOUT", 3.0)
    assert timeouts.time_limit() == 3.0
    monkeypatch.setenv(timeouts.TIMEOUT_ENV, "ten")
    with pytest.warns(UserWarning, match=r"\$NBHELPERS_CHECK_TIMEOUT must be a number of seconds"):
        assert timeouts.time_limit() == 3.0


def test_the_worker_computes_in_the_callers_grad_mode():
    with torch.no_grad():
        assert timeouts.call_with_limit(torch.is_grad_enabled, 1.0).value is False
    assert timeouts.call_with_limit(torch.is_grad_enabled, 1.0).value is True


def test_a_checks_worker_thread_ends_with_the_check():
    """The cases of one check share one worker thread; it ends with the check, so no second OpenMP team is left
    to slow the notebook's training afterwards (libgomp stops letting idle threads spin when it manages more
    threads than cores)."""
    import threading

    from nbhelpers.exercises import EXERCISES, check, timeouts

    def workers():
        return [t for t in threading.enumerate() if t.name == "nbhelpers-exercise-check" and t.is_alive()]

    with timeouts.worker_scope():
        first = timeouts.call_with_limit(threading.get_ident, 1.0).value
        second = timeouts.call_with_limit(threading.get_ident, 1.0).value
        assert first == second != threading.get_ident() and timeouts.worker_alive()
    assert not timeouts.worker_alive() and not workers()
    idents = []

    def drop_labels(y, p_uncond, num_classes, generator):
        idents.append(threading.get_ident())
        return EXERCISES["drop_labels"].reference()(y, p_uncond, num_classes, generator)

    report = check("drop_labels", drop_labels)
    assert report.passed and len(set(idents)) == 1 and idents[0] != threading.get_ident()
    assert not workers()
