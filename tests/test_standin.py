"""The built-in stand-ins: deterministic, pictures rather than noise, used only by smoke runs without data."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

import nbhelpers as nb
from nbhelpers import data, runtime, standin
from nbhelpers.recipes import afhq


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    """An empty data root and a fresh output root; the profile comes from the test, not the environment."""
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("NBHELPERS_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.delenv("NBHELPERS_PROFILE", raising=False)
    monkeypatch.setattr(runtime, "_ACTIVE_RUN", None)
    return tmp_path


def test_digits_are_deterministic_and_balanced():
    a, la = standin.digit_images(200, seed=3)
    b, lb = standin.digit_images(200, seed=3)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert a.shape == (200, 28, 28) and a.dtype == np.uint8
    assert np.bincount(la, minlength=10).tolist() == [20] * 10


def test_digits_are_centred_strokes_a_nearest_centroid_classifier_can_tell_apart():
    x, y = standin.digit_images(1000, seed=0)
    xt, yt = standin.digit_images(500, seed=1)
    x, xt = x.reshape(len(x), -1) / 255.0, xt.reshape(len(xt), -1) / 255.0
    # mostly black with white strokes, the ink inside the middle 20×20 like MNIST
    assert 0.08 < x.mean() < 0.25
    frame = np.ones((28, 28), bool)
    frame[4:24, 4:24] = False
    assert x.reshape(-1, 28, 28)[:, frame].mean() < 0.02
    centroids = np.stack([x[y == k].mean(0) for k in range(10)])
    pred = ((xt[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (pred == yt).mean() > 0.8  # ten distinct shapes, not noise (noise would give ~0.1)


def test_cats_are_smooth_pictures_not_noise():
    c = standin.cat_images(8).astype(float)
    assert c.shape == (8, 64, 64, 3)
    step = np.abs(np.diff(c, axis=2)).mean()
    shuffled = np.random.default_rng(0).permuted(c.reshape(8, -1, 3), axis=1).reshape(c.shape)
    assert step < 0.15 * np.abs(np.diff(shuffled, axis=2)).mean()
    assert np.array_equal(standin.cat_images(2), standin.cat_images(2))


def test_written_files_are_the_same_bytes_everywhere(tmp_path, monkeypatch):
    digests = []
    for k in range(2):
        monkeypatch.setenv("NBHELPERS_OUTPUT_DIR", str(tmp_path / f"out{k}"))
        root = standin.ensure_mnist()
        digests.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (root / "MNIST" / "raw").iterdir()})
    assert digests[0] == digests[1] and len(digests[0]) == 4
    imgs = data.read_idx(root / "MNIST" / "raw" / "t10k-images-idx3-ubyte.gz")
    assert imgs.shape == (standin.MNIST_COUNTS["test"], 28, 28)


def test_a_smoke_run_without_mnist_uses_the_stand_in_and_says_so(no_data, capsys):
    run = nb.setup("04_unet_images", device="cpu", profile="smoke")
    train = data.load_mnist("train")
    test = data.load_mnist("test")
    out = capsys.readouterr().out
    assert out.count("STAND-IN DATA: MNIST") == 1  # one banner per run and data set
    assert str(no_data / "data" / "MNIST" / "raw") in out
    assert train.name == "MNIST-train (stand-in)" and len(train) == 12000 and len(test) == 10000
    assert train.images.min() == -1 and train.images.max() == 1 and train.num_classes == 10
    assert json.loads(run.metrics_path.read_text())["metrics"]["data"] == "stand-in"
    assert not (no_data / "data").exists()  # nothing downloaded, nothing written into the data root


@pytest.mark.parametrize("profile", ["cpu", None])
def test_outside_a_smoke_run_a_missing_mnist_is_downloaded_not_replaced(no_data, monkeypatch, profile):
    def offline(root=None):
        raise data.MNISTNotFoundError(f"MNIST not found under {root}")

    monkeypatch.setattr(data, "download_mnist", offline)
    if profile is not None:
        nb.setup("04_unet_images", device="cpu", profile=profile)
    with pytest.raises(data.MNISTNotFoundError, match="MNIST not found under"):  # the download's error, no stand-in
        data.load_mnist("test")


def test_real_data_wins_over_the_stand_in(no_data, monkeypatch):
    raw = no_data / "data" / "MNIST" / "raw"
    imgs, labels = standin.digit_images(20, seed=9)  # any valid IDX pair stands for "the real files"
    raw.mkdir(parents=True)
    (raw / "t10k-images-idx3-ubyte.gz").write_bytes(standin._idx_bytes(imgs))
    (raw / "t10k-labels-idx1-ubyte.gz").write_bytes(standin._idx_bytes(labels))
    run = nb.setup("04_unet_images", device="cpu", profile="smoke")
    test = data.load_mnist("test")
    assert test.name == "MNIST-test" and len(test) == 20
    assert run.metrics["data"] == "real"


def test_a_smoke_run_without_afhq_uses_stand_in_cats(no_data, capsys):
    run = nb.setup("08_afhq_ddpm", device="cpu", profile="smoke")
    cats = afhq.load_afhq(data_class="cat", image_size=16, limit=40)
    assert cats.images.shape == (40, 3, 16, 16) and cats.images.dtype == torch.uint8
    assert standin.is_standin(cats.folder)
    assert "STAND-IN DATA: AFHQ" in capsys.readouterr().out
    assert run.metrics["data"] == "stand-in"
    assert afhq.count_images(data_class="cat") == standin.AFHQ_COUNT


def test_a_model_trained_on_a_stand_in_is_cached_apart():
    key = {"unet": "x", "data": "MNIST-train"}
    assert standin.mark_key(key, "MNIST-train") is key
    assert standin.mark_key(key, "MNIST-train (stand-in)") == {**key, "data_source": "stand-in"}
    assert standin.mark_key(key, standin.standin_root() / "afhq" / "train" / "cat")["data_source"] == "stand-in"
    assert not standin.is_standin(runtime.ROOT / "data" / "afhq")
