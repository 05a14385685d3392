"""The checkpoint file that :func:`nbhelpers.training.train` writes and reads, and where it lives.

* ``checkpoint_path(name, key, profile)``: ``checkpoints/<name>-<config_hash(key)>.pt``, keyed by the model's
  description (:func:`config_hash`); :func:`key_json` is the key a checkpoint stores and must match to be loaded.
* :func:`save_checkpoint` writes atomically (temp file + rename); :func:`load_checkpoint` reads with
  ``torch.load(weights_only=True)`` and turns any unreadable file into one :class:`CheckpointError` naming it.
* :func:`check_checkpoint_state` checks what a loaded checkpoint claims (its :func:`weights_digest`, finite
  weights, step and loss history) before it is trained on or sampled from.
* :func:`rng_state` / :func:`set_rng_state`: the random state saved with an unfinished run, so it resumes
  bit-for-bit.

A checkpoint is a dict: ``format`` (:data:`CHECKPOINT_FORMAT`), ``key``, ``model``, ``ema``, ``digest``,
``optimizer``, ``scheduler``, ``step``, ``finished``, ``losses`` (float64), ``rng``, ``seconds``, ``snapshots``
and ``scaler``.
"""
from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ._checks import DataError
from .devices import exact, exact_device
from .files import atomic_write_bytes
from .layout import checkpoints_dir

CHECKPOINT_FORMAT = 1


def config_hash(key: dict[str, Any]) -> str:
    """Stable short hash of a JSON-serialisable description of a trained model."""
    blob = json.dumps(key, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def checkpoint_path(name: str, key: dict[str, Any], profile: str | None = None, directory: Path | None = None) -> Path:
    """``checkpoints/<name>-<hash of key>.pt`` (smoke runs: ``build/smoke/checkpoints``)."""
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"checkpoint name must be a plain word, got {name!r}")
    base = Path(directory) if directory is not None else checkpoints_dir(profile)
    return base / f"{name}-{config_hash(key)}.pt"


def key_json(key: dict[str, Any] | None, config: Any) -> str:
    """A checkpoint's key as stored: ``{"train": asdict(config), "model": key}`` as sorted JSON (``config`` a
    :class:`nbhelpers.training.TrainConfig`), without
    ``snapshot_steps`` when there are none (the keys models were cached under before snapshots existed).
    :func:`nbhelpers.training.train` loads or resumes a checkpoint only when this string matches."""
    train_fields = asdict(config)
    if not train_fields["snapshot_steps"]:
        del train_fields["snapshot_steps"]
    if train_fields["amp_dtype"] == "auto":  # the card's choice, like the device itself, is not part of the model
        del train_fields["amp_dtype"]
    full = {"train": train_fields, "model": key or {}}
    return json.dumps(full, sort_keys=True, default=str)


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Atomic ``torch.save`` (temp file + rename): an interrupted write never leaves a torn file."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


class CheckpointError(DataError):
    """A checkpoint file cannot be read (empty, truncated, not a checkpoint); the message names it."""


@exact()  # the loss history is float64: loaded on the host
def load_checkpoint(path: Path, map_location: str | torch.device = "cpu", *, remedy: str = "delete it to retrain"
                    ) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` of a checkpoint written by :func:`save_checkpoint`, onto
    ``map_location``, or onto the CPU where that device has no float64 (MPS: the loss history is float64;
    ``load_state_dict`` moves the weights).

    An unreadable file (empty, truncated, garbage, or holding something else than a checkpoint's
    dict) raises one :class:`CheckpointError` naming the file and ``remedy``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist or is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes); {remedy}")
    try:
        state = torch.load(path, map_location=exact_device(map_location), weights_only=True)
    except Exception as exc:  # torch raises many types here (EOFError, RuntimeError, UnpicklingError, KeyError …)
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "weights_only" in why or "Weights only load failed" in why:
            why = "it holds objects that are not plain tensors and containers"
        raise CheckpointError(f"checkpoint {path} ({size} bytes) cannot be read: {why[:200]}; {remedy}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(state).__name__}, not a checkpoint dict; {remedy}")
    return state


def weights_digest(*state_dicts: dict[str, torch.Tensor] | None) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of the tensors of ``state_dicts`` (None skipped):
    written into every checkpoint and checked on load, so a damaged file is never trained on or sampled from."""
    h = hashlib.sha256()
    for sd in state_dicts:
        if sd is None:
            continue
        for name, t in sd.items():
            t = t.detach().cpu().contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def check_checkpoint_state(path: Path, state: dict[str, Any], steps: int) -> None:
    """What a checkpoint claims, checked before it is used: its digest (when it has one), finite weights,
    and a step within ``[0, steps]`` with one loss per step; else one :class:`CheckpointError` naming it."""
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= steps:
        raise CheckpointError(f"checkpoint {path} says it is at step {step!r} of a {steps}-step run; it was not "
                              f"written by this run's configuration; delete it to retrain")
    losses = state.get("losses")
    if not isinstance(losses, torch.Tensor) or losses.numel() != step:
        n = losses.numel() if isinstance(losses, torch.Tensor) else losses
        raise CheckpointError(f"checkpoint {path} holds {n!r} losses for {step} steps; delete it to retrain")
    if state.get("digest") is not None and weights_digest(state.get("model"), state.get("ema")) != state["digest"]:
        raise CheckpointError(f"checkpoint {path}: its weights do not match the digest written with them (the file "
                              f"is damaged); delete it to retrain")
    for part in ("model", "ema"):
        sd = state.get(part) or {}
        bad = [n for n, t in sd.items() if isinstance(t, torch.Tensor) and t.is_floating_point()
               and not bool(torch.isfinite(t).all())]
        if bad:
            raise CheckpointError(f"checkpoint {path}: {part} weights {bad[0]!r} hold NaN or infinity; delete it to "
                                  f"retrain")


def rng_state(gen: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
    """The random state a resumed run needs: the loop's generator, torch's global one, and the device's global
    one on CUDA or MPS (dropout draws from it); saved as a checkpoint's ``"rng"``."""
    state = {"generator": gen.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    elif device.type == "mps":  # dropout draws from the device's global generator
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: dict[str, torch.Tensor], gen: torch.Generator, device: torch.device) -> None:
    """Restore what :func:`rng_state` saved into ``gen`` and the global generators (a device's only when saved)."""
    gen.set_state(state["generator"].cpu())
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    elif device.type == "mps" and "mps" in state:
        torch.mps.set_rng_state(state["mps"].cpu())
