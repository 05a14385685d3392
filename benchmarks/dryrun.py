"""gpu profile, dry run: ``python -m benchmarks.dryrun --notebooks all --max-steps 2`` (on any machine).

Executes each notebook headless with ``NBHELPERS_PROFILE=gpu`` (the assignments' full model and
batch sizes) and ``NBHELPERS_MAX_STEPS=N`` (see :mod:`nbhelpers.dryrun`: N training steps, N network
evaluations per sampler call, a separate model cache), one notebook at a time, and records per
notebook: status and wall time, and per training its parameters, FLOPs per step
(``FlopCounterMode``: forward + backward + optimizer; matrix products, convolutions, attention),
operators per step and the memory of one step (estimated from the graph: weights, gradients,
optimizer state, EMA copy, tensors saved for backward, batch; the growth of the peak RSS beside it),
plus the FLOPs of every sampler call at its full number of network evaluations.

From these it predicts the notebook's gpu-profile time on a T4, an A100 and an H100
(:func:`predict_seconds`): compute time ``FLOPs / (peak × utilisation)`` at the dtype the card computes in
(fp32 code: fp32 at the slow end, TF32 at the fast end; autocast: bf16 from sm_80, fp16 below) plus memory
time ``bytes / (bandwidth × utilisation)`` for the memory-bound operators (norms, activations, adds,
optimizer: every operator but matrix products, convolutions and attention, its inputs and outputs counted
once), and never less than one launch per operator, with the bands of :data:`benchmarks.common.UTILISATION`,
:data:`~benchmarks.common.BANDWIDTH_UTILISATION` and :data:`~benchmarks.common.LAUNCH_S`; and each card's peak
memory (:func:`predict_memory`), including the score matrices of the math attention path where the card has
no fused kernel at its dtype. Not counted: data loading, the evaluator's classifier, FID, and sampling that
only happens every k training steps.

Writes ``benchmarks/results/dryrun__<profile>__<machine>.json`` and a table in ``benchmarks/README.md``
(``--no-write``: print only).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from nbhelpers import dryrun
from nbhelpers.cli import read_json, tool_errors
from nbhelpers.runner import run_notebook, select_notebooks
from nbhelpers.layout import EVAL_CHUNK_ENV
from nbhelpers.runtime import PROFILE_ENV, PROFILES, build_dir, get_device

from .common import (AMP_BYTES, BANDWIDTH_UTILISATION, CUDA_CONTEXT_BYTES, GPU_BANDWIDTH, GPU_CAPABILITY, GPU_MEMORY, GPU_PEAKS, LAUNCH_S,
                     RESULTS, UTILISATION, busy, describe_machine, duration, machine, machine_tag, replace_block, si, write_json)

SEED_QUOTES: dict[str, str] = {
    "08_afhq_ddpm": "seed 004 on a Colab T4: 1k steps 5–10 min (5.1), 1k steps with FID every 100 15–60 min (5.2), "
                    "10k steps 1–3 h (5.5)",
}
"""Wall times the assignments quote for their full settings (the others quote none)."""


def _dtype(gpu: str, amp: bool) -> str:
    """The dtype the card computes in: fp32 code, or autocast at ``nbhelpers.runtime.amp_dtype``'s choice
    (bf16 from compute capability 8.0, fp16 below — a T4's tensor cores)."""
    if not amp:
        return "fp32"
    return "bf16" if GPU_CAPABILITY[gpu] >= (8, 0) else "fp16"


def _peaks(gpu: str, amp: bool) -> tuple[float, float]:
    """(slow-end peak, fast-end peak) FLOP/s for fp32 code (fp32 at the slow end, TF32 at the fast end) or
    under autocast at the card's dtype."""
    p = GPU_PEAKS[gpu]
    if not amp:
        return p["fp32"], p["tf32"]
    return p[_dtype(gpu, amp)], p[_dtype(gpu, amp)]


def fused_attention(gpu: str, amp: bool) -> bool:
    """Whether PyTorch has a fused attention kernel for the card at the dtype it computes in: the
    memory-efficient kernel runs fp32 and fp16 from sm_50 but bf16 only from sm_80 (flash attention needs sm_80);
    without one, SDPA falls back to the math path, which writes the whole B·H·L·S score matrix."""
    return not (_dtype(gpu, amp) == "bf16" and GPU_CAPABILITY[gpu] < (8, 0))


def predict_seconds(flops: float, ops: float, gpu: str, amp: bool, memory_bytes: float = 0.0) -> tuple[float, float]:
    """(slow, fast) wall-time estimate of eager work of ``flops`` FLOPs, ``ops`` operators and ``memory_bytes``
    bytes moved by memory-bound operators (counted at fp32) on ``gpu``: compute time plus memory time, and never
    less than one launch per operator. Under autocast the memory-bound bytes shrink by :data:`AMP_BYTES`."""
    slow_peak, fast_peak = _peaks(gpu, amp)
    bw = GPU_BANDWIDTH[gpu]
    shrink = AMP_BYTES if amp else (1.0, 1.0)
    slow = max(flops / (slow_peak * UTILISATION[0]) + memory_bytes * shrink[0] / (bw * BANDWIDTH_UTILISATION[0]),
               ops * LAUNCH_S[0])
    fast = max(flops / (fast_peak * UTILISATION[1]) + memory_bytes * shrink[1] / (bw * BANDWIDTH_UTILISATION[1]),
               ops * LAUNCH_S[1])
    return slow, fast


ATTENTION_BYTES_PER_SCORE = 8
"""Bytes per score entry on the math path: the scores (2 or 4), softmax's float32 output (4), its cast back (2)."""


def predict_memory(r: dict[str, Any], gpu: str) -> tuple[float, float]:
    """(low, high) peak bytes of a training step on ``gpu``: weights, gradients, optimizer state, EMA, batch,
    the activations saved for backward (halved at the low end under autocast) and the CUDA context; plus the
    saved score matrices where the card has no fused attention kernel at its dtype."""
    m = r["memory_bytes"]
    fixed = m["weights"] + m["gradients"] + m["optimizer_state"] + m["ema"] + m["batch"] + CUDA_CONTEXT_BYTES
    saved = m["saved_activations"]
    math = 0 if fused_attention(gpu, r["amp"]) else r.get("attention_elements_per_step", 0) * ATTENTION_BYTES_PER_SCORE
    return fixed + saved * (0.5 if r["amp"] else 1.0) + math, fixed + saved + math


def read_records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarise_notebook(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Trainings and samplers of one notebook, with the predicted gpu-profile times and memory.

    Samplers run under autocast when the notebook's trainings do (every sampler of 04–08 takes the preset's
    ``amp``). Records written before operators and bytes were counted get 100 operators per evaluation and no
    memory-bound bytes."""
    trains = [r for r in records if r["kind"] == "train"]
    samplers = [r for r in records if r["kind"] == "sampler"]
    amp = any(r["amp"] for r in trains)
    out: dict[str, Any] = {"trainings": [], "predicted_s": {}, "predicted_memory_bytes": {}, "sampler_amp": amp}
    for r in trains:
        r["full_steps"] -= r.get("start_step", 0)  # a continued training (08's 10k run) trains the rest
        t = {k: r[k] for k in ("desc", "parameters", "batch_shapes", "full_steps", "flops_per_step", "ops_per_step", "amp")}
        t["memory_bound_bytes_per_step"] = r.get("memory_bound_bytes_per_step", 0)
        t["attention_elements_per_step"] = r.get("attention_elements_per_step", 0)
        t["memory_estimate_bytes"] = r["memory_bytes"]["estimate"]
        t["memory_bytes"] = r["memory_bytes"]
        t["cpu_step_seconds"] = r.get("step_seconds")
        n = r["full_steps"]
        t["predicted_s"] = {g: predict_seconds(r["flops_per_step"] * n, r["ops_per_step"] * n, g, r["amp"],
                                               t["memory_bound_bytes_per_step"] * n) for g in GPU_PEAKS}
        t["predicted_memory_bytes"] = {g: predict_memory(r, g) for g in GPU_PEAKS}
        out["trainings"].append(t)
    out["train_flops"] = sum(r["flops_per_step"] * r["full_steps"] for r in trains)
    out["sample_flops"] = sum(r["flops_per_call"] * r["calls"] for r in samplers)
    out["sample_memory_bound_bytes"] = sum(r.get("memory_bound_bytes_per_call", 0) * r["calls"] for r in samplers)
    out["sample_ops"] = sum(r.get("ops_per_call", 100) * r["calls"] for r in samplers)
    out["sampler_calls"] = len(samplers)
    out["network_evaluations"] = sum(r["calls"] for r in samplers)
    largest_scores = max((r.get("largest_attention_elements", 0) for r in samplers), default=0)
    for g in GPU_PEAKS:
        slow = sum(t["predicted_s"][g][0] for t in out["trainings"])
        fast = sum(t["predicted_s"][g][1] for t in out["trainings"])
        s_slow, s_fast = predict_seconds(out["sample_flops"], out["sample_ops"], g, amp, out["sample_memory_bound_bytes"])
        out["predicted_s"][g] = (slow + s_slow, fast + s_fast)
        # sampling keeps no graph: its peak is the weights and, on the math path, one call's score matrix
        sample_math = 0 if fused_attention(g, amp) else largest_scores * ATTENTION_BYTES_PER_SCORE + CUDA_CONTEXT_BYTES
        lo = max([t["predicted_memory_bytes"][g][0] for t in out["trainings"]] + [sample_math], default=0)
        hi = max([t["predicted_memory_bytes"][g][1] for t in out["trainings"]] + [sample_math], default=0)
        out["predicted_memory_bytes"][g] = (lo, hi)
    big = max(trains, key=lambda r: r["flops_per_step"], default=None)
    if big is not None:
        out["largest"] = {"desc": big["desc"], "parameters": big["parameters"], "flops_per_step": big["flops_per_step"],
                          "memory_estimate_bytes": big["memory_bytes"]["estimate"], "batch_shapes": big["batch_shapes"]}
    return out


def row_name(name: str, parameters: dict[str, Any] | None) -> str:
    """A result row's name: the notebook's, with the parameters it ran with (``07_mnist_cfg (gpu_size=large)``)."""
    if not parameters:
        return name
    return f"{name} ({', '.join(f'{k}={v}' for k, v in sorted(parameters.items()))})"


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["gpu_size=large", "steps=10"]`` → ``{"gpu_size": "large", "steps": 10}`` (values read as Python literals
    where they are one, else kept as strings)."""
    import ast

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--param takes name=value, got {item!r}")
        try:
            out[key.strip()] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            out[key.strip()] = raw
    return out


def run(names: list[str], max_steps: int, profile: str, device: str, keep_cache: bool,
        parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    saved = {v: os.environ.get(v) for v in (dryrun.MAX_STEPS_ENV, dryrun.RECORD_ENV, PROFILE_ENV, EVAL_CHUNK_ENV)}
    os.environ[dryrun.MAX_STEPS_ENV] = str(max_steps)
    os.environ[PROFILE_ENV] = profile
    # a GPU evaluates a sampler's whole batch: count one call's operators as it launches them, not as the CPU's
    # cache-sized chunks would (nbhelpers.devices.eval_chunk; the FLOPs and bytes are the same either way)
    os.environ[EVAL_CHUNK_ENV] = "0"
    root = dryrun.root(max_steps)
    if not keep_cache and root.exists():
        shutil.rmtree(root)  # a cached capped model would not be measured
    out_dir = root / "notebooks"
    results: dict[str, Any] = {}
    t_all = time.perf_counter()
    try:
        for name in names:
            key = row_name(name, parameters)
            tag = "".join(ch if ch.isalnum() or ch in "_-" else "-" for ch in key)
            rec = root / "records" / f"{tag}.jsonl"
            if rec.exists():
                rec.unlink()
            os.environ[dryrun.RECORD_ENV] = str(rec)
            print(f"▶ {name} [dry run: profile {profile}, max steps {max_steps}, device {device}]", flush=True)
            r = run_notebook(name, profile, device, parameters=parameters or None,
                             output_dir=out_dir / tag if parameters else out_dir)
            summary = summarise_notebook(read_records(rec))
            results[key] = {"status": r.status, "error": r.error, "wall_s": round(r.seconds, 2),
                             "device": r.resolved_device or device, "seed_quote": SEED_QUOTES.get(name, ""),
                             "metrics_dry_run_max_steps": r.metrics.get("dry_run_max_steps"),
                             "load_average_1min": machine().get("load_average_1min"), **summary}
            print(f"  {r.status} in {r.seconds:.1f} s" + (f": {r.error}" if r.error else "")
                  + f"; {len(summary['trainings'])} trainings, {summary['sampler_calls']} sampler calls", flush=True)
    finally:  # the caller's environment as it was
        for var, value in saved.items():
            if value is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = value
    return {"kind": "dryrun", "profile": profile, "max_steps": max_steps, "notebooks": results,
            "total_wall_s": round(time.perf_counter() - t_all, 1)}


def rebuild(names: list[str], max_steps: int, profile: str) -> dict[str, Any]:
    """The payload of :func:`run` from what an earlier run left: the executed notebooks in
    ``build/dryrun/notebooks`` (papermill's status and duration) and the records; notebooks not executed are left out."""
    root = dryrun.root(max_steps)
    results: dict[str, Any] = {}
    for name in names:
        executed = root / "notebooks" / f"{name}.ipynb"
        if not executed.exists():
            executed = build_dir() / "dryrun" / "notebooks" / f"{name}.ipynb"  # where earlier versions wrote them
        if not executed.exists():
            continue
        meta = json.loads(executed.read_text()).get("metadata", {}).get("papermill", {})
        if meta.get("parameters", {}).get("profile", profile) not in (profile, "auto") or meta.get("duration") is None:
            continue
        summary = summarise_notebook(read_records(root / "records" / f"{name}.jsonl"))
        results[name] = {"status": "failed" if meta.get("exception") else "ok", "error": "", "wall_s": round(meta["duration"], 2),
                         "device": "", "seed_quote": SEED_QUOTES.get(name, ""), "metrics_dry_run_max_steps": max_steps, **summary}
    return {"kind": "dryrun", "profile": profile, "max_steps": max_steps, "notebooks": results,
            "total_wall_s": round(sum(r["wall_s"] for r in results.values()), 1)}


def _band(pair: tuple[float, float]) -> str:
    slow, fast = pair
    if slow == 0:
        return "– (no network)"
    return f"{duration(fast)} – {duration(slow)}"


def _memory(pair: tuple[float, float] | None, gpu: str) -> str:
    if not pair or not pair[1]:
        return "–"
    lo, hi = pair
    over = " (*over*)" if hi > GPU_MEMORY[gpu] else ""
    return f"{si(lo, 'B')} – {si(hi, 'B')}{over}"


def stamp(payload: dict[str, Any]) -> dict[str, Any]:
    """Give every row without one the run's date and load average (a row keeps them through later merges)."""
    load = payload.get("machine", {}).get("load_average_1min")
    for r in payload["notebooks"].values():
        r.setdefault("measured", payload.get("date", ""))
        r.setdefault("load_average_1min", load)
    return payload


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` with the rows of ``old`` it did not run (same step cap), each row keeping when it was measured."""
    if old.get("max_steps") != new.get("max_steps"):
        return new
    stamp(old)
    stamp(new)
    kept = {k: r for k, r in new["notebooks"].items()  # a failed run never replaces a good row
            if r.get("status") == "ok" or old["notebooks"].get(k, {}).get("status") != "ok"}
    for k in sorted(set(new["notebooks"]) - set(kept)):
        print(f"{k} failed in this run; its recorded row (ok) is kept", file=sys.stderr)
    merged = {**old["notebooks"], **kept}
    new = {**new, "notebooks": {k: merged[k] for k in sorted(merged)}}
    new["total_wall_s"] = round(sum(r["wall_s"] for r in new["notebooks"].values()), 1)
    return new


def _busy(r: dict[str, Any], cores: int) -> bool:
    return busy(r.get("load_average_1min"), cores)


def table(payload: dict[str, Any]) -> str:
    info = payload["machine"]
    nbs = payload["notebooks"]
    dates = sorted({r.get("measured", payload.get("date", "")) for r in nbs.values()})
    busy = [n for n, r in nbs.items() if _busy(r, info["cpu_count"])]
    when = f"Measured {payload.get('date', '')} on {describe_machine(info)}"
    if len(dates) > 1:
        when = (f"Measured on {describe_machine(info)}; rows at {len(dates)} times ({', '.join(dates)}; each row's time "
                "in its dry-run cell)" + (f", rows marked *busy* with a load average above {info['cpu_count']}: their "
                                           "times are not this machine's" if busy else ""))
    lines = [
        f"### gpu profile, dry run (`python -m benchmarks.dryrun`, max steps {payload['max_steps']})", "",
        f"{when}. Every notebook executed at its "
        f"{payload['profile']}-profile model and batch sizes with {payload['max_steps']} training steps and "
        f"{payload['max_steps']} network evaluations per sampler call, one notebook after another: "
        f"{payload['total_wall_s']:.0f} s in all. "
        f"Predictions: the full {payload['profile']} profile (every training at its full step count, every "
        f"sampler call at its full number of network evaluations) as compute time at {UTILISATION[0]:.0%}–"
        f"{UTILISATION[1]:.0%} of the card's peak at the dtype it computes in (fp32 code: fp32 → TF32; autocast: "
        f"fp16 on a T4, whose tensor cores have no bf16, bf16 on an A100/H100; T4 fp32 8.1 T / fp16 65 T, A100 "
        f"fp32 19.5 T / TF32 156 T / bf16 312 T, H100 SXM fp32 67 T / TF32 495 T / bf16 989 T) plus memory time "
        f"for the memory-bound operators (norms, activations, adds, optimizer; the bytes each reads and writes, "
        f"{AMP_BYTES[1]:.0%}–{AMP_BYTES[0]:.0%} of them under autocast) at "
        f"{BANDWIDTH_UTILISATION[0]:.0%}–{BANDWIDTH_UTILISATION[1]:.0%} of the card's bandwidth (T4 320 GB/s, "
        f"A100 1.56 TB/s, H100 3.35 TB/s), and never faster than {LAUNCH_S[1] * 1e6:.0f}–{LAUNCH_S[0] * 1e6:.0f} µs "
        "per operator. Data loading, the evaluator, FID and the CPU side of each cell are not counted. Peak "
        "memory on a T4: weights, gradients, optimizer state, EMA, batch and the activations saved for backward "
        f"(measured from the graph at fp32; half of them under fp16 at the low end), {CUDA_CONTEXT_BYTES / 1e9:.1f} GB "
        "for the CUDA context, and the attention score matrices wherever the card has no fused kernel at its dtype "
        f"(a T4 in bf16); *over* when above the {GPU_MEMORY['T4'] / 1e9:.0f} GB a Colab T4 offers.", "",
        "| notebook | dry run | trainings | largest training: params | batch | FLOPs/step | memory-bound bytes/step | "
        "train FLOPs (full) | sample FLOPs (full) | T4 | T4 peak memory | A100 | H100 | quoted |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    def cell_note(r: dict[str, Any]) -> str:
        parts = ([r.get("measured", "")] if len(dates) > 1 else []) + (["*busy*"] if _busy(r, info["cpu_count"]) else [])
        return f" ({', '.join(parts)})" if parts else ""

    for name, r in nbs.items():
        big = r.get("largest", {})
        batch = big.get("batch_shapes", [[]])
        big_t = max(r["trainings"], key=lambda t: t["flops_per_step"], default={})
        lines.append(
            f"| {name} | {r['status']}, {r['wall_s']:.0f} s{cell_note(r)} | {len(r['trainings'])} | {si(big.get('parameters'))} | "
            f"{'×'.join(map(str, batch[0])) if batch and batch[0] else '–'} | {si(big.get('flops_per_step'))} | "
            f"{si(big_t.get('memory_bound_bytes_per_step') or None, 'B')} | {si(r['train_flops'])} | {si(r['sample_flops'])} | "
            f"{_band(r['predicted_s']['T4'])} | {_memory(r.get('predicted_memory_bytes', {}).get('T4'), 'T4')} | "
            f"{_band(r['predicted_s']['A100'])} | {_band(r['predicted_s']['H100'])} | {r['seed_quote'] or '–'} |")
    lines += ["", "Per training (gpu profile):", "",
              "| notebook | training | params | steps | FLOPs/step | ops/step | memory-bound bytes/step | step on this CPU | T4 | "
              "T4 peak memory | A100 | H100 |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in nbs.items():
        for t in r["trainings"]:
            cpu = f"{t['cpu_step_seconds']:.3g} s" if t.get("cpu_step_seconds") else "–"
            lines.append(f"| {name} | {t['desc']}{' (autocast)' if t['amp'] else ''} | {si(t['parameters'])} | {t['full_steps']} | "
                         f"{si(t['flops_per_step'])} | {t['ops_per_step']} | {si(t.get('memory_bound_bytes_per_step') or None, 'B')} | "
                         f"{cpu} | {_band(t['predicted_s']['T4'])} | {_memory(t.get('predicted_memory_bytes', {}).get('T4'), 'T4')} | "
                         f"{_band(t['predicted_s']['A100'])} | {_band(t['predicted_s']['H100'])} |")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m benchmarks.dryrun`` (dashed flags)."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dryrun", description=__doc__.splitlines()[0])
    ap.add_argument("--notebooks", default="all", help="'all' or a comma list such as 03,06")
    ap.add_argument("--max-steps", type=int, default=2, help="training steps and network evaluations per sampler call")
    ap.add_argument("--profile", default="gpu", choices=PROFILES)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--keep-cache", action="store_true", help="reuse capped models of an earlier dry run (they are then not measured)")
    ap.add_argument("--no-write", action="store_true", help="print the table; write no JSON and leave the README alone")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                    help="a notebook parameter for this run (repeatable), e.g. gpu_size=large; rows are named after it")
    ap.add_argument("--rebuild", action="store_true",
                    help="execute nothing: rebuild the results from the executed notebooks and records an earlier run left in build/dryrun")
    return ap


@tool_errors
def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    if args.max_steps < 1:
        ap.error(f"--max-steps must be a positive integer, got {args.max_steps}")
    try:
        names = select_notebooks(args.notebooks)
        params = parse_params(args.param)
        if args.rebuild and params:
            raise ValueError("--rebuild reads the rows of an earlier run; it takes no --param")
        if not args.rebuild:
            get_device(args.device)  # an absent device stops here, before any row is touched
    except ValueError as exc:
        ap.error(str(exc))
    if args.rebuild:
        payload = rebuild(names, args.max_steps, args.profile)
    else:
        payload = run(names, args.max_steps, args.profile, args.device, args.keep_cache, params)
    info = machine()
    payload.update({"machine": info, "machine_tag": machine_tag(info), "date": time.strftime("%Y-%m-%d %H:%M")})
    stamp(payload)
    failed = [n for n, r in payload["notebooks"].items() if r["status"] != "ok"]
    if not args.no_write:
        name = f"dryrun__{args.profile}__{payload['machine_tag']}"
        path = RESULTS / f"{name}.json"
        if path.exists():  # a run of some notebooks replaces their rows and keeps the others
            old = read_json(path, "dry-run result")
            if old.get("max_steps") != payload.get("max_steps") and set(old.get("notebooks", {})) - set(names):
                # another cap, and not every recorded notebook re-run: kept apart, the table stays as it is
                name = f"{name}__max{payload['max_steps']}"
                path = RESULTS / f"{name}.json"
                write_json(name, payload)
                print(table(payload))
                print(f"→ {path} (the recorded table, cap {old.get('max_steps')}, is unchanged)")
                return 1 if failed else 0
            payload = merge(old, payload)
        text = table(payload)
        print(text)
        write_json(name, payload)
        replace_block("dryrun", text)
        print(f"→ {path}")
    else:
        print(table(payload))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
