"""A training step as the notebook takes it against the roofline's, timed in turns in one process.

``python -m benchmarks.notebook_step`` (``--only 04,08``, ``--steps N``, ``--rounds R``, ``--no-write``):

The roofline (:mod:`benchmarks.roofline`) times ``nbhelpers.training.train`` on random batches with no progress
bar, no checkpoint and no hook. A notebook trains through its recipe: the real data set, the progress bar, the
checkpoint file (its lock, its periodic writes) and, in 08, the sampling hook that reads every checkpoint back.
This VM's speed drifts by tens of percent within an hour, more than the difference looked for, so the two are
timed in turns: a block of ``steps`` steps of each, ``rounds`` times, in this one process, the order swapped every
round. Each block is a fresh call and is timed as the notebook times its training: ``TrainResult.seconds /
TrainResult.steps`` (the first step's warm-up included on both sides). The difference is the median over the rounds
of each round's notebook ÷ roofline (two blocks seconds apart, so the drift cancels); it goes, with the medians of
the blocks, to
``results/notebook_step__<machine>.json`` and between ``<!-- notebook-step:begin -->`` and
``<!-- notebook-step:end -->`` in ``benchmarks/README.md``.

The notebook's call is the one its training cell makes (``train_mnist_field`` for 04 and 05,
``train_cfg_model`` for 07, ``train_with_fid`` for 08) with the library's loss, which the notebook's own
loss is checked equal to; the trained-model cache is an empty temporary folder, so every block trains.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

import torch
from nbhelpers.cli import tool_errors

from .common import describe_machine, machine, machine_tag, replace_block, write_json


@dataclass
class Pair:
    """One training of the series, both ways: ``notebook(steps)`` and ``roofline(steps)`` each train ``steps``
    steps from scratch and return the training's own seconds per step."""

    name: str
    notebook: Callable[[int], float]
    roofline: Callable[[int], float]
    steps: int  # steps per block: 08's pass one checkpoint and its hook, as 9 in 10 of its notebook's steps do


def _per_step(result: Any) -> float:
    return result.seconds / result.steps


def pairs(profile: str = "cpu", device: str = "cpu", only: set[str] | None = None) -> list[Pair]:
    """The trainings of 04, 05, 07 and 08 at ``profile``, as their notebooks call them and as the roofline does
    (:func:`benchmarks.roofline.preset_cases`, same model, batch, optimizer settings and threads)."""
    from nbhelpers import data as nbdata
    from nbhelpers.metrics.fid import FID
    from nbhelpers.recipes import afhq, cfg_mnist
    from nbhelpers.recipes.mnist import mnist_recipe, train_mnist_field
    from nbhelpers.training import train

    from .roofline import preset_cases

    dev = torch.device(device)
    cases = {c.name[:2]: c for c in preset_cases(profile, dev)}

    def roofline(key: str) -> Callable[[int], float]:
        case = cases[key]

        def run(steps: int) -> float:
            config = replace(case.config, steps=steps, checkpoint_every=0, snapshot_steps=())
            return _per_step(train(case.model, case.loss_fn, case.batch_fn, config, progress=False,
                                   optimizer=case.optimizer))
        return run

    want = lambda key: only is None or key in only  # noqa: E731
    out: list[Pair] = []
    if want("04") or want("05"):
        mnist = nbdata.load_mnist("train", device=dev)
        for key, kind in (("04", "velocity"), ("05", "score")):
            if want(key):
                out.append(Pair(cases[key].name, lambda steps, kind=kind: _per_step(train_mnist_field(
                    kind, "linear", mnist_recipe(profile, steps=steps), mnist, profile=profile, seed=0, retrain=True)),
                    roofline(key), 20))
    if want("07"):
        labelled = nbdata.load_mnist("train", device=dev)
        preset = cfg_mnist.preset("cosine", profile)

        def nb07(steps: int) -> float:
            torch.manual_seed(0)
            model = cfg_mnist.build_model(preset, dev)
            return _per_step(cfg_mnist.train_cfg_model(preset, model, labelled, steps, seed=0, retrain=True))
        out.append(Pair(cases["07"].name, nb07, roofline("07"), 20))
    if want("08"):
        settings = afhq.notebook_settings(profile)
        images = afhq.load_afhq(data_class="cat", image_size=settings.image_size, device=dev, limit=settings.n_images)
        fid = FID(images.images, device=dev)  # offline: no Inception weights, no FID (as in the notebook here)
        every = settings.fid_every

        def nb08(steps: int) -> float:
            torch.manual_seed(0)
            diffusion = afhq.make_diffusion(image_size=settings.image_size, time_steps=settings.time_steps,
                                            unet_dim=settings.unet_dim, device=dev)
            cfg = replace(settings.config(0), train_steps=steps)
            return _per_step(afhq.train_with_fid(diffusion, images, cfg, afhq.diffusion_loss, fid, retrain=True,
                                                 fid_samples=settings.fid_samples, profile=profile).result)
        out.append(Pair(cases["08"].name, nb08, roofline("08"), every + 10))
    return out


def measure(pair: Pair, rounds: int, steps: int | None = None) -> dict[str, Any]:
    """``rounds`` turns of one block of each (the order swapped every round, so neither always goes first)."""
    from .__main__ import model_cache

    n = steps or pair.steps
    times: dict[str, list[float]] = {"notebook": [], "roofline": []}
    with model_cache(warm=False):
        for r in range(rounds):
            order = ("notebook", "roofline") if r % 2 == 0 else ("roofline", "notebook")
            for side in order:
                times[side].append(getattr(pair, side)(n))
    ratios = [a / b for a, b in zip(times["notebook"], times["roofline"])]
    return {"training": pair.name, "steps": n, "rounds": rounds, "notebook_s": statistics.median(times["notebook"]),
            "roofline_s": statistics.median(times["roofline"]), "difference": statistics.median(ratios) - 1,
            "ratio_min": min(ratios), "ratio_max": max(ratios), "blocks": times}


def table(payload: dict[str, Any]) -> str:
    lines = ["### A training step as the notebook takes it, against the roofline's (`python -m benchmarks.notebook_step`)",
             "",
             f"Measured {payload['date']} on {describe_machine(payload['machine'])}. Each training both ways in turns, "
             "in one process: the notebook's call (its recipe, the real data set, progress bar, checkpoint file and "
             "hooks) and the roofline's (`nbhelpers.training.train` on random batches, no progress bar, no checkpoint), "
             "a block of the given steps each, from scratch, timed as a notebook times its training (the training's "
             "seconds over its steps), the order swapped every round. s/step: median of the blocks; the difference: "
             "median over the rounds of each round's notebook ÷ roofline, whose range is the last column.", "",
             "| training | steps × rounds | roofline s/step | notebook s/step | notebook − roofline | ratio per round |",
             "|---|---|---|---|---|---|"]
    for r in payload["rows"]:
        lines.append(f"| {r['training']} | {r['steps']} × {r['rounds']} | {r['roofline_s']:.3f} | {r['notebook_s']:.3f} | "
                     f"{r['difference']:+.1%} | {r['ratio_min']:.3f}–{r['ratio_max']:.3f} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.notebook_step`` (dashed flags)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.notebook_step", description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="comma list of trainings, e.g. 04,08 (default: 04, 05, 07, 08)")
    ap.add_argument("--rounds", type=int, default=8, help="turns of one block each (default: %(default)s)")
    ap.add_argument("--steps", type=int, default=None,
                    help="steps per block (default: 20; 08: one checkpoint-and-sample period and 10)")
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu"))
    ap.add_argument("--no-write", action="store_true", help="print the table; write no JSON and leave the README alone")
    return ap


@tool_errors
def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()} or None
    valid = {"04", "05", "07", "08"}
    if only and not only <= valid:
        ap.error(f"--only {args.only!r}: unknown {', '.join(sorted(only - valid))}; valid choices: 04, 05, 07, 08")
    if args.rounds < 1 or (args.steps is not None and args.steps < 2):
        ap.error(f"--rounds must be ≥ 1 and --steps ≥ 2, got {args.rounds} and {args.steps}")
    t0 = time.perf_counter()
    rows = []
    for pair in pairs(args.profile, "cpu", only):
        print(f"▶ {pair.name}", flush=True)
        rows.append(measure(pair, args.rounds, args.steps))
        r = rows[-1]
        print(f"  roofline {r['roofline_s']:.4f} s/step, notebook {r['notebook_s']:.4f} ({r['difference']:+.1%})", flush=True)
    info = machine()
    payload = {"kind": "notebook_step", "profile": args.profile, "machine": info, "machine_tag": machine_tag(info),
               "date": time.strftime("%Y-%m-%d %H:%M"), "threads": torch.get_num_threads(), "rows": rows,
               "seconds": round(time.perf_counter() - t0, 1)}
    text = table(payload)
    print(text)
    if not args.no_write:
        path = write_json(f"notebook_step__{payload['machine_tag']}", payload)
        replace_block("notebook-step", text)
        print(f"→ {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
