"""What the benchmark modules share: the machine's name, result files, README blocks, GPU peaks."""
from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import torch

from nbhelpers.runtime import atomic_write_bytes, machine_info

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
README = HERE / "README.md"


def machine() -> dict:
    """CPU model, cores, threads (and the GPU when there is one): what a measured number depends on."""
    info = {**machine_info(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "machine": platform.machine()}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    if hasattr(os, "getloadavg"):
        info["load_average_1min"] = round(os.getloadavg()[0], 2)
    return info


def machine_tag(info: dict) -> str:
    if "gpu" in info:
        return info["gpu"].replace("NVIDIA ", "").replace(" ", "-").lower()
    return f"cpu{info['cpu_count']}"


BUSY_MARGIN = 0.5
"""A run is marked busy when the 1-minute load average exceeds the cores by more than this: a benchmark's own
threads load every core of this 2-core machine (a load of ~2.0 is the benchmark itself), half a core more is
someone else's work sharing them."""


def busy(load: float | None, cores: int) -> bool:
    """Whether a load average of ``load`` on ``cores`` cores means another process shared the machine."""
    return load is not None and load > cores + BUSY_MARGIN


def describe_machine(info: dict) -> str:
    gpu = f", {info['gpu']}" if "gpu" in info else ""
    text = (f"{info.get('processor', '?')}, {info['cpu_count']} cores visible, {info['torch_threads']} torch threads{gpu}; "
            f"torch {info.get('torch', torch.__version__)}")
    load = info.get("load_average_1min")
    if busy(load, info["cpu_count"]):
        text += (f". **Busy machine** (load average {load:g} on {info['cpu_count']} cores when the run ended): the times "
                 "and ratios below are not this machine's; re-measure on a quiet one")
    return text


def write_json(name: str, payload: dict) -> Path:
    path = RESULTS / f"{name}.json"
    atomic_write_bytes(path, (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode())
    return path


def replace_block(tag: str, block: str, readme: Path = README) -> None:
    """Put ``block`` between ``<!-- tag:begin -->`` and ``<!-- tag:end -->`` in the README (appended when absent)."""
    begin, end = f"<!-- {tag}:begin -->", f"<!-- {tag}:end -->"
    body = f"{begin}\n{block.strip()}\n{end}"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n\n"
    if begin in text and end in text:
        text = text[: text.index(begin)] + body + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + body + "\n"
    atomic_write_bytes(readme, text.encode())


def si(x: float | None, unit: str = "") -> str:
    """1.23e9 → '1.23 G' (with ``unit``)."""
    if x is None:
        return "–"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= factor:
            return f"{x / factor:.3g} {prefix}{unit}"
    return f"{x:.3g} {unit}".rstrip()


def duration(s: float) -> str:
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


# Published dense peaks (FLOP/s), from the vendors' data sheets: T4 (Turing: no bf16 tensor cores, so
# bf16 runs at the fp32 rate; fp16 tensor cores 65 T), A100 SXM 40/80 GB, H100 SXM5 (without sparsity).
GPU_PEAKS: dict[str, dict[str, float]] = {
    "T4": {"fp32": 8.1e12, "tf32": 8.1e12, "bf16": 8.1e12, "fp16": 65e12},
    "A100": {"fp32": 19.5e12, "tf32": 156e12, "bf16": 312e12, "fp16": 312e12},
    "H100": {"fp32": 67e12, "tf32": 494.7e12, "bf16": 989.4e12, "fp16": 989.4e12},
}
GPU_CAPABILITY: dict[str, tuple[int, int]] = {"T4": (7, 5), "A100": (8, 0), "H100": (9, 0)}
"""CUDA compute capability of each card: what ``nbhelpers.runtime.amp_dtype`` picks the autocast dtype by."""
GPU_BANDWIDTH: dict[str, float] = {"T4": 320e9, "A100": 1555e9, "H100": 3350e9}
"""Published memory bandwidth (bytes/s): T4 GDDR6, A100 40 GB HBM2, H100 SXM5 HBM3."""
GPU_MEMORY: dict[str, float] = {"T4": 15.0e9, "A100": 40e9, "H100": 80e9}
"""Memory a process can allocate (bytes): a Colab T4 shows 15 GB."""
CUDA_CONTEXT_BYTES = 0.6e9
"""What the CUDA context, cuDNN/cuBLAS workspaces and the allocator's slack take before the first tensor."""
UTILISATION = (0.2, 0.5)
"""The band of peak a small eager-mode PyTorch model reaches on a data-centre GPU (slow end, fast end)."""
BANDWIDTH_UTILISATION = (0.4, 0.8)
"""The band of peak bandwidth eager memory-bound kernels reach on the series' tensors (1–100 MB: a batch of
feature maps): elementwise kernels stream at 70–90 % of it, norm and reduction kernels lower."""
AMP_BYTES = (0.75, 0.5)
"""Share of the float32 bytes the memory-bound operators move under autocast (slow end, fast end): activations
are half precision, but autocast runs group/layer norm and softmax in float32, and the optimizer's state stays
float32."""
LAUNCH_S = (10e-6, 5e-6)
"""Per-operator host overhead of eager PyTorch on a GPU (slow end, fast end): the floor of a small model's step."""
