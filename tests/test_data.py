"""MNIST loading from IDX files (plain and gzip'd, read-only roots), the offline error, the batcher."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from nbhelpers import data
from nbhelpers.data import MNISTNotFoundError, TensorBatcher, load_mnist, read_idx
from nbhelpers.runtime import data_dir
from tests.needs import need


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def _write_mnist(root, n_train=12, n_test=5, gz=True, seed=0):
    """Tiny MNIST look-alike in torchvision's layout; returns the arrays written."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        images[0, 0, 0], images[0, 0, 1] = 0, 255
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, arr in zip(data.MNIST_FILES[split], (images, labels)):
            blob = _idx_bytes(arr)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(blob))
            else:
                (raw / name).write_bytes(blob)
        out[split] = (images, labels)
    return out


@pytest.mark.parametrize("gz", [True, False], ids=["gzip", "plain"])
def test_load_mnist_reads_idx_and_scales_to_minus_one_one(tmp_path, gz):
    arrays = _write_mnist(tmp_path, gz=gz)
    ds = load_mnist("train", root=tmp_path, download=False)
    images, labels = arrays["train"]
    assert ds.images.shape == (12, 1, 28, 28) and ds.images.dtype == torch.float32
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == labels.tolist()
    assert ds.images[0, 0, 0, 0] == -1.0 and ds.images[0, 0, 0, 1] == 1.0
    expected = torch.from_numpy(images.astype(np.float32)) / 127.5 - 1
    assert torch.allclose(ds.images[:, 0], expected)
    test = load_mnist("test", root=tmp_path, download=False, limit=3)
    assert len(test) == 3 and test.labels.tolist() == arrays["test"][1][:3].tolist()


def test_data_root_comes_from_the_environment(tmp_path, monkeypatch):
    _write_mnist(tmp_path, n_train=7)
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(tmp_path))
    assert len(load_mnist("train", download=False)) == 7
    assert data.has_mnist()


def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` read-only as the OS does for a user without write permission: creating, writing,
    renaming or deleting anything in it raises ``PermissionError`` (``chmod`` alone does not stop root)."""
    import builtins
    import errno
    import io
    import os

    folder = folder.resolve()

    def inside(path) -> bool:
        if not isinstance(path, (str, bytes, os.PathLike)):
            return False  # a file descriptor
        return Path(os.fsdecode(path)).resolve().is_relative_to(folder)

    def check(*paths) -> None:
        for path in paths:
            if inside(path):
                raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))

    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            check(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND):
            check(path)
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)  # Path.open, Path.write_*
    monkeypatch.setattr(os, "open", guarded_os_open)  # tempfile, Path.touch
    for name in ("mkdir", "rmdir", "remove", "unlink", "replace", "rename", "link", "symlink"):
        real = getattr(os, name)
        monkeypatch.setattr(os, name, lambda *a, _real=real, **k: (check(*a[:2]), _real(*a, **k))[1])


def test_read_only_root_works_and_nothing_is_written(tmp_path, monkeypatch):
    _write_mnist(tmp_path)
    raw = tmp_path / "MNIST" / "raw"
    before = sorted(p.name for p in raw.iterdir())
    _read_only(monkeypatch, tmp_path)
    writes = (lambda: (raw / "probe").write_bytes(b""), lambda: (raw / "sub").mkdir(), lambda: gzip.open(raw / "x.gz", "wb"))
    for write in writes:
        with pytest.raises(PermissionError, match="Permission denied"):  # the folder is read-only, root or not
            write()
    ds = load_mnist("test", root=tmp_path, download=True)  # present: no download attempted
    assert len(ds) == 5
    assert sorted(p.name for p in raw.iterdir()) == before


def test_offline_without_files_is_one_clear_error(tmp_path):
    with pytest.raises(MNISTNotFoundError, match=r"train-images-idx3-ubyte\.gz") as err:
        load_mnist("train", root=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte.gz" in msg and "t10k-labels-idx1-ubyte.gz" in msg
    assert "NBHELPERS_DATA_DIR" in msg


def test_failed_download_gives_the_same_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets

    class Offline:
        def __init__(self, *args, **kwargs):
            raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    with pytest.raises(MNISTNotFoundError, match="could not be downloaded"):
        load_mnist("test", root=tmp_path, download=True)


def test_bad_files_and_arguments(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    short = tmp_path / "short"
    short.write_bytes(_idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(short)
    with pytest.raises(ValueError, match="valid choices: train, test"):
        load_mnist("val", root=tmp_path)


def test_batcher_draws_aligned_reproducible_batches():
    n = 50
    images = torch.arange(n, dtype=torch.float32).reshape(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    labels = torch.arange(n)
    b = TensorBatcher(images, labels, batch_size=16)
    first = b(torch.Generator().manual_seed(3))
    again = b(torch.Generator().manual_seed(3))
    assert first.x.shape == (16, 1, 2, 2) and torch.equal(first.x, again.x)
    assert torch.equal(first.x[:, 0, 0, 0].long(), first.y)  # image i travels with label i
    # uniform over the set: every index appears over many draws, counts near their mean
    gen = torch.Generator().manual_seed(0)
    counts = torch.bincount(torch.cat([b.indices(gen) for _ in range(500)]), minlength=n).double()
    mean = 500 * 16 / n
    assert counts.min() > 0 and abs(counts.mean() - mean) < 1e-9 and counts.std() < 2 * mean ** 0.5
    assert TensorBatcher(images, None, 4)(gen).y is None
    with pytest.raises(ValueError, match="batch_size"):
        TensorBatcher(images, labels, 0)
    with pytest.raises(ValueError, match="labels"):
        TensorBatcher(images, labels[:3], 4)


def test_dataset_helpers(tmp_path):
    _write_mnist(tmp_path, n_train=40)
    ds = load_mnist("train", root=tmp_path, download=False)
    assert len(ds.sample(10, torch.Generator().manual_seed(0))) == 10
    grid = ds.per_class(1)
    assert grid.labels.tolist() == sorted(grid.labels.tolist())
    batch = ds.batcher(8)(torch.Generator().manual_seed(0))
    assert batch.x.shape == (8, 1, 28, 28) and batch.y.shape == (8,)


def test_real_mnist_counts():
    """Label counts documented for the MNIST release (shared/data/README.md)."""
    need(data.has_mnist(), f"MNIST not under the data root {data_dir()} (set NBHELPERS_DATA_DIR)")
    train, test = load_mnist("train", download=False), load_mnist("test", download=False)
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert train.images.min() == -1 and train.images.max() == 1
    assert abs(float((train.images.mean() + 1) * 127.5) - 33.318) < 1e-2
