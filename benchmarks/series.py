"""The whole series as ``make notebooks`` runs it, against this machine's arithmetic floor.

``python -m benchmarks.series --profile cpu`` (the last part of ``make bench``; ``--floor-only`` skips the run):

* **the series in order**: every notebook, 01 to 08, one after the other in one trained-model cache that starts
  empty and is shared, as ``make notebooks`` runs them on a fresh machine (05 samples with 04's flow UNet, the
  MNIST evaluator is trained once): each notebook's wall time and the total, what a learner waits for;
* **the arithmetic floor**: the FLOPs of every training step and every sampler's network evaluation of the
  series at the profile's full settings, counted by a dry run (:mod:`benchmarks.dryrun` with
  ``NBHELPERS_MAX_STEPS=1``: ``FlopCounterMode`` on one step of each training times its steps, and on one
  evaluation of each sampler call times its evaluations), divided by this machine's float32 GEMM peak
  (:func:`benchmarks.roofline.gemm_peak`, measured in the same run): the time the series would take if every
  counted FLOP ran at the peak and nothing else took any time;
* the ratio **wall time ÷ floor**: how close the series runs to what this machine can do. Not in the floor: the
  elementwise work (norms, activations, optimizer updates), data loading, figures, the evaluator's scoring, FID.
* **a training step in the notebook against the roofline's**, measured beside it: right before and right after a
  notebook that trains one of :data:`TRAININGS`, this process times the roofline's step of that training
  (:func:`benchmarks.roofline.step_seconds`: the same model, batch, optimizer and threads, random data, no
  progress bar or checkpoints), so that the comparison with the notebook's own s/step is made within minutes on
  the same machine, not against a roofline run of another hour (this VM's speed drifts by tens of percent within
  an hour). The time spent beside is not in any wall time.

Writes ``benchmarks/results/series__<profile>__<machine>.json`` (the dry run's counts beside it as
``dryrun__<profile>__<machine>.json``) and a table between ``<!-- series:begin -->`` and ``<!-- series:end -->``
in ``benchmarks/README.md``.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any, Callable

import torch
from nbhelpers.cli import read_json, tool_errors
from nbhelpers.runner import run_notebook, select_notebooks
from nbhelpers.runtime import PROFILES, get_device

from .common import RESULTS, describe_machine, duration, machine, machine_tag, replace_block, si, write_json


Beside = Callable[[str], dict[str, float]]
"""Times, now, the roofline's step of each training of :data:`TRAININGS` that a notebook runs: notebook name →
{roofline row: seconds per step}; {} for a notebook that trains none of them."""


def roofline_beside(profile: str, device: str, warmup: int = 2, timed: int = 10) -> Beside:
    """A :data:`Beside` that times the roofline's cases (:func:`benchmarks.roofline.preset_cases`, built once, at
    each case's threads) in this process: the median of ``timed`` steps after ``warmup``."""
    from .roofline import preset_cases, step_seconds, threads

    cases = {c.name: c for c in preset_cases(profile, get_device(device)) if c.name in TRAININGS}

    def measure(notebook: str) -> dict[str, float]:
        out = {}
        for row, (nb_name, _, _) in TRAININGS.items():
            if nb_name == notebook and row in cases:
                with threads(cases[row].threads):
                    out[row] = step_seconds(cases[row], warmup, timed)
        return out

    return measure


def run_series(names: list[str], profile: str, device: str, beside: Beside | None = None) -> dict[str, Any]:
    """Each notebook in order in one shared trained-model cache that starts empty (``make notebooks`` on a
    fresh machine); a failed notebook is recorded and the series goes on, as ``make notebooks`` does. With
    ``beside``, the roofline's step of the notebook's trainings is timed right before and right after it (not
    counted in any wall time)."""
    from .__main__ import model_cache

    rows = []
    t0, aside = time.perf_counter(), 0.0

    def bracket(name: str) -> dict[str, float]:
        nonlocal aside
        if beside is None:
            return {}
        t = time.perf_counter()
        out = beside(name)
        aside += time.perf_counter() - t
        return out

    with model_cache(warm=False):
        for name in names:
            before = bracket(name)
            print(f"▶ {name} [series, {profile}, {device}]", flush=True)
            r = run_notebook(name, profile, device)
            after = bracket(name)
            row = {"notebook": name, "status": r.status, "error": r.error, "wall_s": round(r.seconds, 2),
                   "device": r.resolved_device or device,
                   "timings": {k: v for k, v in r.metrics.items() if "seconds" in k or k.endswith("steps")
                               or "_steps_" in k or "steps_1k" in k}}
            if before or after:
                row["roofline_beside"] = {k: {"before_s": before.get(k), "after_s": after.get(k)}
                                          for k in {**before, **after}}
            rows.append(row)
            print(f"  {r.status} in {r.seconds:.1f} s"
                  + "".join(f"; roofline step of {k} before {before.get(k, float('nan')):.3f} s, after "
                            f"{after.get(k, float('nan')):.3f} s" for k in {**before, **after}), flush=True)
    return {"notebooks": rows, "total_wall_s": round(time.perf_counter() - t0 - aside, 1),
            "beside_s": round(aside, 1)}


def count_flops(names: list[str], profile: str) -> dict[str, Any]:
    """FLOPs of the series at ``profile``'s full settings, per notebook: its trainings' and its samplers'
    (a dry run at one step, :func:`benchmarks.dryrun.run`, on the CPU)."""
    from . import dryrun as bench_dryrun

    payload = bench_dryrun.run(names, 1, profile, "cpu", keep_cache=False)
    info = machine()
    payload.update({"machine": info, "machine_tag": machine_tag(info), "date": time.strftime("%Y-%m-%d %H:%M")})
    write_json(f"dryrun__{profile}__{payload['machine_tag']}", payload)
    failed = [n for n, r in payload["notebooks"].items() if r["status"] != "ok"]
    if failed:
        raise RuntimeError(f"the dry run of {', '.join(failed)} failed; the floor needs every notebook's counts")
    return {n: {"train_flops": r["train_flops"], "sample_flops": r["sample_flops"]} for n, r in payload["notebooks"].items()}


def floor(flops: dict[str, dict[str, int]], peak_flops_per_s: float) -> dict[str, Any]:
    """The arithmetic floor: every counted FLOP at the GEMM peak, per notebook and in total (seconds)."""
    per = {n: (f["train_flops"] + f["sample_flops"]) / peak_flops_per_s for n, f in flops.items()}
    total_flops = sum(f["train_flops"] + f["sample_flops"] for f in flops.values())
    return {"per_notebook_s": per, "total_s": total_flops / peak_flops_per_s, "total_flops": total_flops,
            "train_flops": sum(f["train_flops"] for f in flops.values()),
            "sample_flops": sum(f["sample_flops"] for f in flops.values()), "peak_flops_per_s": peak_flops_per_s}


TRAININGS: dict[str, tuple[str, str, str | None]] = {
    # roofline row → (notebook, its metric of the training's seconds, its metric of the steps; None: the recipe's)
    "04 UNet velocity (MNIST)": ("04_unet_images", "linear/train_seconds", "train_steps"),
    "05 UNet score (MNIST)": ("05_score_sde", "image/score_train_seconds", None),
    "07 attention UNet (CFG MNIST)": ("07_mnist_cfg", "cosine/train_seconds", "cosine/train_steps"),
    "08 AFHQ UNet (DDPM)": ("08_afhq_ddpm", "train_seconds_1k", "train_steps_1k"),
}
"""The trainings whose step the roofline times, and where the notebook records its own time for them."""


def step_comparison(payload: dict[str, Any], roofline: dict[str, Any] | None) -> list[dict[str, Any]]:
    """For each training of :data:`TRAININGS` the notebook ran: its own s/step (the training's seconds over its
    steps in the series run: data, progress bar, checkpoints, hooks and all) beside the roofline's step of the
    same training (``nbhelpers.training.train`` on random batches, no progress bar or checkpoints, median of a
    few steps), both as timed right before and after the notebook (``beside``: their mean is what the notebook
    is compared with) and as recorded by the last roofline run (``roofline_s``, when there is one)."""
    from nbhelpers.recipes.mnist import mnist_recipe

    recorded = {r["name"]: r["train"]["seconds_per_step"] for r in (roofline or {}).get("rows", [])
                if r["profile"] == payload["profile"]}
    rows = []
    for nb_row in payload.get("series", {}).get("notebooks", []):
        t, beside = nb_row.get("timings", {}), nb_row.get("roofline_beside", {})
        for name, (notebook, seconds_key, steps_key) in TRAININGS.items():
            if notebook != nb_row["notebook"]:
                continue
            steps = t.get(steps_key) if steps_key else mnist_recipe(payload["profile"]).steps
            if seconds_key not in t or not steps:
                continue
            ours = t[seconds_key] / steps
            row: dict[str, Any] = {"training": name, "notebook_s": ours, "steps": steps}
            if name in recorded:
                row["roofline_s"] = recorded[name]
                row["difference"] = ours / recorded[name] - 1
            around = [v for v in (beside.get(name) or {}).values() if v]
            if around:
                row["beside_s"] = dict(beside[name])
                row["beside_mean_s"] = sum(around) / len(around)
                row["difference_beside"] = ours / row["beside_mean_s"] - 1
            if "roofline_s" in row or "beside_mean_s" in row:
                rows.append(row)
    return rows


def table(payload: dict[str, Any]) -> str:
    fl = payload["floor"]
    rows = {r["notebook"]: r for r in payload.get("series", {}).get("notebooks", [])}
    lines = ["### The series in order (`python -m benchmarks.series`)", "",
             f"Measured {payload['date']} on {describe_machine(payload['machine'])}, profile {payload['profile']}: "
             "every notebook in order in one trained-model cache that starts empty, as `make notebooks` runs them on a "
             f"fresh machine. Floor: the series' counted FLOPs ({si(fl['total_flops'])}: trainings {si(fl['train_flops'])}, "
             f"samplers {si(fl['sample_flops'])}; a dry run's `FlopCounterMode` counts at the full settings) at the "
             f"float32 GEMM peak ({si(fl['peak_flops_per_s'], 'FLOP/s')} at {payload['threads']} threads). "
             "Wall ÷ floor says how far the series runs from this machine's arithmetic limit.", "",
             "| notebook | status | wall time | floor | wall ÷ floor |", "|---|---|---|---|---|"]
    for name, f in fl["per_notebook_s"].items():
        r = rows.get(name)
        wall = f"{duration(r['wall_s'])}" if r else "–"
        ratio = f"{r['wall_s'] / f:.1f}×" if r and f > 0 else "–"
        lines.append(f"| {name} | {r['status'] if r else 'not run'} | {wall} | {duration(f)} | {ratio} |")
    total = payload.get("series", {}).get("total_wall_s")
    lines.append(f"| **series** | | **{duration(total) if total else '–'}** | **{duration(fl['total_s'])}** | "
                 f"**{total / fl['total_s']:.1f}×** |" if total else
                 f"| **series** | | – | **{duration(fl['total_s'])}** | – |")
    steps = payload.get("step_comparison") or []
    if steps:
        lines += ["", "#### A training step in the notebook against the roofline's", "",
                  "The notebook's s/step is the training's own: its seconds over its steps in the series run above (real "
                  "data, progress bar, checkpoints and hooks included). Beside it, the roofline's step of the same "
                  "training (`nbhelpers.training.train`, same model, batch, optimizer and threads; random batches, no "
                  "progress bar, no checkpoints; median of 10 steps after 2), timed in the series' own process right "
                  "before and right after the notebook; the difference is against their mean. The last column is the "
                  f"recorded roofline run's ({payload.get('roofline_date') or 'none'}), for reference.", "",
                  "| training | steps | roofline s/step before / after | notebook s/step | notebook − roofline beside "
                  "| roofline run's s/step |", "|---|---|---|---|---|---|"]
        for r in steps:
            b = r.get("beside_s") or {}
            around = " / ".join(f"{b[k]:.3f}" if b.get(k) else "–" for k in ("before_s", "after_s")) if b else "–"
            diff = f"{r['difference_beside']:+.1%}" if "difference_beside" in r else "–"
            rec = f"{r['roofline_s']:.3f} ({r['difference']:+.1%})" if "roofline_s" in r else "–"
            lines.append(f"| {r['training']} | {r['steps']:,} | {around} | {r['notebook_s']:.3f} | {diff} | {rec} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.series`` (dashed flags)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.series", description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu", choices=PROFILES)
    ap.add_argument("--device", default="cpu", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    ap.add_argument("--notebooks", default="all", help="'all' or a comma list such as 01,02 (default: %(default)s)")
    ap.add_argument("--floor-only", action="store_true", help="count the FLOPs and measure the peak; run no notebook")
    ap.add_argument("--reuse-counts", action="store_true",
                    help="take the FLOP counts from the recorded dryrun__<profile>__<machine>.json instead of a new dry run")
    ap.add_argument("--variant", default="",
                    help="a name for a run under other settings (e.g. whole-batch with NBHELPERS_EVAL_CHUNK=0): its JSON "
                         "gets the suffix __<variant> and the README's table is left alone")
    ap.add_argument("--no-beside", action="store_true",
                    help="do not time the roofline's step of a notebook's trainings right before and after it")
    ap.add_argument("--no-write", action="store_true", help="print the table; write no JSON and leave the README alone")
    return ap


@tool_errors
def main(argv: list[str] | None = None) -> int:
    from . import start
    from .roofline import gemm_peak

    ap, args = start(build_parser, argv)
    try:
        names = select_notebooks(args.notebooks)
        get_device(args.device)
    except ValueError as exc:
        ap.error(str(exc))
    info = machine()
    tag = machine_tag(info)
    if args.reuse_counts:
        recorded = read_json(RESULTS / f"dryrun__{args.profile}__{tag}.json", "dry-run counts")
        missing = [n for n in names if n not in recorded.get("notebooks", {})]
        if missing:
            ap.error(f"--reuse-counts: the recorded dry run has no counts for {', '.join(missing)}; run without it")
        flops = {n: {k: recorded["notebooks"][n][k] for k in ("train_flops", "sample_flops")} for n in names}
    else:
        flops = count_flops(names, args.profile)
    threads = torch.get_num_threads()
    peak = gemm_peak(threads)
    payload: dict[str, Any] = {"kind": "series", "profile": args.profile, "machine": info, "machine_tag": tag,
                               "threads": threads, "gemm_peak": peak, "floor": floor(flops, peak["flops_per_s"])}
    if not args.floor_only:
        beside = None if args.no_beside else roofline_beside(args.profile, args.device)
        payload["series"] = run_series(names, args.profile, args.device, beside)
    payload["date"] = time.strftime("%Y-%m-%d %H:%M")
    roofline_path = RESULTS / f"roofline__{tag}.json"
    roofline = read_json(roofline_path, "roofline result") if roofline_path.exists() else None
    if roofline:
        payload["roofline_date"] = roofline.get("date", "")
    payload["step_comparison"] = step_comparison(payload, roofline)
    text = table(payload)
    print(text)
    if args.variant and not args.variant.replace("-", "").replace("_", "").isalnum():
        ap.error(f"--variant takes letters, digits, - and _, got {args.variant!r}")
    if not args.no_write:
        payload["variant"] = args.variant
        path = write_json(f"series__{args.profile}__{tag}" + (f"__{args.variant}" if args.variant else ""), payload)
        if not args.variant:
            replace_block("series", text)
        print(f"→ {path}")
    failed = [r["notebook"] for r in payload.get("series", {}).get("notebooks", []) if r["status"] != "ok"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
