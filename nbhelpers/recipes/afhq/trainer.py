"""The AFHQ trainer behind ``python -m nbhelpers.afhq`` and notebook 08: settings, resume, periodic samples and FID, DDP.

:func:`train_afhq` trains (or resumes, or loads) a DDPM on one AFHQ domain with
:func:`nbhelpers.training.train`; under ``torchrun`` it starts the process group itself (gloo on
CPU, nccl on CUDA) and every rank trains on its slice of the same global batch.
"""
from __future__ import annotations

import copy
import datetime
import json
import math
import os
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ... import dryrun
from ...checkpoints import CHECKPOINT_FORMAT, CheckpointError, key_json, load_checkpoint, save_checkpoint
from ...devices import get_device, seed_everything
from ...files import FolderLock, atomic_write_bytes
from ...layout import data_dir
from ...training import TrainConfig, TrainResult, train, unwrap, world
from .data import check_class, download_afhq, load_afhq
from .diffusion import Diffusion, afhq_unet_config, diffusion_loss, make_batch_fn, make_diffusion, sample_images
from .figures import save_image_grid, visualize, write_fid_log, write_loss_log

__all__ = ["AFHQConfig", "train_key", "train_config", "adopt_checkpoint", "AFHQResult", "SampleAndScore",
           "train_afhq", "check_save_folder"]


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
        if not self._samples(step):  # nothing to draw: only the FID history's entry, no checkpoint read back
            self._outputs(step, [])
            return
        state = load_checkpoint(self.checkpoint, map_location=next(self.sampler.parameters()).device)
        if int(state["step"]) != step:  # the final step: its checkpoint comes after this hook
            return
        self.sampler.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
        self._outputs(step, [float(v) for v in state["losses"].tolist()])

    def _samples(self, step: int) -> bool:
        """Whether step ``step`` draws samples (a grid for the output folder, or an FID this machine can compute
        and has not recorded), and so needs the checkpoint's weights."""
        return self.out_dir is not None or (self.fid is not None and bool(self.fid.available)
                                            and self.fid_history.get(step) is None)

    def owed(self) -> int | None:
        """The step of an unfinished checkpoint whose outputs were never written (a run killed between writing
        that checkpoint and this hook), else None: a resume starts after that step, so nothing else writes them."""
        if self.every <= 0 or not self.checkpoint.exists():
            return None
        state = load_checkpoint(self.checkpoint, map_location="cpu")
        step = int(state["step"])
        if state.get("finished") or step == 0 or step % self.every:
            return None
        grid_missing = self.out_dir is not None and not (self.out_dir / f"sample-{step:06d}.png").exists()
        fid_missing = self.fid is not None and step not in self.fid_history
        return step if grid_missing or fid_missing else None

    def catch_up(self) -> int | None:
        """Write the outputs :meth:`owed` names, from that checkpoint; returns the step, or None."""
        step = self.owed()
        if step is not None:
            self.log(f"step {step}: writing the samples the interrupted run owed")
            self(step, float("nan"))
        return step

    def finish(self, result: TrainResult) -> None:
        """Outputs for the last step from the trained result (EMA weights when there are any)."""
        self.sampler.load_state_dict(unwrap(result.sampling_model).state_dict())
        self._outputs(result.steps, result.losses)

    def _outputs(self, step: int, losses: list[float]) -> None:
        if self.out_dir is not None:
            grid = sample_images(self.sampler, self.grid_size, torch.Generator().manual_seed(self.seed))
            save_image_grid(grid, self.out_dir / f"sample-{step:06d}.png")
            write_loss_log(self.out_dir, losses)
        if self.fid is not None:
            value = self.fid_history.get(step)
            if value is None and self.fid.available:
                value = self.fid(sample_images(self.sampler, self.fid_samples, torch.Generator().manual_seed(self.seed + 1)))
                self.log(f"step {step}: {self.fid.describe(self.fid_samples)} = {value:.2f}")
            self.fid_history[step] = value
            atomic_write_bytes(self.fid_path, json.dumps({str(k): v for k, v in sorted(self.fid_history.items())}).encode())
            if self.out_dir is not None:
                write_fid_log(self.out_dir, self.fid_history, self.fid.describe(self.fid_samples))


AFHQ_LIMITS: dict[str, int] = {"image_size": 512, "batch_size": 4096, "time_steps": 100_000, "unet_dim": 512,
                               "save_and_sample_every": 10**8, "fid_samples": 100_000}
"""Upper bounds of the trainer's sizes: beyond them a run cannot fit a GPU, or means a typo."""
_LIMIT_WHY = {"image_size": "AFHQ's images are 512×512", "batch_size": "a 32 px batch of 4,096 already needs ~10 GB",
              "time_steps": "the DDPM papers use 1,000", "unet_dim": "dim 512 is a ~2.9 G-parameter UNet; the seed uses 16",
              "save_and_sample_every": "a step count", "fid_samples": "FID's usual 50,000 and then some"}


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
        check_class(self.data_class)
        for name in ("image_size", "batch_size", "time_steps", "unet_dim", "save_and_sample_every", "fid_samples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
            if v > AFHQ_LIMITS[name]:  # stated before any allocation, not an allocator traceback later
                raise ValueError(f"{name} must be at most {AFHQ_LIMITS[name]:,} ({_LIMIT_WHY[name]}), got {v:,}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63 - 1], got {self.seed!r}")
        if not str(self.save_folder).strip():
            raise ValueError("save_folder must name a folder, got '' (the default is ./results)")
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8 (four down-sampling levels), got {self.image_size}")
        if isinstance(self.train_steps, bool) or not isinstance(self.train_steps, int) or self.train_steps < 0:
            raise ValueError(f"train_steps must be a non-negative integer, got {self.train_steps!r}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning_rate must be a positive number, got {self.learning_rate!r}")
        if not (0.0 < self.ema_decay < 1.0):
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay!r}")


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
    new_json = key_json(key, config)
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


DISTRIBUTED_TIMEOUT_MIN = 60
"""How long a rank waits at a collective (e.g. while rank 0 computes FID) before the process group gives up."""


def _init_distributed(device: torch.device) -> tuple[torch.device, bool]:
    """Start the process group under torchrun (``WORLD_SIZE`` set): gloo on CPU, nccl on CUDA."""
    if "WORLD_SIZE" not in os.environ or torch.distributed.is_initialized():
        return device, False
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    # While rank 0 alone samples and scores FID (minutes for 1,000 samples on a small card), the other ranks
    # wait at a barrier: NCCL's default watchdog (10 min) would kill them, so the group waits up to an hour.
    torch.distributed.init_process_group(backend="nccl" if device.type == "cuda" else "gloo",
                                         timeout=datetime.timedelta(minutes=DISTRIBUTED_TIMEOUT_MIN))
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
        from ...metrics.fid import FID

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
    if main_rank:
        hook.catch_up()  # a resumed run first writes what its interrupted step owed
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
