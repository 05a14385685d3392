"""One training loop for every notebook and the AFHQ trainer, with a checkpoint cache.

``train(model, loss_fn, batch_fn, TrainConfig(...), checkpoint=path)``:

* ``batch_fn(generator) -> batch`` draws one batch; ``loss_fn(model, batch, generator) -> loss``
  returns a scalar. Both take the loop's ``torch.Generator`` (on the model's device), so a run is
  reproducible under ``config.seed`` and resumes bit-for-bit on the CPU.
* tqdm progress, per-step loss history, gradient clipping, mixed precision (``amp=True``): the card's dtype
  (:func:`nbhelpers.runtime.amp_dtype`: bf16 from compute capability 8.0, fp16 with a gradient scaler below,
  whose state is checkpointed so a resume is exact; ``amp_dtype="fp16"`` forces it, also on the CPU).
* Optional EMA of the weights, a :class:`torch.optim.swa_utils.AveragedModel` (:func:`ema_model`), and
  optional linear warm-up and cosine decay, a :class:`torch.optim.lr_scheduler.LambdaLR` of
  :meth:`TrainConfig.lr_factor` (:func:`lr_scheduler`).
* A non-finite loss stops training with ``FloatingPointError`` naming the step.
* ``TrainConfig(snapshot_steps=(k, …))`` keeps the sampling model's weights (the EMA copy when there is
  one) as they were after step k: ``TrainResult.snapshots`` and ``TrainResult.snapshot_model(k)``, saved in
  every checkpoint, so a resumed or cached run has them too (an earlier, weaker copy of the model, e.g. for
  :class:`nbhelpers.guidance.AutoGuided`).
* With ``checkpoint=path`` the run is cached: a finished checkpoint with the same key is loaded
  instead of retraining (unless ``retrain=True``); an unfinished one is resumed (model,
  optimizer, learning-rate scheduler, EMA, step, loss history and RNG state); a checkpoint written
  for another key is not loaded and the model is retrained. The file, its key and its checks are
  :mod:`nbhelpers.checkpoints` (written atomically, read with ``torch.load(weights_only=True)``). A
  checkpoint's ``"ema"`` is a plain state_dict of the model (it loads into the bare model); one written
  before the scheduler's state was saved resumes with the scheduler set to its step.
* Under ``torch.distributed`` (e.g. ``torchrun``) the model is wrapped in
  DistributedDataParallel, the history holds the loss averaged over ranks, and only rank 0
  writes checkpoints and shows progress. The generator is seeded identically on every rank:
  a ``batch_fn`` that wants rank-specific data draws the global batch and keeps its own
  slice (see :func:`world`).
"""
from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import dryrun
from ._checks import check_float, check_int
from .checkpoints import (CHECKPOINT_FORMAT, CheckpointError, check_checkpoint_state, key_json, load_checkpoint,
                          rng_state, save_checkpoint, set_rng_state, weights_digest)
from .devices import AMP_CHOICES, amp_dtype, exact
from .files import FolderLock, remove_stale_temps
from .progress import progress_bar


LR_DECAYS = ("none", "cosine")

BatchFn = Callable[[torch.Generator], Any]
LossFn = Callable[[nn.Module, Any, torch.Generator], torch.Tensor]


@dataclass
class TrainConfig:
    """Optimisation settings. Everything here enters the checkpoint key."""

    steps: int
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0
    ema_decay: float | None = None
    warmup_steps: int = 0
    lr_decay: str = "none"
    amp: bool = False
    amp_dtype: str = "auto"
    checkpoint_every: int = 0
    seed: int = 0
    snapshot_steps: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # NumPy / 0-d tensor values become Python numbers (the checkpoint key is the JSON of these fields);
        # Python ints and floats are kept as given, so existing keys do not change.
        def plain(value: Any, checked: Any) -> Any:
            return value if type(value) in (int, float) or value is None else checked

        self.steps = check_int("steps", self.steps, min=0)
        self.lr = plain(self.lr, check_float("lr", self.lr, min=0.0, min_open=True))
        self.weight_decay = plain(self.weight_decay, check_float("weight_decay", self.weight_decay, min=0.0))
        if isinstance(self.betas, (str, bytes)) or not hasattr(self.betas, "__len__") or len(self.betas) != 2:
            raise ValueError(f"betas must be a pair (beta1, beta2) with each in [0, 1), got {self.betas!r}")
        self.betas = tuple(plain(b, check_float(f"betas[{i}]", b, min=0.0, max=1.0, max_open=True))  # type: ignore[assignment]
                           for i, b in enumerate(self.betas))
        self.grad_clip = plain(self.grad_clip, check_float("grad_clip", self.grad_clip, min=0.0, min_open=True,
                                                           allow_none=True))
        self.ema_decay = plain(self.ema_decay, check_float("ema_decay", self.ema_decay, min=0.0, max=1.0, min_open=True,
                                                           max_open=True, allow_none=True))
        self.warmup_steps = check_int("warmup_steps", self.warmup_steps, min=0)
        if not isinstance(self.lr_decay, str) or self.lr_decay not in LR_DECAYS:
            raise ValueError(f"unknown lr_decay {self.lr_decay!r}; valid choices: {', '.join(LR_DECAYS)}")
        if not isinstance(self.amp, (bool, np.bool_)):
            raise ValueError(f"amp must be True or False, got {self.amp!r}")
        self.amp = bool(self.amp)
        if self.amp_dtype not in AMP_CHOICES:
            raise ValueError(f"unknown amp_dtype {self.amp_dtype!r}; valid choices: {', '.join(AMP_CHOICES)}")
        self.checkpoint_every = check_int("checkpoint_every", self.checkpoint_every, min=0)
        self.seed = check_int("seed", self.seed)
        if isinstance(self.snapshot_steps, (str, bytes)) or not hasattr(self.snapshot_steps, "__iter__"):
            raise ValueError(f"snapshot_steps must be a sequence of steps in [1, {self.steps}], got {self.snapshot_steps!r}")
        self.snapshot_steps = tuple(sorted({check_int("snapshot step", k, min=1, max=self.steps)
                                            for k in self.snapshot_steps}))

    @property
    def schedules_lr(self) -> bool:
        """Whether the learning rate changes during training (a warm-up or a decay)."""
        return bool(self.warmup_steps) or self.lr_decay != "none"

    def lr_factor(self, step: int) -> float:
        """Learning-rate multiplier of optimisation step ``step`` (1-based): a linear warm-up
        ``min(1, step / warmup_steps)``, then 1 (``lr_decay="none"``) or the cosine decay
        ``(1 + cos(π·progress)) / 2`` with progress running from 0 after the warm-up to 1 at the last step."""
        factor = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        if self.lr_decay == "cosine" and step > self.warmup_steps:
            progress = (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps)
            factor *= 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
        return factor

    def lr_at(self, step: int) -> float:
        """Learning rate of optimisation step ``step`` (1-based): ``lr * lr_factor(step)``."""
        return self.lr * self.lr_factor(step)


@dataclass
class TrainResult:
    """What :func:`train` returns. ``ema`` is the EMA copy of the model as a plain module (the
    ``AveragedModel``'s ``module``), ``None`` without EMA; ``sampling_model`` is it when there is one."""

    model: nn.Module
    ema: nn.Module | None
    losses: list[float]
    steps: int
    seconds: float
    resumed_from: int = 0
    loaded_from_cache: bool = False
    checkpoint: Path | None = None
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)

    @property
    def sampling_model(self) -> nn.Module:
        return self.ema if self.ema is not None else self.model

    def snapshot_model(self, step: int) -> nn.Module:
        """A copy of :attr:`sampling_model` with the weights it had after ``step`` (one of
        ``TrainConfig.snapshot_steps``), in eval mode and without gradients."""
        if step not in self.snapshots:
            kept = ", ".join(map(str, sorted(self.snapshots))) or "none (TrainConfig.snapshot_steps is empty)"
            raise ValueError(f"no snapshot of the weights after step {step!r}; kept after steps: {kept}")
        model = copy.deepcopy(self.sampling_model)
        model.load_state_dict(self.snapshots[step])
        return model.eval().requires_grad_(False)

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds if self.seconds > 0 and self.steps > 0 else float("nan")


# --------------------------------------------------------------------------- helpers
def world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside ``torch.distributed``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        else:
            return model


def ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """An exponential moving average of ``model``'s parameters, started at its current weights.

    After each optimisation step, ``ema.update_parameters(model)`` sets ``θ_ema ← θ_ema + (1 − decay)(θ − θ_ema)``
    (``torch.lerp``); buffers (BatchNorm statistics) are copied from the model, not averaged (``use_buffers=False``).
    The copy is in eval mode without gradients; ``ema.module`` is the averaged model itself. ``n_averaged`` counts
    the start as one model, so the first update already averages.
    """
    base = unwrap(model)
    ema = AveragedModel(base, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=False)
    ema.update_parameters(base)  # n_averaged 0 → 1: a copy, so every later update is an EMA step
    ema.eval().requires_grad_(False)
    return ema


@torch.no_grad()
def ema_update(ema: AveragedModel, model: nn.Module, decay: float) -> None:
    """One EMA step ``θ_ema ← lerp(θ_ema, θ, 1 − decay)`` with the model's buffers copied — what
    ``ema.update_parameters(model)`` does with :func:`get_ema_multi_avg_fn`, bit for bit, but with no host
    round trip: ``AveragedModel`` reads its counter (``n_averaged == 0``) and moves it to the device every
    call, a GPU sync per training step. Its counter is kept, on the CPU, for the checkpoints."""
    groups: dict[tuple[torch.device, torch.dtype], tuple[list[torch.Tensor], list[torch.Tensor]]] = {}
    for p_ema, p in zip(ema.module.parameters(), unwrap(model).parameters(), strict=True):
        pair = groups.setdefault((p_ema.device, p_ema.dtype), ([], []))
        pair[0].append(p_ema.detach())
        pair[1].append(p.detach().to(p_ema.device))
    for ema_params, params in groups.values():
        if ema_params[0].is_floating_point() or ema_params[0].is_complex():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        else:
            for p_ema, p in zip(ema_params, params):
                p_ema.copy_(p_ema * decay + p * (1 - decay))
    for b_ema, b in zip(ema.module.buffers(), unwrap(model).buffers(), strict=True):
        b_ema.detach().copy_(b.detach().to(b_ema.device))
    ema.n_averaged += 1  # a CPU tensor: no device work


def autocast_to(device: torch.device, dtype: torch.dtype | None) -> Any:
    """``torch.autocast`` on ``device`` at ``dtype``; a no-op context for None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def lr_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> LambdaLR | None:
    """The warm-up and decay of ``config`` as a ``LambdaLR``: each group's learning rate times
    :meth:`TrainConfig.lr_factor` (so ``config.lr_at(step)`` with the default optimizer), set for step 1 on
    construction and for step ``k + 1`` by ``scheduler.step()`` after step ``k``. ``None`` when
    ``config`` keeps the rate constant: the loop then leaves the optimizer's rate alone."""
    if not config.schedules_lr:
        return None
    return LambdaLR(optimizer, lambda done: config.lr_factor(done + 1))


def _catch_up(scheduler: LambdaLR, step: int) -> None:
    """Set a fresh ``scheduler`` (and its optimizer's rates) to the state after ``step`` steps; used for a
    checkpoint written before the scheduler's state was saved."""
    scheduler.last_epoch = step - 1
    with warnings.catch_warnings():  # stepping without an optimizer step is the point here
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        scheduler.step()


def _progress(total: int, initial: int, desc: str, enabled: bool):
    return progress_bar(total=total, initial=initial, desc=desc, disable=not enabled, mininterval=0.5, dynamic_ncols=True)


# --------------------------------------------------------------------------- the loop
@dataclass
class _LoopState:
    """What :func:`_train_loop` runs, set up by :func:`train`, and where it starts: step 0 with nothing recorded,
    or what a resumed checkpoint holds (:func:`train` loads it into these fields). ``losses`` and ``snapshots``
    grow as the loop runs; the rest stays as given."""

    # what is trained, and how
    model: nn.Module  # as passed to train() (possibly wrapped: DDP, torch.compile)
    base: nn.Module  # the bare module inside it (unwrap): what is saved, clipped and averaged
    loss_fn: LossFn
    batch_fn: BatchFn
    config: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: LambdaLR | None
    ema: AveragedModel | None
    gen: torch.Generator  # on the model's device, seeded with config.seed
    device: torch.device
    rank: int
    world_size: int
    cap: int | None  # a dry run's step cap ($NBHELPERS_MAX_STEPS), None in a full run
    # where the results go
    ckpt: Path | None  # the checkpoint file (already redirected in a dry run), None without a cache
    key: dict[str, Any] | None  # the caller's description of the model (with the cap in a dry run)
    key_str: str  # key_json(key, config): what a checkpoint must match to be loaded
    progress: bool
    desc: str
    on_step: Callable[[int, float], None] | None
    # where it starts (a resumed checkpoint's values)
    losses: list[float] = field(default_factory=list)
    snapshots: dict[int, dict[str, torch.Tensor]] = field(default_factory=dict)
    start_step: int = 0
    seconds_before: float = 0.0  # training time before this start
    scaler_state: dict[str, Any] | None = None  # an unfinished fp16 run's gradient scaler


def train(
    model: nn.Module,
    loss_fn: LossFn,
    batch_fn: BatchFn,
    config: TrainConfig,
    *,
    checkpoint: str | Path | None = None,
    key: dict[str, Any] | None = None,
    retrain: bool = False,
    progress: bool = True,
    desc: str = "train",
    optimizer: torch.optim.Optimizer | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` for ``config.steps`` steps (see the module docstring).

    ``key`` describes the model (architecture, data, loss) for the checkpoint cache; it is
    stored with the checkpoint together with ``config``. ``on_step(step, loss)`` is called on
    rank 0 after each step whose loss has been read back (every step on the CPU, every 25 on
    CUDA, and at every checkpoint), after that step's checkpoint is written; use it for
    periodic sampling or logging.
    """
    device = next(unwrap(model).parameters()).device
    rank, world_size = world()
    cap = dryrun.max_steps()
    if cap is not None:  # dry run: at most `cap` steps from where it starts; cached apart, keyed with the cap
        key = {**(key or {}), "dry_run_max_steps": cap}
        checkpoint = dryrun.redirect(checkpoint) if checkpoint is not None else None
    key_str = key_json(key, config)
    ckpt = Path(checkpoint) if checkpoint is not None else None

    base = unwrap(model)
    if optimizer is None:
        optimizer = torch.optim.AdamW(base.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay,
                                      fused=True if device.type == "cuda" else None)  # one kernel, not one per tensor
    ema = ema_model(base, config.ema_decay) if config.ema_decay is not None else None
    scheduler = lr_scheduler(optimizer, config)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    loop = _LoopState(model=model, base=base, loss_fn=loss_fn, batch_fn=batch_fn, config=config, optimizer=optimizer,
                      scheduler=scheduler, ema=ema, gen=gen, device=device, rank=rank, world_size=world_size, cap=cap,
                      ckpt=ckpt, key=key, key_str=key_str, progress=progress, desc=desc, on_step=on_step)

    lock = None
    if ckpt is not None and rank == 0:
        # Fail before the work: an unwritable folder or a second run on the same checkpoint stops here.
        lock = FolderLock(ckpt.with_name(ckpt.name + ".lock"), what=f"training into {ckpt}").acquire()
        remove_stale_temps(ckpt)
    try:
        if ckpt is not None and ckpt.exists() and not retrain:
            state = load_checkpoint(ckpt, map_location=device)
            if state.get("format") != CHECKPOINT_FORMAT or state.get("key") != key_str:
                warnings.warn(f"checkpoint {ckpt} was written for another configuration; retraining instead of loading it")
            else:
                check_checkpoint_state(ckpt, state, config.steps)
                try:
                    base.load_state_dict(state["model"])
                    loop.losses = [float(v) for v in state["losses"].tolist()]
                    loop.start_step = int(state["step"])
                    loop.seconds_before = float(state.get("seconds", 0.0))
                    loop.snapshots = {int(k): v for k, v in (state.get("snapshots") or {}).items()}
                    if ema is not None and state.get("ema") is not None:
                        ema.module.load_state_dict(state["ema"])
                        ema.n_averaged.fill_(loop.start_step + 1)  # the start and one update per step
                    if not state.get("finished"):
                        loop.scaler_state = state.get("scaler")
                        optimizer.load_state_dict(state["optimizer"])
                        if scheduler is not None and state.get("scheduler") is not None:
                            scheduler.load_state_dict(state["scheduler"])
                        elif scheduler is not None:  # written before the scheduler's state was saved
                            _catch_up(scheduler, loop.start_step)
                        set_rng_state(state["rng"], gen, device)
                except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
                    raise CheckpointError(f"checkpoint {ckpt} is incomplete or does not fit this model "
                                          f"({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}); "
                                          f"delete it to retrain") from None
                if state.get("finished"):
                    return TrainResult(base, ema.module if ema else None, loop.losses, loop.start_step,
                                       loop.seconds_before, loop.start_step, True, ckpt, loop.snapshots)
        return _train_loop(loop)
    finally:
        if lock is not None:
            lock.release()


def _train_loop(loop: _LoopState) -> TrainResult:
    """Steps ``loop.start_step + 1`` to the last (``config.steps``, or a dry run's cap), with checkpoints on rank 0."""
    config, base, ema, device = loop.config, loop.base, loop.ema, loop.device

    def write(step: int, finished: bool, seconds: float) -> None:
        if loop.ckpt is None or loop.rank != 0:
            return
        with exact():  # the loss history, float64 on the host
            history = torch.tensor(loop.losses, dtype=torch.float64)
        model_sd = base.state_dict()
        ema_sd = ema.module.state_dict() if ema is not None else None
        save_checkpoint(
            loop.ckpt,
            {
                "format": CHECKPOINT_FORMAT,
                "key": loop.key_str,
                "model": model_sd,
                "ema": ema_sd,
                "digest": weights_digest(model_sd, ema_sd),
                "optimizer": loop.optimizer.state_dict(),
                "scheduler": loop.scheduler.state_dict() if loop.scheduler is not None else None,
                "step": step,
                "finished": finished,
                "losses": history,
                "rng": rng_state(loop.gen, device),
                "seconds": seconds,
                "snapshots": loop.snapshots,
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
            },
        )

    train_model: nn.Module = loop.model
    if loop.world_size > 1 and not isinstance(loop.model, nn.parallel.DistributedDataParallel):
        train_model = nn.parallel.DistributedDataParallel(loop.model,
                                                          device_ids=[device.index] if device.type == "cuda" else None)
    train_model.train()

    dtype = amp_dtype(device, config.amp_dtype) if config.amp else None
    # fp16 needs its gradients scaled (a T4's choice); bf16 and float32 do not: a disabled scaler is a no-op
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    if loop.scaler_state is not None and scaler.is_enabled():
        scaler.load_state_dict(loop.scaler_state)
    # Reading the loss back every step synchronises the GPU; flush in chunks there.
    flush_every = 1 if device.type != "cuda" else 25
    pending: list[torch.Tensor] = []
    last = config.steps if loop.cap is None else min(config.steps, loop.start_step + loop.cap)
    t0 = time.perf_counter()
    bar = _progress(last, loop.start_step, loop.desc, loop.progress and loop.rank == 0)
    probe = (dryrun.probe(loop.desc, base, config.steps, loop.start_step + 1, last, loop.key, bool(config.amp))
             if loop.rank == 0 else None)

    def flush(last_step: int) -> None:
        if not pending:
            return
        vals = torch.stack(pending).float()
        if loop.world_size > 1:
            torch.distributed.all_reduce(vals)
            vals /= loop.world_size
        vals = vals.cpu().tolist()
        first = last_step - len(vals) + 1
        for i, v in enumerate(vals):
            if not math.isfinite(v):
                bar.close()
                raise FloatingPointError(f"non-finite loss ({v}) at step {first + i}; lower the learning rate or check the data")
        loop.losses.extend(vals)
        pending.clear()
        bar.update(len(vals))
        bar.set_postfix(loss=f"{vals[-1]:.4f}", refresh=False)

    try:
        for step in range(loop.start_step + 1, last + 1):
            batch = loop.batch_fn(loop.gen)
            if probe is not None:
                probe.start(step)
            with autocast_to(device, dtype):
                loss = loop.loss_fn(train_model, batch, loop.gen)
            loop.optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if config.grad_clip is not None:
                scaler.unscale_(loop.optimizer)  # clip the true gradients, not the scaled ones
                torch.nn.utils.clip_grad_norm_(base.parameters(), config.grad_clip)
            scaler.step(loop.optimizer)  # skipped when fp16 gradients overflowed; the scale is then lowered
            scaler.update()
            if loop.scheduler is not None:
                loop.scheduler.step()  # the rate of step + 1
            if ema is not None:
                ema_update(ema, base, config.ema_decay)
            if step in config.snapshot_steps:
                loop.snapshots[step] = _weights(ema.module if ema is not None else base)
            if probe is not None:
                probe.stop(step, batch, loop.optimizer, ema.module if ema is not None else None)
            pending.append(loss.detach())
            flushed = len(pending) >= flush_every or step == last or (config.checkpoint_every and step % config.checkpoint_every == 0)
            if flushed:
                flush(step)
            if config.checkpoint_every and step % config.checkpoint_every == 0 and step < config.steps:
                write(step, False, loop.seconds_before + time.perf_counter() - t0)
            if flushed and loop.on_step is not None and loop.rank == 0:
                loop.on_step(step, loop.losses[-1])
        flush(last)
        if last < config.steps:  # a dry run stopped at its cap: later snapshots are the weights it stopped with
            for k in config.snapshot_steps:
                loop.snapshots.setdefault(k, _weights(ema.module if ema is not None else base))
    finally:
        bar.close()
    seconds = loop.seconds_before + time.perf_counter() - t0
    write(last, True, seconds)
    base.eval()
    return TrainResult(base, ema.module if ema else None, loop.losses, last, seconds, loop.start_step, False, loop.ckpt,
                       loop.snapshots)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of ``model``'s state_dict (parameters and buffers)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
