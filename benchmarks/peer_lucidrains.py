"""Training steps/s: our AFHQ trainer against lucidrains' denoising-diffusion-pytorch, in one run.

    python -m benchmarks.peer_lucidrains [--device auto|cpu|cuda] [--steps 10] [--rounds 3] [--no-write]

Seed-004 settings on both sides: 32×32 RGB, batch 32, T = 50, cosine schedule, learning rate 1e-3,
first-layer width 16. Ours is the whole trainer (``nbhelpers.training.train`` with the AFHQ
batch function: data held on the device, flips, EMA, gradient clipping, bf16 autocast and
channels-last on CUDA) around ``nbhelpers.recipes.afhq.make_diffusion(unet_dim=16)``. The peer is
``Unet(dim=16, dim_mults=(1, 2, 4, 8))`` + ``GaussianDiffusion(timesteps=50, beta_schedule="cosine",
objective="pred_noise")`` stepped with Adam on a batch already on the device (no EMA, no data
loading; bf16 autocast on CUDA as for ours). The two alternate in blocks of ``--steps`` steps
(after a warm-up) and the median block gives ms/step. The peer is the optional ``peers`` extra
(``pip install -e '.[peers]'``); without it the peer is skipped with a message.

The result goes to ``benchmarks/results/peer_lucidrains__<machine>.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from nbhelpers.cli import HelpFormatter, flag, int_at_least, invoked_name
from nbhelpers.recipes import afhq
from nbhelpers.runtime import get_device
from nbhelpers.training import TrainConfig, train

SETTINGS = {"image_size": 32, "batch_size": 32, "time_steps": 50, "schedule": "cosine", "learning_rate": 1e-3, "unet_dim": 16}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _data(device: torch.device) -> tuple[afhq.AFHQImages, str]:
    try:
        return afhq.load_afhq(None, "cat", SETTINGS["image_size"], device), "offline AFHQ cats"
    except afhq.AFHQNotFoundError:
        g = torch.Generator().manual_seed(0)
        imgs = torch.randint(0, 256, (1024, 3, SETTINGS["image_size"], SETTINGS["image_size"]), generator=g, dtype=torch.uint8)
        return afhq.AFHQImages(imgs.to(device), afhq.default_data_path(), "cat"), "random images (AFHQ not found)"


def ours_runner(device: torch.device):
    """A callable running ``n`` training steps of our trainer; returns the seconds they took."""
    torch.manual_seed(0)
    data, source = _data(device)
    diffusion = afhq.make_diffusion(SETTINGS["image_size"], SETTINGS["time_steps"], SETTINGS["unet_dim"], device=device)
    batch_fn = afhq.make_batch_fn(data, diffusion, SETTINGS["batch_size"])

    def run(n: int) -> float:
        cfg = TrainConfig(steps=n, lr=SETTINGS["learning_rate"], ema_decay=0.995, amp=True, grad_clip=1.0)
        return train(diffusion, afhq.diffusion_loss, batch_fn, cfg, progress=False).seconds

    params = sum(p.numel() for p in diffusion.parameters())
    return run, params, source


def peer_runner(device: torch.device):
    """The same for lucidrains' GaussianDiffusion, or ``None`` when the package is missing."""
    try:
        from denoising_diffusion_pytorch import GaussianDiffusion, Unet
    except ImportError:
        return None
    torch.manual_seed(0)
    unet = Unet(dim=SETTINGS["unet_dim"], dim_mults=(1, 2, 4, 8))
    model = GaussianDiffusion(unet, image_size=SETTINGS["image_size"], timesteps=SETTINGS["time_steps"],
                              beta_schedule="cosine", objective="pred_noise").to(device)
    opt = torch.optim.Adam(model.parameters(), lr=SETTINGS["learning_rate"])
    x = torch.rand(SETTINGS["batch_size"], 3, SETTINGS["image_size"], SETTINGS["image_size"], device=device)  # [0, 1]

    def run(n: int) -> float:
        _sync(device)
        t0 = time.perf_counter()
        for _ in range(n):
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = model(x)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        _sync(device)
        return time.perf_counter() - t0

    return run, sum(p.numel() for p in unet.parameters())


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.peer_lucidrains`` (dashed flags, see :mod:`nbhelpers.cli`)."""
    ap = argparse.ArgumentParser(prog=invoked_name("benchmarks.peer_lucidrains"), description=__doc__.splitlines()[0],
                                 formatter_class=HelpFormatter)
    flag(ap, "device", default="auto", help="auto, cpu, cuda, cuda:N")
    flag(ap, "steps", type=int_at_least("steps"), default=None, help="steps per timed block (default 10 on CPU, 200 on CUDA)")
    flag(ap, "rounds", type=int_at_least("rounds"), default=3, help="timed blocks per side, alternating (default: %(default)s)")
    flag(ap, "warmup", type=int_at_least("warmup", 0), default=None, help="untimed steps first (default 3 on CPU, 50 on CUDA)")
    flag(ap, "no_write", action="store_true", help="print only; do not write benchmarks/results/")
    return ap


def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    try:
        device = get_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    cuda = device.type == "cuda"
    steps = args.steps or (200 if cuda else 10)
    warmup = args.warmup if args.warmup is not None else (50 if cuda else 3)
    if cuda:
        torch.backends.cudnn.benchmark = True

    ours, ours_params, source = ours_runner(device)
    peer = peer_runner(device)
    if peer is None:
        print("peer skipped: denoising-diffusion-pytorch is not installed (pip install -e '.[peers]' "
              "or pip install denoising-diffusion-pytorch); timing ours only", flush=True)
    print(f"device {device}, threads {torch.get_num_threads()}, data: {source}; {steps} steps × {args.rounds} rounds per side", flush=True)
    ours(warmup)
    if peer is not None:
        peer[0](warmup)
    ours_t, peer_t = [], []
    for r in range(args.rounds):
        ours_t.append(ours(steps) / steps)
        msg = f"round {r + 1}: ours {ours_t[-1] * 1e3:.1f} ms/step"
        if peer is not None:
            peer_t.append(peer[0](steps) / steps)
            msg += f", peer {peer_t[-1] * 1e3:.1f} ms/step"
        print(msg, flush=True)
    ours_ms = statistics.median(ours_t) * 1e3
    peer_ms = statistics.median(peer_t) * 1e3 if peer_t else None
    speedup = peer_ms / ours_ms if peer_ms else None
    line = f"ours {ours_ms:.1f} ms/step ({1e3 / ours_ms:.2f} steps/s, {ours_params / 1e6:.2f} M params)"
    if peer_ms:
        line += f"; peer {peer_ms:.1f} ms/step ({1e3 / peer_ms:.2f} steps/s, {peer[1] / 1e6:.2f} M params); speed-up ×{speedup:.2f}"
    print(line, flush=True)

    if not args.no_write:
        from benchmarks.__main__ import machine, machine_tag, write_result

        info = machine()
        tag = machine_tag(info)
        notes = ("seed-004 settings (32 px, batch 32, T 50, cosine, lr 1e-3, width 16); ours = full trainer with EMA, clipping, "
                 "on-device data; peer = bare Adam steps, pred_noise (MSE)") + ("" if peer else "; peer not installed")
        payload = {"kind": "peer", "name": "peer_lucidrains", "machine": info, "machine_tag": tag, "device": str(device),
                   "ours": round(1e3 / ours_ms, 4), "peer": round(1e3 / peer_ms, 4) if peer_ms else None,
                   "speedup": round(speedup, 3) if speedup else None, "unit": "training steps/s",
                   "ours_ms_per_step": round(ours_ms, 2), "peer_ms_per_step": round(peer_ms, 2) if peer_ms else None,
                   "ours_params": ours_params, "peer_params": peer[1] if peer else None, "settings": SETTINGS,
                   "steps_per_block": steps, "rounds": args.rounds, "data": source, "notes": notes,
                   "date": time.strftime("%Y-%m-%d %H:%M:%S")}
        path = write_result(f"peer_lucidrains__{tag}", payload)
        print(f"wrote {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
