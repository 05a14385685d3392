"""FID with clean-fid (Parmar et al. 2022, "clean" mode), imported lazily; offline it records a miss.

    FID = ‖μ_g − μ_r‖² + tr Σ_g + tr Σ_r − 2 tr (Σ_g^{1/2} Σ_r Σ_g^{1/2})^{1/2}

between Gaussians fitted to the 2048-d Inception-v3 pool features of generated images (g) and of
reference images (r). :class:`FID` scores generated samples against a fixed reference set — for
AFHQ, the training images at the model's resolution — and states both sample counts.

Features come from clean-fid's own pieces: ``cleanfid.resize.build_resizer("clean")`` (PIL bicubic
to 299×299 on float pixels) and its TorchScript Inception ``cleanfid.inception_torchscript.InceptionV3W``.
The Inception weights (``inception-2015-12-05.pt``, 95 MB) are looked for, in order, at the
``weights`` argument, at ``$NBHELPERS_INCEPTION_WEIGHTS`` (a file or a folder holding it) and at
``build/fid/``; failing that, one download into ``build/fid/`` is tried. The file is TorchScript,
i.e. code that runs when loaded, so it is used only when its SHA-256 is the published one
(:data:`INCEPTION_SHA256`) and neither it nor its folder is world-writable (clean-fid's own
``/tmp`` download is therefore not used). When
clean-fid is not installed (``pip install 'nbhelpers[fid]'``) or the weights cannot be had, FID
says so **once** and every score is ``None`` (recorded as missing); the caller carries on.

Tests inject ``feature_fn`` (uint8 images → features) to check the plumbing without Inception.
"""
from __future__ import annotations

import hashlib
import os
import socket
import stat
import urllib.request
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .._checks import DataError, check_sha256
from ..files import atomic_write_bytes
from ..layout import build_dir
from .images import feature_statistics, frechet_distance

__all__ = ["FID", "INCEPTION_FILE", "INCEPTION_ENV", "INCEPTION_SHA256", "inception_weights", "inception_candidates",
           "check_inception_file", "fid_from_features", "to_uint8"]

INCEPTION_FILE = "inception-2015-12-05.pt"
INCEPTION_ENV = "NBHELPERS_INCEPTION_WEIGHTS"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"
INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
"""SHA-256 of the file at ``INCEPTION_URL`` (95,607,719 bytes), as pinned by k-diffusion and others."""
_verified: set[tuple[str, int, int]] = set()

FeatureFn = Callable[[torch.Tensor], np.ndarray]
_said: set[str] = set()


def _say_once(key: str, message: str) -> None:
    """Print ``message`` the first time ``key`` is seen in this process."""
    if key not in _said:
        _said.add(key)
        print(message, flush=True)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [−1, 1] (float) → uint8 in [0, 255] on the CPU; uint8 input is passed through."""
    if images.dtype == torch.uint8:
        return images.detach().cpu()
    return ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


def fid_from_features(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    """FID between two ``(N, d)`` feature sets (Gaussian fits, then :func:`frechet_distance`)."""
    return frechet_distance(*feature_statistics(features_a), *feature_statistics(features_b))


def _candidates(weights: str | Path | None) -> list[Path]:
    out: list[Path] = []
    for item in (weights, os.environ.get(INCEPTION_ENV, "").strip() or None):
        if item:
            p = Path(item).expanduser()
            out.append(p / INCEPTION_FILE if p.is_dir() or p.suffix != ".pt" else p)
    out.append(build_dir() / "fid" / INCEPTION_FILE)
    return out


def check_inception_file(path: Path) -> Path:
    """Refuse to use ``path`` as TorchScript unless it is safe: not in (or itself) a world-writable
    place, and with the published SHA-256. Raises :class:`DataError` naming the file and the remedy."""
    path = Path(path)
    for target, label in ((path.parent, "folder"), (path, "file")):
        mode = target.stat().st_mode
        if mode & stat.S_IWOTH:
            raise DataError(f"refusing to load the Inception weights {path}: its {label} {target} is world-writable, "
                            f"so anyone could have replaced this executable model file; copy a verified file to "
                            f"{build_dir() / 'fid'} or point ${INCEPTION_ENV} at a private folder")
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _verified:
        check_sha256(path, INCEPTION_SHA256, what="Inception weights for FID",
                     remedy=f"delete it and download it again from {INCEPTION_URL}")
        _verified.add(key)
    return path


def inception_candidates(weights: str | Path | None = None) -> list[Path]:
    """The files the Inception weights are looked for at, in order: ``weights``,
    ``$NBHELPERS_INCEPTION_WEIGHTS`` (a file, or a folder holding ``inception-2015-12-05.pt``) and
    ``build/fid/``. clean-fid's own download folder (``/tmp``) is not among them: anyone can write there,
    and the file is executable TorchScript."""
    return _candidates(weights)


def inception_weights(weights: str | Path | None = None, download: bool = True, timeout: float = 20.0) -> tuple[Path | None, str]:
    """``(path, "")`` of the Inception weights, or ``(None, reason)`` when they cannot be had.

    Looks at ``weights``, ``$NBHELPERS_INCEPTION_WEIGHTS`` and ``build/fid/``; otherwise downloads
    once into ``build/fid/`` (``download=True``, ``timeout`` seconds). An explicitly named file that
    does not exist is a miss (no download replaces it). A file that is found but fails
    :func:`check_inception_file` (wrong SHA-256, world-writable place) raises :class:`DataError`;
    a download is checked before it is written.
    """
    cands = _candidates(weights)
    explicit = weights is not None or bool(os.environ.get(INCEPTION_ENV, "").strip())
    for p in cands:
        if p.is_file():
            return check_inception_file(p), ""
    if explicit:
        return None, f"no Inception weights at {cands[0]}"
    target = cands[-1]
    if not download:
        return None, f"no Inception weights at {target} and downloading is off"
    try:
        with urllib.request.urlopen(INCEPTION_URL, timeout=timeout) as response:
            data = response.read()
    except (OSError, socket.timeout, ValueError) as exc:  # URLError is an OSError
        return None, f"could not download them from {INCEPTION_URL} ({type(exc).__name__}: {exc})"
    digest = hashlib.sha256(data).hexdigest()
    if digest != INCEPTION_SHA256:
        return None, (f"the download from {INCEPTION_URL} has SHA-256 {digest}, not the published {INCEPTION_SHA256}; "
                      f"it was not saved")
    atomic_write_bytes(target, data)
    return target, ""


def _clean_fid_feature_fn(path: Path, device: torch.device, batch_size: int) -> FeatureFn:
    """clean-fid's "clean" features: PIL bicubic resize to 299 on float pixels, then its Inception."""
    from cleanfid.fid import get_batch_features
    from cleanfid.inception_torchscript import InceptionV3W
    from cleanfid.resize import build_resizer

    if path.name != INCEPTION_FILE:
        raise ValueError(f"clean-fid loads the Inception weights by their file name; rename {path} to {INCEPTION_FILE}")
    model = InceptionV3W(str(path.parent), download=False).to(device).eval()
    resize = build_resizer("clean")

    def features(images: torch.Tensor) -> np.ndarray:
        out = []
        for start in range(0, images.shape[0], batch_size):
            chunk = images[start:start + batch_size].permute(0, 2, 3, 1).numpy()  # (B, H, W, 3) uint8
            batch = torch.from_numpy(np.stack([resize(img) for img in chunk]).transpose(0, 3, 1, 2))
            out.append(get_batch_features(batch, model, device))
        return np.concatenate(out)

    return features


class FID:
    """FID of generated images against a fixed reference set (clean-fid features, see module docstring).

    ``reference``: images ``(N, 3, H, W)``, uint8 or float in [−1, 1] — for AFHQ the training images
    at the model's resolution. ``FID(...)(samples)`` returns the score or ``None`` when FID is
    unavailable (the reason is printed once). ``feature_fn`` replaces Inception (tests).
    """

    def __init__(
        self,
        reference: torch.Tensor,
        *,
        weights: str | Path | None = None,
        device: str | torch.device = "cpu",
        feature_fn: FeatureFn | None = None,
        download: bool = True,
        batch_size: int = 100,
    ) -> None:
        if reference.ndim != 4 or reference.shape[1] != 3:
            raise ValueError(f"reference must be images of shape (N, 3, H, W), got {tuple(reference.shape)}")
        if reference.shape[0] < 2:
            raise ValueError("reference needs at least 2 images")
        self.reference = to_uint8(reference)
        self.weights = weights
        self.device = torch.device(device)
        self.download = download
        self.batch_size = batch_size
        self._feature_fn = feature_fn
        self._tried = feature_fn is not None
        self.reason = ""
        self._ref_stats: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def n_reference(self) -> int:
        return int(self.reference.shape[0])

    @property
    def resolution(self) -> int:
        return int(self.reference.shape[-1])

    @property
    def available(self) -> bool:
        """Whether scores can be computed; the first call looks for clean-fid and the weights."""
        if not self._tried:
            self._tried = True
            try:
                import cleanfid  # noqa: F401
            except ImportError:
                self.reason = "clean-fid is not installed (pip install 'nbhelpers[fid]')"
            else:
                try:
                    path, why = inception_weights(self.weights, download=self.download)
                except DataError as exc:  # a damaged or unsafe file: say so (once) and carry on without FID
                    path, why = None, str(exc)
                if path is None:
                    self.reason = (f"Inception weights unavailable: {why}. Put {INCEPTION_FILE} in build/fid/ "
                                   f"or point ${INCEPTION_ENV} (or the weights argument) at it")
                else:
                    self._feature_fn = _clean_fid_feature_fn(path, self.device, self.batch_size)
            if self._feature_fn is None:
                _say_once(self.reason, f"FID unavailable — {self.reason}; FID is recorded as missing and the run carries on.")
        return self._feature_fn is not None

    def features(self, images: torch.Tensor) -> np.ndarray:
        """Feature matrix ``(N, d)`` of images (uint8 or [−1, 1])."""
        if not self.available:
            raise RuntimeError(f"FID unavailable: {self.reason}")
        return np.asarray(self._feature_fn(to_uint8(images)), dtype=np.float64)  # type: ignore[misc]

    def __call__(self, samples: torch.Tensor) -> float | None:
        """FID of ``samples`` (N ≥ 2 images like the reference) against the reference set, or ``None``."""
        if samples.ndim != 4 or samples.shape[1:] != self.reference.shape[1:]:
            raise ValueError(f"samples must have shape (N, {', '.join(map(str, self.reference.shape[1:]))}), got {tuple(samples.shape)}")
        if not self.available:
            return None
        if self._ref_stats is None:
            self._ref_stats = feature_statistics(self.features(self.reference))
        return frechet_distance(*feature_statistics(self.features(samples)), *self._ref_stats)

    def describe(self, n_samples: int) -> str:
        """"FID (n generated vs N training images at R×R, clean-fid)" — the label for plots and logs."""
        r = self.resolution
        return f"FID ({n_samples} generated vs {self.n_reference} training images at {r}×{r}, clean-fid)"
