"""AFHQ cats with DDPM (seed 004, sections 4–5): the data, the seed's ``Diffusion`` class, a trainer CLI.

    python -m nbhelpers.afhq --data-path <data>/afhq/train --data-class cat --save-folder results \\
        --time-steps 50 --train-steps 10000 --image-size 32 --batch-size 32 --learning-rate 1e-3 --unet-dim 16
    torchrun --nproc_per_node 4 -m nbhelpers.afhq <same flags>       # DistributedDataParallel

(also installed as the console script ``nbhelpers-afhq``). The assignment's underscored spellings
(``--image_size``, ``--fid True``) work too; an expected failure is one ``error:`` line and exit status 2.

Direction, as in :mod:`nbhelpers.ddpm`: integer step k, k = 0 data and k = T noise; the network
receives the float t = k / T. :class:`Diffusion` is a thin layer over :class:`nbhelpers.ddpm.DDPM` with the method names of the
seed's starter code (``q_sample``, ``p_losses``, ``p_sample``, ``p_sample_loop``, ``sample``): the
buffers, the forward process and the reverse step are ``nb.ddpm``'s.

Data: the real AFHQ layout ``afhq/{train,val}/{cat,dog,wild}/``. The chosen domain is decoded once,
resized to ``image_size``, cached as one uint8 tensor under ``build/cache/afhq/`` and held on the
training device; a batch is an index draw plus a random horizontal flip, scaled to [−1, 1].
``batch_size`` is the global batch: under ``torchrun`` every rank draws the same global batch
(same seed) and keeps its slice, so a run on N processes follows a 1-process run step for step.
"""
from __future__ import annotations

import argparse
import copy
import csv
import hashlib
import io
import json
import math
import os
import sys
import tempfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import dryrun
from ._checks import DataError, check_int, check_sha256
from .cli import HelpFormatter, Switch, flag, int_at_least, invoked_name, positive_float
from .ddpm import DDPM, SampleResult
from .runtime import (FolderLock, atomic_write_bytes, build_dir, data_dir, get_device, remove_stale_temps, save_figure,
                      seed_everything, temp_path)
from .training import (CHECKPOINT_FORMAT, CheckpointError, TrainConfig, TrainResult, _key_json, load_checkpoint,
                       save_checkpoint, train, unwrap, world)

__all__ = [
    "AFHQ_CLASSES", "AFHQ_URLS", "AFHQNotFoundError", "AFHQImages", "afhq_folder", "download_afhq", "count_images",
    "load_afhq",
    "Diffusion", "LOSS_TYPES", "afhq_unet_config", "make_diffusion", "make_batch_fn", "diffusion_loss",
    "PROCESS_FRACTIONS", "process_steps", "forward_process", "backward_process", "plot_process", "save_image_grid",
    "AFHQConfig", "AFHQResult", "TABLE1_FLAGS", "build_parser", "table1", "parse_args", "check_save_folder",
    "train_key", "train_config", "train_afhq", "main",
    "SampleAndScore", "sample_images", "AFHQ_SHA256",
]

AFHQ_CLASSES: tuple[str, ...] = ("cat", "dog", "wild")
AFHQ_URLS: dict[str, str] = {
    # StarGAN v2's official links (clovaai/stargan-v2, download.sh); v1 has train/ and val/.
    "v1": "https://www.dropbox.com/s/t9l9o3vsx2jai3z/afhq.zip?dl=1",
    "v2": "https://www.dropbox.com/s/vkzjokiwof5h8w6/afhq_v2.zip?dl=1",
}
AFHQ_SHA256: dict[str, str | None] = {
    # SHA-256 of the published archives, checked before unpacking. v1 as pinned by uvcgan2's
    # scripts/download_dataset.sh for this same Dropbox link; no published digest is known for v2,
    # so a v2 download is unpacked with its digest printed (compare it with a trusted source).
    "v1": "7f63dcc14ef58c0e849b59091287e1844da97016073aac20403ae6c6132b950f",
    "v2": None,
}
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
LOSS_TYPES: tuple[str, ...] = ("l1", "l2", "huber")
PROCESS_FRACTIONS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 0.99)


# =========================================================================== data
class AFHQNotFoundError(FileNotFoundError):
    """The AFHQ images are not where they were looked for; the message says where to put them."""


def default_data_path() -> Path:
    """``$NBHELPERS_DATA_DIR/afhq/train`` (else ``<repo>/data/afhq/train``)."""
    return data_dir() / "afhq" / "train"


def _check_class(data_class: str) -> str:
    if data_class not in AFHQ_CLASSES:
        raise ValueError(f"unknown data_class {data_class!r}; valid choices: {', '.join(AFHQ_CLASSES)}")
    return data_class


def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def afhq_folder(data_path: str | Path | None = None, data_class: str = "cat") -> Path:
    """The folder holding one AFHQ domain: ``data_path/<data_class>``.

    ``data_path`` is the split folder (``afhq/train``, as in seed 004); the ``afhq`` root (train
    split) and the class folder itself are accepted too. Default: :func:`default_data_path`.
    Missing images raise :class:`AFHQNotFoundError` with one message saying where to put them.
    """
    _check_class(data_class)
    root = Path(data_path).expanduser() if data_path is not None else default_data_path()
    tried = [root / data_class, root / "train" / data_class, root / "afhq" / "train" / data_class]
    if root.name == data_class:
        tried.insert(0, root)
    for folder in tried:
        if folder.is_dir() and _image_files(folder):
            return folder
    raise AFHQNotFoundError(
        f"No AFHQ {data_class!r} images under {root} (looked in {', '.join(str(p) for p in tried)}). "
        f"Put the images at {root / data_class}/ (AFHQ layout afhq/{{train,val}}/{{cat,dog,wild}}/) and pass "
        f"--data_path <folder>/afhq/train (or set NBHELPERS_DATA_DIR to the folder holding afhq/); "
        f"when online, `python -m nbhelpers.afhq --download --data_path <folder>` fetches the public archive "
        f"(nbhelpers.afhq.download_afhq)."
    )


def download_afhq(root: str | Path, version: str = "v1", timeout: float = 60.0) -> Path:
    """Download the public AFHQ archive (StarGAN v2, CC BY-NC 4.0) and unpack it under ``root``.

    Returns the train-split folder (``root/afhq/train``, holding ``cat/``, ``dog/``, ``wild/``).
    v1 ≈ 7 GB with train/ and val/ at 512×512; v2 has train/ and test/. Needs internet access.
    """
    import urllib.request

    from tqdm.auto import tqdm

    if version not in AFHQ_URLS:
        raise ValueError(f"unknown AFHQ version {version!r}; valid choices: {', '.join(AFHQ_URLS)}")
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"afhq_{version}.zip"
    if not archive.exists():
        remove_stale_temps(archive)
        part = temp_path(archive, ".part")  # names this process, so a killed download's part is removed later
        try:
            with urllib.request.urlopen(AFHQ_URLS[version], timeout=timeout) as response, open(part, "wb") as fh:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=f"AFHQ {version}") as bar:
                    while chunk := response.read(1 << 20):
                        fh.write(chunk)
                        bar.update(len(chunk))
            check_sha256(part, AFHQ_SHA256[version], what=f"the AFHQ {version} archive from {AFHQ_URLS[version]}",
                         remedy="try the download again")
            os.replace(part, archive)
        finally:
            if part.exists():
                part.unlink()
    else:
        check_sha256(archive, AFHQ_SHA256[version], what=f"the AFHQ {version} archive",
                     remedy="delete it and download it again")
    target = root / "afhq"
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive} is not a readable zip archive ({exc}); delete it and download it again") from None
    with zf:
        names = zf.namelist()
        # v1 unpacks to afhq/train/..., v2 to train/... at the top: always end under root/afhq
        prefix = "" if names and all(n.startswith("afhq/") for n in names) else "afhq/"
        for name in names:
            dest = (root / (prefix + name)).resolve()
            if root not in dest.parents and dest != root:  # no path escapes from the archive
                raise ValueError(f"refusing to extract {name!r} outside {root}")
            if name.endswith("/"):
                dest.mkdir(parents=True, exist_ok=True)
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(name) as src, open(dest, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
    return target / "train"


def _decode(path: Path, size: int) -> np.ndarray:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            if img.size != (size, size):
                img = ImageOps.fit(img, (size, size), method=Image.Resampling.LANCZOS)  # centre crop + resize
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:  # UnidentifiedImageError is an OSError
        raise DataError(f"image {path} cannot be decoded ({type(exc).__name__}: {exc}); delete or replace it "
                        f"(or download the data set again)") from None


def _cache_file(files: list[Path], size: int) -> Path:
    h = hashlib.sha1()
    h.update(f"{size}|{len(files)}".encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return build_dir() / "cache" / "afhq" / f"{files[0].parent.name}-{size}px-{h.hexdigest()[:12]}.pt"


def load_folder(folder: str | Path, image_size: int, limit: int | None = None, cache: bool = True) -> torch.Tensor:
    """Decode the images of ``folder`` (sorted by name; the first ``limit``) into uint8 ``(N, 3, S, S)``.

    Non-square images are centre-cropped; resizing uses Lanczos. The result is cached under
    ``build/cache/afhq/`` keyed by the files' paths, sizes and mtimes.
    """
    folder = Path(folder)
    image_size = check_int("image_size", image_size, min=1)
    limit = check_int("limit", limit, min=1, allow_none=True)
    files = _image_files(folder)
    if limit is not None:
        files = files[:limit]
    if not files:
        raise AFHQNotFoundError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    path = _cache_file(files, image_size) if cache else None
    if path is not None and path.exists():
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a cache written by another version: rebuild it
            pass
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) + 2)) as pool:
        arrays = list(pool.map(lambda p: _decode(p, image_size), files))
    images = torch.from_numpy(np.stack(arrays))
    if path is not None:
        buf = io.BytesIO()
        torch.save(images, buf)
        atomic_write_bytes(path, buf.getvalue())
    return images


@dataclass
class AFHQImages:
    """One AFHQ domain held as uint8 ``(N, 3, S, S)`` on the training device.

    :meth:`batch` draws ``batch_size`` indices uniformly (with replacement) and flips each image
    horizontally with probability ½, using the generator given (on the images' device).
    """

    images: torch.Tensor
    folder: Path
    data_class: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: str | torch.device) -> "AFHQImages":
        return AFHQImages(self.images.to(device), self.folder, self.data_class)

    @staticmethod
    def scale(images: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] → float [−1, 1] (channels-last on CUDA, where convolutions prefer it)."""
        x = images.float().div_(127.5).sub_(1.0)
        return x.contiguous(memory_format=torch.channels_last) if x.is_cuda else x

    def batch(self, batch_size: int, generator: torch.Generator | None = None, flip: bool = True) -> torch.Tensor:
        """A random batch ``(B, 3, S, S)`` in [−1, 1] with random horizontal flips."""
        dev = self.images.device
        idx = torch.randint(len(self), (batch_size,), generator=generator, device=dev)
        x = self.images[idx]
        if flip:
            flips = torch.rand(batch_size, generator=generator, device=dev) < 0.5
            x = torch.where(flips[:, None, None, None], x.flip(-1), x)
        return self.scale(x)

    def first_batch(self, batch_size: int) -> torch.Tensor:
        """The first ``batch_size`` images in file order, unflipped (seed 004's "initial batch")."""
        return self.scale(self.images[:batch_size])


def count_images(data_path: str | Path | None = None, data_class: str = "cat", limit: int | None = None) -> int:
    """How many images :func:`load_afhq` with the same arguments would load, without decoding any."""
    n = len(_image_files(afhq_folder(data_path, data_class)))
    return n if limit is None else min(n, limit)


def load_afhq(
    data_path: str | Path | None = None,
    data_class: str = "cat",
    image_size: int = 32,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    cache: bool = True,
) -> AFHQImages:
    """Load one AFHQ domain (see :func:`afhq_folder` for ``data_path``) onto ``device``."""
    folder = afhq_folder(data_path, data_class)
    images = load_folder(folder, image_size, limit=limit, cache=cache)
    return AFHQImages(images.to(device), folder, data_class)


# =========================================================================== the seed's Diffusion
class Diffusion(nn.Module):
    """Seed 004's ``Diffusion``: an ε-network plus the cosine-schedule DDPM of :mod:`nbhelpers.ddpm`.

    ``t`` in the method signatures is the integer step k (k = 0 data, k = T noise), an int or an
    int64 ``(B,)`` tensor; the network receives k / T. The schedule buffers (``betas``,
    ``alphas_cumprod``, ``posterior_variance``, …) are those of ``self.ddpm``:
    α_k = clip(ᾱ_k / ᾱ_{k−1}, 0.001, 1), ᾱ_k = f(k)/f(0), f(k) = cos²((k/T + s)/(1 + s) · π/2), s = 0.008.
    """

    def __init__(
        self,
        model: nn.Module,
        image_size: int,
        channels: int = 3,
        time_steps: int = 1000,
        loss_type: str = "l1",
        schedule: str = "cosine",
    ) -> None:
        super().__init__()
        if loss_type not in LOSS_TYPES:
            raise ValueError(f"unknown loss_type {loss_type!r}; valid choices: {', '.join(LOSS_TYPES)}")
        self.model = model
        self.image_size = int(image_size)
        self.channels = int(channels)
        self.time_steps = int(time_steps)
        self.loss_type = loss_type
        self.ddpm = DDPM.from_schedule(schedule, self.time_steps)

    def __getattr__(self, name: str) -> Any:
        if name in DDPM._BUFFERS:
            return getattr(self.__dict__["ddpm"], name)
        return super().__getattr__(name)

    @property
    def num_timesteps(self) -> int:
        return self.ddpm.T

    # -- forward process and loss (Alg. 1) --------------------------------------------
    def q_sample(self, x_0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (eq. 15 with ᾱ; t = 0 returns x_0)."""
        return self.ddpm.q_sample(x_0, t, noise, generator)

    def p_losses(self, x_0: torch.Tensor, t: int | torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The seed's L1 loss ‖ε − ε_θ(x_t, t/T)‖₁ (mean over elements); ``loss_type`` may pick l2 or huber."""
        if noise is None:
            gen_device = generator.device if generator is not None else x_0.device
            noise = torch.randn(x_0.shape, generator=generator, device=gen_device, dtype=x_0.dtype).to(x_0.device)
        if isinstance(t, torch.Tensor) and t.is_cuda and not t.is_floating_point():
            # Same formula as DDPM.q_sample / DDPM.time, minus their range check, which reads the
            # steps back to the host and would stall the GPU queue on every training step.
            x_t = self.ddpm._q_sample(x_0, t.long(), noise)
            t_net = t.to(x_0.dtype) / self.ddpm.T
        else:
            x_t = self.ddpm.q_sample(x_0, t, noise)
            t_net = self.ddpm.time(t, x_0)
        eps = self.model(x_t, t_net)
        if self.loss_type == "l1":
            return F.l1_loss(eps, noise)
        if self.loss_type == "l2":
            return F.mse_loss(eps, noise)
        return F.huber_loss(eps, noise, delta=1.0)

    def forward(self, x_0: torch.Tensor, t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Training loss (Alg. 1). Without ``t`` and ``noise`` it draws t ~ U{1..T} then ε ~ N(0, I)
        from ``generator`` in the order of ``DDPM.loss``, so both give the same number."""
        if t is None:
            t = self.ddpm.sample_steps(x_0.shape[0], generator, device=x_0.device)
        return self.p_losses(x_0, t, noise, generator)

    # -- reverse process (Alg. 2) ------------------------------------------------------
    @torch.no_grad()
    def p_sample(self, x: torch.Tensor, t: int | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One step x_t → x_{t−1}: x̂_0 from ε_θ clamped to [−1, 1], posterior mean μ̃_t(x_t, x̂_0) and
        σ_t² = β̃_t of eq. 18, no noise at t = 1 (``DDPM.p_step``)."""
        return self.ddpm.p_step(self.model, x, t, generator=generator, clip_x0=True, sigma="posterior").x_prev

    @torch.no_grad()
    def p_sample_loop(self, shape_or_x: Sequence[int] | torch.Tensor, generator: torch.Generator | None = None,
                      start_step: int | None = None, return_steps: Sequence[int] | None = None) -> SampleResult:
        """Alg. 2 from x_T ~ N(0, I) (a shape) or from a given x at ``start_step`` (default T) down to x_0."""
        return self.ddpm.sample(self.model, shape_or_x, generator=generator, clip_x0=True, sigma="posterior",
                                start_step=start_step, return_steps=return_steps)

    @torch.no_grad()
    def sample(self, batch_size: int = 16, generator: torch.Generator | None = None) -> torch.Tensor:
        """``batch_size`` images ``(B, C, S, S)`` in [−1, 1] by Alg. 2."""
        shape = (batch_size, self.channels, self.image_size, self.image_size)
        dev = next(self.model.parameters()).device
        x = torch.randn(shape, generator=generator, device=generator.device if generator is not None else dev).to(dev)
        if dev.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        return self.p_sample_loop(x, generator=generator).x


def afhq_unet_config(unet_dim: int = 16, channels: int = 3):
    """The ε-network for AFHQ: ``unet_dim`` channels at the first level, ×(1, 2, 4, 8) over four
    levels, two residual layers per level, two in the bottleneck with self-attention, GroupNorm
    (per-sample, so a batch split over processes trains exactly like the whole batch)."""
    from .models.unet import UNetConfig

    if not isinstance(unet_dim, int) or unet_dim < 1:
        raise ValueError(f"unet_dim must be a positive integer, got {unet_dim!r}")
    return UNetConfig(in_channels=channels, base_channels=unet_dim, channel_mults=(1, 2, 4, 8), res_layers=2,
                      bottleneck_layers=2, norm="group", norm_groups=math.gcd(8, unet_dim), attention_levels=(4,),
                      attention_heads=math.gcd(4, 8 * unet_dim), time_mlp="shared", time_embed_dim=64)


def make_diffusion(image_size: int = 32, time_steps: int = 50, unet_dim: int = 16, channels: int = 3,
                   loss_type: str = "l1", device: str | torch.device = "cpu") -> Diffusion:
    """:class:`Diffusion` around the AFHQ UNet, on ``device`` (channels-last on CUDA)."""
    from .models.unet import UNet

    diffusion = Diffusion(UNet(afhq_unet_config(unet_dim, channels)), image_size, channels, time_steps, loss_type)
    diffusion = diffusion.to(device)
    if torch.device(device).type == "cuda":
        diffusion = diffusion.to(memory_format=torch.channels_last)
    return diffusion


# =========================================================================== training pieces
def make_batch_fn(data: AFHQImages, diffusion: Diffusion, batch_size: int) -> Callable[[torch.Generator], tuple]:
    """``batch_fn(generator) → (x_0, t, ε)`` for :func:`nbhelpers.training.train`.

    Draws the *global* batch (images, flips, steps, noise) and keeps this rank's slice, so that
    every world size sees the same data at the same step (``batch_size`` is global).
    """
    rank, world_size = world()
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} must be divisible by the number of processes ({world_size})")
    local = batch_size // world_size
    part = slice(rank * local, (rank + 1) * local)
    ddpm = diffusion.ddpm

    def batch_fn(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x0 = data.batch(batch_size, generator)
        t = ddpm.sample_steps(batch_size, generator, device=x0.device)
        noise = torch.randn(x0.shape, generator=generator, device=generator.device).to(x0.device)
        if noise.is_cuda:
            noise = noise.contiguous(memory_format=torch.channels_last)
        return x0[part], t[part], noise[part]

    return batch_fn


def diffusion_loss(model: nn.Module, batch: tuple, generator: torch.Generator) -> torch.Tensor:
    """``loss_fn`` for :func:`nbhelpers.training.train`: ``model`` is the (DDP-wrapped) :class:`Diffusion`."""
    x0, t, noise = batch
    return model(x0, t, noise)


# =========================================================================== figures of 5.3 / 5.4
def process_steps(T: int, fractions: Sequence[float] = PROCESS_FRACTIONS) -> list[int]:
    """Steps k = ⌊f·T⌋ for the fractions f of T (0 % → k = 0, the clean image)."""
    bad = [f for f in fractions if not 0.0 <= f <= 1.0]
    if bad:
        raise ValueError(f"fractions must lie in [0, 1], got {bad}")
    return [int(math.floor(f * T + 1e-9)) for f in fractions]


@torch.no_grad()
def forward_process(diffusion: Diffusion, x0: torch.Tensor, steps: Sequence[int],
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """x_k = √ᾱ_k x_0 + √(1 − ᾱ_k) ε for each k in ``steps`` with one shared ε: ``(len(steps), B, C, H, W)``."""
    noise = torch.randn(x0.shape, generator=generator, device=generator.device if generator is not None else x0.device)
    noise = noise.to(x0.device, x0.dtype)
    return torch.stack([diffusion.q_sample(x0, int(k), noise) for k in steps])


@torch.no_grad()
def backward_process(diffusion: Diffusion, x_k: torch.Tensor, start_step: int, steps: Sequence[int],
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Run Alg. 2 from ``x_k`` at ``start_step`` to 0 and return the states at ``steps``
    (each ≤ ``start_step``) in the order given: ``(len(steps), B, C, H, W)``."""
    res = diffusion.p_sample_loop(x_k, generator=generator, start_step=start_step, return_steps=sorted(set(steps)))
    return torch.stack([res.trajectory[int(k)] for k in steps])


def _to_display(x: torch.Tensor) -> np.ndarray:
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).numpy()


def plot_process(frames: torch.Tensor, labels: Sequence[str], title: str, n_images: int = 6):
    """Grid figure: one row per image (first ``n_images``), one column per frame."""
    import matplotlib.pyplot as plt

    n_frames = frames.shape[0]
    n = min(n_images, frames.shape[1])
    fig, axes = plt.subplots(n, n_frames, figsize=(1.5 * n_frames, 1.5 * n + 0.5), squeeze=False)
    for j in range(n_frames):
        imgs = _to_display(frames[j, :n])
        for i in range(n):
            ax = axes[i, j]
            ax.imshow(imgs[i], interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            ax.grid(False)
            if i == 0:
                ax.set_title(labels[j], fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_image_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Save images in [−1, 1] as one PNG grid (``nrow`` per row, default √B)."""
    from PIL import Image
    from torchvision.utils import make_grid

    nrow = nrow or max(1, int(math.ceil(math.sqrt(images.shape[0]))))
    grid = make_grid(((images.detach().float().cpu().clamp(-1, 1) + 1) / 2), nrow=nrow, padding=2, pad_value=1.0)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _autocast(device: torch.device):
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def sample_images(diffusion: Diffusion, n: int, generator: torch.Generator | None = None, batch_size: int = 500) -> torch.Tensor:
    """``n`` samples in [−1, 1] by Alg. 2, in batches of ``batch_size`` (bf16 autocast on CUDA).

    A CPU ``generator`` gives the same draws on every device (they are made on the CPU and moved).
    """
    dev = next(diffusion.parameters()).device
    out = []
    with _autocast(dev):
        for start in range(0, n, batch_size):
            out.append(diffusion.sample(min(batch_size, n - start), generator=generator).float())
    return torch.cat(out)


# =========================================================================== periodic sampling / FID
class SampleAndScore:
    """``on_step`` hook for :func:`nbhelpers.training.train`: every ``every`` steps, read the EMA
    weights from the checkpoint just written and save a sample grid, the loss log and (with a
    :class:`nbhelpers.metrics.fid.FID`) the FID of ``fid_samples`` samples.

    The history of FID values is kept in ``<checkpoint>.fid.json`` so a resumed or cached run
    still has it. The final step is not handled here (its checkpoint is written after the hook):
    call :meth:`finish` with the trained result.
    """

    def __init__(self, diffusion: Diffusion, checkpoint: str | Path, every: int, *, out_dir: str | Path | None = None,
                 fid=None, fid_samples: int = 1000, grid_size: int = 36, seed: int = 0,
                 log: Callable[[str], None] = print) -> None:
        self.sampler = copy.deepcopy(unwrap(diffusion)).eval()
        for p in self.sampler.parameters():
            p.requires_grad_(False)
        self.checkpoint = Path(checkpoint)
        self.every = int(every)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.fid = fid
        self.fid_samples = int(fid_samples)
        self.grid_size = int(grid_size)
        self.seed = int(seed)
        self.log = log
        self.fid_path = self.checkpoint.with_name(self.checkpoint.stem + ".fid.json")
        self.fid_history: dict[int, float | None] = {}
        if self.fid_path.exists():
            try:
                self.fid_history = {int(k): v for k, v in json.loads(self.fid_path.read_text()).items()}
            except (ValueError, AttributeError) as exc:
                raise ValueError(f"cannot read the FID history {self.fid_path} ({exc}); delete it "
                                 f"(the FID values are computed again)") from exc

    def __call__(self, step: int, loss: float) -> None:
        if self.every <= 0 or step % self.every:
            return
        if not self.checkpoint.exists():
            return
        state = load_checkpoint(self.checkpoint, map_location=next(self.sampler.parameters()).device)
        if int(state["step"]) != step:  # the final step: its checkpoint comes after this hook
            return
        self.sampler.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
        self._outputs(step, [float(v) for v in state["losses"].tolist()])

    def finish(self, result: TrainResult) -> None:
        """Outputs for the last step from the trained result (EMA weights when there are any)."""
        self.sampler.load_state_dict(unwrap(result.sampling_model).state_dict())
        self._outputs(result.steps, result.losses)

    def _outputs(self, step: int, losses: list[float]) -> None:
        if self.out_dir is not None:
            grid = sample_images(self.sampler, self.grid_size, torch.Generator().manual_seed(self.seed))
            save_image_grid(grid, self.out_dir / f"sample-{step:06d}.png")
            _write_loss_log(self.out_dir, losses)
        if self.fid is not None:
            value = self.fid_history.get(step)
            if value is None and self.fid.available:
                value = self.fid(sample_images(self.sampler, self.fid_samples, torch.Generator().manual_seed(self.seed + 1)))
                self.log(f"step {step}: {self.fid.describe(self.fid_samples)} = {value:.2f}")
            self.fid_history[step] = value
            atomic_write_bytes(self.fid_path, json.dumps({str(k): v for k, v in sorted(self.fid_history.items())}).encode())
            if self.out_dir is not None:
                _write_fid_log(self.out_dir, self.fid_history, self.fid.describe(self.fid_samples))


def _write_loss_log(out_dir: Path, losses: list[float]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "loss"])
    w.writerows((i + 1, f"{v:.6g}") for i, v in enumerate(losses))
    atomic_write_bytes(out_dir / "losses.csv", buf.getvalue().encode())
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 3))
    ax = fig.subplots()
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, lw=0.6, alpha=0.4, label="per step")
    if len(losses) >= 20:
        w_ = max(10, len(losses) // 50)
        smooth = np.convolve(losses, np.ones(w_) / w_, mode="valid")
        ax.plot(steps[w_ - 1:], smooth, lw=1.5, label=f"mean of {w_}")
    ax.set_xlabel("training step"), ax.set_ylabel("L1 loss on ε")
    if losses:
        ax.legend()
    fig.tight_layout()
    save_figure(fig, out_dir / "loss.png", dpi=100, bbox_inches=None)


def _write_fid_log(out_dir: Path, history: dict[int, float | None], label: str) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["step", "fid"])
    w.writerows((k, "missing" if v is None else f"{v:.4f}") for k, v in sorted(history.items()))
    atomic_write_bytes(out_dir / "fid.csv", buf.getvalue().encode())
    pts = [(k, v) for k, v in sorted(history.items()) if v is not None]
    if pts:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(5, 3))
        ax = fig.subplots()
        ax.plot(*zip(*pts), marker="o")
        ax.set_xlabel("training step"), ax.set_ylabel("FID"), ax.set_title(label, fontsize=8)
        fig.tight_layout()
        save_figure(fig, out_dir / "fid.png", dpi=100, bbox_inches=None)


# =========================================================================== the CLI
@dataclass
class AFHQConfig:
    """The trainer's settings; the first thirteen are seed 004's Table 1 flags, same names and meanings."""

    image_size: int = 32
    batch_size: int = 32
    data_class: str = "cat"
    save_folder: str = "./results"
    load_path: str | None = None
    data_path: str | None = None
    train_steps: int = 10_000
    time_steps: int = 50
    unet_dim: int = 16
    learning_rate: float = 1e-3
    save_and_sample_every: int = 1000
    fid: bool = False
    visualize: bool = False
    device: str = "auto"
    seed: int = 0
    fid_samples: int = 1000
    inception_weights: str | None = None
    ema_decay: float = 0.995
    download: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        _check_class(self.data_class)
        for name in ("image_size", "batch_size", "time_steps", "unet_dim", "save_and_sample_every", "fid_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 (four down-sampling levels), got {self.image_size}")
        if isinstance(self.train_steps, bool) or not isinstance(self.train_steps, int) or self.train_steps < 0:
            raise ValueError(f"train_steps must be a non-negative integer, got {self.train_steps!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not (0.0 < self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay!r}")


TABLE1_FLAGS: tuple[str, ...] = ("image_size", "batch_size", "data_class", "save_folder", "load_path", "data_path",
                                 "train_steps", "time_steps", "unet_dim", "learning_rate", "save_and_sample_every",
                                 "fid", "visualize")
"""The assignment's thirteen flags (seed 004, Table 1), by destination name."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: the assignment's thirteen flags (same names and meanings) plus a few extras.

    Every flag has a dashed spelling (shown in ``--help``) and, where it has an underscore, the
    underscored one of the assignment (``--image_size``), which keeps working.
    """
    from . import __version__

    d = AFHQConfig()
    ap = argparse.ArgumentParser(
        prog=prog or invoked_name("nbhelpers.afhq"), formatter_class=HelpFormatter,
        description="Train a DDPM on one AFHQ domain, sample from it and (optionally) score it by FID. "
                    "Runs unchanged under torchrun (DistributedDataParallel).",
        epilog="Flags may also be written with underscores (--image_size 32), and switches with a value "
               "(--fid True, --visualize False), as in the assignment.",
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s (nbhelpers {__version__})")
    data = ap.add_argument_group("data")
    flag(data, "data_path", default=None,
          help="directory from which to load the dataset: the split folder afhq/train holding cat/ dog/ wild/ "
               "(default: $NBHELPERS_DATA_DIR/afhq/train)")
    flag(data, "data_class", choices=AFHQ_CLASSES, default=d.data_class, help="data domain of the AFHQ dataset (default: %(default)s)")
    flag(data, "image_size", type=int_at_least("image_size", 8), default=d.image_size, help="model image size (pixels) (default: %(default)s)")
    flag(data, "download", action="store_true", help="download the public AFHQ archive to --data-path first (needs internet)")
    model = ap.add_argument_group("model and training")
    flag(model, "unet_dim", type=int_at_least("unet_dim"), default=d.unet_dim,
          help="number of output channels of the first layer in the U-Net (default: %(default)s)")
    flag(model, "time_steps", type=int_at_least("time_steps"), default=d.time_steps,
          help="number of steps of the diffusion process, T (default: %(default)s)")
    flag(model, "train_steps", type=int_at_least("train_steps", 0), default=d.train_steps,
          help="number of iterations to train the model (default: %(default)s)")
    flag(model, "batch_size", type=int_at_least("batch_size"), default=d.batch_size,
          help="model batch size, global: split over torchrun processes (default: %(default)s)")
    flag(model, "learning_rate", type=positive_float("learning_rate"), default=d.learning_rate,
          help="learning rate in the training (default: %(default)s)")
    flag(model, "ema_decay", type=positive_float("ema_decay"), default=d.ema_decay,
          help="decay of the EMA weights used for sampling (default: %(default)s)")
    flag(model, "seed", type=int_at_least("seed", 0), default=d.seed,
          help="random seed of the initial weights, the batches and the noise (default: %(default)s)")
    flag(model, "device", default=d.device,
          help="auto, cpu, cuda, cuda:N or mps; under torchrun cuda means cuda:LOCAL_RANK (default: %(default)s)")
    out = ap.add_argument_group("saving, sampling and evaluation")
    flag(out, "save_folder", default=d.save_folder, help="directory where the model, samples and logs are stored (default: %(default)s)")
    flag(out, "load_path", default=None, help="path of a trained model (checkpoint) to resume from or visualise")
    flag(out, "save_and_sample_every", type=int_at_least("save_and_sample_every"), default=d.save_and_sample_every,
          help="frequency of periodic save, sample and (optionally) FID calculation (default: %(default)s)")
    out.add_argument("--fid", action=Switch, default=d.fid,
                     help="enable FID calculation (clean-fid) (default: off)")
    flag(out, "fid_samples", type=int_at_least("fid_samples", 2), default=d.fid_samples,
          help="number of generated samples per FID evaluation (default: %(default)s)")
    flag(out, "inception_weights", default=None,
          help="local inception-2015-12-05.pt for FID (or set $NBHELPERS_INCEPTION_WEIGHTS)")
    out.add_argument("--visualize", action=Switch, default=d.visualize,
                     help="enable visualization: forward and backward diffusion figures of the (loaded or trained) model "
                          "(default: off)")
    out.add_argument("--progress", action=Switch, default=d.progress, help="show the progress bar (default: on)")
    return ap


def table1(parser: argparse.ArgumentParser | None = None) -> list[dict[str, str]]:
    """The assignment's thirteen flags as rows ``{flag, also, default, help}`` read from the parser
    (``also``: the other accepted spellings), so a table of them cannot drift from the code."""
    parser = parser or build_parser("nbhelpers-afhq")
    by_dest = {a.dest: a for a in parser._actions}
    rows = []
    for dest in TABLE1_FLAGS:
        a = by_dest[dest]
        dashed = next(s for s in a.option_strings if s.startswith("--") and "_" not in s)
        if isinstance(a, Switch):
            also = f"--no-{dest.replace('_', '-')}, {dashed} True/False"
            default = "on" if a.default else "off"
        else:
            also = ", ".join(s for s in a.option_strings if s != dashed)
            default = "" if a.default is None else str(a.default)
        text = (a.help or "").replace("%(default)s", str(a.default)).split(" (default")[0]
        rows.append({"flag": dashed, "also": also, "default": default, "help": text})
    return rows


def parse_args(argv: Sequence[str] | None = None) -> AFHQConfig:
    """Parse CLI arguments into an :class:`AFHQConfig`; bad values exit with a message naming the valid ones."""
    ap = build_parser()
    ns = ap.parse_args(argv)
    try:
        get_device(ns.device)
        return AFHQConfig(**vars(ns))
    except ValueError as exc:
        ap.error(str(exc))
    raise AssertionError("unreachable")  # pragma: no cover


def train_key(cfg: AFHQConfig) -> dict[str, Any]:
    """What a trained model depends on besides its :class:`TrainConfig` (the checkpoint key)."""
    return {"what": "afhq_ddpm", "data_class": cfg.data_class, "image_size": cfg.image_size, "batch_size": cfg.batch_size,
            "time_steps": cfg.time_steps, "schedule": "cosine", "loss": "l1", "unet": afhq_unet_config(cfg.unet_dim).key()}


def train_config(cfg: AFHQConfig) -> TrainConfig:
    """Optimisation settings: AdamW at ``learning_rate``, clipping 1, EMA, bf16 autocast on CUDA."""
    return TrainConfig(steps=cfg.train_steps, lr=cfg.learning_rate, ema_decay=cfg.ema_decay, amp=True, grad_clip=1.0,
                       checkpoint_every=cfg.save_and_sample_every, seed=cfg.seed)


_RESUMABLE = {("train", "steps"), ("train", "checkpoint_every")}


def adopt_checkpoint(src: str | Path, dst: str | Path, key: dict[str, Any], config: TrainConfig) -> int:
    """Make ``src`` resumable at ``dst`` under ``(key, config)``; returns the step it holds.

    A checkpoint may be continued with another ``train_steps`` or save cadence; any other
    difference (architecture, data, learning rate, …) is a ``ValueError`` naming it.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_file():
        raise ValueError(f"load_path {src} does not exist")
    own = src.resolve() == dst.resolve()
    state = load_checkpoint(src, remedy="delete it to retrain" if own else "--load-path must name a checkpoint "
                            "written by nbhelpers.afhq (a save folder's model.pt)")
    if state.get("format") != CHECKPOINT_FORMAT or "key" not in state:
        raise CheckpointError(f"{src} is not a checkpoint written by nbhelpers.training"
                              + ("; delete it to retrain" if own else ""))
    if dryrun.max_steps() is not None:  # as nbhelpers.training.train keys a dry run's models
        key = {**key, "dry_run_max_steps": dryrun.max_steps()}
    new_json = _key_json(key, config)
    old, new = json.loads(state["key"]), json.loads(new_json)
    diffs = []
    for section in ("train", "model"):
        a, b = old.get(section, {}), new.get(section, {})
        for name in sorted(set(a) | set(b)):
            if a.get(name) != b.get(name) and (section, name) not in _RESUMABLE:
                diffs.append(f"{name}: checkpoint {a.get(name)!r}, now {b.get(name)!r}")
    if diffs:
        raise ValueError(f"{src} was trained with other settings ({'; '.join(diffs)}); pass the same flags to resume it")
    step = int(state["step"])
    finished = step >= config.steps
    if state["key"] != new_json or bool(state.get("finished")) != finished or src.resolve() != dst.resolve():
        state["key"] = new_json
        state["finished"] = finished
        save_checkpoint(dst, state)
    return step


def _init_distributed(device: torch.device) -> tuple[torch.device, bool]:
    """Start the process group under torchrun (``WORLD_SIZE`` set): gloo on CPU, nccl on CUDA."""
    if "WORLD_SIZE" not in os.environ or torch.distributed.is_initialized():
        return device, False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device, True


def _barrier() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


@dataclass
class AFHQResult:
    """What :func:`train_afhq` returns. ``diffusion`` holds the EMA weights (for sampling)."""

    config: AFHQConfig
    diffusion: Diffusion
    losses: list[float]
    steps: int
    seconds: float
    resumed_from: int
    checkpoint: Path
    save_folder: Path
    world_size: int
    fid: dict[int, float | None] = field(default_factory=dict)
    sampling_seconds: float = 0.0

    @property
    def steps_per_s(self) -> float:
        """Steps trained in this run per second of training (``seconds`` excludes sampling and FID)."""
        trained = self.steps - self.resumed_from
        return trained / self.seconds if self.seconds > 0 and trained > 0 else float("nan")


def _print_config(cfg: AFHQConfig, device: torch.device, world_size: int, log: Callable[[str], None]) -> None:
    rows = {**asdict(cfg), "resolved_device": str(device), "world_size": world_size}
    width = max(len(k) for k in rows)
    log("nbhelpers.afhq config:")
    for k, v in rows.items():
        log(f"  {k:<{width}}  {v}")


def train_afhq(cfg: AFHQConfig, on_step: Callable[[int, float], None] | None = None,
               log: Callable[[str], None] = print) -> AFHQResult:
    """Train (or resume, or load) a DDPM on one AFHQ domain as the CLI does; see :func:`main`.

    Outputs in ``save_folder``: ``model.pt`` (checkpoint, resumable), ``config.json`` (written when
    training starts, so a run that fails before leaves none),
    ``sample-<step>.png`` every ``save_and_sample_every`` steps and at the end, ``losses.csv`` and
    ``loss.png``, with ``fid`` also ``fid.csv`` (and ``fid.png``), with ``visualize``
    ``forward_process.png`` and ``backward_process.png``.
    """
    device = get_device(cfg.device)
    device, _ = _init_distributed(device)
    rank, world_size = world()
    main_rank = rank == 0
    say = log if main_rank else (lambda _msg: None)
    _print_config(cfg, device, world_size, say)

    save_folder = dryrun.redirect(Path(cfg.save_folder).expanduser())  # a dry run keeps its outputs apart
    ckpt = save_folder / "model.pt"
    if main_rank:
        check_save_folder(save_folder)
    # One run per save folder: a second run (e.g. while the workers of a killed torchrun still write)
    # stops here with the owner's pid and host; released at the end, or when this process exits.
    created = main_rank and not save_folder.exists()
    lock = FolderLock(ckpt.with_name("model.pt.lock"), what=f"nbhelpers.afhq into {save_folder}").acquire() \
        if main_rank else None
    try:
        return _train_afhq_locked(cfg, on_step, log, device, save_folder, ckpt, lock, say, main_rank, world_size)
    except BaseException:
        if lock is not None:
            lock.release()
        if created and not (save_folder / "config.json").exists():  # failed before training: leave no folder
            for leftover in save_folder.glob("*"):
                if leftover.name.endswith(".lock"):
                    leftover.unlink(missing_ok=True)
            try:
                save_folder.rmdir()
            except OSError:
                pass
        raise


def _train_afhq_locked(cfg: AFHQConfig, on_step: Callable[[int, float], None] | None, log: Callable[[str], None],
                       device: torch.device, save_folder: Path, ckpt: Path, lock: FolderLock | None,
                       say: Callable[[str], None], main_rank: bool, world_size: int) -> AFHQResult:
    if cfg.download and main_rank:
        root = Path(cfg.data_path).expanduser() if cfg.data_path else data_dir()
        say(f"downloading AFHQ to {root} …")
        try:
            download_afhq(root)
        except OSError as exc:  # offline, DNS, timeout, disk full
            reason = getattr(exc, "reason", None) or exc.strerror or exc
            raise ValueError(f"could not download AFHQ to {root} ({reason}); when offline, put the images at "
                             f"{root}/afhq/train/<class>/ yourself and run without --download") from exc
        except zipfile.BadZipFile as exc:  # a truncated or foreign archive from an earlier attempt
            raise ValueError(f"the AFHQ archive under {root} is not a valid zip file ({exc}); delete "
                             f"{root}/afhq_v1.zip and run again with --download") from exc
    _barrier()

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels once
    seed_everything(cfg.seed)
    data = load_afhq(cfg.data_path, cfg.data_class, cfg.image_size, device)
    say(f"data: {len(data)} {cfg.data_class} images from {data.folder} at {cfg.image_size}×{cfg.image_size} on {device}")
    diffusion = make_diffusion(cfg.image_size, cfg.time_steps, cfg.unet_dim, device=device)
    say(f"model: {sum(p.numel() for p in diffusion.parameters()) / 1e6:.2f} M parameters, T = {cfg.time_steps}, cosine schedule, L1 loss on ε")

    key, tconfig = train_key(cfg), train_config(cfg)
    source = Path(cfg.load_path).expanduser() if cfg.load_path else (ckpt if ckpt.exists() else None)
    if source is not None:
        if main_rank:
            step = adopt_checkpoint(source, ckpt, key, tconfig)
            say(f"resuming from {source} at step {step}" if step < cfg.train_steps else f"loaded {source} (step {step})")
        _barrier()

    fid = None
    if cfg.fid:
        from .metrics.fid import FID

        fid = FID(data.images, weights=cfg.inception_weights, device=device)
    hook = SampleAndScore(diffusion, ckpt, cfg.save_and_sample_every, out_dir=save_folder, fid=fid,
                          fid_samples=cfg.fid_samples, seed=cfg.seed, log=say)

    sampling = [0.0]  # seconds in the periodic sampling / FID hook and the caller's on_step: not training time

    def on_step_all(step: int, loss: float) -> None:
        t0 = time.perf_counter()
        try:
            hook(step, loss)
            if on_step is not None:
                on_step(step, loss)
        finally:
            sampling[0] += time.perf_counter() - t0

    batch_fn = make_batch_fn(data, diffusion, cfg.batch_size)
    if main_rank:  # training starts now: record how it was started
        save_folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(save_folder / "config.json",
                           json.dumps({**asdict(cfg), "world_size": world_size, "device": str(device)}, indent=2).encode())
    started = time.perf_counter()
    res = train(diffusion, diffusion_loss, batch_fn, tconfig, checkpoint=ckpt,
                key=key, progress=cfg.progress, desc=f"AFHQ {cfg.data_class}", on_step=on_step_all)
    train_seconds = max(time.perf_counter() - started - sampling[0], 0.0)
    trained = res.steps - res.resumed_from
    if main_rank:
        if res.loaded_from_cache or trained == 0:
            say(f"model at {ckpt} has finished {res.steps} steps; nothing to train")
        else:
            extra = f", plus {sampling[0]:.1f} s sampling" if sampling[0] >= 0.05 else ""
            say(f"trained steps {res.resumed_from + 1}–{res.steps} in {train_seconds:.1f} s{extra} "
                f"({trained / max(train_seconds, 1e-9):.2f} steps/s of training); final loss {res.losses[-1]:.4f}")
        hook.finish(res)
        say(f"samples: {save_folder / f'sample-{res.steps:06d}.png'}")
        if cfg.visualize:
            for path in visualize(hook.sampler, data, cfg.batch_size, save_folder, seed=cfg.seed):
                say(f"figure: {path}")
    _barrier()
    if lock is not None:
        lock.release()
    sampler = hook.sampler
    return AFHQResult(cfg, sampler, res.losses, res.steps, train_seconds, res.resumed_from, ckpt, save_folder, world_size,
                      dict(hook.fid_history), sampling[0])


def visualize(diffusion: Diffusion, data: AFHQImages, batch_size: int, out_dir: str | Path, seed: int = 0,
              fractions: Sequence[float] = PROCESS_FRACTIONS) -> list[Path]:
    """Seed 004's 5.3 and 5.4 figures: the forward process on the first batch at ``fractions`` of T,
    and the backward process from its last (most noised) image at the same fractions."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    T = diffusion.num_timesteps
    steps = process_steps(T, fractions)
    dev = next(diffusion.parameters()).device
    gen = torch.Generator().manual_seed(seed)
    x0 = data.first_batch(batch_size).to(dev)
    fwd = forward_process(diffusion, x0, steps, gen)
    labels = [f"{round(f * 100)} % (k={k})" for f, k in zip(fractions, steps)]
    paths = []
    fig = plot_process(fwd, labels, f"forward process q(x_k | x_0), T = {T}")
    paths.append(out_dir / "forward_process.png")
    save_figure(fig, paths[-1], dpi=110)
    plt.close(fig)
    with _autocast(dev):
        bwd = backward_process(diffusion, fwd[-1], steps[-1], steps[::-1], gen).float()
    fig = plot_process(bwd, labels[::-1], f"backward process from the {labels[-1]} images")
    paths.append(out_dir / "backward_process.png")
    save_figure(fig, paths[-1], dpi=110)
    plt.close(fig)
    return paths


def check_save_folder(folder: str | Path) -> Path:
    """Prove, before any work is done, that ``folder`` can be created and written: a probe file in
    ``folder``, or in its nearest existing parent when it does not exist yet (nothing is created, so
    a run that fails early leaves no folder behind).

    A path that is a file, lies under a file, or cannot be written is one ``ValueError`` naming it.
    """
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == folder else f"lies under the file {existing}"
        raise ValueError(f"save_folder {folder} {where}, not a folder; pass --save-folder <a folder>")
    try:
        with tempfile.TemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ValueError(f"save_folder {folder} cannot be written ({exc.strerror or exc} in {existing}); "
                         f"pass --save-folder <a writable folder>") from exc
    return folder


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nbhelpers.afhq [flags]`` (see ``--help``); returns the exit status.

    Expected failures (missing or unreadable data, a save folder that cannot be written, an unreadable
    checkpoint, a download without internet) print one ``error:`` line on stderr and return 2.
    """
    cfg = parse_args(argv)
    started_group = False
    try:
        started_group = "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized()
        train_afhq(cfg)
    except (ValueError, OSError) as exc:  # AFHQNotFoundError is an OSError; bad images raise PIL's OSError
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if started_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
