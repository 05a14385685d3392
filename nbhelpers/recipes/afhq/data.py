"""AFHQ data for notebook 08 and the trainer: find, download, decode, cache and batch one domain.

The real AFHQ layout is ``afhq/{train,val}/{cat,dog,wild}/``. The chosen domain is decoded once,
resized to ``image_size``, cached as one uint8 tensor under ``build/cache/afhq/`` and held on the
training device; a batch is an index draw plus a random horizontal flip, scaled to [−1, 1].
"""
from __future__ import annotations

import hashlib
import io
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..._checks import DataError, OutputError, check_int, check_sha256
from ...files import FolderLock, atomic_write_bytes, remove_stale_temps
from ...layout import DATA_ENV, build_dir, data_dir
from ...runtime import note_data, standin_allowed

__all__ = ["AFHQ_CLASSES", "AFHQ_URLS", "AFHQ_SHA256", "IMAGE_EXTENSIONS", "AFHQNotFoundError",
           "default_data_path", "check_class", "afhq_folder", "download_afhq", "fetch_afhq", "find_afhq",
           "load_folder", "AFHQImages", "count_images", "load_afhq"]


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


class AFHQNotFoundError(FileNotFoundError):
    """The AFHQ images are not where they were looked for; the message says where to put them."""


def default_data_path() -> Path:
    """``$NBHELPERS_DATA_DIR/afhq/train`` (else ``<repo>/data/afhq/train``)."""
    return data_dir() / "afhq" / "train"


def check_class(data_class: str) -> str:
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
    check_class(data_class)
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
        f"(nbhelpers.recipes.afhq.download_afhq)."
    )


AFHQ_MAX_MEMBER_BYTES = 64 << 20
"""The largest file taken from an archive (AFHQ's images are well under 1 MB each)."""
AFHQ_MAX_ARCHIVE_BYTES = 16 << 30
"""The most an archive may unpack to (v1: about 7 GB), so a forged archive cannot fill the disk."""


def _fetch(url: str, part: Path, timeout: float, desc: str) -> None:
    """Download ``url`` into ``part``, resuming a partial file with an HTTP Range request.

    A server that ignores the range (``200`` instead of ``206``) sends the whole file, which then replaces
    the partial one; ``416`` (nothing after the partial file's end) means it is complete already.
    """
    import http.client
    import urllib.error
    import urllib.request

    from tqdm.auto import tqdm

    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            return
        raise
    with response:
        resumed = have > 0 and getattr(response, "status", 200) == 206
        size = int(response.headers.get("Content-Length") or 0) or None
        total = size + have if size is not None and resumed else size
        with open(part, "ab" if resumed else "wb") as fh, \
                tqdm(total=total, initial=have if resumed else 0, unit="B", unit_scale=True, desc=desc) as bar:
            got = 0
            try:
                while chunk := response.read(1 << 20):
                    fh.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except http.client.HTTPException as exc:  # IncompleteRead and friends are not OSErrors
                raise ConnectionError(f"the download broke off after {got:,} bytes ({type(exc).__name__}); "
                                      f"run again to resume") from None
    if size is not None and got < size:  # the connection dropped: keep what came, the next try resumes
        raise ConnectionError(f"the connection closed after {got:,} of {size:,} bytes; run again to resume")


def _member_target(name: str, classes: tuple[str, ...] | None) -> tuple[str, str, str] | None:
    """``(split, class, file)`` of an archive member that belongs in ``afhq/<split>/<class>/``, else None.

    v1 holds ``afhq/train/cat/x.jpg``, v2 ``train/cat/x.png``; anything else (a README at the top, a
    nested folder) is skipped, and so are classes not asked for."""
    parts = [p for p in name.split("/") if p]
    if parts and parts[0] == "afhq":
        parts = parts[1:]
    if len(parts) != 3 or name.endswith("/") or parts[0] not in ("train", "val", "test"):
        return None
    if parts[1] not in AFHQ_CLASSES or (classes is not None and parts[1] not in classes):
        return None
    if parts[2] in (".", "..") or Path(parts[2]).suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    return parts[0], parts[1], parts[2]


def _unpack(archive: Path, root: Path, classes: tuple[str, ...] | None) -> int:
    """Unpack the AFHQ images of ``classes`` (all when None) from ``archive`` to ``root/afhq/<split>/<class>/``."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DataError(f"{archive} is not a readable zip archive ({exc}); delete it and download it again") from None
    written = count = 0
    with zf:
        for info in zf.infolist():
            target = _member_target(info.filename, classes)
            if target is None:
                continue
            if info.file_size > AFHQ_MAX_MEMBER_BYTES:
                raise DataError(f"{archive}: member {info.filename!r} unpacks to {info.file_size:,} bytes, more than "
                                f"the {AFHQ_MAX_MEMBER_BYTES:,} an AFHQ image may have; delete the archive, it is not AFHQ")
            dest = root / "afhq" / target[0] / target[1] / target[2]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(dest, "wb") as out:
                size = 0
                while chunk := src.read(1 << 20):
                    size += len(chunk)
                    written += len(chunk)
                    if size > AFHQ_MAX_MEMBER_BYTES or written > AFHQ_MAX_ARCHIVE_BYTES:
                        out.close()
                        dest.unlink()
                        raise DataError(f"{archive} unpacks to more than its entries declare (at {info.filename!r}); "
                                        f"delete it, it is not the AFHQ archive")
                    out.write(chunk)
            count += 1
    return count


def download_afhq(root: str | Path, version: str = "v1", timeout: float = 60.0, *,
                  classes: tuple[str, ...] | None = None, keep_archive: bool = True) -> Path:
    """Download the public AFHQ archive (StarGAN v2, CC BY-NC 4.0) and unpack it under ``root``.

    Returns the train-split folder (``root/afhq/train``). ``classes`` unpacks only those domains
    (default all three); ``keep_archive=False`` deletes the archive once unpacked. The download goes to
    ``root/afhq_<version>.zip.part`` and resumes from there after an interruption (HTTP Range); the
    archive is kept only once its SHA-256 matches the pinned one. v1 ≈ 7 GB with train/ and val/ at
    512×512; v2 has train/ and test/. Needs internet access (see :func:`fetch_afhq` for first use).
    """
    if version not in AFHQ_URLS:
        raise ValueError(f"unknown AFHQ version {version!r}; valid choices: {', '.join(AFHQ_URLS)}")
    if classes is not None:
        classes = tuple(check_class(c) for c in classes)
    root = Path(root).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    archive = root / f"afhq_{version}.zip"
    with FolderLock(root / f".afhq_{version}.lock", what=f"the AFHQ {version} download"):
        if not archive.exists():
            remove_stale_temps(archive)  # per-process partial files of older versions
            part = root / f"afhq_{version}.zip.part"
            _fetch(AFHQ_URLS[version], part, timeout, f"AFHQ {version}")
            try:
                check_sha256(part, AFHQ_SHA256[version], what=f"the AFHQ {version} archive from {AFHQ_URLS[version]}",
                             remedy="try the download again")
            except DataError:
                part.unlink()  # a wrong file is not resumed
                raise
            os.replace(part, archive)
        else:
            check_sha256(archive, AFHQ_SHA256[version], what=f"the AFHQ {version} archive",
                         remedy="delete it and download it again")
        if _unpack(archive, root, classes) == 0:
            raise DataError(f"{archive} holds no AFHQ images ({'/'.join(classes or AFHQ_CLASSES)}) in the layout "
                            f"afhq/<split>/<class>/; delete it and download it again")
        if not keep_archive:
            archive.unlink()
    return root / "afhq" / "train"


def fetch_afhq(data_class: str = "cat", root: str | Path | None = None, version: str = "v1",
               timeout: float = 15.0) -> Path:
    """First use: download AFHQ into the data root and keep only ``data_class`` (the archive is deleted
    once that domain is unpacked). Returns the domain's folder. Offline, or where the data root cannot be
    written, one :class:`AFHQNotFoundError` line names the folder to fill and the variable to set."""
    check_class(data_class)
    base = Path(root).expanduser() if root is not None else data_dir()
    folder = base / "afhq" / "train" / data_class
    print(f"AFHQ {data_class} images are not under {folder}: downloading the AFHQ {version} archive (about 7 GB, "
          f"kept only until its {data_class} images are unpacked) …", flush=True)
    try:
        download_afhq(base, version, timeout, classes=(data_class,), keep_archive=False)
    except (OSError, OutputError) as exc:  # offline, DNS, timeout, read-only data root, disk full
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or exc
        raise AFHQNotFoundError(
            f"AFHQ {data_class} images are not under {folder} and could not be downloaded ({reason}); put the "
            f"{data_class} images (AFHQ's afhq/train/{data_class}/*.jpg) in that folder, or set {DATA_ENV} to a "
            f"folder holding afhq/train/{data_class}/") from None
    return afhq_folder(base / "afhq" / "train", data_class)


def _decode(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """The image at ``size``×``size`` as uint8 ``(3, S, S)``, and its size on disk (width, height)."""
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as img:
            original = img.size
            img = img.convert("RGB")
            if img.size != (size, size):
                img = ImageOps.fit(img, (size, size), method=Image.Resampling.LANCZOS)  # centre crop + resize
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1).copy(), original
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
        decoded = list(pool.map(lambda p: _decode(p, image_size), files))
    small = [(f, wh) for f, (_, wh) in zip(files, decoded) if min(wh) < image_size]
    if small:  # upsampled: blurrier than the data set, and said so
        import warnings

        name, (w, h) = small[0][0].name, small[0][1]
        warnings.warn(f"{len(small)} of {len(files)} images in {folder} are smaller than {image_size}×{image_size} "
                      f"(e.g. {name}: {w}×{h}) and were upsampled; they add blur, not detail", stacklevel=2)
    images = torch.from_numpy(np.stack([a for a, _ in decoded]))
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


def find_afhq(data_path: str | Path | None = None, data_class: str = "cat", *, download: bool = True,
              standin: bool | None = None) -> Path:
    """The folder of one AFHQ domain, found (:func:`afhq_folder`), else — for the default location only —
    the built-in stand-in (``standin``, default: inside a smoke-profile run) or, when ``download``, fetched
    on first use (:func:`fetch_afhq`). The run's metrics record which (``data``)."""
    try:
        folder = afhq_folder(data_path, data_class)
    except AFHQNotFoundError:
        if data_path is not None:  # an explicit folder is the user's: never replaced or filled
            raise
        if standin_allowed() if standin is None else standin:
            from ...standin import ensure_afhq

            folder = afhq_folder(ensure_afhq(), data_class)
            note_data("AFHQ", True, folder, default_data_path() / data_class)
            return folder
        if not download:
            raise
        folder = fetch_afhq(data_class)
    from ...standin import is_standin

    note_data("AFHQ", is_standin(folder), folder, default_data_path() / data_class)
    return folder


def count_images(data_path: str | Path | None = None, data_class: str = "cat", limit: int | None = None) -> int:
    """How many images :func:`load_afhq` with the same arguments would load, without decoding any."""
    n = len(_image_files(find_afhq(data_path, data_class)))
    return n if limit is None else min(n, limit)


def load_afhq(
    data_path: str | Path | None = None,
    data_class: str = "cat",
    image_size: int = 32,
    device: str | torch.device = "cpu",
    limit: int | None = None,
    cache: bool = True,
    *,
    download: bool = True,
    standin: bool | None = None,
) -> AFHQImages:
    """Load one AFHQ domain onto ``device``: see :func:`find_afhq` for where it comes from (the default
    location is fetched on first use when ``download``; a smoke run falls back on the stand-in)."""
    folder = find_afhq(data_path, data_class, download=download, standin=standin)
    images = load_folder(folder, image_size, limit=limit, cache=cache)
    return AFHQImages(images.to(device), folder, data_class)
