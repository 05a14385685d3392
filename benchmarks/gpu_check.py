"""One prepared device check: ``python -m benchmarks.gpu_check`` on a CUDA machine (``make gpu-check``).

For every training of the series at its gpu preset (:func:`benchmarks.roofline.preset_cases`), on the card:

* one training step at full batch through ``nbhelpers.training.train`` with the preset's mixed precision
  (the dtype the card gets: bf16 from compute capability 8.0, fp16 with a gradient scaler below), timed
  over a few steps after a warm-up that includes cuDNN's autotuning: seconds per step, peak memory;
* one sampler call of the network at the notebook's sampling batch: seconds, peak memory;
* the FLOPs of both (``nbhelpers.dryrun.flop_counter``, attention included) and the time the dry run's
  model predicts for them on this card (:func:`benchmarks.dryrun.predict_seconds`), so measured and
  predicted stand side by side.

``--dry-run N`` then runs the gpu dry run of every notebook at step cap N (``benchmarks.dryrun``) and
``--peers`` the side-by-side peer benchmarks. One JSON goes to ``benchmarks/results/gpu_check__<machine>.json``
and a Markdown table into ``benchmarks/README.md`` (block ``gpu_check``). On the CPU, ``--profile smoke``
runs the same code paths at tiny sizes (the test does); nothing is written with ``--no-write``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from typing import Any

import torch

from nbhelpers.cli import HelpFormatter, flag, int_at_least, invoked_name, tool_errors
from nbhelpers.dryrun import OpCounter, flop_counter
from nbhelpers.runtime import PROFILES, amp_dtype, get_device

from .common import GPU_PEAKS, machine, machine_tag, replace_block, write_json
from .roofline import Case, preset_cases

CARDS = tuple(GPU_PEAKS)


def card_of(device: torch.device) -> str | None:
    """Which of the priced cards (``T4``, ``A100``, ``H100``) ``device`` is, from its name; None for others."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).upper()
    return next((c for c in CARDS if c in name), None)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_gb(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 1e9, 3) if device.type == "cuda" else None


def time_training(case: Case, device: torch.device, warmup: int, timed: int) -> dict[str, Any]:
    """Seconds per step of ``train`` at the case's preset: a run of ``timed`` steps after one of ``warmup``."""
    from nbhelpers.training import train, unwrap

    counter, ops = flop_counter(), OpCounter()
    with counter, ops:
        loss = case.loss_fn(case.model, case.batch_fn(torch.Generator(device=device).manual_seed(0)),
                            torch.Generator(device=device).manual_seed(0))
        loss.backward()
    unwrap(case.model).zero_grad(set_to_none=True)
    flops = int(counter.get_total_flops())  # forward + backward of one step
    cost = {"ops": ops.ops, "memory_bound_bytes": ops.memory_bytes}

    def run(steps: int) -> float:
        config = replace(case.config, steps=steps, checkpoint_every=0, snapshot_steps=(), warmup_steps=0)
        _sync(device)
        t0 = time.perf_counter()
        train(case.model, case.loss_fn, case.batch_fn, config, progress=False)
        _sync(device)
        return time.perf_counter() - t0

    run(warmup)  # allocator, cuDNN's autotuning, the first kernels' compilation
    _reset_peak(device)
    per_step = run(timed) / timed
    dtype = amp_dtype(device, case.config.amp_dtype) if case.config.amp else None
    return {"seconds": per_step, "flops": flops, "peak_gb": _peak_gb(device), **cost,
            "dtype": str(dtype).replace("torch.", "") if dtype is not None else "float32"}


@torch.no_grad()
def time_sampler(case: Case, device: torch.device, repeats: int) -> dict[str, Any]:
    """Seconds of one network evaluation at the sampler's batch (median of ``repeats`` after a warm-up)."""
    from nbhelpers.runtime import autocast

    case.model.eval()
    counter, ops = flop_counter(), OpCounter()
    with counter, ops, autocast(device, enabled=case.config.amp):
        case.sample_call()
    times = []
    _reset_peak(device)
    for _ in range(repeats):
        _sync(device)
        t0 = time.perf_counter()
        with autocast(device, enabled=case.config.amp):
            case.sample_call()
        _sync(device)
        times.append(time.perf_counter() - t0)
    case.model.train()
    return {"seconds": statistics.median(times), "flops": int(counter.get_total_flops()), "peak_gb": _peak_gb(device),
            "ops": ops.ops, "memory_bound_bytes": ops.memory_bytes}


def predicted(row: dict[str, Any], card: str | None, amp: bool) -> list[float] | None:
    """The dry run's (slow, fast) seconds on ``card`` for a measured row's FLOPs, operators and memory-bound bytes."""
    from .dryrun import predict_seconds

    if card is None:
        return None
    return list(predict_seconds(row["flops"], row["ops"], card, amp, row["memory_bound_bytes"]))


def check(profile: str, device: torch.device, warmup: int, timed: int) -> list[dict[str, Any]]:
    card = card_of(device)
    rows = []
    for case in preset_cases(profile, device):
        print(f"▶ {case.name} [{profile}] on {device}", flush=True)
        train_row = time_training(case, device, warmup, timed)
        sample_row = time_sampler(case, device, max(2, timed // 2))
        amp = bool(case.config.amp)
        rows.append({"name": case.name, "profile": profile, "sample_batch": case.sample_batch, "amp": amp, "train": train_row, "sampler": sample_row,
                     "predicted_train_s": predicted(train_row, card, amp),
                     "predicted_sampler_s": predicted(sample_row, card, amp)})
    return rows


def _range(r: list[float] | None) -> str:
    if r is None:
        return "—"
    return f"{1e3 * r[1]:.3g}–{1e3 * r[0]:.3g} ms"


def table(payload: dict[str, Any]) -> str:
    lines = [f"Device check on {payload['device_name']} ({payload['card'] or 'no priced card'}), "
             f"{payload['date']}, torch {payload['machine'].get('torch', '')}: one training step at the "
             f"{payload['profile']} preset's full batch and one sampler evaluation, measured against the dry run's model (FLOPs ÷ the card's peak "
             f"at 20–50 % utilisation, launches not counted).", "",
             "| training | dtype | step (measured) | step (predicted) | peak memory | sampler call (measured) | "
             "sampler (predicted) | sampler peak |", "|---|---|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        t, s = r["train"], r["sampler"]
        mem = f"{t['peak_gb']:.2f} GB" if t["peak_gb"] is not None else "—"
        smem = f"{s['peak_gb']:.2f} GB" if s["peak_gb"] is not None else "—"
        lines.append(f"| {r['name']} | {t['dtype']} | {1e3 * t['seconds']:.3g} ms | {_range(r['predicted_train_s'])} | "
                     f"{mem} | {1e3 * s['seconds']:.3g} ms (batch {r['sample_batch']}) | "
                     f"{_range(r['predicted_sampler_s'])} | {smem} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=invoked_name("benchmarks.gpu_check"), description=__doc__.splitlines()[0],
                                 formatter_class=HelpFormatter)
    flag(ap, "device", default="cuda", help="the card to check (default: %(default)s); cpu runs the code paths")
    flag(ap, "profile", default="gpu", choices=PROFILES, help="the presets to time (default: %(default)s; smoke: tiny)")
    flag(ap, "warmup", type=int_at_least("warmup"), default=3, help="untimed training steps first (default: %(default)s)")
    flag(ap, "timed", type=int_at_least("timed"), default=10, help="timed training steps (default: %(default)s)")
    flag(ap, "dry_run", type=int_at_least("dry_run", 0), default=0, help="then the gpu dry run of every notebook at this step cap (0: skip)")
    flag(ap, "peers", action="store_true", help="then the side-by-side peer benchmarks")
    flag(ap, "no_write", action="store_true", help="print the table; write no JSON and leave README.md alone")
    return ap


@tool_errors
def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    device = get_device(args.device)
    t0 = time.perf_counter()
    rows = check(args.profile, device, args.warmup, args.timed)
    info = machine()
    payload = {"kind": "gpu_check", "profile": args.profile, "device": str(device), "card": card_of(device),
               "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU",
               "capability": list(torch.cuda.get_device_capability(device)) if device.type == "cuda" else None,
               "machine": info, "machine_tag": machine_tag(info), "date": time.strftime("%Y-%m-%d %H:%M"),
               "rows": rows}
    text = table(payload)
    print(text)
    status = 0
    if args.dry_run:
        from .dryrun import main as dryrun_main

        status |= dryrun_main(["--device", str(device), "--max-steps", str(args.dry_run)]
                              + (["--no-write"] if args.no_write else []))
    if args.peers:
        from .peer_diffusers import main as diffusers_main
        from .peer_lucidrains import main as lucidrains_main

        status |= diffusers_main(["--device", str(device)]) | lucidrains_main(["--device", str(device)])
    payload["wall_s"] = round(time.perf_counter() - t0, 1)
    if not args.no_write:
        path = write_json(f"gpu_check__{payload['machine_tag']}", payload)
        replace_block("gpu_check", text)
        print(f"→ {path}")
    return status


if __name__ == "__main__":
    sys.exit(main())
