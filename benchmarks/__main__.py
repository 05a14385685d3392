"""Benchmark runner: ``python -m benchmarks --profile cpu --notebooks 01,02`` (``make bench``).

First the roofline table (:mod:`benchmarks.roofline`, a few minutes; ``--no-roofline`` skips it) and the training
step as the notebooks take it against the roofline's (:mod:`benchmarks.notebook_step`, a few minutes;
``--no-notebook-step`` skips it); last the
series in order against the machine's arithmetic floor (:mod:`benchmarks.series`, as long again as the cold runs;
``--no-series`` skips it).

Executes the chosen notebooks with papermill in one profile, each from scratch in an empty trained-model
cache (what a first run costs; ``--warm`` uses ``checkpoints/``), and writes one JSON per run to
``benchmarks/results/<notebook>__<profile>__<machine>.json`` (notebook, profile, device, wall
time, the notebook's recorded metrics, machine facts). ``--summarise`` only rebuilds the tables in
``benchmarks/README.md`` from every JSON in ``benchmarks/results/`` (peer benchmarks included).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from nbhelpers.cli import HelpFormatter, flag, invoked_name, tool_errors
from nbhelpers.runner import run_notebook, select_notebooks
from nbhelpers.runtime import CHECKPOINT_ENV, PROFILES, build_dir, get_device

from .common import machine, machine_tag, write_json

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


# The numbers each notebook's "done when" is judged by, shown in the summary table (all metrics stay in the JSON).
HEADLINE: dict[str, list[str]] = {
    "01_sdes": ["ou_stationary_var_rel_err_max", "bm_var_rel_err_sigma1", "langevin_vs_ou_drift_max_abs_diff"],
    "02_paths_schedules": ["ddpm_linear_abar_T", "ddpm_cosine_abar_T", "ddpm_cosine_clipped_steps",
                           "ddpm_cosine_chain_vs_closed_form_var_max_rel"],
    "03_flow_matching_2d": ["train_seconds", "learned_euler1000/energy_ratio", "learned_euler1000/max_weight_error",
                            "oracle_heun200/energy_ratio", "heun_step_reduction"],
    "04_unet_images": ["evaluator_test_accuracy", "linear/train_seconds", "linear/recognised", "linear/class_min",
                       "linear/class_max", "linear/fd_ratio", "autoguided/recognised", "autoguided/class_min",
                       "autoguided/class_max", "autoguided/fd_ratio"],
    "05_score_sde": ["vp_reverse_sde_1000/energy_ratio", "vp_reverse_sde_1000/max_weight_error", "image/score_train_seconds",
                     "image/vanishing_sigma1/recognised", "image/vanishing_sigma1/class_min", "image/vanishing_sigma1/class_max",
                     "image/vanishing_sigma1/fd_ratio"],
    "06_two_pixel_ddpm_cfg": ["q3/T50/learned/energy_ratio", "q3/T50/learned/max_weight_error", "guidance/w1/accuracy",
                              "guidance/w2/accuracy"],
    "07_mnist_cfg": ["train_seconds", "w2_accuracy", "w0_fd_ratio", "ancestral_accuracy", "ddim50_accuracy",
                     "ddpm_paper/train_seconds", "ddpm_paper/accuracy_w2", "ddpm_paper/recognised", "ddpm_paper/fd_ratio",
                     "ddpm_paper/class_min"],
    "08_afhq_ddpm": ["train_seconds_1k", "loss_first100", "loss_last100", "fid_available", "steps_long",
                     "copies/near_copies"],
}


def write_result(name: str, payload: dict) -> Path:
    return write_json(name, payload)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, dict)):
        s = json.dumps(v)
        return s if len(s) <= 40 else s[:37] + "…"
    return str(v)


def summarise() -> str:
    rows, peers = [], []
    for path in sorted(RESULTS.glob("*.json")):
        if path.stem.endswith("__failed"):  # kept for the record, never in the table beside the good result
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError as exc:
            raise SystemExit(f"error: {path} is not valid JSON ({exc}); delete it or restore it from git") from None
        if data.get("kind") not in ("notebook", "peer"):  # dryrun, roofline, series, notebook_step: tables of their own
            continue
        (peers if data.get("kind") == "peer" else rows).append(data)
    lines = [BEGIN, "", "### Notebooks", "",
             "| notebook | profile | machine | status | wall time | headline metrics |", "|---|---|---|---|---|---|"]
    for d in rows:
        m = d.get("metrics", {})
        keys = [k for k in HEADLINE.get(d["notebook"], []) if k in m] or list(m)[:6]
        shown = "; ".join(f"{k} = {_fmt(m[k])}" for k in keys if k in m)
        lines.append(f"| {d['notebook']} | {d['profile']} | {d.get('machine_tag', '')} | {d['status']} | {d['wall_s']:.1f} s | {shown} |")
    if peers:
        lines += ["", "### Training step against peer implementations", "",
                  "| benchmark | machine | ours | peer | speed-up | notes |", "|---|---|---|---|---|---|"]
        for d in peers:
            lines.append(f"| {d['name']} | {d.get('machine_tag', '')} | {_fmt(d.get('ours'))} | {_fmt(d.get('peer'))} | "
                         f"{_fmt(d.get('speedup'))} | {d.get('notes', '')} |")
    lines += ["", END]
    block = "\n".join(lines)
    text = README.read_text() if README.exists() else "# Benchmarks\n\n"
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)
    return block


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks`` (dashed flags, see :mod:`nbhelpers.cli`)."""
    ap = argparse.ArgumentParser(prog=invoked_name("benchmarks"), description=__doc__.splitlines()[0],
                                 formatter_class=HelpFormatter)
    flag(ap, "profile", default="cpu", choices=PROFILES, help="profile to run the notebooks in (default: %(default)s)")
    flag(ap, "device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default: %(default)s)")
    flag(ap, "notebooks", default="all", help="'all' or a comma list such as 01,02 (default: %(default)s)")
    flag(ap, "summarise", action="store_true", help="only rebuild the tables in benchmarks/README.md")
    flag(ap, "no_roofline", action="store_true", help="skip the roofline table (python -m benchmarks.roofline)")
    flag(ap, "no_notebook_step", action="store_true",
         help="skip the notebooks' training step against the roofline's (python -m benchmarks.notebook_step)")
    flag(ap, "no_series", action="store_true",
         help="skip the series in order against the arithmetic floor (python -m benchmarks.series)")
    flag(ap, "warm", action="store_true",
         help="use the trained-model cache (checkpoints/); by default every notebook trains from scratch in an "
              "empty cache, as on a first run")
    return ap


@contextlib.contextmanager
def model_cache(warm: bool):
    """An empty trained-model cache for the duration of one notebook (``$NBHELPERS_CHECKPOINT_DIR``) unless
    ``warm``: a benchmark times what a first run costs, not a cache hit."""
    if warm:
        yield
        return
    saved = os.environ.get(CHECKPOINT_ENV)
    build_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-checkpoints-", dir=build_dir()) as tmp:
        os.environ[CHECKPOINT_ENV] = tmp
        try:
            yield
        finally:
            if saved is None:
                os.environ.pop(CHECKPOINT_ENV, None)
            else:
                os.environ[CHECKPOINT_ENV] = saved


@tool_errors
def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    if not args.summarise:
        try:  # every argument checked before the first minute of work (an absent device, an unknown notebook)
            select_notebooks(args.notebooks)
            get_device(args.device)
        except ValueError as exc:
            ap.error(str(exc))
    failed = []
    if not args.summarise and not args.no_roofline:
        from .roofline import main as roofline

        roofline([])
    if not args.summarise and not args.no_notebook_step and args.profile in ("smoke", "cpu"):
        from .notebook_step import main as notebook_step

        notebook_step(["--profile", args.profile])
    if not args.summarise:
        try:
            names = select_notebooks(args.notebooks)
        except ValueError as exc:
            ap.error(str(exc))
        info = machine()
        tag = machine_tag(info)
        for name in names:
            print(f"▶ {name} [{args.profile}, {args.device}]", flush=True)
            with model_cache(args.warm):
                r = run_notebook(name, args.profile, args.device)
            payload = {"kind": "notebook", "notebook": name, "profile": r.profile, "device": r.resolved_device or args.device,
                       "status": r.status, "error": r.error, "wall_s": round(r.seconds, 2), "metrics": r.metrics,
                       "model_cache": "warm" if args.warm else "cold",
                       "machine": info, "machine_tag": tag, "date": time.strftime("%Y-%m-%d %H:%M:%S")}
            stem = f"{name}__{r.profile}__{tag}"
            if r.status != "ok":  # a failed run never replaces a good result: it is kept beside it
                failed.append(name)
                stem += "__failed"
            path = write_result(stem, payload)
            shown = path.relative_to(HERE.parent) if HERE.parent in path.parents else path
            print(f"  {r.status} in {r.seconds:.1f} s → {shown}", flush=True)
    if not args.summarise and not args.no_series:
        from .series import main as series

        if series(["--profile", args.profile, "--device", args.device, "--notebooks", args.notebooks]) != 0:
            failed.append("the series in order")
    print(summarise())
    if failed:
        print(f"error: {', '.join(failed)} failed (the results kept are the last good ones; see *__failed.json)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
