"""Built-in stand-ins for MNIST and AFHQ cats, so the smoke profile (and ``make test``) needs no data set.

A stand-in is drawn, not downloaded: deterministic pictures of the same kind as the real data at the
smoke sizes, written once in the real layout (``MNIST/raw/*.gz`` IDX files, ``afhq/train/cat/*.png``)
under ``build/cache/standin/``, so every loader, cache and command line reads it like the real thing.

- **Digits**: each class is a few pen strokes (a closed loop for 0, a bar for 1, …), bent by a random
  affine map and a smooth wobble, drawn with a random pen width at 4× and reduced to 28×28 with
  anti-aliasing, centred like MNIST (ink within the middle 20×20). A classifier tells them apart.
- **Cats**: cartoon cat faces at 64×64 — a fur-coloured head with two ears, eyes, a nose and
  whiskers over a smooth two-colour background — blurred a little, like downsampled photographs.

They are never random noise, and they are never MNIST or AFHQ: a run that uses one says so in a
banner and records ``data: stand-in`` in its metrics (see :func:`nbhelpers.runtime.note_data`).
The smoke profile uses them only when the real data set is absent.
"""
from __future__ import annotations

import gzip
import io
import json
import math
import struct
from pathlib import Path

import numpy as np

from .files import atomic_write_bytes
from .layout import build_dir

__all__ = ["STANDIN_VERSION", "MNIST_COUNTS", "AFHQ_COUNT", "standin_root", "digit_images", "cat_images",
           "ensure_mnist", "ensure_afhq", "is_standin", "mark_key"]

STANDIN_VERSION = 1
"""Bumped whenever the drawings change, so an old cached stand-in is redrawn."""

MNIST_COUNTS: dict[str, int] = {"train": 12000, "test": 10000}
"""Images per split (an equal number of each digit, in a shuffled order). The test split has MNIST's 10,000:
the evaluator takes its reference statistics from the first half and holds out the second."""

AFHQ_COUNT = 300
"""Cat faces in the stand-in's ``afhq/train/cat/`` (the smoke profile uses 256)."""


def standin_root() -> Path:
    """``build/cache/standin/v<version>``: the data root of the stand-ins (MNIST/raw, afhq/train/cat)."""
    return build_dir() / "cache" / "standin" / f"v{STANDIN_VERSION}"


def is_standin(source: object) -> bool:
    """Whether ``source`` (a folder, or a data set's name) is a stand-in's."""
    if isinstance(source, (str, Path)) and "(stand-in)" in str(source):
        return True
    try:
        path = Path(source).resolve()  # type: ignore[arg-type]
    except TypeError:
        return False
    base = (build_dir() / "cache" / "standin").resolve()
    return path == base or base in path.parents


def mark_key(key: dict, source: object) -> dict:
    """A checkpoint key that tells a model trained on a stand-in apart from one trained on the real data
    (``data: stand-in``); a real data set's key is returned unchanged, so its cache stays valid."""
    return {**key, "data_source": "stand-in"} if is_standin(source) else key


# --------------------------------------------------------------------------- digits
def _arc(cx: float, cy: float, rx: float, ry: float, a0: float, a1: float, n: int = 24) -> list[tuple[float, float]]:
    """Points of an elliptic arc from angle ``a0`` to ``a1`` (degrees, 0 = right, 90 = down)."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in np.linspace(a0, a1, n)]


# Each digit: polylines in the unit box (x right, y down). Drawn as a person would write them.
_STROKES: dict[int, list[list[tuple[float, float]]]] = {
    0: [_arc(0.5, 0.5, 0.27, 0.4, 0, 360, 40)],
    1: [[(0.36, 0.25), (0.52, 0.1), (0.52, 0.9)]],
    2: [_arc(0.5, 0.32, 0.26, 0.22, 200, 370) + [(0.24, 0.9), (0.8, 0.9)]],
    3: [_arc(0.48, 0.3, 0.25, 0.2, 200, 450, 20) + _arc(0.48, 0.7, 0.28, 0.2, 270, 520, 20)],
    4: [[(0.66, 0.9), (0.66, 0.1), (0.2, 0.64), (0.82, 0.64)]],
    5: [[(0.76, 0.1), (0.32, 0.1), (0.28, 0.46)] + _arc(0.5, 0.64, 0.27, 0.26, 225, 500, 24)],
    6: [_arc(0.52, 0.45, 0.3, 0.38, 290, 180, 14) + _arc(0.5, 0.68, 0.26, 0.22, 180, 540, 30)],
    7: [[(0.2, 0.12), (0.8, 0.12), (0.42, 0.9)]],
    8: [_arc(0.5, 0.29, 0.2, 0.19, 90, 450, 28), _arc(0.5, 0.7, 0.25, 0.21, -90, 270, 30)],
    9: [_arc(0.5, 0.32, 0.24, 0.22, 0, 360, 30), [(0.74, 0.32), (0.7, 0.9)]],
}


def _digit(label: int, rng: np.random.Generator, size: int = 28, scale: int = 4) -> np.ndarray:
    from PIL import Image, ImageDraw

    big = size * scale
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    angle = math.radians(rng.uniform(-12, 12))
    shear = rng.uniform(-0.25, 0.25)
    sx, sy = rng.uniform(0.75, 1.05), rng.uniform(0.85, 1.05)
    ox, oy = rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04)
    phase, amp = rng.uniform(0, 2 * math.pi, 2), rng.uniform(0, 0.03, 2)
    width = rng.uniform(1.7, 3.2) * scale
    box = 20 * scale  # ink inside the middle 20×20, as MNIST centres its digits
    for stroke in _STROKES[label]:
        pts = []
        for x, y in stroke:
            x, y = x - 0.5, y - 0.5
            x, y = x + amp[0] * math.sin(5 * y + phase[0]), y + amp[1] * math.sin(5 * x + phase[1])
            x, y = sx * (x + shear * y), sy * y
            x, y = x * math.cos(angle) - y * math.sin(angle), x * math.sin(angle) + y * math.cos(angle)
            pts.append((big / 2 + (x + ox) * box, big / 2 + (y + oy) * box))
        draw.line(pts, fill=255, width=int(round(width)), joint="curve")
        r = width / 2  # round pen ends
        for px, py in (pts[0], pts[-1]):
            draw.ellipse((px - r, py - r, px + r, py + r), fill=255)
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def digit_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` stand-in digits ``(n, 28, 28)`` uint8 and their labels ``(n,)`` uint8, a class each in turn, shuffled."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    images = np.stack([_digit(int(k), rng) for k in labels]) if n else np.zeros((0, 28, 28), np.uint8)
    return images, labels


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:  # mtime 0: the same bytes on every machine
        gz.write(header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes())
    return buf.getvalue()


def ensure_mnist() -> Path:
    """Write the stand-in MNIST (torchvision's file names, gzip'd IDX) once; returns its data root."""
    root = standin_root()
    raw = root / "MNIST" / "raw"
    names = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
    for seed, (split, (img_name, lab_name)) in enumerate(names.items()):
        if (raw / img_name).is_file() and (raw / lab_name).is_file():
            continue
        images, labels = digit_images(MNIST_COUNTS[split], seed=1000 + seed)
        atomic_write_bytes(raw / img_name, _idx_bytes(images))  # images first: the labels' file marks it done
        atomic_write_bytes(raw / lab_name, _idx_bytes(labels))
    _write_readme(root)
    return root


# --------------------------------------------------------------------------- cats
def _lerp(a: np.ndarray, b: np.ndarray, w: float) -> tuple[int, ...]:
    return tuple(int(v) for v in np.clip(a + (b - a) * w, 0, 255))


def _cat(rng: np.random.Generator, size: int = 64, scale: int = 2) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFilter

    s = size * scale
    yy, xx = np.mgrid[0:s, 0:s] / s
    c0, c1 = rng.uniform(40, 230, 3), rng.uniform(40, 230, 3)
    d = rng.uniform(0, 2 * math.pi)
    w = np.clip(0.5 + (np.cos(d) * (xx - 0.5) + np.sin(d) * (yy - 0.5)), 0, 1)[..., None]
    bg = (c0 * (1 - w) + c1 * w).astype(np.uint8)
    img = Image.fromarray(bg, "RGB")
    draw = ImageDraw.Draw(img)
    fur = rng.choice([np.array(c, float) for c in ((230, 150, 60), (90, 80, 75), (235, 230, 220), (160, 120, 80),
                                                       (40, 38, 36), (200, 190, 170))]) + rng.uniform(-20, 20, 3)
    dark = fur * 0.55
    cx, cy = s * rng.uniform(0.44, 0.56), s * rng.uniform(0.52, 0.62)
    rx, ry = s * rng.uniform(0.3, 0.38), s * rng.uniform(0.26, 0.32)
    tilt = rng.uniform(-0.08, 0.08) * s
    for side in (-1, 1):  # ears: triangles above the head, a darker inside
        bx = cx + side * rx * 0.62
        tip = (bx + side * rx * rng.uniform(0.05, 0.3) + tilt * side * 0.2, cy - ry * rng.uniform(1.35, 1.7))
        outer = [(bx - rx * 0.42, cy - ry * 0.45), tip, (bx + rx * 0.42, cy - ry * 0.45)]
        draw.polygon(outer, fill=_lerp(fur, fur, 0))
        inner = [((p[0] + bx) / 2, (p[1] + cy - ry * 0.3) / 2) for p in outer]
        draw.polygon(inner, fill=_lerp(fur, np.array([230.0, 150, 160]), 0.6))
    for k in range(8, 0, -1):  # the head, shaded from the rim to the centre
        f = k / 8
        draw.ellipse((cx - rx * f, cy - ry * f, cx + rx * f, cy + ry * f), fill=_lerp(fur, dark, 0.35 * f ** 3))
    eye = np.array(rng.choice([(120, 180, 60), (200, 160, 40), (80, 140, 200)]), float)
    ex, ey, er = rx * rng.uniform(0.38, 0.48), cy - ry * rng.uniform(0.1, 0.25), rx * rng.uniform(0.14, 0.2)
    for side in (-1, 1):
        x0 = cx + side * ex
        draw.ellipse((x0 - er, ey - er * 0.8, x0 + er, ey + er * 0.8), fill=_lerp(eye, eye, 0))
        draw.ellipse((x0 - er * 0.3, ey - er * 0.75, x0 + er * 0.3, ey + er * 0.75), fill=(15, 15, 15))
    ny = cy + ry * rng.uniform(0.15, 0.3)
    draw.polygon([(cx - rx * 0.1, ny), (cx + rx * 0.1, ny), (cx, ny + ry * 0.12)], fill=(210, 120, 130))
    for side in (-1, 1):
        for dy in (-0.04, 0.04):
            draw.line([(cx + side * rx * 0.2, ny + ry * 0.1), (cx + side * rx * 1.05, ny + ry * (0.05 + 3 * dy))],
                      fill=(235, 235, 235), width=max(1, scale))
    img = img.filter(ImageFilter.GaussianBlur(radius=0.8 * scale))
    return np.asarray(img.resize((size, size), Image.Resampling.LANCZOS), dtype=np.uint8)


def cat_images(n: int, seed: int = 2000) -> np.ndarray:
    """``n`` stand-in cat faces ``(n, 64, 64, 3)`` uint8."""
    rng = np.random.default_rng(seed)
    return np.stack([_cat(rng) for _ in range(n)]) if n else np.zeros((0, 64, 64, 3), np.uint8)


def ensure_afhq() -> Path:
    """Write the stand-in cats once as ``afhq/train/cat/standin_cat_NNNN.png``; returns the split folder ``afhq/train``."""
    from PIL import Image

    root = standin_root()
    folder = root / "afhq" / "train" / "cat"
    done = folder / ".complete"
    if not done.is_file():
        for i, arr in enumerate(cat_images(AFHQ_COUNT)):
            buf = io.BytesIO()
            Image.fromarray(arr, "RGB").save(buf, format="PNG")
            atomic_write_bytes(folder / f"standin_cat_{i:04d}.png", buf.getvalue())
        atomic_write_bytes(done, json.dumps({"images": AFHQ_COUNT, "version": STANDIN_VERSION}).encode())
    _write_readme(root)
    return root / "afhq" / "train"


def _write_readme(root: Path) -> None:
    note = root / "README.txt"
    if not note.is_file():
        atomic_write_bytes(note, (
            "Stand-in data drawn by nbhelpers.standin for smoke runs where MNIST or AFHQ is absent.\n"
            "These are synthetic pictures, not MNIST and not AFHQ. Delete this folder at any time.\n").encode())
