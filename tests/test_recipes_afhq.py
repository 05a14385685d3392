"""AFHQ + DDPM (seed 004): Diffusion against nb.ddpm, the cosine schedule and eq. 18 from their
derivations, the data loader, and the CLI (every flag parsed and honoured, bad flags rejected,
resume after a kill)."""
import hashlib
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nbhelpers import files, runtime
from nbhelpers._checks import DataError
from nbhelpers.ddpm import DDPM
from nbhelpers.recipes import afhq
from nbhelpers.recipes.afhq import (AFHQ_CLASSES, AFHQConfig, AFHQNotFoundError, Diffusion, afhq_folder, build_parser,
                                    load_afhq, load_folder, main, make_batch_fn, make_diffusion, parse_args, process_steps)
from nbhelpers.runtime import ROOT
from nbhelpers.checkpoints import load_checkpoint
from tests.needs import need, need_module

T = 5
TINY = ["--image_size", "8", "--batch_size", "4", "--time_steps", str(T), "--unet_dim", "4", "--device", "cpu", "--no_progress"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # tiny models run faster on one thread, and a shared CPU does not stall on spinning OpenMP workers
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _write_images(folder: Path, n: int, size: int = 16, seed: int = 0, colour=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        if colour is None:
            a = (rng.random((size, size, 3)) * 255).astype(np.uint8)
        else:
            a = np.full((size, size, 3), colour, dtype=np.uint8)
        Image.fromarray(a).save(folder / f"img_{i:03d}.png")


@pytest.fixture(scope="module")
def afhq_root(tmp_path_factory) -> Path:
    """A tiny synthetic AFHQ: afhq/train/{cat,dog}/ with 12 16×16 PNGs each."""
    root = tmp_path_factory.mktemp("data") / "afhq"
    _write_images(root / "train" / "cat", 12, seed=1)
    _write_images(root / "train" / "dog", 12, seed=2)
    return root


def _tiny_net(seed=0):
    torch.manual_seed(seed)
    return make_diffusion(image_size=8, time_steps=T, unet_dim=4)


# =========================================================================== Diffusion vs nb.ddpm
def test_diffusion_buffers_are_nb_ddpm_cosine_buffers():
    d = _tiny_net()
    ref = DDPM.from_schedule("cosine", T)
    for name in DDPM.BUFFERS:
        assert torch.equal(getattr(d, name), getattr(ref, name)), name
    assert d.num_timesteps == T


def test_cosine_schedule_and_eq18_from_their_definitions():
    Tn, s = 50, 0.008
    d = Diffusion(torch.nn.Identity(), 8, 3, Tn)
    f = np.cos((np.arange(Tn + 1) / Tn + s) / (1 + s) * np.pi / 2) ** 2
    alpha = np.clip((f[1:] / f[0]) / (f[:-1] / f[0]), 0.001, 1.0)
    abar = np.cumprod(alpha)
    np.testing.assert_allclose(d.alphas.numpy(), alpha, rtol=1e-12)
    assert d.alphas[-1].item() == pytest.approx(0.001)  # f(T) = 0: the last α is the clip value
    np.testing.assert_allclose(d.alphas_cumprod.numpy(), abar, rtol=1e-12)
    # q(x_{k-1} | x_k, x0) ∝ q(x_k | x_{k-1}) q(x_{k-1} | x0): precision and mean of the product of Gaussians
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    beta = 1 - alpha
    with np.errstate(divide="ignore"):
        prec_x0 = np.where(abar_prev < 1, 1.0 / (1 - abar_prev), np.inf)  # k = 1: x_0 is known exactly
    var = 1.0 / (alpha / beta + prec_x0)
    np.testing.assert_allclose(d.posterior_variance.numpy(), var, rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(d.posterior_mean_coef2.numpy(), var * np.sqrt(alpha) / beta, rtol=1e-10)  # x_k
    np.testing.assert_allclose(d.posterior_mean_coef1[1:].numpy(), (var * np.sqrt(abar_prev))[1:] / (1 - abar_prev[1:]), rtol=1e-10)
    assert d.posterior_mean_coef1[0].item() == pytest.approx(1.0)  # k = 1: the posterior mean is x0


def test_p_losses_and_forward_match_ddpm_loss_l1():
    d = _tiny_net()
    x0 = torch.rand(6, 3, 8, 8) * 2 - 1
    ours = d(x0, generator=torch.Generator().manual_seed(4))
    theirs = d.ddpm.loss(d.model, x0, kind="l1", generator=torch.Generator().manual_seed(4))
    assert torch.equal(ours, theirs)
    # p_losses with given t and ε is the mean absolute error of the network's ε at x_t
    t = torch.tensor([1, 2, 3, 4, 5, 5])
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(5))
    x_t = d.ddpm.q_sample(x0, t, eps)
    expected = (d.model(x_t, t.float() / T) - eps).abs().mean()
    assert torch.allclose(d.p_losses(x0, t, eps), expected)
    assert torch.equal(d.q_sample(x0, t, eps), x_t)


def test_p_sample_and_loop_are_nb_ddpm_steps():
    d = _tiny_net()
    x = torch.randn(3, 3, 8, 8)
    ours = d.p_sample(x, 3, generator=torch.Generator().manual_seed(1))
    theirs = d.ddpm.p_step(d.model, x, 3, generator=torch.Generator().manual_seed(1), clip_x0=True, sigma="posterior").x_prev
    assert torch.equal(ours, theirs)
    a = d.p_sample_loop(x, generator=torch.Generator().manual_seed(2), return_steps=[0, 2, T])
    b = d.ddpm.sample(d.model, x, generator=torch.Generator().manual_seed(2), return_steps=[0, 2, T])
    assert torch.equal(a.x, b.x) and a.nfe == b.nfe == T
    assert all(torch.equal(a.trajectory[k], b.trajectory[k]) for k in (0, 2, T))
    s = d.sample(4, generator=torch.Generator().manual_seed(3))
    assert s.shape == (4, 3, 8, 8) and s.abs().max() <= 1 + 1e-5  # x̂0 clamped, last step noiseless


def test_last_reverse_step_with_the_true_noise_recovers_x0():
    # ε-oracle for one x0: ε(x_k) = (x_k − √ᾱ_k x0)/√(1−ᾱ_k); at k = 1 the step returns μ̃_1 = x0 exactly.
    x0 = torch.rand(2, 3, 8, 8) * 1.6 - 0.8
    ddpm = DDPM.from_schedule("cosine", T)

    class Oracle(torch.nn.Module):
        def forward(self, x, t):
            k = int(round(float(t[0]) * T))
            ab = ddpm.alphas_cumprod[k - 1].float()
            return (x - ab.sqrt() * x0) / (1 - ab).sqrt()

    d = Diffusion(Oracle(), 8, 3, T)
    x1 = d.q_sample(x0, 1, torch.randn_like(x0))
    assert torch.allclose(d.p_sample(x1, 1), x0, atol=1e-5)
    out = d.p_sample_loop(torch.randn(2, 3, 8, 8), generator=torch.Generator().manual_seed(0)).x
    assert torch.allclose(out, x0, atol=1e-5)


class _GaussianEps(torch.nn.Module):
    """The exact E[ε | x_k] for data x_0 ~ N(m, s² I): x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε is Gaussian with
    Cov(ε, x_k) = √(1 − ᾱ_k) and Var(x_k) = ᾱ_k s² + 1 − ᾱ_k, so E[ε | x_k] = √(1 − ᾱ_k)(x_k − √ᾱ_k m)/(ᾱ_k s² + 1 − ᾱ_k).
    Unlike a single point's ε, its x̂_0 = E[x_0 | x_k] moves with x_k, so a wrong step at k ≥ 2 shows."""

    def __init__(self, abar, m, s):
        super().__init__()
        self.abar, self.m, self.s = torch.as_tensor(np.concatenate([[1.0], abar])), m, s  # ᾱ_0 = 1 in front

    def forward(self, x, t):
        a = self.abar[torch.round(t.double() * (len(self.abar) - 1)).long()].reshape(-1, 1, 1, 1)
        return (1 - a).sqrt() * (x - a.sqrt() * self.m) / (a * self.s**2 + 1 - a)


def test_every_reverse_step_follows_eq_18_with_a_non_degenerate_eps():
    """Each step k → k − 1 of p_sample_loop, checked on its own from the state at k (seed 004 Alg. 2, eq. 18):
    x̂_0 = clamp((x_k − √(1 − ᾱ_k) ε)/√ᾱ_k, −1, 1), x_{k−1} = μ̃_k(x_k, x̂_0) + √β̃_k z, with the cosine ᾱ and
    the posterior written out here, z the generator's draws from k = T down to 2 and none at k = 1."""
    s_ = 0.008
    f = np.cos((np.arange(T + 1) / T + s_) / (1 + s_) * np.pi / 2) ** 2
    abar = np.cumprod(np.clip(f[1:] / f[:-1], 0.001, 1.0))
    ab = np.concatenate([[1.0], abar])  # ab[k] = ᾱ_k, ᾱ_0 = 1
    m, s = 0.7, 0.6
    d = Diffusion(_GaussianEps(abar, m, s), 4, 3, T)
    x_T = 2.0 * torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = d.p_sample_loop(x_T, generator=torch.Generator().manual_seed(1), return_steps=list(range(T + 1)))
    draws = torch.Generator().manual_seed(1)
    clamped = 0
    for k in range(T, 0, -1):
        x, a, a_prev = out.trajectory[k], ab[k], ab[k - 1]
        beta = 1 - a / a_prev
        eps = math.sqrt(1 - a) * (x - math.sqrt(a) * m) / (a * s**2 + 1 - a)
        x0 = (x - math.sqrt(1 - a) * eps) / math.sqrt(a)
        clamped += int((x0.abs() > 1).sum())
        x0 = x0.clamp(-1, 1)
        # q(x_{k−1} | x_k, x_0) ∝ q(x_k | x_{k−1}) q(x_{k−1} | x_0): precisions add, means weight by precision
        var = 1 / ((1 - beta) / beta + 1 / (1 - a_prev)) if k > 1 else 0.0
        mean = (math.sqrt(1 - beta) / beta * x + math.sqrt(a_prev) / (1 - a_prev) * x0) * var if k > 1 else x0
        expected = mean + math.sqrt(var) * torch.randn(x.shape, generator=draws, dtype=torch.float64) if k > 1 else mean
        torch.testing.assert_close(out.x0_preds[k], x0, atol=1e-10, rtol=0)
        torch.testing.assert_close(out.trajectory[k - 1], expected, atol=1e-10, rtol=0)
        # one p_sample from the same state, with the generator at the same place, takes the same step
        g = torch.Generator().manual_seed(5)
        z = torch.randn(x.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        torch.testing.assert_close(d.p_sample(x, k, generator=g), mean + math.sqrt(var) * z if k > 1 else mean,
                                   atol=1e-10, rtol=0)
    assert clamped > 0  # the clamp is exercised


def test_bad_loss_type_names_the_choices():
    with pytest.raises(ValueError, match="l2, l1, huber"):
        Diffusion(torch.nn.Identity(), 8, 3, T, loss_type="l3")


def test_forward_and_backward_process_frames():
    d = _tiny_net()
    x0 = torch.rand(2, 3, 8, 8) * 2 - 1
    steps = process_steps(T)
    fwd = afhq.forward_process(d, x0, steps, torch.Generator().manual_seed(0))
    eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    assert fwd.shape == (len(steps), 2, 3, 8, 8) and torch.equal(fwd[0], x0)  # 0 % is the clean image
    for frame, k in zip(fwd, steps):
        assert torch.allclose(frame, d.q_sample(x0, k, eps))  # one shared ε across the columns
    bwd = afhq.backward_process(d, fwd[-1], steps[-1], steps[::-1], torch.Generator().manual_seed(1))
    ref = d.p_sample_loop(fwd[-1], generator=torch.Generator().manual_seed(1), start_step=steps[-1])
    assert torch.equal(bwd[0], fwd[-1]) and torch.equal(bwd[-1], ref.x)


class _NoiseOracle(torch.nn.Module):
    """Answers the one noise shared by every frame of forward_process, whatever x_t and t."""

    def __init__(self, noise):
        super().__init__()
        self.noise = noise

    def forward(self, x, t):
        return self.noise


def test_x0_predictions_with_the_true_noise_give_back_the_clean_images():
    x0 = torch.rand(3, 3, 8, 8, dtype=torch.float64) * 1.8 - 0.9  # inside [−1, 1]: the clamp does nothing
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0)).double()  # forward_process's draw
    d = Diffusion(_NoiseOracle(noise), 8, 3, T)
    steps = process_steps(T)
    fwd = afhq.forward_process(d, x0, steps, torch.Generator().manual_seed(0))
    got = afhq.x0_predictions(d, fwd, steps)
    assert got.shape == fwd.shape and torch.equal(got[0], x0)  # k = 0 is returned as it is
    torch.testing.assert_close(got, x0.expand_as(got), atol=1e-9, rtol=0)
    # a predict_x0 that forgets the clamp is the caller's choice: out-of-range images come back unclamped
    wide = x0 * 3
    fwd = afhq.forward_process(d, wide, steps, torch.Generator().manual_seed(0))
    assert afhq.x0_predictions(d, fwd, steps)[1:].abs().max() <= 1.0  # the library clamps
    raw = afhq.x0_predictions(d, fwd, steps, lambda d_, x, k, e: d_.ddpm.predict_x0(x, k, e))
    torch.testing.assert_close(raw[1:], wide.expand_as(raw[1:]), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="one step per frame: got 4 steps for 5 frames"):
        afhq.x0_predictions(d, fwd, steps[:4])


def test_as_loss_fn_trains_on_the_given_p_losses():
    d = _tiny_net()
    x0 = torch.rand(4, 3, 8, 8) * 2 - 1
    t, noise = torch.tensor([1, 2, 3, T]), torch.randn(4, 3, 8, 8)
    lib = afhq.as_loss_fn(lambda diff, x, k, e: diff.p_losses(x, k, e))
    assert torch.equal(lib(d, (x0, t, noise), None), afhq.diffusion_loss(d, (x0, t, noise), None))
    seen = afhq.as_loss_fn(lambda *args: args)(d, (x0, t, noise), None)
    assert seen[0] is d and seen[1] is x0 and seen[2] is t and seen[3] is noise


def test_process_steps_at_seed_fractions():
    assert process_steps(50) == [0, 12, 25, 37, 49]
    assert process_steps(100) == [0, 25, 50, 75, 99]


# =========================================================================== data
def test_afhq_folder_accepts_split_root_and_class_folder(afhq_root):
    cat = afhq_root / "train" / "cat"
    assert afhq_folder(afhq_root / "train", "cat") == cat
    assert afhq_folder(afhq_root, "cat") == cat
    assert afhq_folder(cat, "cat") == cat
    assert afhq_folder(afhq_root / "train", "dog") == afhq_root / "train" / "dog"


def test_unknown_class_lists_the_three_domains(afhq_root):
    with pytest.raises(ValueError, match="cat, dog, wild"):
        afhq_folder(afhq_root / "train", "cow")


def test_missing_images_say_where_to_put_them(afhq_root, tmp_path):
    with pytest.raises(AFHQNotFoundError, match=r"No AFHQ 'wild' images under") as info:
        afhq_folder(afhq_root / "train", "wild")
    msg = str(info.value)
    assert str(afhq_root / "train" / "wild") in msg and "--data_path" in msg and "--download" in msg
    with pytest.raises(AFHQNotFoundError, match=r"No AFHQ 'cat' images under"):
        load_afhq(tmp_path / "empty", "cat")


def test_images_are_resized_scaled_and_cached(tmp_path):
    folder = tmp_path / "train" / "cat"
    _write_images(folder, 3, size=16, colour=(255, 0, 128))
    # a non-square image is centre-cropped: a 16×48 strip whose middle third is white
    strip = np.zeros((16, 48, 3), dtype=np.uint8)
    strip[:, 16:32] = 255
    Image.fromarray(strip).save(folder / "zz_strip.png")
    x = load_folder(folder, 8, cache=False)
    assert x.dtype == torch.uint8 and x.shape == (4, 3, 8, 8)
    assert (x[:3, 0] == 255).all() and (x[:3, 1] == 0).all() and (x[:3, 2] == 128).all()
    assert (x[3].float().mean() > 250)  # only the white centre survives the crop
    data = load_afhq(tmp_path / "train", "cat", image_size=8)
    b = data.first_batch(3)
    assert torch.allclose(b[:, 0], torch.ones(3, 8, 8)) and torch.allclose(b[:, 1], -torch.ones(3, 8, 8))
    cached = afhq.data._cache_file(afhq.data._image_files(folder), 8)
    assert cached.exists() and torch.equal(load_folder(folder, 8), x)
    cached.unlink()


def test_batches_flip_half_the_time(tmp_path):
    folder = tmp_path / "cat"
    folder.mkdir()
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[:, :3] = 255  # asymmetric: bright on the left
    Image.fromarray(img).save(folder / "a.png")
    data = load_afhq(folder, "cat", image_size=8, cache=False)
    x = data.batch(400, torch.Generator().manual_seed(0))
    assert x.min() >= -1 and x.max() <= 1
    left = x[:, 0, 0, 0] > 0
    right = x[:, 0, 0, -1] > 0
    assert torch.all(left ^ right)  # each image is the original or its mirror
    assert 0.4 < left.float().mean() < 0.6


def test_batch_fn_slices_the_global_batch(monkeypatch, afhq_root):
    data = load_afhq(afhq_root / "train", "cat", image_size=8)
    d = _tiny_net()
    whole = make_batch_fn(data, d, 6)(torch.Generator().manual_seed(3))
    parts = []
    for rank in range(2):
        monkeypatch.setattr(afhq.diffusion, "world", lambda r=rank: (r, 2))
        parts.append(make_batch_fn(data, d, 6)(torch.Generator().manual_seed(3)))
    for i in range(3):
        assert torch.equal(torch.cat([parts[0][i], parts[1][i]]), whole[i])
    monkeypatch.setattr(afhq.diffusion, "world", lambda: (0, 4))
    with pytest.raises(ValueError, match="divisible"):
        make_batch_fn(data, d, 6)


def _fake_archive(path):
    with zipfile.ZipFile(path, "w") as zf:
        for cls in AFHQ_CLASSES:
            zf.writestr(f"afhq/train/{cls}/x.png", b"png")
            zf.writestr(f"afhq/val/{cls}/y.png", b"png")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_helper_unpacks_the_archive_layout(tmp_path, monkeypatch):
    # an archive already on disk is not downloaded again; v1 unpacks to afhq/train/<class>/
    buf = tmp_path / "afhq_v1.zip"
    monkeypatch.setitem(afhq.AFHQ_SHA256, "v1", _fake_archive(buf))
    train_dir = afhq.download_afhq(tmp_path)
    assert train_dir == tmp_path / "afhq" / "train"
    assert all((train_dir / cls / "x.png").exists() for cls in AFHQ_CLASSES)
    assert afhq.AFHQ_URLS["v1"].startswith("https://")


def test_an_archive_with_another_digest_is_not_unpacked(tmp_path):
    _fake_archive(tmp_path / "afhq_v1.zip")  # not the published archive
    with pytest.raises(DataError, match=r"afhq_v1.zip .*SHA-256 .* expected 7f63dcc1.*download it again"):
        afhq.download_afhq(tmp_path)
    assert not (tmp_path / "afhq").exists()


def test_a_downloaded_archive_is_checked_before_it_is_kept(tmp_path, monkeypatch):
    import urllib.request

    class Response(io.BytesIO):
        headers: dict = {}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(b"an error page, not a zip"))
    with pytest.raises(DataError, match=r"SHA-256 .*try the download again"):
        afhq.download_afhq(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # neither the archive nor a partial file is left


def test_a_partial_download_of_a_dead_process_is_removed(tmp_path, monkeypatch):
    import urllib.request

    stale = tmp_path / f".afhq_v1.zip.{files._host()}.999999999.abcd1234.part"  # no such pid
    stale.write_bytes(b"half")
    source = tmp_path.parent / f"{tmp_path.name}-source.zip"
    monkeypatch.setitem(afhq.AFHQ_SHA256, "v1", _fake_archive(source))

    class Response(io.BytesIO):
        headers: dict = {}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Response(source.read_bytes()))
    afhq.download_afhq(tmp_path)
    assert not stale.exists() and (tmp_path / "afhq_v1.zip").read_bytes() == source.read_bytes()


def test_offline_cats_load_when_present():
    folder = runtime.data_dir() / "afhq" / "train"  # honours $NBHELPERS_DATA_DIR
    need((folder / "cat").is_dir(), f"offline AFHQ cats not in {folder / 'cat'} (set NBHELPERS_DATA_DIR to the "
                                    f"data root holding afhq/train/cat)")
    data = load_afhq(folder, "cat", image_size=32, limit=16, cache=False)
    assert data.images.shape == (16, 3, 32, 32) and data.images.dtype == torch.uint8


# =========================================================================== CLI: parsing
FLAG_VALUES = {
    "image_size": ("16", 16), "batch_size": ("8", 8), "data_class": ("dog", "dog"), "save_folder": ("out", "out"),
    "load_path": ("m.pt", "m.pt"), "data_path": ("d/train", "d/train"), "train_steps": ("7", 7), "time_steps": ("9", 9),
    "unet_dim": ("8", 8), "learning_rate": ("2e-4", 2e-4), "save_and_sample_every": ("3", 3), "device": ("cpu", "cpu"),
    "seed": ("5", 5), "fid_samples": ("50", 50), "inception_weights": ("w.pt", "w.pt"), "ema_decay": ("0.9", 0.9),
}


@pytest.mark.parametrize("flag", sorted(FLAG_VALUES))
def test_every_flag_is_parsed(flag):
    text, value = FLAG_VALUES[flag]
    cfg = parse_args([f"--{flag}", text])
    assert getattr(cfg, flag) == value
    default = AFHQConfig()
    for other in FLAG_VALUES:
        if other != flag:
            assert getattr(cfg, other) == getattr(default, other)


def test_table1_flags_all_exist_and_booleans_parse():
    dests = {a.dest for a in build_parser()._actions}
    table1 = ["image_size", "batch_size", "data_class", "save_folder", "load_path", "data_path", "train_steps", "time_steps",
              "unet_dim", "learning_rate", "save_and_sample_every", "fid", "visualize"]
    assert set(table1) <= dests
    assert parse_args(["--fid"]).fid and parse_args(["--visualize"]).visualize
    assert not parse_args(["--fid", "False"]).fid and parse_args(["--fid", "true"]).fid
    assert not parse_args([]).fid and not parse_args([]).visualize
    assert parse_args(["--download"]).download and not parse_args(["--no_progress"]).progress


@pytest.mark.parametrize("argv, expected", [
    (["--data_class", "cow"], ["'cat'", "'dog'", "'wild'"]),
    (["--device", "tpu"], ["auto", "cpu", "cuda", "mps"]),
    (["--image_size", "4"], ["image_size", ">= 8"]),
    (["--batch_size", "0"], ["batch_size", ">= 1"]),
    (["--learning_rate", "-1"], ["learning_rate", "positive"]),
    (["--fid", "maybe"], ["true", "false"]),
    (["--train_steps", "ten"], ["train_steps", "integer"]),
    (["--unet_dims", "16"], ["unrecognized arguments"]),
])
def test_bad_flags_are_rejected_with_the_valid_choices(argv, expected, capsys):
    with pytest.raises(SystemExit, match=r"^2$") as info:  # argparse's usage error
        parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    for piece in expected:
        assert piece in err


def test_missing_data_is_one_clear_error(tmp_path, capsys):
    assert main(["--data_path", str(tmp_path / "nothing"), "--save_folder", str(tmp_path / "o"), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "--data_path" in err


# =========================================================================== CLI: honoured
def _run(tmp_path, afhq_root, name, *extra):
    folder = tmp_path / name
    argv = ["--data_path", str(afhq_root / "train"), "--save_folder", str(folder), *TINY, *extra]
    assert main(argv) == 0
    return folder


def test_flags_are_honoured(tmp_path, afhq_root, capsys):
    need_module("cleanfid", "clean-fid missing: pip install -e '.[fid]'")  # --fid reports the missing weights, not the package
    out = _run(tmp_path, afhq_root, "a", "--data_class", "dog", "--train_steps", "4", "--save_and_sample_every", "2",
               "--learning_rate", "2e-3", "--seed", "3", "--fid", "--visualize", "--ema_decay", "0.9",
               "--inception_weights", str(tmp_path / "no" / "inception-2015-12-05.pt"))
    text = capsys.readouterr().out
    assert text.startswith("nbhelpers.afhq config:")  # the config is printed first
    assert f"12 dog images from {afhq_root / 'train' / 'dog'}" in text
    state = load_checkpoint(out / "model.pt")
    key = json.loads(state["key"])
    assert state["step"] == 4 and state["finished"] and len(state["losses"]) == 4
    assert key["model"]["data_class"] == "dog" and key["model"]["image_size"] == 8 and key["model"]["batch_size"] == 4
    assert key["model"]["time_steps"] == T and key["model"]["unet"]["base_channels"] == 4
    assert key["train"]["lr"] == 2e-3 and key["train"]["seed"] == 3 and key["train"]["checkpoint_every"] == 2
    assert key["train"]["ema_decay"] == 0.9 and state["ema"] is not None
    assert state["optimizer"]["param_groups"][0]["lr"] == 2e-3
    assert state["model"]["model.initial_conv.weight"].shape[0] == 4
    samples = sorted(p.name for p in out.glob("sample-*.png"))
    assert samples == ["sample-000002.png", "sample-000004.png"]  # every save_and_sample_every steps
    assert Image.open(out / samples[0]).size == (6 * 8 + 7 * 2,) * 2  # 6×6 grid of 8-px images, 2-px gaps
    assert (out / "losses.csv").read_text().count("\n") == 5 and (out / "loss.png").exists()
    assert (out / "fid.csv").read_text().split() == ["step,fid", "2,missing", "4,missing"]
    assert text.count("FID unavailable") == 1 and str(tmp_path / "no" / "inception-2015-12-05.pt") in text
    assert (out / "forward_process.png").exists() and (out / "backward_process.png").exists()
    assert json.loads((out / "config.json").read_text())["device"] == "cpu"


def test_load_path_continues_training_like_one_longer_run(tmp_path, afhq_root):
    a = _run(tmp_path, afhq_root, "a", "--train_steps", "3", "--save_and_sample_every", "3")
    b = _run(tmp_path, afhq_root, "b", "--train_steps", "5", "--save_and_sample_every", "5", "--load_path", str(a / "model.pt"))
    c = _run(tmp_path, afhq_root, "c", "--train_steps", "5", "--save_and_sample_every", "5")
    sb, sc = load_checkpoint(b / "model.pt"), load_checkpoint(c / "model.pt")
    assert sb["step"] == sc["step"] == 5
    np.testing.assert_allclose(sb["losses"].numpy(), sc["losses"].numpy(), rtol=1e-6)
    for name, p in sc["model"].items():
        assert torch.allclose(sb["model"][name], p, atol=1e-6), name
    assert not (b / "sample-000003.png").exists() and (b / "sample-000005.png").exists()


def test_seed_changes_the_run_and_a_finished_model_is_not_retrained(tmp_path, afhq_root, capsys):
    a = _run(tmp_path, afhq_root, "s0", "--train_steps", "2", "--seed", "0")
    b = _run(tmp_path, afhq_root, "s1", "--train_steps", "2", "--seed", "1")
    la, lb = load_checkpoint(a / "model.pt")["losses"], load_checkpoint(b / "model.pt")["losses"]
    assert not torch.equal(la, lb)
    capsys.readouterr()
    _run(tmp_path, afhq_root, "s0", "--train_steps", "2", "--seed", "0")
    assert "nothing to train" in capsys.readouterr().out
    # another architecture in the same folder: an error naming the difference, not a silent retrain
    assert main(["--data_path", str(afhq_root / "train"), "--save_folder", str(a), *TINY, "--unet_dim", "8", "--train_steps", "2"]) == 2
    assert "unet" in capsys.readouterr().err


def test_resume_after_kill(tmp_path, afhq_root, capsys):
    argv = ["--data_path", str(afhq_root / "train"), "--save_folder", str(tmp_path / "killed"), *TINY,
            "--train_steps", "6", "--save_and_sample_every", "2"]
    script = textwrap.dedent(f"""
        import os, signal, sys
        from nbhelpers.recipes.afhq import parse_args, train_afhq
        def die(step, loss):
            if step == 5:
                os.kill(os.getpid(), signal.SIGKILL)
        train_afhq(parse_args({argv!r}), on_step=die)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    state = load_checkpoint(tmp_path / "killed" / "model.pt")
    assert state["step"] == 4 and not state["finished"]
    capsys.readouterr()
    assert main(argv) == 0
    assert "at step 4" in capsys.readouterr().out
    ref = _run(tmp_path, afhq_root, "whole", "--train_steps", "6", "--save_and_sample_every", "2")
    resumed, whole = load_checkpoint(tmp_path / "killed" / "model.pt"), load_checkpoint(ref / "model.pt")
    assert resumed["step"] == 6 and resumed["finished"]
    np.testing.assert_allclose(resumed["losses"].numpy(), whole["losses"].numpy(), rtol=1e-5)


def test_a_second_run_into_a_save_folder_in_use_stops_before_any_output(tmp_path, live_pid):
    from nbhelpers._checks import OutputError

    save = tmp_path / "results"
    save.mkdir()
    (save / "model.pt.lock").write_text(json.dumps({"pid": live_pid, "host": files._host(), "started": "now"}))
    cfg = AFHQConfig(save_folder=str(save), data_path=str(tmp_path / "nowhere"), device="cpu", train_steps=2,
                     progress=False)
    with pytest.raises(OutputError, match=rf"{save} is in use by another run \(pid {live_pid}"):
        afhq.train_afhq(cfg, log=lambda msg: None)
    assert sorted(p.name for p in save.iterdir()) == ["model.pt.lock"]  # no config.json, no checkpoint


def test_a_stale_save_folder_lock_is_taken_over_and_removed(tmp_path):
    save = tmp_path / "results"
    save.mkdir()
    (save / "model.pt.lock").write_text(json.dumps({"pid": 999_999_999, "host": files._host(), "started": "then"}))
    cfg = AFHQConfig(save_folder=str(save), data_path=str(tmp_path / "nowhere"), device="cpu", train_steps=2,
                     progress=False)
    with pytest.raises(AFHQNotFoundError, match="nowhere"):  # the run got past the lock, to the (missing) data
        afhq.train_afhq(cfg, log=lambda msg: None)
    lock = save / "model.pt.lock"
    assert not lock.exists() or json.loads(lock.read_text())["pid"] == os.getpid()  # ours until this process exits


# =========================================================================== notebook 08: figures, settings, runs
class _StubFID:
    """An FID without Inception weights (``available=False``) or a constant one."""

    def __init__(self, value=None):
        self.available, self.value, self.reason = value is not None, value, "no weights here"

    def __call__(self, images):
        return self.value

    def describe(self, n):
        return f"FID of {n} samples"


@pytest.fixture()
def tiny_cats(afhq_root):
    return load_afhq(afhq_root / "train", "cat", image_size=8, cache=False)


def _lines(ax):
    return [(line.get_xdata(), line.get_ydata()) for line in ax.get_lines()]


def test_process_labels_name_fraction_and_step():
    assert afhq.process_labels(process_steps(50)) == ["0 % (t=0)", "25 % (t=12)", "50 % (t=25)", "75 % (t=37)",
                                                       "99 % (t=49)"]
    with pytest.raises(ValueError, match="one step per fraction: got 2 steps for 5 fractions"):
        afhq.process_labels([0, 1])


def test_schedule_figure_plots_alpha_bar_from_one_and_the_clipped_betas():
    import matplotlib.pyplot as plt

    d = Diffusion(torch.nn.Identity(), 8, 3, 50)
    fig = afhq.schedule_figure(d)
    (k, abar), = _lines(fig.axes[0])
    (k1, beta), = _lines(fig.axes[1])
    np.testing.assert_array_equal(k, np.arange(51))
    assert abar[0] == 1.0 and np.allclose(abar[1:], d.alphas_cumprod.numpy())
    assert np.allclose(beta, d.betas.numpy()) and beta[-1] == pytest.approx(0.999)  # the clip at α_T = 0.001
    plt.close(fig)


def test_batch_figure_shows_the_seeded_batch(tiny_cats):
    import matplotlib.pyplot as plt

    a, b = afhq.batch_figure(tiny_cats, seed=3, n=4), afhq.batch_figure(tiny_cats, seed=3, n=4)
    arr = [f.axes[0].get_images()[0].get_array() for f in (a, b)]
    np.testing.assert_array_equal(arr[0], arr[1])  # same seed, same flips
    assert a.axes[0].get_title() == "a training batch (random flips)"
    x = tiny_cats.batch(4, torch.Generator().manual_seed(3))  # the draw it shows: one row of four 8×8 tiles
    assert arr[0].shape == (10, 40, 3)
    np.testing.assert_allclose(arr[0][1:9, 1:9], ((x[0] + 1) / 2).permute(1, 2, 0).numpy(), atol=1e-6)
    plt.close("all")


def test_loss_figure_and_long_loss_figure_show_the_numbers_given():
    import matplotlib.pyplot as plt

    losses, per_step = list(np.linspace(1.0, 0.5, 30)), [0.9, 0.5, 0.2, 0.1, 0.05]
    fig = afhq.loss_figure(losses, per_step, batch_size=8, smooth=5)
    assert "30 steps (batch 8, T = 5)" in fig.axes[0].get_title()
    (x, y), = _lines(fig.axes[1])
    np.testing.assert_array_equal(x, [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(y, per_step)
    fig = afhq.long_loss_figure(losses, first_steps=12, smooth=5)
    marks = [l for l in fig.axes[0].get_lines() if l.get_linestyle() == "--"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [12, 12]
    plt.close("all")


def test_fid_figure_and_fid_curve_skip_missing_values():
    import matplotlib.pyplot as plt

    history = {30: 3.0, 10: 5.0, 20: None}
    fig = afhq.fid_figure(history, "t")
    (x, y), = _lines(fig.axes[0])
    assert list(x) == [10, 30] and list(y) == [5.0, 3.0]
    assert afhq.fid_figure({10: None}, "t") is None
    curve = afhq.fid_curve(history, _StubFID(1.0), 8)
    assert curve.metrics == {"fid_available": True, "fid_history": {"10": 5.0, "20": None, "30": 3.0}, "fid_final": 3.0}
    assert curve.figure is not None and "FID of 8 samples" in curve.figure.axes[0].get_title()
    curve = afhq.fid_curve(history, _StubFID(), 8)  # no weights now: no curve even from a cached history
    assert curve.figure is None and "fid_final" not in curve.metrics and "[10, 20, 30]" in curve.missing
    plt.close("all")


def test_copy_figures_and_summary_follow_the_copy_check():
    import matplotlib.pyplot as plt
    from nbhelpers.metrics.nearest import copy_check

    g = torch.Generator().manual_seed(0)
    train = torch.rand(40, 3, 8, 8, generator=g) * 2 - 1
    samples = torch.cat([train[:3], torch.rand(5, 3, 8, 8, generator=g) * 2 - 1])  # three exact copies
    chk = copy_check(samples, train, n_train=20, generator=torch.Generator().manual_seed(1))
    fig = afhq.copy_distance_figure(chk, "samples")
    assert [len(ax.containers) for ax in fig.axes] == [2, 2]  # training images and samples, on each panel
    assert [l.get_xdata()[0] for l in fig.axes[1].get_lines()] == [chk.threshold]
    assert "8 samples" in [t.get_text() for t in fig.axes[0].get_legend().get_texts()][1]
    fig = afhq.copy_pairs_figure(chk, samples, train)
    assert fig is not None
    line = afhq.copy_summary(chk)
    assert f"{chk.sample.distance.median():.3f} for samples" in line and f"near copies {chk.near_copies:.1%}" in line
    assert chk.sample.distance[:3].max() == 0  # the copies sit at distance 0
    plt.close("all")


def test_notebook_settings_per_profile(monkeypatch):
    looked = []
    monkeypatch.setattr(afhq.notebook, "find_afhq", lambda **kw: looked.append(kw))  # the data: tested in test_recipes_afhq_fetch
    s = afhq.notebook_settings("smoke")
    assert looked == [{"data_class": "cat"}]  # looked for before anything else
    assert (s.image_size, s.batch_size, s.time_steps, s.unet_dim, s.steps_1k, s.steps_long) == (16, 16, 10, 8, 20, 40)
    g = afhq.notebook_settings("gpu", steps=7)
    assert (g.image_size, g.time_steps, g.unet_dim, g.steps_1k, g.steps_long, g.n_nearest) == (32, 50, 16, 7, 10_000,
                                                                                               g.fid_samples)
    cfg = g.config(seed=3)
    assert (cfg.image_size, cfg.batch_size, cfg.time_steps, cfg.unet_dim, cfg.learning_rate, cfg.train_steps,
            cfg.save_and_sample_every, cfg.seed) == (32, 32, 50, 16, 1e-3, 7, 100, 3)
    with pytest.raises(ValueError, match="retrain"):
        afhq.notebook_settings("cpu", retrain="yes")
    with pytest.raises(ValueError, match=r"unknown profile 'auto'; valid choices: smoke, cpu, gpu"):
        afhq.notebook_settings("auto")
    monkeypatch.setattr(afhq.notebook, "count_images", lambda **kw: 320)
    assert afhq.notebook_settings("cpu", epochs=2).steps_1k == 20  # 2 passes over 320 cats at batch 32


def test_posterior_regression_recovers_eq_18():
    d = Diffusion(torch.nn.Identity(), 8, 3, 50)
    n = 200_000
    mc = afhq.posterior_regression(d, 25, x0=0.6, n=n, generator=torch.Generator().manual_seed(0))
    assert mc.coef_xt == pytest.approx(float(d.posterior_mean_coef2[24]))
    assert mc.variance == pytest.approx(float(d.posterior_variance[24]))
    # x_t has variance ≈ 1 − ᾱ_t (plus ᾱ_t·0): the slope's standard error is √(σ̃²/(n·Var x_t))
    var_xt = float(1 - d.alphas_cumprod[24])
    assert abs(mc.slope - mc.coef_xt) < 4 * math.sqrt(mc.variance / (n * var_xt))
    assert mc.residual_variance == pytest.approx(mc.variance, rel=4 * math.sqrt(2 / n))
    assert f"t = 25: slope {mc.slope:.4f} vs {mc.coef_xt:.4f}" in str(mc)
    with pytest.raises(ValueError, match=r"step must lie in 1..50, got 0"):
        afhq.posterior_regression(d, 0)


def test_loss_per_step_of_a_zero_network_is_the_mean_absolute_noise_at_every_step(tiny_cats):
    class Zero(torch.nn.Module):
        def forward(self, x, t):
            return torch.zeros_like(x)

    d = Diffusion(Zero(), 8, 3, T)
    got = afhq.loss_per_step(d, tiny_cats, torch.Generator().manual_seed(0), n=6)
    g = torch.Generator().manual_seed(0)
    x = tiny_cats.batch(6, g)
    noise = torch.randn(x.shape, generator=g)
    assert len(got) == T and all(v == pytest.approx(noise.abs().mean().item()) for v in got)
    seen = []
    afhq.loss_per_step(d, tiny_cats, torch.Generator().manual_seed(0),
                       p_losses=lambda dd, x0, t, e: seen.append(int(t[0])) or torch.tensor(0.0), n=6)
    assert seen == list(range(1, T + 1))


def test_report_lines_and_metrics_of_a_run():
    from nbhelpers.training import TrainResult

    losses = [1.0] * 100 + [0.5] * 100
    res = TrainResult(torch.nn.Identity(), None, losses, 200, 40.0)
    assert afhq.training_line(res) == ("200 steps in 40 s (5.00 steps/s); mean loss, first 100 steps 1.0000, "
                                       "last 100 steps 0.5000")
    assert afhq.training_metrics(res) == {"train_steps_1k": 200, "train_seconds_1k": 40.0, "loss_first100": 1.0,
                                          "loss_last100": 0.5}
    assert afhq.continued_line(TrainResult(torch.nn.Identity(), None, losses, 200, 9.0, resumed_from=150)) == \
        "model at 200 steps (50 steps trained here in 9 s)"
    assert afhq.continued_line(TrainResult(torch.nn.Identity(), None, losses, 200, 9.0, loaded_from_cache=True)) == \
        "model at 200 steps (cached)"


def test_a_continued_run_follows_an_uninterrupted_one(tiny_cats, tmp_path, monkeypatch):
    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    cfg = AFHQConfig(image_size=8, batch_size=4, time_steps=T, unet_dim=4, train_steps=2, save_and_sample_every=1,
                     seed=0, progress=False)
    loss_fn = afhq.as_loss_fn(lambda d, x, t, e: d.p_losses(x, t, e))
    first = afhq.train_with_fid(_tiny_net(), tiny_cats, cfg, loss_fn, _StubFID(2.5), fid_samples=2, profile="cpu")
    assert first.result.steps == 2 and first.fid_history == {1: 2.5, 2: 2.5} and first.checkpoint.exists()
    longer = afhq.continue_training(first, _tiny_net(), tiny_cats, loss_fn, 4, 2, profile="cpu")
    assert longer.steps == 4 and longer.resumed_from == 2
    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path / "whole"))
    whole = afhq.train_with_fid(_tiny_net(), tiny_cats, AFHQConfig(**{**cfg.__dict__, "train_steps": 4}), loss_fn,
                                _StubFID(), fid_samples=2, profile="cpu", desc="whole").result
    np.testing.assert_allclose(longer.losses, whole.losses, rtol=1e-5)  # resuming changes nothing


def test_score_offline_samples_scores_and_checks(tiny_cats):
    d = _tiny_net()
    scores = afhq.score_offline(d, tiny_cats.images, _StubFID(), n=3, n_train=5, seed=0, steps=7)
    assert scores.samples.shape == (3, 3, 8, 8) and scores.fid is None
    m = scores.metrics
    assert m["fid_long"] is None and m["fid_long_samples"] == 3 and m["copies/n_samples"] == 3
    assert str(scores).startswith("FID after 7 steps: not measured (no weights here)\nnearest training image:")
    scored = afhq.score_offline(d, tiny_cats.images, _StubFID(12.5), n=3, n_train=5, seed=0, steps=7)
    assert scored.fid == 12.5 and str(scored).startswith("FID after 7 steps: 12.5, FID of 3 samples")
    torch.testing.assert_close(scored.samples, scores.samples)  # same seed, same draws


def test_table1_markdown_renders_the_thirteen_flags():
    text = afhq.table1_markdown()
    assert isinstance(text, str) and text._repr_markdown_() == text
    rows = text.splitlines()
    assert rows[0] == "| flag | also accepted | default | meaning |" and len(rows) == 2 + 13
    assert rows[2].startswith("| `--image-size` | `--image_size` | 32 |")


def test_cli_example_runs_the_command_line_on_copies_of_the_images(afhq_root, tmp_path):
    ex = afhq.cli_example(afhq_root / "train" / "cat", tmp_path / "work", n_images=8)
    assert ex.returncode == 0, ex.output
    assert len(list((tmp_path / "work" / "afhq" / "train" / "cat").iterdir())) == 8
    assert "model.pt" in ex.files and "config.json" in ex.files
    text = str(ex)
    assert text.startswith("$ python -m nbhelpers.afhq --data-path ") and text.endswith(
        f"exit status 0 · files written: {', '.join(ex.files)}")


def test_the_hook_reads_no_checkpoint_back_when_it_has_nothing_to_draw(tmp_path, monkeypatch):
    """Offline (no Inception weights) and with no output folder, notebook 08's hook records the step's FID as
    unavailable without loading the checkpoint it cannot use; with weights it loads it and scores."""
    import nbhelpers.recipes.afhq.trainer as trainer

    d = make_diffusion(image_size=8, time_steps=10, unet_dim=4)
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(b"a checkpoint")  # never read below
    loads = []
    monkeypatch.setattr(trainer, "load_checkpoint", lambda *a, **k: loads.append(a) or pytest.fail("read back"))
    hook = trainer.SampleAndScore(d, ckpt, every=10, fid=_StubFID(None), fid_samples=4)
    hook(10, 0.5)
    hook(15, 0.5)  # not a multiple of `every`: nothing at all
    assert loads == [] and hook.fid_history == {10: None}
    assert json.loads(hook.fid_path.read_text()) == {"10": None}
    scored = trainer.SampleAndScore(d, ckpt, every=10, fid=_StubFID(7.0), fid_samples=4)
    with pytest.raises(pytest.fail.Exception, match="read back"):
        scored(20, 0.5)  # an FID it can compute: the weights are read
