"""Runs leave the checkout clean, figures are byte-stable, and each run records what makes it comparable."""
import json
import subprocess

import matplotlib
import numpy as np
import pytest
import torch

import nbhelpers as nb
from nbhelpers import layout, runtime
from tests.needs import git_checkout_problem, need
from tools import readme_figures as rf

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = runtime.ROOT


def _figure(seed: int = 0):
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.scatter(*rng.normal(size=(2, 200)), s=3)
    ax.set_title("two runs, one picture")
    return fig


def test_a_figure_saved_twice_has_the_same_bytes(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    runtime.save_figure(_figure(), a)
    runtime.save_figure(_figure(), b)  # a second, separately drawn figure with the same content
    assert a.read_bytes() == b.read_bytes()
    assert b"Software" not in a.read_bytes() and b"Matplotlib" not in a.read_bytes()
    assert runtime.save_figure(_figure(1), tmp_path / "c.png").read_bytes() != a.read_bytes()
    plt.close("all")


def test_equal_bytes_are_not_rewritten_and_no_temp_is_left(tmp_path):
    path = runtime.save_figure(_figure(), tmp_path / "f.png")
    before = path.stat().st_mtime_ns
    runtime.save_figure(_figure(), path)
    assert path.stat().st_mtime_ns == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
    with pytest.raises(ValueError, match=r"'f\.jpg'.*\.png"):
        runtime.save_figure(_figure(), tmp_path / "f.jpg")
    plt.close("all")


def test_each_run_records_its_thread_count_and_machine(monkeypatch, tmp_path):
    monkeypatch.setenv(runtime.PROFILE_ENV, "smoke")
    monkeypatch.setattr(layout, "build_dir", lambda: tmp_path)
    run = nb.setup("99_test", device="cpu", seed=1)
    run.report("x", 1.0)
    machine = json.loads(run.metrics_path.read_text())["machine"]
    assert machine["threads"] == torch.get_num_threads()
    assert machine["torch"] == torch.__version__ and machine["cpu_count"] >= 1 and machine["processor"]


def _git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def test_what_a_run_writes_is_ignored_by_git():
    problem = git_checkout_problem()
    need(not problem, f"not inside a git checkout: {problem}")
    written = ["figures/01_sdes/ou_paths_and_endpoints.png", "figures/07_mnist_cfg/anything.png",
               "build/metrics/01_sdes.json", "checkpoints/model.pt", "build/smoke/figures/01_sdes/x.png"]
    proc = _git("check-ignore", *written)
    assert proc.returncode == 0, f"git check-ignore exited with {proc.returncode}: {proc.stderr.strip()}"
    assert proc.stdout.split() == written
    gallery = [str(rf.gallery_path(n).relative_to(ROOT)) for n in rf.GALLERY]
    proc = _git("check-ignore", *gallery)
    assert proc.returncode == 1, f"git check-ignore exited with {proc.returncode} ({proc.stderr.strip()}): {proc.stdout}"
    assert proc.stdout.split() == []


def test_the_readme_gallery_is_the_committed_folder_with_its_source():
    readme = (ROOT / "README.md").read_text()
    for nb_name in rf.GALLERY:
        rel = rf.gallery_path(nb_name).relative_to(ROOT).as_posix()
        assert f"]({rel})" in readme, f"the README does not show {rel}"
        assert rf.gallery_path(nb_name).is_file()
    source = json.loads((rf.GALLERY_DIR / "source.json").read_text())
    assert set(source) == set(rf.GALLERY)
    for entry in source.values():
        assert entry["profile"] in ("cpu", "gpu") and entry["threads"] >= 1 and entry["processor"]
    table = (rf.GALLERY_DIR / "SOURCE.md").read_text()
    assert all(f"`{e['figure']}`" in table for e in source.values())


def _fake_run(root, notebook, profile="cpu"):
    figs, metrics = root / "figures", root / "metrics"
    (figs / notebook).mkdir(parents=True, exist_ok=True)
    metrics.mkdir(exist_ok=True)
    runtime.save_figure(_figure(), figs / notebook / f"{rf.GALLERY[notebook]}.png")
    machine = {"threads": 7, "processor": "test cpu", "cpu_count": 8, "torch": "x"}
    payload = {"profile": profile, "device": "cpu", "seed": 0, "machine": machine, "metrics": {}}
    (metrics / f"{notebook}.json").write_text(json.dumps(payload))
    plt.close("all")
    return figs, metrics


def test_readme_figures_copies_a_run_and_records_where_it_came_from(tmp_path):
    figs, metrics = _fake_run(tmp_path, "04_unet_images")
    gallery = tmp_path / "gallery"
    rf.refresh(["04_unet_images"], figs, metrics, gallery)
    copied = gallery / "04_unet_images" / "samples_schedules.png"
    assert copied.read_bytes() == (figs / "04_unet_images" / "samples_schedules.png").read_bytes()
    entry = json.loads((gallery / "source.json").read_text())["04_unet_images"]
    assert entry["threads"] == 7 and entry["profile"] == "cpu" and entry["processor"] == "test cpu"
    assert "| `04_unet_images/samples_schedules.png` | cpu | cpu | 7 |" in (gallery / "SOURCE.md").read_text()


def test_readme_figures_refuses_smoke_and_missing_runs_without_copying(tmp_path):
    figs, metrics = _fake_run(tmp_path, "01_sdes", profile="smoke")
    gallery = tmp_path / "gallery"
    with pytest.raises(ValueError, match="smoke run"):
        rf.refresh(["01_sdes"], figs, metrics, gallery)
    with pytest.raises(ValueError, match=r"07_mnist_cfg.*does not exist.*make notebooks NOTEBOOKS=07"):
        rf.refresh(["07_mnist_cfg"], figs, metrics, gallery)
    assert not gallery.exists()
    with pytest.raises(ValueError, match="unknown notebook '99'; valid choices: 01_sdes"):
        rf._select("99")
    assert rf.main(["--notebooks", "99"]) == 2
