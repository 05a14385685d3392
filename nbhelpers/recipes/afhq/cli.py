"""The command line ``python -m nbhelpers.afhq`` (console script ``nbhelpers-afhq``): seed 004's thirteen flags and a few extras.

The assignment's underscored spellings (``--image_size``, ``--fid True``) work too; an expected
failure is one ``error:`` line and exit status 2.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ...cli import HelpFormatter, Switch, flag, int_at_least, invoked_name, positive_float
from ...devices import get_device
from .data import AFHQ_CLASSES
from .trainer import AFHQConfig, train_afhq

__all__ = ["TABLE1_FLAGS", "build_parser", "table1", "MarkdownText", "table1_markdown", "CLIExample", "cli_example",
           "parse_args", "main"]


TABLE1_FLAGS: tuple[str, ...] = ("image_size", "batch_size", "data_class", "save_folder", "load_path", "data_path",
                                 "train_steps", "time_steps", "unet_dim", "learning_rate", "save_and_sample_every",
                                 "fid", "visualize")
"""The assignment's thirteen flags (seed 004, Table 1), by destination name."""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The CLI's parser: the assignment's thirteen flags (same names and meanings) plus a few extras.

    Every flag has a dashed spelling (shown in ``--help``) and, where it has an underscore, the
    underscored one of the assignment (``--image_size``), which keeps working.
    """
    from ... import __version__

    d = AFHQConfig()
    ap = argparse.ArgumentParser(
        prog=prog or invoked_name("nbhelpers.afhq"), formatter_class=HelpFormatter,
        description="Train a DDPM on one AFHQ domain, sample from it and (optionally) score it by FID. "
                    "Runs unchanged under torchrun (DistributedDataParallel).",
        epilog="Flags may also be written with underscores (--image_size 32), and switches with a value "
               "(--fid True, --visualize False), as in the assignment.",
    )
    ap.add_argument("--version", action="version", version=f"%(prog)s (nbhelpers {__version__})")
    data = ap.add_argument_group("data")
    flag(data, "data_path", default=None,
          help="directory from which to load the dataset: the split folder afhq/train holding cat/ dog/ wild/ "
               "(default: $NBHELPERS_DATA_DIR/afhq/train)")
    flag(data, "data_class", choices=AFHQ_CLASSES, default=d.data_class, help="data domain of the AFHQ dataset (default: %(default)s)")
    flag(data, "image_size", type=int_at_least("image_size", 8), default=d.image_size, help="model image size (pixels) (default: %(default)s)")
    flag(data, "download", action="store_true", help="download the public AFHQ archive to --data-path first (needs internet)")
    model = ap.add_argument_group("model and training")
    flag(model, "unet_dim", type=int_at_least("unet_dim"), default=d.unet_dim,
          help="number of output channels of the first layer in the U-Net (default: %(default)s)")
    flag(model, "time_steps", type=int_at_least("time_steps"), default=d.time_steps,
          help="number of steps of the diffusion process, T (default: %(default)s)")
    flag(model, "train_steps", type=int_at_least("train_steps", 0), default=d.train_steps,
          help="number of iterations to train the model (default: %(default)s)")
    flag(model, "batch_size", type=int_at_least("batch_size"), default=d.batch_size,
          help="model batch size, global: split over torchrun processes (default: %(default)s)")
    flag(model, "learning_rate", type=positive_float("learning_rate"), default=d.learning_rate,
          help="learning rate in the training (default: %(default)s)")
    flag(model, "ema_decay", type=positive_float("ema_decay"), default=d.ema_decay,
          help="decay of the EMA weights used for sampling (default: %(default)s)")
    flag(model, "seed", type=int_at_least("seed", 0), default=d.seed,
          help="random seed of the initial weights, the batches and the noise (default: %(default)s)")
    flag(model, "device", default=d.device,
          help="auto, cpu, cuda, cuda:N or mps; under torchrun cuda means cuda:LOCAL_RANK (default: %(default)s)")
    out = ap.add_argument_group("saving, sampling and evaluation")
    flag(out, "save_folder", default=d.save_folder, help="directory where the model, samples and logs are stored (default: %(default)s)")
    flag(out, "load_path", default=None, help="path of a trained model (checkpoint) to resume from or visualise")
    flag(out, "save_and_sample_every", type=int_at_least("save_and_sample_every"), default=d.save_and_sample_every,
          help="frequency of periodic save, sample and (optionally) FID calculation (default: %(default)s)")
    out.add_argument("--fid", action=Switch, default=d.fid,
                     help="enable FID calculation (clean-fid) (default: off)")
    flag(out, "fid_samples", type=int_at_least("fid_samples", 2), default=d.fid_samples,
          help="number of generated samples per FID evaluation (default: %(default)s)")
    flag(out, "inception_weights", default=None,
          help="local inception-2015-12-05.pt for FID (or set $NBHELPERS_INCEPTION_WEIGHTS)")
    out.add_argument("--visualize", action=Switch, default=d.visualize,
                     help="enable visualization: forward and backward diffusion figures of the (loaded or trained) model "
                          "(default: off)")
    out.add_argument("--progress", action=Switch, default=d.progress, help="show the progress bar (default: on)")
    return ap


def table1(parser: argparse.ArgumentParser | None = None) -> list[dict[str, str]]:
    """The assignment's thirteen flags as rows ``{flag, also, default, help}`` read from the parser
    (``also``: the other accepted spellings), so a table of them cannot drift from the code."""
    parser = parser or build_parser("nbhelpers-afhq")
    by_dest = {a.dest: a for a in parser._actions}
    rows = []
    for dest in TABLE1_FLAGS:
        a = by_dest[dest]
        dashed = next(s for s in a.option_strings if s.startswith("--") and "_" not in s)
        if isinstance(a, Switch):
            also = f"--no-{dest.replace('_', '-')}, {dashed} True/False"
            default = "on" if a.default else "off"
        else:
            also = ", ".join(s for s in a.option_strings if s != dashed)
            default = "" if a.default is None else str(a.default)
        text = (a.help or "").replace("%(default)s", str(a.default)).split(" (default")[0]
        rows.append({"flag": dashed, "also": also, "default": default, "help": text})
    return rows


class MarkdownText(str):
    """A string that Jupyter renders as Markdown (``_repr_markdown_``); everywhere else a plain ``str``."""

    def _repr_markdown_(self) -> str:
        return str(self)


def table1_markdown(parser: argparse.ArgumentParser | None = None) -> MarkdownText:
    """:func:`table1` as a Markdown table (flag, other spellings, default, meaning), rendered as such when it
    is the value of a notebook cell."""
    lines = ["| flag | also accepted | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{r['flag']}` | {r['also'] and '`' + r['also'] + '`'} | {r['default'] or '–'} | {r['help']} |"
              for r in table1(parser)]
    return MarkdownText("\n".join(lines))


@dataclass(frozen=True)
class CLIExample:
    """A finished run of the command line: its flags, exit status, printed output and the files it wrote.
    ``str()`` is the transcript: the command, its output, the exit status and the files."""

    argv: list[str]
    returncode: int
    output: str
    files: list[str]

    def __str__(self) -> str:
        return (f"$ python -m nbhelpers.afhq {' '.join(self.argv)}\n\n{self.output}\n"
                f"exit status {self.returncode} · files written: {', '.join(self.files)}")


def cli_example(image_folder: str | Path, work: str | Path, n_images: int = 32, timeout: float = 600) -> CLIExample:
    """A tiny run of ``python -m nbhelpers.afhq`` in a fresh process: the first ``n_images`` PNGs of
    ``image_folder`` copied to ``<work>/afhq/train/cat``, 16×16, T = 10, two training steps on the CPU,
    results in ``<work>/results`` (removed first, so the run trains afresh instead of resuming)."""
    work = Path(work)
    cats = work / "afhq" / "train" / "cat"
    cats.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in Path(image_folder).iterdir() if p.suffix == ".png")[:n_images]:
        if not (cats / f.name).exists():
            shutil.copy2(f, cats / f.name)
    shutil.rmtree(work / "results", ignore_errors=True)
    argv = ["--data-path", str(work / "afhq" / "train"), "--save-folder", str(work / "results"), "--image-size", "16",
            "--batch-size", "8", "--time-steps", "10", "--unet-dim", "8", "--train-steps", "2",
            "--save-and-sample-every", "2", "--device", "cpu", "--no-progress"]
    proc = subprocess.run([sys.executable, "-m", "nbhelpers.afhq", *argv], capture_output=True, text=True,
                          timeout=timeout)
    results = work / "results"
    files = sorted(p.name for p in results.iterdir()) if results.is_dir() else []
    return CLIExample(argv, proc.returncode, proc.stdout + proc.stderr, files)


def parse_args(argv: Sequence[str] | None = None) -> AFHQConfig:
    """Parse CLI arguments into an :class:`AFHQConfig`; bad values exit with a message naming the valid ones."""
    ap = build_parser()
    ns = ap.parse_args(argv)
    try:
        get_device(ns.device)
        return AFHQConfig(**vars(ns))
    except ValueError as exc:
        ap.error(str(exc))
    raise AssertionError("unreachable")  # pragma: no cover


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nbhelpers.afhq [flags]`` (see ``--help``); returns the exit status.

    Expected failures (missing or unreadable data, a save folder that cannot be written, an unreadable
    checkpoint, a download without internet) print one ``error:`` line on stderr and return 2.
    """
    cfg = parse_args(argv)
    started_group = False
    try:
        started_group = "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized()
        train_afhq(cfg)
    except (ValueError, OSError) as exc:  # AFHQNotFoundError is an OSError; bad images raise PIL's OSError
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if started_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    return 0
