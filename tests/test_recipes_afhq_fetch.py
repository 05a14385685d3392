"""AFHQ on first use: a resumable download from a local HTTP server, the digest, only the cat domain kept,
and one line naming the folder and the variable when it cannot be had. No request leaves 127.0.0.1."""
from __future__ import annotations

import hashlib
import http.server
import io
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import nbhelpers as nb
from nbhelpers._checks import DataError
from nbhelpers.recipes import afhq


def _png(seed: int) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr, "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _archive() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("README.txt", b"not an image")  # a top-level extra: skipped, not nested under afhq/afhq
        for i, cls in enumerate(("cat", "dog", "wild")):
            for split in ("train", "val"):
                for k in range(3):
                    zf.writestr(f"afhq/{split}/{cls}/{cls}_{split}_{k}.png", _png(100 * i + 10 * k + len(split)))
    return buf.getvalue()


class _Server:
    """A local HTTP server of one file that honours ``Range`` and can cut its first answer short."""

    def __init__(self, body: bytes, cut_first_at: int | None = None) -> None:
        self.body, self.cut = body, cut_first_at
        self.ranges: list[str | None] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.ranges.append(rng)
                start = int(rng.split("=")[1].split("-")[0]) if rng else 0
                if start >= len(outer.body):
                    self.send_response(416)
                    self.end_headers()
                    return
                part = outer.body[start:]
                self.send_response(206 if rng else 200)
                self.send_header("Content-Length", str(len(part)))
                self.end_headers()
                if outer.cut is not None:  # the first answer stops after `cut` bytes: a dropped connection
                    self.wfile.write(part[:outer.cut])
                    outer.cut = None
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(part)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/afhq.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "_Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def archive(monkeypatch) -> bytes:
    body = _archive()
    monkeypatch.setitem(afhq.AFHQ_SHA256, "v1", hashlib.sha256(body).hexdigest())
    return body


def test_first_use_fetches_and_keeps_only_the_cat_domain(tmp_path, monkeypatch, archive, capsys):
    with _Server(archive) as server:
        monkeypatch.setitem(afhq.AFHQ_URLS, "v1", server.url)
        folder = afhq.fetch_afhq("cat", root=tmp_path)
    assert folder == tmp_path / "afhq" / "train" / "cat"
    assert sorted(p.name for p in folder.iterdir()) == [f"cat_train_{k}.png" for k in range(3)]
    assert sorted(p.name for p in (tmp_path / "afhq").iterdir()) == ["train", "val"]
    assert not any((tmp_path / "afhq" / s / c).exists() for s in ("train", "val") for c in ("dog", "wild"))
    assert (tmp_path / "afhq" / "val" / "cat" / "cat_val_0.png").is_file()
    assert not (tmp_path / "afhq_v1.zip").exists() and not (tmp_path / "afhq_v1.zip.part").exists()
    assert not (tmp_path / "README.txt").exists() and not (tmp_path / "afhq" / "afhq").exists()
    assert "downloading the AFHQ v1 archive" in capsys.readouterr().out
    data = afhq.load_afhq(tmp_path / "afhq" / "train", "cat", image_size=8, cache=False)
    assert data.images.shape == (3, 3, 8, 8)


def test_an_interrupted_download_resumes_from_its_partial_file(tmp_path, monkeypatch, archive):
    cut = len(archive) // 3
    with _Server(archive, cut_first_at=cut) as server:
        monkeypatch.setitem(afhq.AFHQ_URLS, "v1", server.url)
        with pytest.raises(afhq.AFHQNotFoundError, match=r"could not be downloaded"):
            afhq.fetch_afhq("cat", root=tmp_path)
        part = tmp_path / "afhq_v1.zip.part"
        assert part.stat().st_size == cut  # what arrived is kept for the next try
        afhq.fetch_afhq("cat", root=tmp_path)
    assert server.ranges == [None, f"bytes={cut}-"]  # the second request asked only for the rest
    assert len(list((tmp_path / "afhq" / "train" / "cat").iterdir())) == 3


def test_a_complete_partial_file_is_kept_on_416(tmp_path, monkeypatch, archive):
    (tmp_path / "afhq_v1.zip.part").write_bytes(archive)  # everything arrived, the rename did not happen
    with _Server(archive) as server:
        monkeypatch.setitem(afhq.AFHQ_URLS, "v1", server.url)
        afhq.fetch_afhq("cat", root=tmp_path)
    assert server.ranges == [f"bytes={len(archive)}-"]
    assert (tmp_path / "afhq" / "train" / "cat" / "cat_train_0.png").is_file()


def test_a_download_with_another_digest_is_removed_not_resumed(tmp_path, monkeypatch, archive):
    monkeypatch.setitem(afhq.AFHQ_SHA256, "v1", "0" * 64)
    with _Server(archive) as server:
        monkeypatch.setitem(afhq.AFHQ_URLS, "v1", server.url)
        with pytest.raises(DataError, match=r"afhq_v1.zip.part .*SHA-256 .* expected 0000.*try the download again"):
            afhq.fetch_afhq("cat", root=tmp_path)
    assert not (tmp_path / "afhq_v1.zip.part").exists() and not (tmp_path / "afhq").exists()


def test_offline_stops_at_once_with_one_line_naming_the_folder_and_the_variable(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nobody listens on: the connection is refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setitem(afhq.AFHQ_URLS, "v1", f"http://127.0.0.1:{port}/afhq.zip")
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(tmp_path / "data"))
    started = time.monotonic()
    with pytest.raises(afhq.AFHQNotFoundError, match=r"(?i)could not be downloaded.*refused") as err:
        afhq.load_afhq(data_class="cat", image_size=8, standin=False)
    msg = str(err.value)
    assert time.monotonic() - started < 10
    assert "\n" not in msg
    assert str(tmp_path / "data" / "afhq" / "train" / "cat") in msg and "NBHELPERS_DATA_DIR" in msg
    assert "refused" in msg.lower()


def test_a_read_only_data_root_is_named_in_the_same_line(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(afhq.data, "download_afhq", refuse)
    with pytest.raises(afhq.AFHQNotFoundError, match=r"not under .*afhq/train/cat and could not be downloaded "
                                                     r"\(Permission denied\).*NBHELPERS_DATA_DIR"):
        afhq.fetch_afhq("cat", root=tmp_path)


def test_an_explicit_folder_is_never_filled_or_replaced(tmp_path, monkeypatch):
    monkeypatch.setattr(afhq.data, "fetch_afhq", lambda *a, **k: pytest.fail("fetched for an explicit folder"))
    with pytest.raises(afhq.AFHQNotFoundError, match=r"No AFHQ 'cat' images under"):
        afhq.load_afhq(tmp_path / "mine", "cat", image_size=8, standin=True)


def test_an_archive_that_unpacks_to_more_than_it_declares_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(afhq.data, "AFHQ_MAX_MEMBER_BYTES", 1000)
    archive = tmp_path / "afhq_v1.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("afhq/train/cat/big.png", b"\0" * 5000)  # 5 kB of zeros compress to a few bytes
    monkeypatch.setitem(afhq.AFHQ_SHA256, "v1", hashlib.sha256(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match=r"big.png.*5,000 bytes, more than the 1,000"):
        afhq.download_afhq(tmp_path)
    assert not (tmp_path / "afhq" / "train" / "cat" / "big.png").exists()


def test_the_notebook_settings_look_for_the_data_first(tmp_path, monkeypatch):
    # offline and no cats: notebook 08's settings cell stops before any work, naming the folder
    monkeypatch.setenv("NBHELPERS_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("NBHELPERS_PROFILE", raising=False)

    def offline(*a, **k):
        raise afhq.AFHQNotFoundError(f"AFHQ cat images are not under {tmp_path} and could not be downloaded")

    monkeypatch.setattr(afhq.data, "fetch_afhq", offline)
    run = nb.setup("08_afhq_ddpm", device="cpu", profile="cpu")
    with pytest.raises(afhq.AFHQNotFoundError, match="could not be downloaded"):
        afhq.notebook_settings(run.profile)


def test_the_shipped_digest_and_url_are_the_published_ones():
    assert afhq.AFHQ_URLS["v1"].startswith("https://") and len(afhq.AFHQ_SHA256["v1"]) == 64
    assert Path(afhq.default_data_path()).parts[-2:] == ("afhq", "train")
