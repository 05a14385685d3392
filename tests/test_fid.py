"""FID plumbing: the Fréchet computation with injected features (closed forms), the offline
message printed once, and FID recorded as missing."""
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from nbhelpers import runtime
from nbhelpers.metrics import fid as fidmod
from nbhelpers.metrics.fid import FID, fid_from_features, inception_weights, to_uint8
from tests.needs import need_module

CLEAN_FID = "clean-fid missing: pip install -e '.[fid]'"


def _mean_colour(images: torch.Tensor) -> np.ndarray:
    """Injected features: the mean of each channel, in [0, 255] units (3-d)."""
    return images.double().mean(dim=(2, 3)).numpy()


def _images(n, colour_sd=20.0, offset=0.0, seed=0, size=4):
    g = torch.Generator().manual_seed(seed)
    base = 128 + offset + colour_sd * torch.randn(n, 3, 1, 1, generator=g)
    return base.expand(n, 3, size, size).round().clamp(0, 255).to(torch.uint8)


@pytest.fixture(autouse=True)
def _fresh_messages(monkeypatch):
    monkeypatch.setattr(fidmod, "_said", set())


def test_fid_of_a_set_against_itself_is_zero():
    ref = _images(200)
    fid = FID(ref, feature_fn=_mean_colour)
    assert fid(ref) == pytest.approx(0.0, abs=1e-6)


def test_fid_of_a_shift_is_the_squared_shift():
    # Same covariance, means differing by δ in every coordinate: FID = ‖δ‖² = 3 δ².
    ref = _images(300, offset=-30)
    shifted = (ref.int() + 10).to(torch.uint8)
    fid = FID(ref, feature_fn=_mean_colour)
    assert fid(shifted) == pytest.approx(3 * 10.0**2, rel=1e-9)


def test_fid_matches_the_gaussian_closed_form():
    # Diagonal covariances: FID = ‖μ₁ − μ₂‖² + Σ_i (σ₁ᵢ − σ₂ᵢ)²; features injected directly.
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 3))
    a = a - a.mean(0)
    a = a @ np.linalg.inv(np.linalg.cholesky(np.cov(a, rowvar=False))).T  # sample mean 0, sample covariance I exactly
    s1, s2, mu = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5]), np.array([1.0, -2.0, 0.0])
    f1, f2 = a * s1, a[::-1] * s2 + mu
    expected = float(mu @ mu + ((s1 - s2) ** 2).sum())  # = 5 + 4 + 1 + 0
    assert fid_from_features(f1, f2) == pytest.approx(expected, rel=1e-9)


def test_fid_agrees_with_clean_fid_frechet_distance():
    cleanfid = need_module("cleanfid.fid", CLEAN_FID)
    rng = np.random.default_rng(1)
    f1, f2 = rng.standard_normal((500, 8)), 0.7 * rng.standard_normal((400, 8)) + 0.3
    mine = fid_from_features(f1, f2)
    theirs = cleanfid.frechet_distance(f1.mean(0), np.cov(f1, rowvar=False), f2.mean(0), np.cov(f2, rowvar=False))
    assert mine == pytest.approx(float(theirs), rel=1e-6)


def test_float_images_are_scored_like_their_uint8_version():
    ref = _images(100)
    as_float = ref.float() / 127.5 - 1.0
    assert torch.equal(to_uint8(as_float), ref)
    fid = FID(as_float, feature_fn=_mean_colour)
    assert fid(ref) == pytest.approx(0.0, abs=1e-6)


class _FakeInception(torch.nn.Module):
    """Stands in for clean-fid's InceptionV3W (no weights, no network): records its arguments and every
    batch, and returns as features each channel's mean and the pixel at (row 200, column 50)."""

    made: list = []

    def __init__(self, path, download=True, resize_inside=False):
        super().__init__()
        self.args, self.batches = (path, download, resize_inside), []
        _FakeInception.made.append(self)

    def forward(self, x):
        assert x.shape[1:] == (3, 299, 299)  # what the real network asserts: resized outside it
        self.batches.append(x.clone())
        return torch.cat([x.mean(dim=(2, 3)), x[:, :, 200, 50]], dim=1)


def _clean_resize(img):
    """clean-fid's "clean" resize, written out: each channel as float32 through PIL bicubic to 299×299, clipped to [0, 255]."""
    from PIL import Image

    chans = [np.asarray(Image.fromarray(img[:, :, c].astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))
             for c in range(3)]
    return np.stack(chans, axis=0).clip(0, 255)  # (3, 299, 299)


def test_clean_fid_features_resize_each_image_and_run_the_network_in_batches(monkeypatch, tmp_path):
    need_module("cleanfid.fid", CLEAN_FID)
    import cleanfid.inception_torchscript

    monkeypatch.setattr(cleanfid.inception_torchscript, "InceptionV3W", _FakeInception)
    monkeypatch.setattr(_FakeInception, "made", [])
    with pytest.raises(ValueError, match=r"rename .*other\.pt to inception-2015-12-05\.pt"):
        fidmod._clean_fid_feature_fn(tmp_path / "other.pt", torch.device("cpu"), 3)
    fn = fidmod._clean_fid_feature_fn(tmp_path / fidmod.INCEPTION_FILE, torch.device("cpu"), 3)
    (net,) = _FakeInception.made
    assert net.args == (str(tmp_path), False, False) and not net.training  # the file given, never a download
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (7, 3, 6, 5), generator=g, dtype=torch.uint8)
    images[4] = torch.tensor([10, 128, 250], dtype=torch.uint8)[:, None, None]  # a flat colour stays flat
    feats = fn(images)
    assert [b.shape[0] for b in net.batches] == [3, 3, 1]  # batch_size images at a time, in order
    seen = torch.cat(net.batches).double()
    assert torch.equal(seen[4], torch.tensor([10.0, 128.0, 250.0])[:, None, None].expand(3, 299, 299).double())
    reference = np.stack([_clean_resize(img.permute(1, 2, 0).numpy()) for img in images])
    np.testing.assert_allclose(seen.numpy(), reference, rtol=0, atol=1e-3)
    expected = np.concatenate([reference.mean(axis=(2, 3)), reference[:, :, 200, 50]], axis=1)
    assert feats.shape == (7, 6)
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-3)
    # FID.features passes float images through to_uint8 first: the same features as their uint8 version
    fid = FID(images, feature_fn=fn)
    np.testing.assert_allclose(fid.features(images.float() / 127.5 - 1.0), feats, rtol=0, atol=1e-9)


def test_describe_states_the_sample_counts():
    fid = FID(_images(50, size=8), feature_fn=_mean_colour)
    text = fid.describe(1000)
    assert "1000 generated" in text and "50 training images" in text and "8×8" in text


def test_shape_mismatch_is_a_clear_error():
    fid = FID(_images(10, size=8), feature_fn=_mean_colour)
    with pytest.raises(ValueError, match="samples must have shape"):
        fid(_images(10, size=4))
    with pytest.raises(ValueError, match="reference must be images"):
        FID(torch.zeros(4, 1, 8, 8))


def test_offline_says_so_once_and_records_missing(tmp_path, capsys):
    missing = tmp_path / "nowhere" / "inception-2015-12-05.pt"
    ref = _images(10)
    a = FID(ref, weights=missing)
    b = FID(ref, weights=missing)
    assert a(ref) is None and a(ref) is None and b(ref) is None
    assert not a.available
    out = capsys.readouterr().out
    assert out.count("FID unavailable") == 1
    assert str(missing) in out and "NBHELPERS_INCEPTION_WEIGHTS" in out and "missing" in out


def test_failed_download_is_reported_not_raised(monkeypatch, tmp_path, capsys):
    need_module("cleanfid", CLEAN_FID)
    monkeypatch.delenv(fidmod.INCEPTION_ENV, raising=False)
    monkeypatch.setattr(fidmod, "build_dir", lambda: tmp_path)
    monkeypatch.setattr(fidmod, "_candidates", lambda w: [tmp_path / "fid" / fidmod.INCEPTION_FILE, tmp_path / "x" / fidmod.INCEPTION_FILE])
    monkeypatch.setattr(fidmod, "INCEPTION_URL", "http://127.0.0.1:9/inception-2015-12-05.pt")  # refused at once
    path, why = inception_weights(timeout=5)
    assert path is None and "could not download" in why
    assert FID(_images(5))(_images(5)) is None
    assert capsys.readouterr().out.count("FID unavailable") == 1


def test_local_weights_from_the_environment_are_found(monkeypatch, tmp_path):
    w = tmp_path / fidmod.INCEPTION_FILE
    w.write_bytes(b"stand-in")
    monkeypatch.setattr(fidmod, "INCEPTION_SHA256", hashlib.sha256(b"stand-in").hexdigest())
    monkeypatch.setenv(fidmod.INCEPTION_ENV, str(tmp_path))
    assert inception_weights(download=False) == (w, "")
    monkeypatch.setenv(fidmod.INCEPTION_ENV, str(w))
    assert inception_weights(download=False) == (w, "")


def test_without_clean_fid_it_says_how_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cleanfid", None)  # import fails
    assert FID(_images(5))(_images(5)) is None
    assert "pip install 'nbhelpers[fid]'" in capsys.readouterr().out


def test_weights_with_another_digest_are_refused_and_fid_says_why(monkeypatch, tmp_path, capsys):
    w = tmp_path / fidmod.INCEPTION_FILE
    w.write_bytes(b"not the published network")
    monkeypatch.setenv(fidmod.INCEPTION_ENV, str(w))
    with pytest.raises(fidmod.DataError, match=r"SHA-256 .* expected f58cb9b6.*delete it and download it again"):
        inception_weights(download=False)
    need_module("cleanfid", CLEAN_FID)
    assert FID(_images(5), weights=w)(_images(5)) is None  # FID is recorded as missing, with the reason
    out = capsys.readouterr().out
    assert str(w) in out and "SHA-256" in out


def test_weights_in_a_world_writable_folder_are_refused(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    w = shared / fidmod.INCEPTION_FILE
    w.write_bytes(b"stand-in")
    monkeypatch.setattr(fidmod, "INCEPTION_SHA256", hashlib.sha256(b"stand-in").hexdigest())
    shared.chmod(0o777)
    with pytest.raises(fidmod.DataError, match=r"world-writable.*private folder"):
        inception_weights(weights=w, download=False)
    shared.chmod(0o755)
    w.chmod(0o666)
    with pytest.raises(fidmod.DataError, match=r"its file .* is world-writable"):
        inception_weights(weights=w, download=False)
    w.chmod(0o644)
    assert inception_weights(weights=w, download=False) == (w, "")


def test_tmp_is_not_a_place_weights_are_looked_for(monkeypatch):
    # clean-fid downloads its TorchScript into /tmp, which anyone can write. The project's own folders
    # may themselves lie under /tmp (a clone there, or this suite's temporary output root), so compare
    # against them rather than against the string "/tmp".
    monkeypatch.delenv(fidmod.INCEPTION_ENV, raising=False)
    cands = fidmod.inception_candidates(None)
    assert cands == [runtime.build_dir() / "fid" / fidmod.INCEPTION_FILE]
    shared = {Path(d).resolve() for d in ("/tmp", "/var/tmp", "/dev/shm", tempfile.gettempdir())}
    own = (runtime.ROOT.resolve(), runtime.output_root().resolve())
    for p in (c.resolve() for c in cands):
        assert p.parent not in shared, p  # never a file lying directly in a shared temp folder
        if not any(p.is_relative_to(r) for r in own):
            assert not any(p.is_relative_to(s) for s in shared), p


def test_inception_candidates_list_the_documented_places_in_order(tmp_path, monkeypatch):
    monkeypatch.setenv(fidmod.INCEPTION_ENV, str(tmp_path))
    got = fidmod.inception_candidates(tmp_path / "mine.pt")
    assert got[0] == tmp_path / "mine.pt"
    assert got[1] == tmp_path / fidmod.INCEPTION_FILE  # a folder in the variable: the file inside it
    assert got[2].parts[-2:] == ("fid", fidmod.INCEPTION_FILE) and len(got) == 3
