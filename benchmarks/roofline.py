"""Roofline: each training step and sampler evaluation against this machine's matmul peak.

``python -m benchmarks.roofline`` (part of ``make bench``; ``--no-write`` prints only). For each
training of the series (03 MLP, 04 velocity UNet, 05 score UNet, 06 two-pixel UNet, 07 attention
UNet, 08 AFHQ UNet) at its cpu-profile sizes (and the gpu sizes of the small ones) and for one
network evaluation of each sampler at the batch the notebook samples with:

* FLOPs per step from ``torch.utils.flop_counter.FlopCounterMode``: forward + backward +
  optimizer for a training step (it counts matrix products, convolutions and attention, not
  elementwise work such as Adam's update, activations or normalisation);
* achieved FLOP/s: those FLOPs over the measured time of a step (median of a few timed steps after
  warm-up; a training step is a step of ``nbhelpers.training.train`` with the notebook's
  ``TrainConfig``: batch drawing, EMA, clipping included);
* this machine's float32 matmul peak, measured in the same run at the same thread count (best of a
  few square GEMMs), and the ratio achieved / peak.

Batches are random tensors of the notebooks' shapes (the data's values do not change the cost).
Writes ``benchmarks/results/roofline__<machine>.json`` and a table in ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

import torch
from nbhelpers.cli import tool_errors
from nbhelpers.dryrun import flop_counter
from torch import nn

from .common import describe_machine, machine, machine_tag, replace_block, si, write_json


@dataclass
class Case:
    """One training of the series: everything ``train`` needs, and a sampler's network call."""

    name: str
    profile: str
    model: nn.Module
    loss_fn: Callable[[nn.Module, Any, torch.Generator], torch.Tensor]
    batch_fn: Callable[[torch.Generator], Any]
    config: Any
    sample_call: Callable[[], torch.Tensor]
    sample_batch: int
    threads: int | None = None
    optimizer: torch.optim.Optimizer | None = None


@contextmanager
def threads(n: int | None):
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gemm_peak(n_threads: int, sizes: tuple[int, ...] = (512, 1024, 2048), repeats: int = 3) -> dict[str, float]:
    """Best float32 FLOP/s of square matmuls (2 n³ FLOPs each) at ``n_threads`` threads."""
    best, best_n = 0.0, 0
    with threads(n_threads):
        for n in sizes:
            a, b = torch.randn(n, n), torch.randn(n, n)
            torch.mm(a, b)  # warm-up
            reps = max(1, int(2e9 // (2 * n**3)))
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(reps):
                    torch.mm(a, b)
                rate = 2 * n**3 * reps / (time.perf_counter() - t0)
                if rate > best:
                    best, best_n = rate, n
    return {"flops_per_s": best, "size": best_n, "threads": n_threads}


def step_flops(case: Case) -> int:
    """FLOPs of one training step: forward, backward and the optimizer's step."""
    from nbhelpers.training import unwrap

    model = case.model
    opt = torch.optim.AdamW(unwrap(model).parameters(), lr=1e-4)
    g = torch.Generator().manual_seed(0)
    batch = case.batch_fn(g)
    counter = flop_counter()
    with counter:
        loss = case.loss_fn(model, batch, g)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def step_seconds(case: Case, warmup: int, timed: int) -> float:
    """Median wall time of a step of ``nbhelpers.training.train`` after ``warmup`` steps."""
    from dataclasses import replace

    from nbhelpers.training import train

    stamps: list[float] = []
    # the recipe's own length and snapshot steps do not apply to a few timed steps (a snapshot step past
    # the end is refused by TrainConfig, which is how `make bench` once stopped here)
    config = replace(case.config, steps=warmup + timed, checkpoint_every=0, snapshot_steps=())
    t_start = time.perf_counter()
    train(case.model, case.loss_fn, case.batch_fn, config, progress=False, optimizer=case.optimizer,
          on_step=lambda step, loss: stamps.append(time.perf_counter()))
    times = [b - a for a, b in zip([t_start] + stamps[:-1], stamps)]
    return statistics.median(times[warmup:])


COMPUTE_KERNELS = ("mkldnn_convolution", "convolution", "_convolution", "conv1d", "conv2d", "conv_transpose1d",
                   "addmm", "mm", "bmm", "baddbmm", "matmul", "linear", "_scaled_dot_product_flash_attention_for_cpu",
                   "_scaled_dot_product_attention_math", "scaled_dot_product_attention")
"""The aten operators that do the counted FLOPs (matrix products, convolutions, attention), with their
dispatch wrappers; every other operator's time is elementwise or memory-bound work (norms, activations,
additions, copies, up-sampling) that ``FlopCounterMode`` does not count."""


@contextmanager
def eval_chunk_setting(value: str | None):
    """``$NBHELPERS_EVAL_CHUNK`` set to ``value`` (None: unset, the default policy) for the block."""
    import os

    from nbhelpers.layout import EVAL_CHUNK_ENV

    before = os.environ.get(EVAL_CHUNK_ENV)
    if value is None:
        os.environ.pop(EVAL_CHUNK_ENV, None)
    else:
        os.environ[EVAL_CHUNK_ENV] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(EVAL_CHUNK_ENV, None)
        else:
            os.environ[EVAL_CHUNK_ENV] = before


def _median_seconds(call: Callable[[], Any], timed: int) -> float:
    times = []
    for _ in range(min(timed, 3) + 1):  # a few: one evaluation of a big sampler batch takes a while
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def time_breakdown(call: Callable[[], Any], top: int = 4) -> dict[str, Any]:
    """Where one call's time goes, from ``torch.profiler`` (self CPU time per aten operator): the share of
    the FLOP-counted kernels (:data:`COMPUTE_KERNELS`) and the ``top`` other operators with their shares."""
    from torch.profiler import ProfilerActivity, profile

    call()  # warm
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    self_us: dict[str, float] = {}
    for event in prof.key_averages():
        if event.key.startswith("aten::"):
            name = event.key.removeprefix("aten::")
            self_us[name] = self_us.get(name, 0.0) + event.self_cpu_time_total
    total = sum(self_us.values()) or 1.0
    compute = sum(v for k, v in self_us.items() if k in COMPUTE_KERNELS)
    others = sorted(((k, v) for k, v in self_us.items() if k not in COMPUTE_KERNELS), key=lambda kv: -kv[1])[:top]
    return {"compute_share": compute / total, "other": {k: v / total for k, v in others}}


@torch.no_grad()
def sampler_cost(case: Case, timed: int) -> dict[str, Any]:
    """One sampler evaluation at the notebook's batch: FLOPs, seconds as the notebooks run it (on the CPU a
    UNet evaluates in cache-sized chunks, :func:`nbhelpers.devices.eval_chunk`) and as one whole batch, and
    where the time goes."""
    case.model.eval()
    counter = flop_counter()
    with counter:
        case.sample_call()
    seconds = _median_seconds(case.sample_call, timed)
    with eval_chunk_setting("0"):
        whole = _median_seconds(case.sample_call, timed)
    breakdown = time_breakdown(case.sample_call)
    case.model.train()
    return {"flops_per_eval": int(counter.get_total_flops()), "seconds_per_eval": seconds,
            "seconds_per_eval_whole_batch": whole, "breakdown": breakdown}


# --------------------------------------------------------------------------- the series' trainings
def _images(n: int, c: int, s: int, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, c, s, s, generator=g) * 2 - 1


SAMPLE_BATCH: dict[str, dict[str, int]] = {
    # the batch each notebook's sampler evaluates its network at, per profile (03: the evaluation points;
    # 04/05: chunks of 500; 06: 5,000 per class, two classes; 07: guided chunks of 500, i.e. 1,000; 08: 500)
    "smoke": {"03": 256, "04": 16, "05": 16, "06": 64, "07": 16, "08": 16},
    "cpu": {"03": 20_000, "04": 500, "05": 500, "06": 5000, "07": 500, "08": 500},
    "gpu": {"03": 50_000, "04": 500, "05": 500, "06": 5000, "07": 500, "08": 500},
}


def preset_cases(profile: str, device: str | torch.device = "cpu") -> list[Case]:
    """One :class:`Case` per training of the series at ``profile``'s preset (model, batch, optimisation,
    mixed precision), on ``device``, with the notebook's sampler batch: what ``benchmarks.gpu_check`` times
    on a card, and (cpu) what the roofline measures. Data are random tensors of the right shapes."""
    from nbhelpers.data import ImageDataset
    from nbhelpers.ddpm import DDPM
    from nbhelpers.distributions import toy_gmm, two_pixel
    from nbhelpers.guidance import drop_labels
    from nbhelpers.losses import flow_matching_loss, score_matching_loss
    from nbhelpers.models.mlp import ScoreFromNoise, TimeMLP
    from nbhelpers.models.two_pixel import TwoPixelUNet
    from nbhelpers.models.unet import UNet
    from nbhelpers.paths import GaussianPath
    from nbhelpers.recipes import afhq, cfg_mnist
    from nbhelpers.recipes.mnist import mnist_recipe
    from nbhelpers.training import TrainConfig

    dev = torch.device(device)
    big = SAMPLE_BATCH[profile]
    g = torch.Generator().manual_seed(0)
    out: list[Case] = []

    def images(n: int, c: int, s: int) -> torch.Tensor:
        return _images(n, c, s, g).to(dev)

    # 03: TimeMLP(2, 64, 4) by flow matching; the sampler evaluates all evaluation points at once
    gmm, path = toy_gmm(), GaussianPath("linear")
    batch03 = {"smoke": 64, "cpu": 512, "gpu": 1024}[profile]
    torch.manual_seed(0)
    mlp = TimeMLP(dim=2, hidden=64, depth=4).to(dev)
    x_eval, t_eval = torch.randn(big["03"], 2, generator=g).to(dev), torch.full((big["03"],), 0.5, device=dev)
    out.append(Case("03 MLP flow matching", profile, mlp, lambda m, z, gen: flow_matching_loss(m, z, path, gen),
                    lambda gen, b=batch03: gmm.sample(b, generator=gen).to(dev),
                    TrainConfig(steps=1, lr=2e-3, ema_decay=0.999), lambda m=mlp, x=x_eval, t=t_eval: m(x, t), big["03"]))

    # 04 / 05: the Figure-1 UNet on MNIST; samplers chunk their images
    recipe = mnist_recipe(profile)
    mnist = ImageDataset(images(2048, 1, 28), torch.zeros(2048, dtype=torch.long, device=dev), "random")
    xs = images(big["04"], 1, 28).contiguous(memory_format=torch.channels_last)
    ts = torch.rand(big["04"], generator=g).to(dev)
    torch.manual_seed(0)
    unet = UNet(recipe.unet).to(dev, memory_format=torch.channels_last)
    out.append(Case("04 UNet velocity (MNIST)", profile, unet, lambda m, b, gen: flow_matching_loss(m, b.x, path, gen),
                    mnist.batcher(recipe.batch_size, labels=False), recipe.train_config(),
                    lambda m=unet: m(xs, ts), big["04"]))
    torch.manual_seed(0)
    score = ScoreFromNoise.on_path(UNet(recipe.unet), path).to(dev, memory_format=torch.channels_last)
    out.append(Case("05 UNet score (MNIST)", profile, score,
                    lambda m, b, gen: score_matching_loss(m, b.x, path, generator=gen, weighting="beta2"),
                    mnist.batcher(recipe.batch_size, labels=False), recipe.train_config(),
                    lambda m=score: m(xs, ts), big["05"]))

    # 06: the class-conditional two-pixel UNet, T = 50; samples 5,000 of each class at once
    tp = two_pixel()
    ddpm50 = DDPM.from_schedule("cosine", 50)
    batch06 = {"smoke": 64, "cpu": 256, "gpu": 1024}[profile]
    torch.manual_seed(0)
    net = TwoPixelUNet(num_classes=2, channels=(64, 128), embed_dim=64, fourier_scale=4.0).to(dev)
    n06 = 2 * big["06"]
    x06, t06 = torch.randn(n06, 2, generator=g).to(dev), torch.rand(n06, generator=g).to(dev)
    y06 = torch.cat([torch.zeros(n06 // 2, dtype=torch.long), torch.full((n06 - n06 // 2,), 2)]).to(dev)

    def loss06(m, b, gen):
        return ddpm50.loss(m, b.x, drop_labels(b.labels, 0.2, 2, gen), kind="l2", generator=gen)

    def batch06_fn(gen, b=batch06):
        s = tp.sample_with_labels(b, gen)
        return type(s)(s.x.to(dev), s.labels.to(dev)) if dev.type != "cpu" else s

    out.append(Case("06 two-pixel UNet (CFG)", profile, net, loss06, batch06_fn, TrainConfig(steps=1, lr=3e-3),
                    lambda m=net: m(x06, t06, y06), big["06"]))

    # 07: the attention UNet with classifier-free guidance; guided chunks double the batch
    P = cfg_mnist.preset("cosine", profile)
    torch.manual_seed(0)
    m07 = cfg_mnist.build_model(P, dev)
    labelled = ImageDataset(images(2048, 1, 28), (torch.arange(2048) % 10).to(dev), "random")
    n07 = big["07"]
    x07 = images(2 * n07, 1, 28).contiguous(memory_format=torch.channels_last)
    t07 = torch.rand(2 * n07, generator=g).to(dev)
    y07 = torch.cat([torch.arange(n07) % 10, torch.full((n07,), 10)]).to(dev)
    out.append(Case("07 attention UNet (CFG MNIST)", profile, m07,
                    cfg_mnist.cfg_loss(P.ddpm(), P.p_uncond, channels_last=P.channels_last),
                    labelled.batcher(P.batch_size), P.train_config(), lambda m=m07: m(x07, t07, y07), n07))

    # 08: seed 004's UNet at its flags (32 px, batch 32, T 50, dim 16 in cpu and gpu; smaller in smoke)
    size, dim = (16, 8) if profile == "smoke" else (32, 16)
    torch.manual_seed(0)
    diffusion = afhq.make_diffusion(size, 50, dim, device=dev)
    cats = afhq.AFHQImages((torch.rand(512, 3, size, size, generator=g) * 255).to(torch.uint8).to(dev),
                           afhq.default_data_path(), "cat")
    cfg = afhq.AFHQConfig(train_steps=1, batch_size=32, image_size=size, time_steps=50, unet_dim=dim)
    x08, t08 = images(big["08"], 3, size), torch.randint(0, 50, (big["08"],), generator=g).to(dev)
    out.append(Case("08 AFHQ UNet (DDPM)", profile, diffusion, afhq.diffusion_loss,
                    afhq.make_batch_fn(cats, diffusion, 32), afhq.train_config(cfg),
                    lambda m=diffusion: m.model(x08, t08), big["08"]))
    return out


def cases(include_gpu: bool = True) -> list[Case]:
    """The roofline's rows: every training at its cpu preset, and 03's and 06's at their gpu batches too
    (both are overhead-bound: the batch is what changes)."""
    rows = preset_cases("cpu")
    if include_gpu:
        gpu = {c.name[:2]: c for c in preset_cases("gpu") if c.name[:2] in ("03", "06")}
        rows.insert(1, gpu["03"])
        rows.insert(5, gpu["06"])  # after 06 cpu: [03 cpu, 03 gpu, 04, 05, 06 cpu, 06 gpu, 07, 08]
    return rows


def measure(case: Case, warmup: int, timed: int, peaks: dict[int, dict[str, float]]) -> dict[str, Any]:
    with threads(case.threads):
        n_threads = torch.get_num_threads()
        if n_threads not in peaks:
            peaks[n_threads] = gemm_peak(n_threads)
        peak = peaks[n_threads]["flops_per_s"]
        flops = step_flops(case)
        secs = step_seconds(case, warmup, timed)
        sampler = sampler_cost(case, timed)
    s_flops, s_secs = sampler["flops_per_eval"], sampler["seconds_per_eval"]
    params = sum(p.numel() for p in case.model.parameters() if p.requires_grad)
    return {"name": case.name, "profile": case.profile, "threads": n_threads, "parameters": params,
            "train": {"flops_per_step": flops, "seconds_per_step": secs, "flops_per_s": flops / secs,
                      "ratio": flops / secs / peak},
            "sampler": {**sampler, "batch": case.sample_batch, "flops_per_s": s_flops / s_secs, "ratio": s_flops / s_secs / peak,
                        "ratio_whole_batch": s_flops / sampler["seconds_per_eval_whole_batch"] / peak},
            "gemm_peak_flops_per_s": peak}


def table(payload: dict[str, Any]) -> str:
    info = payload["machine"]
    peaks = ", ".join(f"{si(p['flops_per_s'], 'FLOP/s')} at {t} thread{'s' if int(t) > 1 else ''} (n = {p['size']})"
                      for t, p in sorted(payload["gemm_peaks"].items()))
    lines = [
        "### Roofline (`python -m benchmarks.roofline`)", "",
        f"Measured {payload['date']} on {describe_machine(info)}. float32 GEMM peak: {peaks}. "
        "FLOPs from `FlopCounterMode` (matrix products, convolutions, attention; forward + backward + optimizer for "
        "training). A training step is a step of `nbhelpers.training.train` with the notebook's settings (median of "
        f"{payload['timed']} steps after {payload['warmup']}); a sampler row is one network evaluation at the batch the "
        "notebook samples with. Ratio = achieved FLOP/s ÷ GEMM peak at the same thread count.", "",
        "| training | profile | threads | params | FLOPs/step | s/step | achieved | ratio | sampler batch | FLOPs/eval | s/eval | achieved | ratio |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        t, s = r["train"], r["sampler"]
        lines.append(f"| {r['name']} | {r['profile']} | {r['threads']} | {si(r['parameters'])} | {si(t['flops_per_step'])} | "
                     f"{t['seconds_per_step']:.3g} | {si(t['flops_per_s'], 'FLOP/s')} | {t['ratio']:.1%} | {s['batch']} | "
                     f"{si(s['flops_per_eval'])} | {s['seconds_per_eval']:.3g} | {si(s['flops_per_s'], 'FLOP/s')} | {s['ratio']:.1%} |")
    rows = [r for r in payload["rows"] if "breakdown" in r["sampler"]]
    if rows:
        lines += ["", "#### Samplers: whole batch against cache-sized chunks, and where the time goes", "",
                  "A sampler's network evaluation at the notebook's batch, as one batch (`NBHELPERS_EVAL_CHUNK=0`) and as "
                  "the notebooks run it (on the CPU a UNet evaluates "
                  "`nbhelpers.devices.CPU_EVAL_CHUNK` images at a time). Compute share: the part of the chunked call's "
                  "operator time (`torch.profiler`, self CPU time) spent in the kernels that do the counted FLOPs "
                  "(convolutions, matrix products, attention); the rest is memory-bound work, the largest operators named.", "",
                  "| sampler | batch | s/eval whole | ratio whole | s/eval chunked | ratio chunked | speed-up | compute share | largest other operators |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in rows:
            s = r["sampler"]
            other = ", ".join(f"{k} {v:.0%}" for k, v in s["breakdown"]["other"].items())
            lines.append(f"| {r['name']} [{r['profile']}] | {s['batch']} | {s['seconds_per_eval_whole_batch']:.3g} | "
                         f"{s['ratio_whole_batch']:.1%} | {s['seconds_per_eval']:.3g} | {s['ratio']:.1%} | "
                         f"{s['seconds_per_eval_whole_batch'] / s['seconds_per_eval']:.2f}× | "
                         f"{s['breakdown']['compute_share']:.0%} | {other} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.roofline`` (dashed flags)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.roofline", description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=int, default=2, help="untimed training steps first (default: %(default)s)")
    ap.add_argument("--timed", type=int, default=5, help="timed steps / evaluations (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma list of training numbers, e.g. 04,07 (default: all)")
    ap.add_argument("--no-gpu-sizes", action="store_true", help="skip the gpu-profile sizes of 03 and 06")
    ap.add_argument("--no-write", action="store_true", help="print the table; write no JSON and leave the README alone")
    return ap


@tool_errors
def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    if args.warmup < 1 or args.timed < 1:
        ap.error(f"--warmup and --timed must be positive, got {args.warmup} and {args.timed}")
    wanted = {w.strip().zfill(2) for w in args.only.split(",") if w.strip()}
    todo = [c for c in cases(not args.no_gpu_sizes) if not wanted or c.name[:2] in wanted]
    if not todo:
        ap.error(f"--only {args.only!r} matches no training; valid choices: 03, 04, 05, 06, 07, 08")
    peaks: dict[int, dict[str, float]] = {}
    rows = []
    t0 = time.perf_counter()
    for case in todo:
        print(f"▶ {case.name} [{case.profile}]", flush=True)
        rows.append(measure(case, args.warmup, args.timed, peaks))
    info = machine()
    payload = {"kind": "roofline", "machine": info, "machine_tag": machine_tag(info), "date": time.strftime("%Y-%m-%d %H:%M"),
               "warmup": args.warmup, "timed": args.timed, "gemm_peaks": {str(k): v for k, v in peaks.items()},
               "rows": rows, "wall_s": round(time.perf_counter() - t0, 1)}
    text = table(payload)
    print(text)
    print(f"({payload['wall_s']:.0f} s)")
    if not args.no_write:
        path = write_json(f"roofline__{payload['machine_tag']}", payload)
        replace_block("roofline", text)
        print(f"→ {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
