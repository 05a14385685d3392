"""Our class-conditional DDPM training step (notebook 07) against diffusers' at equal size.

    python -m benchmarks.peer_diffusers [--profile cpu|gpu] [--device auto] [--batch N] [--rounds N]

Ours: the 07_mnist_cfg UNet of the chosen preset (``nb.recipes.cfg_mnist.preset("cosine", profile)``),
label dropout p_uncond = 0.1, ``DDPM.loss`` on the cosine schedule with T = 200.
Peer: diffusers' ``UNet2DModel`` (class-conditional through ``num_class_embeds`` = 10 digits + ∅)
with ``DDPMScheduler`` (``squaredcos_cap_v2``, same T), the same label dropout and ε-MSE. Its
width is searched so that its parameter count is within ±10 % of ours (as close as it gets).

Both steps are otherwise identical: AdamW, gradient clipping at 1, an EMA update, the same batch of
MNIST digits on the same device; channels_last for both when the preset uses it, bf16 autocast for both
when it does and the device is CUDA. The two models alternate in rounds, in one process, so that both see the same machine load;
the per-step time is the median over rounds. Result: ``benchmarks/results/peer_diffusers__<machine>.json``.

diffusers is an optional extra (``pip install -e .[peers]``); without it the peer is skipped with a
message and nothing is written.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F

from nbhelpers.cli import HelpFormatter, flag, int_at_least, invoked_name
from nbhelpers.guidance import drop_labels
from nbhelpers.recipes import cfg_mnist
from nbhelpers.runtime import get_device
from nbhelpers.training import ema_model

from .__main__ import machine, machine_tag, write_result

NAME = "07 MNIST CFG training step vs diffusers UNet2DModel + DDPMScheduler"


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def peer_model(preset: cfg_mnist.MnistCFGPreset, target: int) -> tuple[Any, dict[str, Any]]:
    """diffusers ``UNet2DModel`` with ``num_class_embeds = 11`` mirroring our preset, middle width searched
    to match ``target`` parameters.

    Mirrors: first/last level widths, residual layers per block, GroupNorm groups, heads of the same
    dimension, time-embedding width, attention wherever ours has it. diffusers' up-sampling doubles the
    size, so on 28×28 it runs 3 levels (28, 14, 7) where ours runs 4 (28, 14, 7, 4) plus a 2×2 bottleneck.
    """
    from diffusers import UNet2DModel

    u = preset.unet
    att = set(u.attention_levels)
    # one head per level (ours with 1 head) is diffusers' attention_head_dim=None; otherwise heads of our first level's size
    head_dim = None if u.attention_heads == 1 else u.channels[0] // u.attention_heads
    c0, c2 = u.channels[0], u.channels[-1]

    def build(c1: int) -> Any:
        ch = (c0, c1, c2)
        down = tuple("AttnDownBlock2D" if i in att else "DownBlock2D" for i in range(3))
        up = tuple("AttnUpBlock2D" if i in att else "UpBlock2D" for i in reversed(range(3)))
        return UNet2DModel(sample_size=28, in_channels=1, out_channels=1, block_out_channels=ch,
                           layers_per_block=u.res_layers, down_block_types=down, up_block_types=up,
                           norm_num_groups=u.norm_groups, attention_head_dim=head_dim,
                           time_embedding_dim=u.time_embed_dim, num_class_embeds=cfg_mnist.NUM_CLASSES + 1)

    step = u.norm_groups
    candidates = [c for c in range(step, 4 * c2 + 1, step) if head_dim is None or c % head_dim == 0]
    best = min(candidates, key=lambda c: abs(_params(build(c)) - target))
    model = build(best)
    cfg = {"block_out_channels": [c0, best, c2], "layers_per_block": u.res_layers, "norm_num_groups": u.norm_groups,
           "attention_head_dim": head_dim, "attention_levels": sorted(a for a in att if a < 3),
           "time_embedding_dim": u.time_embed_dim, "num_class_embeds": cfg_mnist.NUM_CLASSES + 1}
    return model, cfg


def make_step(model: torch.nn.Module, loss_of: Callable[[torch.Tensor, torch.Tensor, torch.Generator], torch.Tensor],
              lr: float, amp: bool, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor, torch.Generator], float]:
    """One training step as ``nb.training.train`` takes it: loss, backward, clip, AdamW, EMA."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    ema = ema_model(model, 0.999)

    def step(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> float:
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            loss = loss_of(x, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update_parameters(model)
        return loss

    return step


def _timed(step: Callable, batches: list, gen: torch.Generator, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    for x, y in batches:
        step(x, y, gen)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - t0) / len(batches)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.peer_diffusers`` (dashed flags, see :mod:`nbhelpers.cli`)."""
    ap = argparse.ArgumentParser(prog=invoked_name("benchmarks.peer_diffusers"), description=__doc__.splitlines()[0],
                                 formatter_class=HelpFormatter)
    flag(ap, "profile", default="auto", choices=("auto", "cpu", "gpu"), help="model preset (auto: gpu on CUDA)")
    flag(ap, "device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    flag(ap, "batch", type=int_at_least("batch"), default=None, help="batch size (default: the preset's)")
    flag(ap, "rounds", type=int_at_least("rounds"), default=None, help="alternating timing rounds (default 6 on CPU, 10 on CUDA)")
    flag(ap, "steps_per_round", type=int_at_least("steps_per_round"), default=None,
         help="timed steps per round and side (default 3 on CPU, 20 on CUDA)")
    flag(ap, "threads", type=int_at_least("threads"), default=None, help="torch CPU threads (default: torch's choice)")
    flag(ap, "no_write", action="store_true", help="print only, write no result file")
    return ap


def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        device = get_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    profile = args.profile if args.profile != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    p = cfg_mnist.preset("cosine", profile)
    batch = args.batch or p.batch_size
    rounds = args.rounds or (10 if device.type == "cuda" else 6)
    per_round = args.steps_per_round or (20 if device.type == "cuda" else 3)
    amp, cl = p.amp and device.type == "cuda", p.channels_last
    fmt = torch.channels_last if cl else torch.contiguous_format

    torch.manual_seed(0)
    ours = cfg_mnist.build_model(p, device)
    ours = ours.to(memory_format=fmt)
    ddpm = p.ddpm()
    ours_loss = cfg_mnist.cfg_loss(ddpm, p.p_uncond, channels_last=cl)
    n_ours = _params(ours)

    try:
        import diffusers
        from diffusers import DDPMScheduler
    except ImportError:
        print("diffusers is not installed: skipping the peer (install the optional extra: pip install -e '.[peers]').")
        return 0

    torch.manual_seed(0)
    peer, peer_cfg = peer_model(p, n_ours)
    peer = peer.to(device).to(memory_format=fmt)
    n_peer = _params(peer)
    sched = DDPMScheduler(num_train_timesteps=p.T, beta_schedule="squaredcos_cap_v2")
    sched.alphas_cumprod = sched.alphas_cumprod.to(device)

    from nbhelpers.data import Batch

    def loss_ours(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        return ours_loss(ours, Batch(x, y), gen)

    def loss_peer(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        x = x.contiguous(memory_format=fmt)
        y = drop_labels(y, p.p_uncond, cfg_mnist.NUM_CLASSES, gen)
        k = torch.randint(0, p.T, (x.shape[0],), generator=gen, device=gen.device).to(device)
        noise = torch.randn(x.shape, generator=gen, device=gen.device).to(device)
        noisy = sched.add_noise(x, noise, k)
        return F.mse_loss(peer(noisy, k, class_labels=y).sample.float(), noise)

    step_ours = make_step(ours, loss_ours, p.lr, amp, device)
    step_peer = make_step(peer, loss_peer, p.lr, amp, device)

    try:
        from nbhelpers.data import load_mnist

        data = load_mnist("train", device=device, limit=batch * per_round * 4)
        images, labels = data.images, data.labels
        source = "MNIST train digits"
    except Exception:  # timing does not depend on content; stay runnable without the data set
        g = torch.Generator().manual_seed(0)
        images = (torch.rand(batch * per_round * 4, 1, 28, 28, generator=g) * 2 - 1).to(device)
        labels = torch.randint(0, 10, (images.shape[0],), generator=g).to(device)
        source = "random images (MNIST not found)"
    gen = torch.Generator(device=device).manual_seed(0)
    batches = [(images[i * batch:(i + 1) * batch], labels[i * batch:(i + 1) * batch])
               for i in range(images.shape[0] // batch)][:per_round]
    while len(batches) < per_round:
        batches.append(batches[len(batches) % max(1, len(batches))])

    print(f"device {device}, preset {profile}, batch {batch}: ours {n_ours / 1e6:.3f} M parameters, "
          f"peer {n_peer / 1e6:.3f} M ({100 * (n_peer / n_ours - 1):+.1f} %), diffusers {diffusers.__version__}", flush=True)
    for fn in (step_ours, step_peer):  # warm-up (allocator, oneDNN/cuDNN plans)
        _timed(fn, batches[:2], gen, device)
    t_ours, t_peer = [], []
    for r in range(rounds):
        order = (step_ours, step_peer) if r % 2 == 0 else (step_peer, step_ours)
        for fn in order:
            dt = _timed(fn, batches, gen, device)
            (t_ours if fn is step_ours else t_peer).append(dt)
        print(f"  round {r + 1}/{rounds}: ours {1e3 * t_ours[-1]:.1f} ms/step, peer {1e3 * t_peer[-1]:.1f} ms/step", flush=True)
    mo, mp = statistics.median(t_ours), statistics.median(t_peer)
    speedup = mp / mo
    print(f"median: ours {1e3 * mo:.1f} ms/step ({1 / mo:.2f} steps/s), peer {1e3 * mp:.1f} ms/step ({1 / mp:.2f} steps/s): "
          f"speed-up {speedup:.2f}×")

    info = machine()
    tag = machine_tag(info)
    fmt_note = ", ".join(n for n, on in (("bf16", amp), ("channels_last", cl)) if on)
    notes = (f"steps/s at batch {batch} on {device.type}{f' ({fmt_note})' if fmt_note else ''}; params ours {n_ours / 1e6:.3f} M, "
             f"peer {n_peer / 1e6:.3f} M ({100 * (n_peer / n_ours - 1):+.1f} %); peer 3 levels (diffusers cannot up-sample 7→4→7), "
             f"ours 4 + bottleneck; median of {rounds} alternating rounds × {per_round} steps")
    payload = {"kind": "peer", "name": NAME, "machine_tag": tag, "ours": 1 / mo, "peer": 1 / mp, "speedup": speedup,
               "notes": notes, "unit": "training steps/s", "batch": batch, "device": str(device), "preset": profile,
               "params_ours": n_ours, "params_peer": n_peer, "peer_config": peer_cfg, "ms_per_step_ours": [1e3 * t for t in t_ours],
               "ms_per_step_peer": [1e3 * t for t in t_peer], "data": source, "diffusers": diffusers.__version__,
               "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": info,
               "date": time.strftime("%Y-%m-%d %H:%M:%S")}
    if not args.no_write:
        path = write_result(f"peer_diffusers__{tag}", payload)
        print(f"→ {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
