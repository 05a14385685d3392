"""Temp files, atomic writes, lock files and the liveness of the processes that hold them.

A file is written to a temp file beside it that names its writer (host, pid), then renamed over it, so an
interrupted write never leaves a torn file and the temps of a writer that died (``kill -9``) are found and
removed. A :class:`FolderLock` keeps two runs out of the same folder and takes over a lock whose owner exited.
"""
from __future__ import annotations

import atexit
import json
import os
import re
import secrets
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ._checks import OutputError


def _host() -> str:
    """This machine's name, reduced to ``[A-Za-z0-9-]`` (it goes into temp and lock file names)."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def temp_path(path: Path, suffix: str = ".tmp") -> Path:
    """A temp file name beside ``path`` that names its writer: ``.<name>.<host>.<pid>.<random><suffix>``.

    :func:`remove_stale_temps` deletes such files once their writer is gone (e.g. after ``kill -9``).
    """
    path = Path(path)
    return path.with_name(f".{path.name}.{_host()}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")


_LEGACY_TEMP_AGE_S = 3600.0


def remove_stale_temps(path: Path, suffixes: tuple[str, ...] = (".tmp", ".part")) -> list[Path]:
    """Delete the temp files of ``path`` (see :func:`temp_path`) whose writer on this machine has exited.

    Temps of live writers and of other machines are kept. Temps named by older versions
    (``.<name>.<random>.tmp``, no writer recorded) are deleted once an hour old. Returns what was deleted.
    """
    path = Path(path)
    folder, prefix = path.parent, f".{path.name}."
    host = _host()
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not name.startswith(prefix) or not name.endswith(suffixes):
            continue
        rest = name[len(prefix):]
        parts = rest.split(".")
        stale = False
        if len(parts) == 4 and parts[1].isdigit():  # host.pid.random.suffix
            stale = parts[0] == host and not pid_alive(int(parts[1]))
        elif len(parts) == 2:  # the old mkstemp name: random.tmp
            try:
                stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_TEMP_AGE_S
            except OSError:
                stale = False
        if stale:
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except FileNotFoundError:
                pass
    return removed


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and an atomic rename.

    The temp file names its writer (:func:`temp_path`); temps left by writers that died (``kill -9``
    mid-write) are removed first. The file gets the usual permissions of a new file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = temp_path(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_figure(fig: Any, path: Path, dpi: int = 110, **kwargs: Any) -> Path:
    """Write a matplotlib figure as a byte-stable PNG (atomically; no varying metadata).

    The same figure drawn with the same library versions gives the same bytes, so a re-run with
    the same seed and thread count leaves an unchanged file (its modification time too: equal
    bytes are not rewritten).
    """
    import io

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"figures are written as PNG; got the file name {path.name!r} (use a .png suffix)")
    buf = io.BytesIO()
    kwargs.setdefault("bbox_inches", "tight")
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None}, **kwargs)
    data = buf.getvalue()
    if path.is_file() and path.read_bytes() == data:
        return path
    atomic_write_bytes(path, data)
    return path


def _lock_pid(value: Any) -> int:
    """The pid a lock file names, or -1 (no live process) when it names none a process could have."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 2**31:
        return -1
    return value


class FolderLock:
    """A lock file ``path`` holding the owner's pid and host, created atomically (``O_EXCL``).

    A second run that finds a live owner stops with one :class:`OutputError` naming the owner; a lock
    whose owner on this machine has exited (``kill -9``, a dead launcher) is stale and taken over.
    Taking a lock this process already holds is a no-op (the outer holder releases it).
    Creating it is also the check that the folder is writable, before any work is done.
    """

    def __init__(self, path: Path, what: str = "this run") -> None:
        self.path = Path(path)
        self.what = what
        self.held = False

    def _owner(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.path.read_text())
            return info if isinstance(info, dict) else None
        except (OSError, ValueError):
            return None

    def acquire(self) -> "FolderLock":
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create folder {folder} ({exc.strerror or exc}); choose a writable folder") from None
        if not folder.is_dir():
            raise OutputError(f"{folder} is not a folder; choose a folder for the outputs")
        me = {"pid": os.getpid(), "host": _host(), "started": time.strftime("%Y-%m-%d %H:%M:%S"), "for": self.what}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is None:  # unreadable or half-written: stale after a minute
                    try:
                        age = time.time() - self.path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    if age < 60:
                        raise OutputError(f"{self.path} is being created by another run; wait, or delete it if no run "
                                          f"is using {folder}") from None
                elif owner.get("host") == me["host"] and owner.get("pid") == me["pid"]:
                    return self  # held by this process already (an outer call); that call releases it
                elif _lock_pid(owner.get("pid")) < 0 or (owner.get("host") == me["host"]
                                                          and not pid_alive(_lock_pid(owner.get("pid")))):
                    # its run has exited (kill -9, a dead launcher), or the file names no process: stale
                    print(f"taking over the stale lock {self.path} (pid {owner.get('pid')!r} is not running)",
                          file=sys.stderr)
                else:
                    raise OutputError(
                        f"{folder} is in use by another run (pid {owner.get('pid')} on {owner.get('host')}, started "
                        f"{owner.get('started')}, {owner.get('for', 'a run')}); wait for it to finish or stop it, "
                        f"or delete {self.path} if that run is gone") from None
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass
                continue
            except OSError as exc:
                raise OutputError(f"cannot write in {folder} ({exc.strerror or exc}); choose a writable folder") from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            atexit.register(self.release)  # also gone when the process ends after an error
            return self
        raise OutputError(f"could not take the lock {self.path}; delete it if no run is using {folder}")

    def release(self) -> None:
        if self.held:
            self.held = False
            owner = self._owner()
            if owner is None or owner.get("pid") == os.getpid():
                try:
                    self.path.unlink()
                except FileNotFoundError:
                    pass

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
