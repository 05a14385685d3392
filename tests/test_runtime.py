"""Devices, profiles, paths and the notebook run record."""
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import nbhelpers as nb
from nbhelpers import files, layout, runtime


def test_auto_device_prefers_cuda_then_mps_then_cpu():
    dev = nb.get_device("auto")
    if torch.cuda.is_available():
        assert dev.type == "cuda"
    elif "mps" in runtime.available_devices():
        assert dev.type == "mps"
    else:
        assert dev == torch.device("cpu")


def test_cpu_always_available():
    assert nb.get_device("cpu") == torch.device("cpu")
    assert nb.get_device(" CPU ") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where CUDA is absent")
def test_missing_cuda_is_one_clear_error():
    with pytest.raises(ValueError, match=r"'cuda'.*available devices: cpu") as err:
        nb.get_device("cuda")
    msg = str(err.value)
    assert "'cuda'" in msg and "available devices: cpu" in msg and "\n" not in msg


def test_missing_cuda_index_is_an_error():
    with pytest.raises(ValueError, match="available devices"):
        nb.get_device(f"cuda:{torch.cuda.device_count() + 3}")


@pytest.mark.parametrize("bad", ["gpu0", "tpu", "", 3])
def test_unknown_device_lists_choices(bad):
    with pytest.raises(ValueError, match="auto, cpu, cuda"):
        nb.get_device(bad)


def test_profiles(monkeypatch):
    monkeypatch.delenv(runtime.PROFILE_ENV, raising=False)
    cpu = torch.device("cpu")
    assert nb.resolve_profile("auto", cpu) == "cpu"
    assert nb.resolve_profile("auto", torch.device("cuda")) == "gpu"
    assert nb.resolve_profile("SMOKE", cpu) == "smoke"
    with pytest.raises(ValueError, match="smoke, cpu, gpu"):
        nb.resolve_profile("fast", cpu)


def test_env_profile_overrides_parameter(monkeypatch):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    assert nb.resolve_profile("gpu", torch.device("cpu")) == "smoke"
    monkeypatch.setenv(runtime.PROFILE_ENV, "turbo")
    with pytest.raises(ValueError, match=r"turbo.*NBHELPERS_PROFILE.*smoke, cpu, gpu"):
        nb.resolve_profile("cpu", torch.device("cpu"))


def test_seed_everything_reproduces():
    nb.seed_everything(7)
    a = torch.randn(5)
    nb.seed_everything(7)
    assert torch.equal(a, torch.randn(5))
    with pytest.raises(ValueError, match=r"seed must be an integer, got '7'"):
        nb.seed_everything("7")


def test_paths_do_not_depend_on_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert runtime.ROOT == Path(nb.__file__).resolve().parent.parent
    assert runtime.figures_dir("cpu") == runtime.output_root() / "figures"
    assert runtime.figures_dir("smoke").is_relative_to(runtime.output_root() / "build")
    assert runtime.checkpoints_dir("smoke") != runtime.checkpoints_dir("gpu")


def test_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.DATA_ENV, str(tmp_path))
    assert runtime.data_dir() == tmp_path.resolve()
    monkeypatch.delenv(runtime.DATA_ENV)
    assert runtime.data_dir() == runtime.ROOT / "data"


def test_checkpoint_dir_env_moves_the_model_cache(monkeypatch, tmp_path):
    monkeypatch.delenv(runtime.CHECKPOINT_ENV, raising=False)
    assert runtime.checkpoints_dir("cpu") == runtime.output_root() / "checkpoints"
    monkeypatch.setenv(runtime.CHECKPOINT_ENV, str(tmp_path))
    assert runtime.checkpoints_dir("cpu") == runtime.checkpoints_dir("gpu") == tmp_path.resolve()
    assert runtime.checkpoints_dir("smoke") == tmp_path.resolve() / "smoke"


def test_benchmarks_time_a_first_run_in_an_empty_model_cache(monkeypatch):
    import benchmarks.__main__ as bench

    monkeypatch.setenv(runtime.CHECKPOINT_ENV, "/somewhere/else")
    with bench.model_cache(warm=False):
        cold = runtime.checkpoints_dir("cpu")
        assert cold.is_dir() and not any(cold.iterdir()) and cold.is_relative_to(runtime.build_dir())
    assert not cold.exists() and os.environ[runtime.CHECKPOINT_ENV] == "/somewhere/else"
    monkeypatch.delenv(runtime.CHECKPOINT_ENV)
    with bench.model_cache(warm=True):
        assert runtime.checkpoints_dir("cpu") == runtime.output_root() / "checkpoints"
    assert bench.build_parser().parse_args(["--warm"]).warm


def test_setup_report_and_savefig(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    monkeypatch.setattr(layout, "build_dir", lambda: tmp_path)
    run = nb.setup("99_test", device="cpu", profile="gpu", seed=3)
    assert run.profile == "smoke" and run.pick(1, 2, 3) == 1
    assert capsys.readouterr().out == "smoke: a few training steps — samples are not expected to look like data\n"
    run.report("err", torch.tensor(0.25))
    run.report("hist", [1, 2])
    data = json.loads((tmp_path / "metrics" / "99_test.json").read_text())
    assert data["metrics"] == {"err": 0.25, "hist": [1, 2]} and data["profile"] == "smoke"
    assert run.report_all({"a": torch.tensor(1.5), "b": 2}) == {"a": 1.5, "b": 2}
    data = json.loads((tmp_path / "metrics" / "99_test.json").read_text())
    assert data["metrics"] == {"err": 0.25, "hist": [1, 2], "a": 1.5, "b": 2}
    with pytest.raises(ValueError, match="dict"):
        run.report_all([("a", 1)])

    class Result:  # a study's frozen dataclass: report_all reads its .metrics
        metrics = {"ratio": 2.0, "n": 3}

    assert run.report_all(Result(), prefix="q/") == {"q/ratio": 2.0, "q/n": 3}
    data = json.loads((tmp_path / "metrics" / "99_test.json").read_text())
    assert data["metrics"]["q/ratio"] == 2.0 and "ratio" not in data["metrics"]
    with pytest.raises(ValueError, match="a result with a .metrics dict, got object"):
        run.report_all(object())
    with pytest.raises(ValueError, match="prefix must be a string"):
        run.report_all({"a": 1}, prefix=None)
    import types

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    study = types.SimpleNamespace(figure=plt.figure(), metrics={"c": 3.0}, summary="three")
    assert run.record(study, "study_fig") == {"c": 3.0}
    assert capsys.readouterr().out == "three\n"
    assert (tmp_path / "smoke" / "figures" / "99_test" / "study_fig.png").exists()
    assert json.loads((tmp_path / "metrics" / "99_test.json").read_text())["metrics"]["c"] == 3.0
    done = types.SimpleNamespace(metrics={"d": 4.0}, summary=lambda: "four")  # a frozen result's .summary()
    assert run.record(done) == {"d": 4.0} and capsys.readouterr().out == "four\n"
    with pytest.raises(ValueError, match="no figure"):
        run.record(types.SimpleNamespace(figure=None, metrics={}, summary=""), "missing")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    path = run.savefig(fig, "demo")
    assert path.exists() and path.parent == tmp_path / "smoke" / "figures" / "99_test"
    with pytest.raises(ValueError, match=r"figure name .*'\.\./escape'"):
        run.savefig(fig, "../escape")
    npz = run.save_samples("s", x=torch.ones(3, 2))
    import numpy as np

    assert np.load(npz)["x"].shape == (3, 2)


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "f.bin"
    runtime.atomic_write_bytes(target, b"one")
    runtime.atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    assert [p.name for p in target.parent.iterdir()] == ["f.bin"]


def test_atomic_write_gives_a_new_file_the_umask_permissions(tmp_path):
    import os
    import stat

    from nbhelpers.runtime import atomic_write_bytes

    old = os.umask(0o022)
    try:
        target = tmp_path / "sub" / "metrics.json"
        atomic_write_bytes(target, b"{}")
        assert target.read_bytes() == b"{}"
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
        assert [p.name for p in target.parent.iterdir()] == ["metrics.json"]  # no temporary file left behind
    finally:
        os.umask(old)


# --------------------------------------------------------------------------- notebook parameters
def _run(profile="cpu"):
    return runtime.NotebookRun("params", torch.device("cpu"), profile, 0, torch.Generator())


@pytest.mark.parametrize("profile, expected", [("smoke", 2), ("cpu", 30), ("gpu", 400)])
def test_param_none_means_the_profile_default(profile, expected):
    assert _run(profile).param("n_paths", None, smoke=2, cpu=30, gpu=400) == expected


@pytest.mark.parametrize("value", [1, 7, 40_000, np.int64(5)])  # up to 100× the largest profile default
def test_param_keeps_a_valid_value(value):
    out = _run().param("steps", value, smoke=2, cpu=30, gpu=400)
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, -1, -100, 2.5, 3.0, float("nan"), float("inf"), True, False, np.bool_(True),
                                   "3", [3], 1j, 40_001, 10**9])
def test_param_refuses_what_would_run_silently_wrong(value):
    with pytest.raises(ValueError, match=r"steps.*in \[1, 40000\]") as info:
        _run().param("steps", value, smoke=2, cpu=30, gpu=400)
    msg = str(info.value)
    assert "\n" not in msg and "steps" in msg and "in [1, 40000]" in msg and repr(value) in msg
    assert "None for the profile default (30 in cpu)" in msg


@pytest.mark.parametrize("value, kind, kwargs, ok", [
    (0.5, float, dict(min=0, min_exclusive=True), True),
    (2, float, dict(min=0, min_exclusive=True), True),
    (0, float, dict(min=0, min_exclusive=True), False),
    (-0.5, float, dict(min=0, min_exclusive=True), False),
    (True, float, dict(min=0, min_exclusive=True), False),
    (5, int, dict(min=1, max=4), False),
    (4, int, dict(min=1, max=4), True),
    (True, bool, {}, True),
    ("yes", bool, {}, False),  # papermill's -p retrain yes
    (1, bool, {}, False),
    ("cosine", str, {}, True),
])
def test_check_param_kinds_and_ranges(value, kind, kwargs, ok):
    if ok:
        assert runtime.check_param("x", value, kind=kind, **kwargs) == value
    else:
        with pytest.raises(ValueError, match=r"^parameter x must be "):
            runtime.check_param("x", value, kind=kind, **kwargs)


@pytest.mark.parametrize("epochs, n, batch, steps", [
    (3, 60_000, 128, 1407),   # 1406.25 → a last, partial batch
    (1, 60_000, 250, 240),    # exact
    (0.1, 30, 3, 1),          # 1.0000000000000002 in floats: not 2
    (0.001, 10, 32, 1),       # at least one step
    (2, 5_153, 32, 323),      # AFHQ cats: 322.06
])
def test_steps_for_epochs_is_the_ceiling_of_epochs_times_batches(epochs, n, batch, steps):
    assert runtime.steps_for_epochs(epochs, n, batch) == steps


@pytest.mark.parametrize("args", [(0, 100, 10), (-1, 100, 10), (True, 100, 10), (1, 0, 10), (1, 100, 0), (1, 100, 2.0)])
def test_steps_for_epochs_refuses_bad_inputs(args):
    with pytest.raises(ValueError, match="must be"):
        runtime.steps_for_epochs(*args)


def test_train_steps_from_steps_epochs_or_the_default(capsys):
    run = _run("cpu")
    kw = dict(default=900, n_examples=60_000, batch_size=128)
    assert run.train_steps(None, None, **kw) == 900
    assert run.train_steps(50, None, **kw) == 50
    assert capsys.readouterr().out == ""
    assert run.train_steps(None, 3, **kw) == 1407
    assert capsys.readouterr().out.strip() == "epochs=3 → 1,407 steps at batch 128 (60,000 training examples)"
    counted = []
    assert run.train_steps(None, None, default=9, n_examples=lambda: counted.append(1) or 10, batch_size=2) == 9
    assert counted == []  # the data set is only counted when epochs are given
    assert run.train_steps(None, 1, default=9, n_examples=lambda: 10, batch_size=2, log=None) == 5


@pytest.mark.parametrize("steps, epochs, words", [
    (100, 2, ["steps", "epochs", "both", "None"]),
    (0, None, ["steps", ">= 1", "900"]),
    (2.5, None, ["steps", "integer"]),
    (None, 0, ["epochs", "> 0"]),
    (None, "3", ["epochs", "number"]),
    (None, True, ["epochs", "number"]),
])
def test_train_steps_errors_name_the_parameter(steps, epochs, words):
    with pytest.raises(ValueError, match=re.escape(words[0])) as info:
        _run().train_steps(steps, epochs, default=900, n_examples=60_000, batch_size=128, log=None)
    assert all(w in str(info.value) for w in words) and "\n" not in str(info.value)


def test_train_steps_names_another_steps_parameter():
    with pytest.raises(ValueError, match="image_steps and epochs"):
        _run().train_steps(5, 1, default=900, n_examples=10, batch_size=2, name="image_steps")


# --------------------------------------------------------------------------- temp files and locks
DEAD_PID = 999_999_999  # above any pid_max


def test_temp_names_identify_their_writer(tmp_path):
    import os

    tmp = runtime.temp_path(tmp_path / "model.pt")
    assert tmp.name.startswith(f".model.pt.{files._host()}.{os.getpid()}.") and tmp.name.endswith(".tmp")
    assert runtime.pid_alive(os.getpid()) and not runtime.pid_alive(DEAD_PID)


def test_stale_temps_of_dead_writers_are_removed_at_the_next_write(tmp_path):
    import os
    import time

    target = tmp_path / "model.pt"
    host = files._host()
    dead = tmp_path / f".model.pt.{host}.{DEAD_PID}.0123abcd.tmp"
    live = tmp_path / f".model.pt.{host}.{os.getpid()}.0123abcd.tmp"
    elsewhere = tmp_path / f".model.pt.otherhost.{DEAD_PID}.0123abcd.tmp"
    old_style = tmp_path / ".model.pt.k2j3h4g5.tmp"
    new_old_style = tmp_path / ".model.pt.a1b2c3d4.tmp"
    other_file = tmp_path / f".other.pt.{host}.{DEAD_PID}.0123abcd.tmp"
    for p in (dead, live, elsewhere, old_style, new_old_style, other_file):
        p.write_bytes(b"partial")
    hour_ago = time.time() - 2 * 3600
    os.utime(old_style, (hour_ago, hour_ago))
    runtime.atomic_write_bytes(target, b"new")
    left = sorted(p.name for p in tmp_path.iterdir())
    assert dead.name not in left and old_style.name not in left  # writers gone: removed
    assert {live.name, elsewhere.name, new_old_style.name, other_file.name, "model.pt"} == set(left)


def test_a_lock_held_by_a_live_process_is_respected(tmp_path, live_pid):
    lock = tmp_path / "run" / "model.pt.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": live_pid, "host": files._host(), "started": "earlier"}))
    with pytest.raises(runtime.OutputError, match=rf"in use by another run \(pid {live_pid} .*delete .*model.pt.lock"):
        runtime.FolderLock(lock).acquire()
    assert lock.exists()


def test_a_stale_lock_is_taken_over_and_removed_at_release(tmp_path):
    import json
    import os

    lock = tmp_path / "model.pt.lock"
    lock.write_text(json.dumps({"pid": DEAD_PID, "host": files._host(), "started": "earlier"}))
    with runtime.FolderLock(lock) as held:
        assert json.loads(lock.read_text())["pid"] == os.getpid() and held.held
    assert not lock.exists()


def test_a_lock_in_a_folder_that_cannot_exist_fails_with_the_folder_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(runtime.OutputError, match=r"a-file.*(choose a writable folder|not a folder)"):
        runtime.FolderLock(blocker / "sub" / "model.pt.lock").acquire()


def test_randn_draws_on_the_generator_device_and_moves():
    """The one generator-aware draw: the same numbers as torch.randn on the generator's device."""
    want = torch.randn(3, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    got = runtime.randn((3, 4), torch.Generator().manual_seed(5), "cpu", torch.float64)
    assert torch.equal(got, want) and got.dtype == torch.float64
    assert runtime.randn(torch.Size([2]), torch.Generator().manual_seed(5)).dtype == torch.get_default_dtype()
    torch.manual_seed(9)
    a = runtime.randn((4,), None, "cpu")
    torch.manual_seed(9)
    assert torch.equal(a, torch.randn(4))
    if torch.cuda.is_available():  # a CPU generator feeds a CUDA tensor with the CPU numbers
        on_gpu = runtime.randn((3, 4), torch.Generator().manual_seed(5), "cuda", torch.float64)
        assert on_gpu.device.type == "cuda" and torch.equal(on_gpu.cpu(), want)


def test_batch_time_is_the_one_time_normaliser():
    from nbhelpers._checks import batch_time
    x = torch.zeros(3, 2, 5, dtype=torch.float64)
    for t in (0.25, torch.tensor(0.25), torch.full((3,), 0.25), torch.full((3, 1), 0.25)):
        out = batch_time(t, x)
        assert out.shape == (3,) and out.dtype == torch.float64 and torch.all(out == 0.25)
    assert batch_time(0.5, x, dtype=torch.float32).dtype == torch.float32
    assert nb.paths.batch_time is batch_time  # the old home keeps the name
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(3,\)"):
        batch_time(torch.zeros(4), x)
    with pytest.raises(ValueError, match="t must be a finite number"):
        batch_time(float("nan"), x)
    with pytest.raises(ValueError, match="x must have a batch dimension"):
        batch_time(0.5, torch.tensor(1.0))


def test_outputs_live_in_the_checkout_unless_the_output_root_moves_them(monkeypatch, tmp_path):
    monkeypatch.delenv(runtime.OUTPUT_ENV, raising=False)
    monkeypatch.delenv(runtime.CHECKPOINT_ENV, raising=False)
    assert runtime.output_root() == runtime.ROOT
    assert runtime.build_dir() == runtime.ROOT / "build"
    assert runtime.figures_dir("cpu") == runtime.ROOT / "figures"
    assert runtime.checkpoints_dir("gpu") == runtime.ROOT / "checkpoints"
    assert runtime.metrics_dir() == runtime.ROOT / "build" / "metrics"
    monkeypatch.setenv(runtime.OUTPUT_ENV, str(tmp_path))
    assert runtime.build_dir() == tmp_path.resolve() / "build"
    assert runtime.figures_dir("cpu") == tmp_path.resolve() / "figures"
    assert runtime.checkpoints_dir("cpu") == tmp_path.resolve() / "checkpoints"
    assert runtime.checkpoints_dir("smoke") == tmp_path.resolve() / "build" / "smoke" / "checkpoints"
    assert runtime.data_dir() != tmp_path.resolve() / "data"  # data is read where it is, not moved
