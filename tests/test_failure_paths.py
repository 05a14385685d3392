"""Failure paths of the newer surfaces, one row per bad input: answers and claims, reports, seeds, locks,
names, the runner's arguments and environment, the benchmarks' arguments. Each row asserts the exception
type and that the message names the thing (a silent wrong result is the defect these rows exclude)."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import nbhelpers as nb
from nbhelpers import answers, files, runner, runtime

NAN = float("nan")


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_OUTPUT_DIR", str(tmp_path))
    monkeypatch.delenv("NBHELPERS_PROFILE", raising=False)
    return nb.setup("99_failure_paths", device="cpu", profile="smoke")


# --------------------------------------------------------------------------- claims: a truth value or an error
@pytest.mark.parametrize("holds", ["no", "yes", "", None, [True], (True,), {"a": 1}, object(), b"x",
                                   torch.tensor([True, False]), np.array([1, 0]), torch.tensor(1 + 1j),
                                   np.complex128(1j)],
                         ids=["str-no", "str-yes", "str-empty", "none", "list", "tuple", "dict", "object", "bytes",
                              "tensor-2", "array-2", "tensor-complex", "np-complex"])
def test_a_claim_refuses_what_is_not_one_truth_value(holds):
    with pytest.raises(ValueError, match=r"the check of claim 'x' must be a single truth value"):
        answers.claim("x", holds)


@pytest.mark.parametrize("holds", [NAN, torch.tensor(NAN), np.float64(NAN), np.float32(NAN), torch.tensor([NAN])],
                         ids=["float", "tensor", "np64", "np32", "tensor-1"])
def test_a_nan_check_does_not_hold(holds):
    assert answers.claim("x", holds).holds is False


@pytest.mark.parametrize("holds,expected", [(True, True), (False, False), (np.bool_(True), True),
                                            (torch.tensor(True), True), (torch.tensor(0.7) > 0.5, True),
                                            (np.array(False), False), (1, True), (0, False), (0.0, False)])
def test_a_truth_value_is_kept(holds, expected):
    assert answers.claim("x", holds).holds is expected


def test_long_claims_never_share_a_key():
    stem = "the cosine schedule keeps every mode of the mixture longer than the linear one does at "
    a, b = answers.claim_key(stem + "t = 0.5"), answers.claim_key(stem + "t = 0.9")
    assert a != b and len(a) <= len("claims/") + 60
    assert answers.claim_key("short claim") == "claims/short_claim"  # short keys unchanged
    assert answers.claim_key(stem + "t = 0.5") == a  # stable


def test_a_failed_long_claim_is_recorded_as_failed_beside_a_holding_one(run):
    stem = "the samples of every class are recognised by the offline classifier more often than "
    run.answer("x", claims=[answers.claim(stem + "chance", True), answers.claim(stem + "ninety percent", False)])
    keys = [k for k in run.metrics if k.startswith("claims/")]
    assert len(keys) == 2 and sorted(run.metrics[k] for k in keys) == [False, True]


# --------------------------------------------------------------------------- answers cite what the run recorded
def test_an_answer_value_that_contradicts_the_recorded_metric_is_refused(run):
    run.report("loss", 0.123)
    with pytest.raises(ValueError, match=r"passes loss=99, but this run recorded loss = 0.123"):
        run.answer("loss {loss:.3f}", loss=99)
    run.answer("loss {loss:.3f}", loss=0.123)  # the same value is fine


@pytest.mark.parametrize("spec", ["{m}", "{m:.2f}", "{m!s}", "{m!r}", "{m:>8}"])
def test_a_value_not_measured_renders_as_n_a(spec):
    for value in (None, NAN):
        text = answers.render(f"x = {spec}", {"m": value})
        assert "n/a" in text and "object at" not in text and "nan" not in text.lower().replace("n/a", "")


# --------------------------------------------------------------------------- reports are JSON before they are stored
@pytest.mark.parametrize("value,stored", [(torch.tensor([NAN, 1.0]), [None, 1.0]), (np.array([np.inf, 2.0]), [None, 2.0]),
                                          (torch.tensor(NAN), None), ([NAN, [np.float32(NAN)]], [None, [None]]),
                                          ({"a": torch.tensor([NAN])}, {"a": None})])
def test_non_finite_numbers_are_stored_as_null(run, value, stored):
    run.report("v", value)
    assert run.metrics["v"] == stored
    text = run.metrics_path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["metrics"]["v"] == stored


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", torch.nn.Linear(1, 1), 1 + 2j, [object()]],
                         ids=["object", "set", "bytes", "module", "complex", "list-object"])
def test_a_value_json_cannot_hold_is_refused_and_not_kept(run, value):
    with pytest.raises(ValueError, match=r"metric 'bad' must be a number"):
        run.report("bad", value)
    assert "bad" not in run.metrics
    run.report("later", 1.0)  # later reports still work
    assert json.loads(run.metrics_path.read_text())["metrics"]["later"] == 1.0


# --------------------------------------------------------------------------- seeds and names
@pytest.mark.parametrize("seed", [2**64, 2**63, -1, -(2**63)])
def test_a_seed_out_of_range_is_one_line(seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 2\*\*63 - 1\], got"):
        runtime.seed_everything(seed)


@pytest.mark.parametrize("name", ["../../..x", "a/b", "..", "", "x\x00y", "a\\b"])
def test_a_notebook_name_is_a_plain_name(name, tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_OUTPUT_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=r"notebook name must be a plain file name"):
        nb.setup(name, device="cpu", profile="smoke")


# --------------------------------------------------------------------------- locks that name no process
@pytest.mark.parametrize("content", ['{"pid": "abc", "host": "%s"}', '{"pid": null, "host": "%s"}',
                                     '{"pid": 1000000000000000000000000000000, "host": "%s"}', '{"pid": true, "host": "%s"}',
                                     '{"pid": -5, "host": "%s"}', '{"pid": 2.5, "host": "%s"}', '{"pid": "abc"}',
                                     '{"pid": [1]}'])
def test_a_lock_naming_no_process_is_stale_and_named(tmp_path, capsys, content):
    lock = tmp_path / "run.lock"
    lock.write_text(content.replace("%s", files._host()) if "%s" in content else content)
    with runtime.FolderLock(lock, "a test") as held:
        assert held.held and json.loads(lock.read_text())["pid"] == __import__("os").getpid()
    assert f"taking over the stale lock {lock}" in capsys.readouterr().err


# --------------------------------------------------------------------------- the runner's arguments and environment
@pytest.mark.parametrize("argv,message", [
    (["--notebooks", ""], r"no notebook named in ''"),
    (["--notebooks", " , "], r"no notebook named in"),
    (["--notebooks", "01", "--profile", "cpu", "-p", "profile", "smoke"], r"-p profile 'smoke' repeats --profile"),
    (["--notebooks", "01", "-p", "device", "cpu"], r"-p device 'cpu' repeats --device"),
])
def test_runner_arguments_are_checked_before_anything_runs(argv, message, capsys):
    with pytest.raises(SystemExit, match=r"^2$") as exc:
        runner.main(argv)
    assert exc.value.code == 2 and __import__("re").search(message, capsys.readouterr().err)


@pytest.mark.parametrize("var,value,message", [
    ("NBHELPERS_MAX_STEPS", "-1", r"\$NBHELPERS_MAX_STEPS must be a positive integer"),
    ("NBHELPERS_MAX_STEPS", "abc", r"\$NBHELPERS_MAX_STEPS must be a positive integer"),
    ("NBHELPERS_MAX_STEPS", "0", r"\$NBHELPERS_MAX_STEPS must be a positive integer"),
    ("NBHELPERS_MAX_STEPS", "1.5", r"\$NBHELPERS_MAX_STEPS must be a positive integer"),
    ("NBHELPERS_CHECKPOINT_DIR", "ckpts", r"\$NBHELPERS_CHECKPOINT_DIR must be an absolute path"),
    ("NBHELPERS_DATA_DIR", "data", r"\$NBHELPERS_DATA_DIR must be an absolute path"),
    ("NBHELPERS_OUTPUT_DIR", "out", r"\$NBHELPERS_OUTPUT_DIR must be an absolute path"),
    ("NBHELPERS_PROFILE", "fast", r"unknown profile 'fast' \(from \$NBHELPERS_PROFILE\)"),
])
def test_runner_environment_is_checked_before_anything_runs(monkeypatch, capsys, var, value, message):
    monkeypatch.setenv(var, value)
    monkeypatch.setattr(runner, "run_notebook", lambda *a, **k: pytest.fail("a notebook ran"))
    with pytest.raises(SystemExit, match=r"^2$") as exc:
        runner.main(["--notebooks", "01"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and __import__("re").search(message, err), err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- the AFHQ command line's sizes and seed
@pytest.mark.parametrize("flags,message", [
    (["--image_size", "100000"], r"image_size must be at most 512"),
    (["--batch_size", "1000000000"], r"batch_size must be at most 4,096"),
    (["--unet_dim", "100000"], r"unet_dim must be at most 512"),
    (["--time_steps", "10000000"], r"time_steps must be at most 100,000"),
    (["--fid_samples", "10000000"], r"fid_samples must be at most 100,000"),
    (["--seed", "18446744073709551616"], r"seed must be an integer in \[0, 2\*\*63 - 1\]"),
    (["--seed", "-1"], r"seed must be an integer >= 0, got -1"),
    (["--save_folder", ""], r"save_folder must name a folder, got ''"),
    (["--save-folder", "  "], r"save_folder must name a folder"),
])
def test_afhq_cli_sizes_have_stated_bounds(flags, message, capsys):
    from nbhelpers.recipes.afhq import cli

    with pytest.raises(SystemExit, match=r"^2$") as exc:
        cli.main(flags + ["--train_steps", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and __import__("re").search(message, err), err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- data: shapes, dtypes and label ranges
def _idx(arr: np.ndarray, code: int = 0x08) -> bytes:
    import struct

    return struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.astype(
        arr.dtype.newbyteorder(">")).tobytes()


@pytest.mark.parametrize("images,labels,message", [
    (np.zeros((4, 14, 56), np.uint8), np.zeros(4, np.uint8), r"holds uint8 images of 14×56; MNIST's are uint8 28×28"),
    (np.zeros((4, 28, 28), np.float32), np.zeros(4, np.uint8), r"holds float32 images of 28×28"),
    (np.zeros((4, 28, 28), np.uint8), np.array([0, 1, 200, 3], np.uint8), r"labels up to 200; MNIST's are uint8 digits 0..9"),
    (np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.int32), r"holds int32 labels"),
])
def test_mnist_files_of_another_shape_or_type_are_refused(tmp_path, images, labels, message):
    from nbhelpers import data
    from nbhelpers._checks import DataError

    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.float32): 0x0D, np.dtype(np.int32): 0x0C}
    (raw / "t10k-images-idx3-ubyte").write_bytes(_idx(images, codes[images.dtype]))
    (raw / "t10k-labels-idx1-ubyte").write_bytes(_idx(labels, codes[labels.dtype]))
    with pytest.raises(DataError, match=message):
        data.load_mnist("test", root=tmp_path, download=False)


@pytest.mark.parametrize("size", [(1, 1), (512, 1), (8, 8)])
def test_afhq_images_smaller_than_the_training_size_are_named_in_a_warning(tmp_path, size):
    from PIL import Image

    from nbhelpers.recipes import afhq

    folder = tmp_path / "cat"
    folder.mkdir()
    Image.new("RGB", size, (200, 100, 50)).save(folder / "tiny.png")
    Image.new("RGB", (32, 32), (20, 10, 5)).save(folder / "fine.png")
    before = (folder / "tiny.png").read_bytes()
    with pytest.warns(UserWarning, match=r"1 of 2 images in .* are smaller than 16×16 \(e.g. tiny.png"):
        out = afhq.load_folder(folder, 16, cache=True)
    assert out.shape == (2, 3, 16, 16)
    assert (folder / "tiny.png").read_bytes() == before  # the warning names the image; the cache goes to its own file
    assert torch.equal(afhq.load_folder(folder, 16, cache=True), out)


# --------------------------------------------------------------------------- checkpoints: digest, finite weights, steps
def _tiny_run(path, steps=4):
    from nbhelpers.training import TrainConfig, train

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    return train(net, lambda m, b, g: m(b).pow(2).mean(), lambda g: torch.randn(8, 3, generator=g),
                 TrainConfig(steps=steps, lr=1e-2, ema_decay=0.9), checkpoint=path, key={"t": 1}, progress=False)


def _forge(path, change):
    state = torch.load(path, weights_only=True)
    change(state)
    torch.save(state, path)


def _flip_bit(state):
    for sd in (state["model"], state["ema"]):
        for t in sd.values():
            if t.is_floating_point():
                t.view(torch.int32).view(-1)[0] ^= 1


@pytest.mark.parametrize("change,message", [
    (_flip_bit, r"weights do not match the digest"),
    (lambda s: (s["model"].update({k: torch.full_like(t, NAN) for k, t in s["model"].items()}), s.pop("digest")),
     r"model weights 'weight' hold NaN"),
    (lambda s: (s["ema"].update(weight=torch.full_like(s["ema"]["weight"], math.inf)), s.pop("digest")),
     r"ema weights 'weight' hold NaN or infinity"),
    (lambda s: s.update(step=1000), r"says it is at step 1000 of a 4-step run"),
    (lambda s: s.update(step=-1), r"says it is at step -1 of a 4-step run"),
    (lambda s: s.update(step="4"), r"says it is at step '4'"),
    (lambda s: s.update(losses=torch.zeros(2, dtype=torch.float64)), r"holds 2 losses for 4 steps"),
])
def test_a_damaged_or_forged_checkpoint_is_never_loaded(tmp_path, change, message):
    from nbhelpers.checkpoints import CheckpointError

    ckpt = tmp_path / "m.pt"
    assert _tiny_run(ckpt).steps == 4
    _forge(ckpt, change)
    with pytest.raises(CheckpointError, match=f"checkpoint {ckpt}.*" + message):
        _tiny_run(ckpt)


def test_an_intact_checkpoint_loads_from_the_cache(tmp_path):
    ckpt = tmp_path / "m.pt"
    first = _tiny_run(ckpt)
    again = _tiny_run(ckpt)
    assert again.loaded_from_cache and torch.equal(again.model.weight, first.model.weight)


# --------------------------------------------------------------------------- exercise checks do not pass broken functions
def _wrapped(name, change):
    from nbhelpers import exercises as ex

    ref = ex.EXERCISES[name].reference()

    def fn(*args, **kwargs):
        return change(ref(*args, **kwargs))
    return fn


@pytest.mark.parametrize("name,change,message", [
    ("drop_labels", lambda y: y.float(), r"dtype float32 instead of int64"),
    ("q_sample", lambda x: x.double(), r"dtype float64 instead of float32; give the result its input's dtype"),
    ("q_sample", lambda x: x.to("meta"), r"on the meta device"),
    ("q_sample", lambda x: x.to(torch.complex64), r"a complex tensor"),
    ("q_posterior", lambda r: (r[0], r[1], r[1]), r"must return two things, \(mean, variance\); it returned a 3-element"),
    ("q_posterior", lambda r: r[0], r"must return two things, .* it returned a Tensor"),
    ("fm_loss", lambda loss: loss.detach(), r"no gradient reaches the network"),
    ("em_step", lambda x: x.to(torch.complex128), r"a complex tensor"),
    ("em_step", lambda x: x.numpy(), r"a tensor was expected, got ndarray"),
])
def test_an_exercise_check_fails_a_broken_function_and_names_why(name, change, message):
    from nbhelpers import exercises as ex

    report = ex.check(name, _wrapped(name, change))
    assert not report.passed
    assert __import__("re").search(message, str(report)), str(report)
    assert ex.use(name, _wrapped(name, change), quiet=True) is not None  # use() itself never raises


# --------------------------------------------------------------------------- tools and benchmarks: one error line
def test_tools_name_a_truncated_or_malformed_file(tmp_path, monkeypatch, capsys):
    from tools import readme_figures, stamp_colab

    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "01_sdes.json").write_text('{"notebook": "01_sdes", "metr')  # truncated
    figs = tmp_path / "figures" / "01_sdes"
    figs.mkdir(parents=True)
    (figs / f"{readme_figures.GALLERY['01_sdes']}.png").write_bytes(b"png")
    monkeypatch.setenv("NBHELPERS_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setattr(runtime, "metrics_dir", lambda: metrics)
    monkeypatch.setattr(runtime, "figures_dir", lambda profile=None: tmp_path / "figures")
    assert readme_figures.main(["--notebooks", "01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: metrics file ") and "01_sdes.json is not valid JSON (line 1" in err
    assert "Traceback" not in err

    results = tmp_path / "results"
    results.mkdir()
    (results / "01_sdes__cpu__x.json").write_text("{not json")
    monkeypatch.setattr(stamp_colab, "benchmark_times", lambda *a, **k: stamp_colab.read_json(
        results / "01_sdes__cpu__x.json", "benchmark result"))
    assert stamp_colab.main(["--check"]) == 2
    err = capsys.readouterr().err
    assert "error: benchmark result " in err and "01_sdes__cpu__x.json is not valid JSON" in err


@pytest.mark.parametrize("src,message", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTON\n", r"'### BEGIN SOLUTION' without '### END SOLUTION' \(a misspelt marker\?\)"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", r"'### END SOLUTION' without '### BEGIN SOLUTION'"),
    ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n", r"nested '### BEGIN SOLUTION'"),
])
def test_make_exercises_names_unbalanced_markers(src, message):
    from tools import make_exercises

    with pytest.raises(ValueError, match=message):
        make_exercises.blank_solutions(src, "task")


def test_make_exercises_refuses_a_file_where_its_folder_goes(tmp_path, monkeypatch, capsys):
    from tools import make_exercises

    out = tmp_path / "exercises"
    out.write_text("a file")
    monkeypatch.setattr(make_exercises, "OUT_DIR", out)
    assert make_exercises.main([]) == 2
    assert f"error: {out} is a file; exercises/ must be a folder" in capsys.readouterr().err
    assert out.read_text() == "a file"


def test_a_dry_run_with_an_absent_device_touches_no_row(tmp_path, monkeypatch, capsys):
    from benchmarks import common, dryrun as bench_dryrun

    monkeypatch.setattr(common, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_dryrun, "RESULTS", tmp_path)
    monkeypatch.setattr(bench_dryrun, "run", lambda *a, **k: pytest.fail("a notebook ran"))
    with pytest.raises(SystemExit, match=r"^2$") as exc:
        bench_dryrun.main(["--device", "tpu", "--notebooks", "02", "--max-steps", "1"])
    assert exc.value.code == 2 and "tpu" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_failed_dry_run_row_never_replaces_a_good_one(capsys):
    from benchmarks import dryrun as bench_dryrun

    old = {"max_steps": 1, "notebooks": {"01": {"status": "ok", "wall_s": 3.0, "measured": "a"},
                                         "02": {"status": "ok", "wall_s": 4.0, "measured": "a"}}}
    new = {"max_steps": 1, "notebooks": {"02": {"status": "failed", "wall_s": 1.0, "measured": "b"}}}
    merged = bench_dryrun.merge(old, new)
    assert merged["notebooks"]["02"]["status"] == "ok" and merged["notebooks"]["02"]["wall_s"] == 4.0
    assert "02 failed in this run; its recorded row (ok) is kept" in capsys.readouterr().err


# --------------------------------------------------------------------------- a resumed run writes what its interrupted step owed
def test_a_resumed_afhq_run_writes_the_samples_its_interrupted_step_owed(tmp_path):
    from nbhelpers.recipes import afhq
    from nbhelpers.training import train

    torch.manual_seed(0)
    diffusion = afhq.make_diffusion(8, 5, 4)
    cats = afhq.AFHQImages((torch.rand(16, 3, 8, 8) * 255).to(torch.uint8), tmp_path, "cat")
    cfg = afhq.AFHQConfig(image_size=8, batch_size=4, time_steps=5, unet_dim=4, train_steps=6, save_and_sample_every=2)
    ckpt, out = tmp_path / "model.pt", tmp_path / "out"

    def killed_before_the_hook(step, loss):  # the checkpoint of step 2 is written, its samples are not
        if step == 2:
            raise KeyboardInterrupt(f"killed after step {step}")

    with pytest.raises(KeyboardInterrupt, match="killed after step 2"):
        train(diffusion, afhq.diffusion_loss, afhq.make_batch_fn(cats, diffusion, 4), afhq.train_config(cfg),
              checkpoint=ckpt, progress=False, on_step=killed_before_the_hook)
    logs = []
    hook = afhq.SampleAndScore(diffusion, ckpt, 2, out_dir=out, grid_size=4, log=logs.append)
    assert hook.owed() == 2
    assert hook.catch_up() == 2 and (out / "sample-000002.png").is_file()
    assert logs == ["step 2: writing the samples the interrupted run owed"]
    assert hook.owed() is None and hook.catch_up() is None  # written once


# --------------------------------------------------------------------------- notebook size parameters have an upper bound
@pytest.mark.parametrize("value,ok", [(1_000_000_000, False), (10**6, False), (100_000, True), (5, True)])
def test_a_size_parameter_is_bounded_by_its_profile_defaults(run, value, ok):
    if ok:
        assert run.param("n_paths", value, smoke=10, cpu=200, gpu=1000) == value
    else:
        with pytest.raises(ValueError, match=r"parameter n_paths must be an integer in \[1, 100000\].*got " + str(value)):
            run.param("n_paths", value, smoke=10, cpu=200, gpu=1000)


def test_a_run_records_the_commit_it_ran_and_the_gallery_cites_it(run, tmp_path, monkeypatch):
    from tools import readme_figures

    run.report("x", 1.0)
    record = json.loads(run.metrics_path.read_text())
    assert record["commit"] == runtime.source_commit() and record["commit"]
    figs = tmp_path / "figs" / "01_sdes"
    figs.mkdir(parents=True)
    (figs / f"{readme_figures.GALLERY['01_sdes']}.png").write_bytes(b"png")
    metrics = tmp_path / "m"
    metrics.mkdir()
    (metrics / "01_sdes.json").write_text(json.dumps({**record, "notebook": "01_sdes", "profile": "cpu",
                                                      "commit": "abc1234", "complete": True}))
    assert readme_figures.provenance("01_sdes", tmp_path / "figs", metrics)["commit"] == "abc1234"
    old = json.loads((metrics / "01_sdes.json").read_text())
    del old["commit"]
    (metrics / "01_sdes.json").write_text(json.dumps(old))
    assert readme_figures.provenance("01_sdes", tmp_path / "figs", metrics)["commit"].endswith("(at copy time)")


@pytest.mark.parametrize("fails", [False, True])
def test_metrics_are_marked_complete_only_when_the_notebook_ran_to_its_end(tmp_path, monkeypatch, fails):
    import papermill

    from tools import readme_figures

    monkeypatch.setenv("NBHELPERS_OUTPUT_DIR", str(tmp_path))
    monkeypatch.delenv("NBHELPERS_PROFILE", raising=False)

    def execute(*args, **kwargs):  # the kernel: set up, report, then finish or fail half-way
        nb.setup("02_paths_schedules", device="cpu", profile="cpu").report("x", 1.0)
        if fails:
            raise RuntimeError("killed half-way")

    monkeypatch.setattr(papermill, "execute_notebook", execute)
    res = runner.run_notebook("02_paths_schedules", "cpu", "cpu")
    record = json.loads((runtime.metrics_dir() / "02_paths_schedules.json").read_text())
    assert res.status == ("failed" if fails else "ok") and record["complete"] is (not fails)
    fig = runtime.figures_dir("cpu") / "02_paths_schedules" / f"{readme_figures.GALLERY['02_paths_schedules']}.png"
    fig.parent.mkdir(parents=True)
    fig.write_bytes(b"png")
    if fails:
        with pytest.raises(ValueError, match=r"from a run that did not finish"):
            readme_figures.provenance("02_paths_schedules", runtime.figures_dir("cpu"), runtime.metrics_dir())
    else:
        assert readme_figures.provenance("02_paths_schedules", runtime.figures_dir("cpu"), runtime.metrics_dir())


def test_a_read_only_build_folder_is_one_error_line(monkeypatch, capsys, tmp_path):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / "build" / "notebooks"))

    monkeypatch.setattr(runner.Path, "mkdir", refuse)
    assert runner.main(["--notebooks", "01"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: [Errno 13] Permission denied") and "build/notebooks" in err and "Traceback" not in err


@pytest.mark.parametrize("toml,message", [
    ('[project]\nname = "x"\n[project.urls]\nRepository = "https://gitlab.com/a/b"\n', r"must be https://github.com/<owner>/<name>"),
    ('[project]\nname = "x"\n', r"must be https://github.com/<owner>/<name> .*got ''"),
    ("[tool]\n", r"must be https://github.com/"),
    ("[project\n", r"cannot be read as TOML"),
])
def test_stamp_colab_names_a_repository_it_cannot_use(tmp_path, monkeypatch, capsys, toml, message):
    from tools import stamp_colab

    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(toml)
    with pytest.raises(ValueError, match=message):
        stamp_colab.repository_url(pyproject)
    monkeypatch.setattr(stamp_colab, "ROOT", tmp_path)  # the command line reads <root>/pyproject.toml
    assert stamp_colab.main(["--check"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(pyproject) in err and "Traceback" not in err


@pytest.mark.parametrize("var,read", [("NBHELPERS_CHECKPOINT_DIR", lambda: runtime.checkpoints_dir("cpu")),
                                      ("NBHELPERS_DATA_DIR", runtime.data_dir),
                                      ("NBHELPERS_OUTPUT_DIR", runtime.build_dir)])
def test_a_relative_folder_variable_is_refused_where_it_is_read(monkeypatch, var, read):
    monkeypatch.setenv(var, "relative/folder")
    with pytest.raises(ValueError, match=rf"\${var} must be an absolute path .*got 'relative/folder'"):
        read()
    monkeypatch.setenv(var, "~/x")  # the home folder is absolute enough
    assert read().is_absolute()
