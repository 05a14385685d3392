"""Image data: MNIST from its IDX files, and a fast batch sampler for data sets that fit in memory.

MNIST lives in ``<data root>/MNIST/raw/`` in torchvision's layout (``train-images-idx3-ubyte``
etc., plain or ``.gz``). The data root is ``nb.runtime.data_dir()``: ``$NBHELPERS_DATA_DIR`` if
set, else ``<repo>/data``. The IDX files are read directly (``gzip`` + NumPy), so a read-only
root such as an offline copy works and nothing is ever written next to it. When the files are
missing and ``download=True``, torchvision downloads them into the root; when that fails (no
network), one :class:`MNISTNotFoundError` says which files to put where.

Images come as float ``(N, 1, 28, 28)`` in [−1, 1] (``x = u8 / 127.5 − 1``), labels int64 ``(N,)``.
"""
from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from ._checks import DataError, check_int
from .layout import DATA_ENV, data_dir
from .runtime import note_data, standin_allowed

__all__ = [
    "MNIST_FILES", "SPLITS", "MNISTNotFoundError", "ImageDataset", "Batch", "TensorBatcher",
    "read_idx", "mnist_raw_dir", "find_mnist_files", "has_mnist", "download_mnist", "load_mnist", "to_unit_range", "from_unit_range",
]

SPLITS = ("train", "test")
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class MNISTNotFoundError(FileNotFoundError):
    """MNIST's IDX files are not under the data root and could not be downloaded."""


# --------------------------------------------------------------------------- IDX files
def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as fh:
        head = fh.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    with opener(path, "rb") as fh:
        return fh.read()


_IDX_REMEDY = "delete it and download it again (or copy an intact file there)"


@lru_cache(maxsize=8)
def _read_idx_cached(path: str, mtime_ns: int, size: int) -> np.ndarray:
    if size == 0:
        raise DataError(f"IDX file {path} is empty (0 bytes); {_IDX_REMEDY}")
    try:
        data = _read_bytes(Path(path))
    except (OSError, EOFError, zlib.error) as exc:  # truncated or corrupt gzip stream, unreadable file
        raise DataError(f"IDX file {path} cannot be read ({type(exc).__name__}: {exc}); {_IDX_REMEDY}") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {data[:4]!r}); {_IDX_REMEDY}")
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    offset = 4 + 4 * ndim
    if len(data) < offset:
        raise DataError(f"{path} is truncated inside its header ({len(data)} bytes); {_IDX_REMEDY}")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    count = int(np.prod(shape)) if shape else 0
    if len(data) - offset < count * dtype.itemsize:
        raise DataError(f"{path} is truncated: header says {shape}, file holds {len(data) - offset} bytes of data; "
                        f"{_IDX_REMEDY}")
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
    arr = arr.astype(dtype.newbyteorder("="), copy=False)
    arr.setflags(write=False)
    return arr


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (plain or gzip'd, detected from its first bytes) into a read-only array."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DataError(f"IDX file {path} does not exist") from None
    return _read_idx_cached(str(path.resolve()), st.st_mtime_ns, st.st_size)


# --------------------------------------------------------------------------- locating MNIST
def mnist_raw_dir(root: str | Path | None = None) -> Path:
    """``<root>/MNIST/raw`` (root defaults to ``nb.runtime.data_dir()``)."""
    return (Path(root).expanduser() if root is not None else data_dir()) / "MNIST" / "raw"


def find_mnist_files(split: str, root: str | Path | None = None) -> tuple[Path, Path] | None:
    """Paths of the (images, labels) IDX files of ``split``, preferring plain over ``.gz``; None if absent."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    raw = mnist_raw_dir(root)
    found = []
    for name in MNIST_FILES[split]:
        for cand in (raw / name, raw / f"{name}.gz"):
            if cand.is_file():
                found.append(cand)
                break
        else:
            return None
    return found[0], found[1]


def _not_found_message(root: Path) -> str:
    names = ", ".join(f"{n}.gz" for pair in MNIST_FILES.values() for n in pair)
    return (f"MNIST not found under {root / 'MNIST' / 'raw'} and it could not be downloaded (offline?). "
            f"Put the four files {names} (gzip'd or not) in that folder, or set ${DATA_ENV} to a folder "
            f"that holds MNIST/raw/ with them (torchvision's layout).")


def download_mnist(root: str | Path | None = None) -> Path:
    """Download MNIST with torchvision into ``<root>/MNIST/raw``; a clear error when offline."""
    root = Path(root).expanduser() if root is not None else data_dir()
    try:
        from torchvision.datasets import MNIST

        root.mkdir(parents=True, exist_ok=True)
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except Exception as exc:  # network errors come in many types (URLError, OSError, RuntimeError)
        raise MNISTNotFoundError(_not_found_message(root)) from exc
    return mnist_raw_dir(root)


# --------------------------------------------------------------------------- data sets
def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[−1, 1] → [0, 1] (for display)."""
    return ((x + 1) / 2).clamp(0, 1)


def from_unit_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] → [−1, 1]."""
    return x * 2 - 1


@dataclass
class Batch:
    """One training batch: images ``x (B, C, H, W)`` and labels ``y (B,)`` (None for unlabelled data)."""

    x: torch.Tensor
    y: torch.Tensor | None = None


class TensorBatcher:
    """A ``batch_fn`` for ``nb.training.train`` over a data set held as one tensor on the device.

    ``batcher(generator)`` draws ``batch_size`` indices uniformly with replacement using the
    training loop's generator, so a run is reproducible and resumes exactly (no DataLoader,
    no worker processes, no per-epoch state).
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor | None = None, batch_size: int = 128) -> None:
        batch_size = check_int("batch_size", batch_size, min=1)
        if images.dim() < 2 or images.shape[0] == 0:
            raise ValueError(f"images must be a non-empty batch-first tensor, got shape {tuple(images.shape)}")
        if labels is not None and labels.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.images = images
        self.labels = labels.to(images.device) if labels is not None else None
        self.batch_size = batch_size

    def __len__(self) -> int:
        return self.images.shape[0]

    def indices(self, generator: torch.Generator | None = None) -> torch.Tensor:
        dev = generator.device if generator is not None else self.images.device
        idx = torch.randint(len(self), (self.batch_size,), generator=generator, device=dev)
        return idx.to(self.images.device)

    def __call__(self, generator: torch.Generator | None = None) -> Batch:
        idx = self.indices(generator)
        return Batch(self.images[idx], self.labels[idx] if self.labels is not None else None)


@dataclass
class ImageDataset:
    """Images ``(N, C, H, W)`` in [−1, 1] and int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor
    name: str = ""

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def num_classes(self) -> int:
        return int(self.labels.max().item()) + 1 if len(self) else 0

    def to(self, device: str | torch.device) -> "ImageDataset":
        return ImageDataset(self.images.to(device), self.labels.to(device), self.name)

    def batcher(self, batch_size: int, labels: bool = True) -> TensorBatcher:
        """A ``batch_fn`` drawing random batches of this set (see :class:`TensorBatcher`)."""
        return TensorBatcher(self.images, self.labels if labels else None, batch_size)

    def sample(self, n: int, generator: torch.Generator | None = None) -> "ImageDataset":
        """``n`` distinct random examples (all when ``n >= len``)."""
        n = check_int("n", n, min=1)
        if n >= len(self):
            return self
        dev = generator.device if generator is not None else torch.device("cpu")
        idx = torch.randperm(len(self), generator=generator, device=dev)[:n].to(self.images.device)
        return ImageDataset(self.images[idx], self.labels[idx], self.name)

    def per_class(self, k: int) -> "ImageDataset":
        """The first ``k`` examples of each class, ordered by class (for grids)."""
        k = check_int("k", k, min=1)
        idx = torch.cat([torch.nonzero(self.labels == c).flatten()[:k] for c in range(self.num_classes)])
        return ImageDataset(self.images[idx], self.labels[idx], self.name)


def load_mnist(
    split: str = "train",
    device: str | torch.device = "cpu",
    *,
    root: str | Path | None = None,
    limit: int | None = None,
    download: bool = True,
    dtype: torch.dtype = torch.float32,
    standin: bool | None = None,
) -> ImageDataset:
    """MNIST ``split`` ("train" 60 000 | "test" 10 000) as float images in [−1, 1] on ``device``.

    ``root`` defaults to ``nb.runtime.data_dir()``; ``limit`` keeps the first ``limit`` examples.
    Missing files are downloaded with torchvision when ``download`` (and the network) allow,
    otherwise :class:`MNISTNotFoundError` explains where to put them. When the files are absent from
    the default root and ``standin`` allows (default: inside a smoke-profile run), the built-in
    stand-in digits (:mod:`nbhelpers.standin`) are used instead, with a banner; nothing is downloaded.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid choices: {', '.join(SPLITS)}")
    limit = check_int("limit", limit, min=1, allow_none=True)
    base = Path(root).expanduser() if root is not None else data_dir()
    files = find_mnist_files(split, base)
    use_standin = files is None and root is None and (standin_allowed() if standin is None else bool(standin))
    if use_standin:
        from . import standin as _standin

        wanted, base = mnist_raw_dir(base), _standin.ensure_mnist()
        files = find_mnist_files(split, base)
    if files is None:
        if not download:
            raise MNISTNotFoundError(_not_found_message(base))
        download_mnist(base)
        files = find_mnist_files(split, base)
        if files is None:
            raise MNISTNotFoundError(_not_found_message(base))
    note_data("MNIST", use_standin, mnist_raw_dir(base), wanted if use_standin else None)
    images = read_idx(files[0])
    labels = read_idx(files[1])
    if images.ndim != 3 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
        raise DataError(f"unexpected MNIST shapes: images {images.shape} from {files[0]}, labels {labels.shape} from "
                        f"{files[1]}; delete both and download them again")
    if images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(f"{files[0]} holds {images.dtype} images of {images.shape[1]}×{images.shape[2]}; MNIST's are "
                        f"uint8 28×28; delete it and download it again")
    if labels.dtype != np.uint8 or len(labels) and int(labels.max()) > 9:
        raise DataError(f"{files[1]} holds {labels.dtype} labels up to {int(labels.max()) if len(labels) else '-'}; "
                        f"MNIST's are uint8 digits 0..9; delete it and download it again")
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    x = torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).to(device)
    x = (x.to(dtype) / 127.5 - 1.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64)).to(device)
    return ImageDataset(x, y, f"MNIST-{split} (stand-in)" if use_standin else f"MNIST-{split}")


def has_mnist(root: str | Path | None = None) -> bool:
    """True when both MNIST splits are present under the data root (no download attempted)."""
    return all(find_mnist_files(s, root) is not None for s in SPLITS)

