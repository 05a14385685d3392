"""Exercise of notebook 04 (seed 000 task 4b): the residual layer of Figure 1's UNet, with the time embedding.

Figure 1's layer, as :class:`nbhelpers.models.unet.ResidualLayer` computes it (BatchNorm, one MLP per layer)::

    h   = Conv(BN(SiLU(x))) + MLP(emb(t))      the embedding: one number per channel, the same at every pixel
    out = x + Conv(BN(SiLU(h)))                the residual connection

The learner writes it as a class ``ResidualLayer(channels, emb_dim)`` with ``forward(x, emb)`` and the parts
``norm1``, ``conv1``, ``time_mlp``, ``norm2``, ``conv2``; every case copies the weights of a library block into
those parts (:func:`layer_like`), so the two compute the same function and are compared number for number. The
BatchNorm parameters and running statistics are drawn away from their initial values, so that norm1 and norm2
cannot be swapped unseen; a case with the second convolution zeroed isolates the residual connection, one with the
MLP silent the convolution path, and differences between two times isolate where t enters. Building a layer
never moves the global random state (:func:`torch.random.fork_rng`): a notebook's later draws stay as they were.
"""
from __future__ import annotations

import copy
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ..models import unet as _unet
from ..models.embeddings import SinusoidalEmbedding
from .core import Case, Exercise, register
from .core import gen as _gen
from .core import randn as _randn

__all__ = ["PARTS", "layer_like", "with_layer"]

PARTS: tuple[str, ...] = ("norm1", "conv1", "time_mlp", "norm2", "conv2")
"""The parts of the learner's layer, under the names the weights are copied into."""

_C, _E, _B, _HW = 6, 8, 5, 6  # channels, embedding width (≠ channels, so the MLP's two layers differ), batch, size
_TIMES = (0.0, 0.25, 0.5, 0.75, 1.0)  # one per image
_EXACT = {"atol": 1e-9, "rtol": 1e-9}  # float64 throughout: the same weights give the same numbers


def _library_parts(block: _unet.ResidualLayer) -> dict[str, nn.Module]:
    """``block``'s modules under :data:`PARTS`' names; a ValueError for a block that is not Figure 1's."""
    norms = (block.block1[1], block.block2[1])
    if not all(isinstance(n, nn.BatchNorm2d) for n in norms) or len(block.time_mlp) != 3 \
            or not isinstance(block.block2[2], nn.Identity):
        raise ValueError("the exercise's layer is Figure 1's: BatchNorm, one MLP per layer and no dropout "
                         "(UNetConfig(norm='batch', time_mlp='per_block', dropout=0.0)); got a block of another UNet")
    return {"norm1": block.block1[1], "conv1": block.block1[2], "time_mlp": block.time_mlp,
            "norm2": block.block2[1], "conv2": block.block2[3]}


class _LibraryLayer(_unet.ResidualLayer):
    """:class:`nbhelpers.models.unet.ResidualLayer` as Figure 1 builds it, its parts also under the exercise's
    names (``norm1`` is ``block1[1]`` …): what a notebook uses while the learner's layer does not pass."""

    def __init__(self, channels: int, emb_dim: int) -> None:
        super().__init__(channels, emb_dim, norm="batch", time_mlp="per_block")

    norm1 = property(lambda self: self.block1[1])
    conv1 = property(lambda self: self.block1[2])
    norm2 = property(lambda self: self.block2[1])
    conv2 = property(lambda self: self.block2[3])


def _build(cls: Callable[..., nn.Module], channels: int, emb_dim: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # the initial weights are overwritten; the global draws stay put
        layer = cls(channels, emb_dim)
    if not isinstance(layer, nn.Module):
        raise ValueError(f"ResidualLayer(channels, emb_dim) must build a torch.nn.Module, got {type(layer).__name__}")
    return layer


def layer_like(cls: Callable[..., nn.Module], block: _unet.ResidualLayer) -> nn.Module:
    """``cls(channels, emb_dim)`` holding ``block``'s weights and BatchNorm statistics in its parts (:data:`PARTS`),
    on ``block``'s device and dtype and in its mode (training or evaluation). ``block`` is a Figure-1
    :class:`nbhelpers.models.unet.ResidualLayer`; a ValueError names a part that is missing or has other shapes."""
    parts = _library_parts(block)
    channels, emb_dim = parts["conv1"].in_channels, parts["time_mlp"][0].in_features
    ref = parts["conv1"].weight
    layer = _build(cls, channels, emb_dim).to(device=ref.device, dtype=ref.dtype)
    for name, source in parts.items():
        part = getattr(layer, name, None)
        if not isinstance(part, nn.Module):
            raise ValueError(f"your ResidualLayer has no module {name!r}: build the parts {', '.join(PARTS)} in "
                             f"__init__ under these names (it has: "
                             f"{', '.join(n for n, _ in layer.named_children()) or 'no modules'})")
        want = {k: tuple(v.shape) for k, v in source.state_dict().items()}
        have = {k: tuple(v.shape) for k, v in part.state_dict().items()}
        if want != have:
            raise ValueError(f"your {name} does not hold what Figure 1's does: its tensors {have}, "
                             f"Figure 1's {want}")
        with torch.no_grad():
            part.load_state_dict(source.state_dict())
    return layer.train(block.training)


def with_layer(model: nn.Module, cls: Callable[..., nn.Module]) -> nn.Module:
    """A copy of ``model`` (a Figure-1 :class:`nbhelpers.models.unet.UNet`) in which every residual layer is a
    ``cls`` holding that layer's weights (:func:`layer_like`); ``model`` itself is left as it is."""
    if isinstance(model, _unet.ResidualLayer):
        return layer_like(cls, model)
    out = copy.deepcopy(model)
    found = [(name, m) for name, m in out.named_modules() if isinstance(m, _unet.ResidualLayer)]
    if not found:
        raise ValueError(f"no nbhelpers.models.unet.ResidualLayer in {type(model).__name__}: give a Figure-1 UNet")
    for name, block in found:
        parent, _, child = name.rpartition(".")
        setattr(out.get_submodule(parent), child, layer_like(cls, block))
    return out


# --------------------------------------------------------------------------- the cases
def _block(seed: int, zero_conv2: bool = False, silent_mlp: bool = False) -> _unet.ResidualLayer:
    """A float64 library block with every weight drawn from ``seed`` (BatchNorm's affine parameters and running
    statistics too); ``zero_conv2`` zeroes the second convolution, ``silent_mlp`` the MLP's last layer."""
    block = _build(_LibraryLayer, _C, _E).double()
    g = _gen(seed)

    def draw(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    with torch.no_grad():
        for p in block.parameters():  # weights N(0, 1/fan_in), biases N(0, 0.2²)
            p.copy_(draw(*p.shape) * (p[0].numel() ** -0.5 if p.ndim > 1 else 0.2))
        for norm in (block.norm1, block.norm2):
            norm.weight.copy_(1.0 + 0.3 * draw(_C))
            norm.running_mean.copy_(0.3 * draw(_C))
            norm.running_var.copy_(0.5 + torch.rand(_C, generator=g, dtype=torch.float64))
        if zero_conv2:
            block.conv2.weight.zero_()
            block.conv2.bias.zero_()
        if silent_mlp:
            block.time_mlp[2].weight.zero_()
            block.time_mlp[2].bias.zero_()
    return block


def _parts_count(layer: nn.Module) -> Tensor:
    """Parameters in each of :data:`PARTS`, then in anything else (float64, ``len(PARTS) + 1``)."""
    counts = []
    for name in PARTS:
        part = getattr(layer, name, None)
        counts.append(sum(p.numel() for p in part.parameters()) if isinstance(part, nn.Module) else 0)
    total = sum(p.numel() for p in layer.parameters())
    return torch.tensor([*counts, total - sum(counts)], dtype=torch.float64)


def _layer_reference() -> Callable:
    return _LibraryLayer


def _layer_cases() -> list[Case]:
    x = _randn(_B, _C, _HW, _HW, seed=61, dtype=torch.float64)
    t = torch.tensor(_TIMES, dtype=torch.float64)
    emb = SinusoidalEmbedding(_E)(t).double()  # Figure 1's pre-defined embedding of t, one row per image
    emb_other = emb.flip(0)  # the same times, given to other images

    def out(cls: Any, seed: int, e: Tensor = emb, train: bool = True, **how: bool) -> Tensor:
        return layer_like(cls, _block(seed, **how).train(train))(x, e)

    def change(cls: Any, seed: int, **how: bool) -> Tensor:  # what the time alone changes
        return out(cls, seed, emb, **how) - out(cls, seed, emb_other, **how)

    between = ("the time embedding goes between the two convolutions: h = conv1(norm1(SiLU(x))) + "
               "time_mlp(emb)[:, :, None, None], then out = x + conv2(norm2(SiLU(h))) — added after the second "
               "convolution (or to the output) it skips conv2 and reaches the output unchanged")
    return [
        Case(f"Figure 1's parts: parameters in norm1, conv1, time_mlp, norm2, conv2 and in anything else, for "
             f"ResidualLayer({_C}, {_E}), against nbhelpers.models.unet.ResidualLayer",
             lambda cls: _parts_count(_build(cls, _C, _E)), lambda: _parts_count(_build(_LibraryLayer, _C, _E)),
             "build, under these names (the check copies the library's weights into them): "
             "norm1 = nn.BatchNorm2d(channels), conv1 = nn.Conv2d(channels, channels, 3, padding=1), "
             "time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, channels)), "
             "norm2 and conv2 like norm1 and conv1 — and nothing else with parameters"),
        Case("the residual connection: with the second convolution zeroed (weights and bias 0) and the MLP silent, "
             "the layer returns x itself",
             lambda cls: out(cls, 71, zero_conv2=True, silent_mlp=True), lambda: x,
             "the residual connection is missing: the layer returns x + conv2(norm2(SiLU(h))), the input added "
             "back to what the second convolution makes of h", **_EXACT),
        Case("the convolution path with the MLP silent (its last Linear zeroed): x + conv2(norm2(SiLU(conv1(norm1("
             "SiLU(x)))))), against nbhelpers.models.unet.ResidualLayer with the same weights, training mode",
             lambda cls: out(cls, 72, silent_mlp=True), lambda: _block(72, silent_mlp=True)(x, emb),
             "each half is SiLU, then BatchNorm, then the 3×3 convolution, in that order (the activation comes "
             "first): norm1 and conv1 on x, norm2 and conv2 on h, and x added back at the end", **_EXACT),
        Case("where t enters: with the second convolution zeroed, the output is x whatever the time, so "
             "out(emb(t)) − out(emb(t')) = 0",
             lambda cls: change(cls, 73, zero_conv2=True), lambda: torch.zeros_like(x), between, **_EXACT),
        Case("what the time changes: out(emb(t)) − out(emb(t')) with every weight active, against the library's "
             f"(t = {', '.join(f'{v:g}' for v in _TIMES)}, then the same times in reverse order)",
             lambda cls: change(cls, 74), lambda: (_block(74)(x, emb) - _block(74)(x, emb_other)),
             "t reaches the output only through time_mlp(emb): reshaped to (B, C, 1, 1) (one number per channel, "
             "the same at every pixel) and added to the first convolution's output, before the second SiLU; "
             "SiLU, norm2 and conv2 then carry it on, so a slip in the second half shows here too", **_EXACT),
        Case(f"the whole layer at t = {', '.join(f'{v:g}' for v in _TIMES)} (one per image), training mode "
             "(BatchNorm on the batch's statistics), against nbhelpers.models.unet.ResidualLayer with the same "
             "weights", lambda cls: out(cls, 75), lambda: _block(75)(x, emb),
             "h = conv1(norm1(SiLU(x))) + time_mlp(emb)[:, :, None, None]; out = x + conv2(norm2(SiLU(h)))",
             **_EXACT),
        Case("evaluation mode (BatchNorm on its running statistics, as when sampling): the same layer after "
             ".eval(), against the library's",
             lambda cls: out(cls, 76, train=False), lambda: _block(76).eval()(x, emb),
             "call the modules themselves (self.norm1(…), not batch statistics computed by hand), so that .eval() "
             "switches BatchNorm to its running mean and variance; norm1 belongs to the first half, norm2 to the "
             "second", **_EXACT),
    ]


register(
    Exercise("residual_layer", "04_unet_images",
             "build Figure 1's residual layer: in __init__ the parts norm1, conv1, time_mlp, norm2, conv2 "
             "(BatchNorm2d(channels); Conv2d(channels, channels, 3, padding=1); Linear(emb_dim, emb_dim), SiLU, "
             "Linear(emb_dim, channels); then BatchNorm2d and Conv2d again); in forward(x, emb) "
             "h = conv1(norm1(SiLU(x))) + time_mlp(emb) reshaped to (B, C, 1, 1), and return "
             "x + conv2(norm2(SiLU(h)))",
             _layer_reference, "nbhelpers.models.unet.ResidualLayer", _layer_cases),
)
