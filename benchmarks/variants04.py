"""04's cpu profile, one change at a time: train the linear-schedule velocity UNet with a variant, score its samples.

``python -m benchmarks.variants04 '{"attention_levels": [2]}' --name attention`` trains one flow-matching UNet
of ``nb.recipes.mnist.mnist_recipe("cpu")`` (logit-normal t, batch 128, 900 steps, cosine decay) with the
variant applied, samples ``--n-eval`` digits with 50 Euler steps and scores them with the MNIST evaluator,
then samples the same starting noise autoguided by the weights kept after ``guide_at`` of the steps
(``nb.recipes.mnist.autoguided``, weight ``guide_w``; ``"guide_at": null`` skips it) and scores those too;
one JSON row is appended to ``results/variants04__<machine>.jsonl``. A variant is a JSON object whose keys are

* fields of :class:`nbhelpers.models.unet.UNetConfig` (``base_channels``, ``channel_mults``,
  ``attention_levels``, ``norm`` …) or of :class:`nbhelpers.recipes.mnist.MNISTRecipe` (``steps``, ``lr``,
  ``batch_size``, ``ema_decay`` …);
* ``betas``, ``grad_clip``, ``weight_decay``: the optimiser (:class:`nbhelpers.training.TrainConfig`);
* ``seed``: initial weights and the training draws;
* ``ot``: minibatch optimal-transport coupling — the batch's noise is re-paired with its images by a
  linear assignment on squared distances (Pooladian et al. 2023; Tong et al. 2024);
* ``x_prediction``: β floor c; the network predicts the clean image x̂ and the velocity is
  α̇ x̂ + β̇ (x − α x̂)/max(β, c) (same loss, another parameterisation);
* ``film``: the residual layers' time MLP gives a scale and a shift, h·(1 + s) + b, instead of Figure 1's
  added shift (zero-initialised, so training starts from the shift-free layer);
* ``space_to_depth``: the UNet sees the image as 14×14 with 4 channels (``nn.PixelUnshuffle(2)``) and its
  output is put back to 28×28 (``nn.PixelShuffle(2)``), so no layer works at full resolution.

Run variants on a quiet machine (two at once at ``--threads 1`` share two cores evenly); the table in
README.md ("04 on the cpu profile") was measured this way. Several seeds matter: two seeds of one variant
differ by about one percentage point.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
import types
from typing import Any

import torch
from torch import nn

import nbhelpers as nb
from nbhelpers.models.unet import ResidualLayer, UNet, UNetConfig
from nbhelpers.paths import GaussianPath
from nbhelpers.recipes.mnist import MNISTRecipe, autoguided, mnist_evaluator, mnist_recipe
from nbhelpers.training import TrainConfig, train
from nbhelpers.cli import tool_errors

from .common import RESULTS, machine, machine_tag

__all__ = ["Variant", "parse_variant", "build", "ot_pairing", "variant_loss", "run_variant", "main"]

UNET_FIELDS = tuple(f.name for f in dataclasses.fields(UNetConfig))
RECIPE_FIELDS = tuple(f.name for f in dataclasses.fields(MNISTRecipe) if f.name != "unet")
OPTIM_FIELDS = ("betas", "grad_clip", "weight_decay")
METHOD_FIELDS = ("seed", "ot", "x_prediction", "film", "space_to_depth")


@dataclasses.dataclass(frozen=True)
class Variant:
    recipe: MNISTRecipe
    optim: dict[str, Any]
    seed: int = 0
    ot: bool = False
    x_prediction: float | None = None
    film: bool = False
    space_to_depth: bool = False

    def train_config(self) -> TrainConfig:
        return dataclasses.replace(self.recipe.train_config(self.seed), **self.optim)


def parse_variant(spec: dict[str, Any], profile: str = "cpu") -> Variant:
    """The profile's recipe with ``spec`` applied; an unknown key is an error that lists the valid ones."""
    valid = UNET_FIELDS + RECIPE_FIELDS + OPTIM_FIELDS + METHOD_FIELDS
    bad = [k for k in spec if k not in valid]
    if bad:
        raise ValueError(f"unknown variant key(s) {bad}; valid choices: {', '.join(valid)}")
    tup = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}
    base = mnist_recipe(profile)
    unet = dataclasses.replace(base.unet, **{k: v for k, v in tup.items() if k in UNET_FIELDS})
    recipe = dataclasses.replace(base, unet=unet, **{k: v for k, v in tup.items() if k in RECIPE_FIELDS})
    if spec.get("space_to_depth"):
        recipe = dataclasses.replace(recipe, unet=dataclasses.replace(recipe.unet, in_channels=4, out_channels=4))
    return Variant(recipe, {k: v for k, v in tup.items() if k in OPTIM_FIELDS}, int(spec.get("seed", 0)),
                   bool(spec.get("ot", False)), spec.get("x_prediction"), bool(spec.get("film", False)),
                   bool(spec.get("space_to_depth", False)))


class _DataPrediction(nn.Module):
    """u = α̇ x̂ + β̇ (x − α x̂)/max(β, floor) from a network that predicts the clean image x̂."""

    def __init__(self, net: nn.Module, path: GaussianPath, floor: float) -> None:
        super().__init__()
        self.net, self.path, self.floor = net, path, float(floor)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        c = self.path.coefficients(t, x)
        x_hat = self.net(x, t)
        return c.d_alpha * x_hat + c.d_beta * (x - c.alpha * x_hat) / c.beta.clamp_min(self.floor)


class _SpaceToDepth(nn.Module):
    """The UNet on 2×2 blocks of pixels stacked as channels: (B, 1, 28, 28) → (B, 4, 14, 14) → back."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.down, self.up = net, nn.PixelUnshuffle(2), nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.up(self.net(self.down(x), t))


def _film_forward(self: ResidualLayer, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    scale, shift = self.time_mlp(emb)[:, :, None, None].chunk(2, dim=1)
    return x + self.block2(self.block1(x) * (1 + scale) + shift)


def _use_film(net: nn.Module) -> None:
    for layer in net.modules():
        if isinstance(layer, ResidualLayer):
            last = layer.time_mlp[-1]
            wide = nn.Linear(last.in_features, 2 * last.out_features)
            nn.init.zeros_(wide.weight)
            nn.init.zeros_(wide.bias)
            layer.time_mlp[-1] = wide
            layer.forward = types.MethodType(_film_forward, layer)


def build(variant: Variant, path: GaussianPath) -> nn.Module:
    """The variant's network, initialised from its seed."""
    torch.manual_seed(variant.seed)
    net: nn.Module = UNet(variant.recipe.unet)
    if variant.film:
        _use_film(net)
    if variant.space_to_depth:
        net = _SpaceToDepth(net)
    if variant.x_prediction is not None:
        net = _DataPrediction(net, path, variant.x_prediction)
    return net.to(memory_format=torch.channels_last)


def ot_pairing(z: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """``eps`` reordered so that the total squared distance Σ‖z_i − ε_π(i)‖² over the batch is minimal."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(z.flatten(1), eps.flatten(1)).square()
    _, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return eps[torch.as_tensor(cols, device=eps.device)]


def variant_loss(variant: Variant, path: GaussianPath):
    """The recipe's flow-matching loss (``nb.losses.flow_matching_loss`` with its law of t); with ``variant.ot``
    the same draws, the noise re-paired with the images by :func:`ot_pairing` before x_t is formed."""
    law = variant.recipe.time_sampling

    def loss(model: nn.Module, batch: Any, g: torch.Generator) -> torch.Tensor:
        z = batch.x
        if not variant.ot:
            return nb.losses.flow_matching_loss(model, z, path, generator=g, time_sampling=law)
        t = nb.losses.sample_training_times(z, law, g)
        eps = ot_pairing(z, nb.runtime.randn(z.shape, g, z.device, z.dtype))
        return (model(path.sample(z, t, eps=eps).x, t) - path.velocity_from_noise(z, eps, t)).square().mean()

    return loss


def run_variant(spec: dict[str, Any], *, n_eval: int = 2000, profile: str = "cpu", evaluator_steps: int | None = None,
                ode_steps: int = 50) -> dict[str, Any]:
    """Train the variant (no checkpoint cache), sample ``n_eval`` digits and score them; the row as a dict."""
    variant = parse_variant(spec, profile)
    path = GaussianPath("linear")
    net = build(variant, path)
    data = nb.data.load_mnist("train")
    t0 = time.perf_counter()
    res = train(net, variant_loss(variant, path), data.batcher(variant.recipe.batch_size, labels=False),
                variant.train_config(), progress=False)
    seconds = time.perf_counter() - t0
    evaluator = mnist_evaluator("cpu", profile=profile, steps=evaluator_steps, progress=False)
    model = res.sampling_model.eval()
    with torch.no_grad():
        x = nb.solvers.sample_from_noise(model, n_eval, (1, 28, 28), ode_steps, seed=1000, chunk=500).x.clamp(-1, 1)
    e = evaluator.evaluate(x)
    first = evaluator.evaluate(x[:500]) if n_eval > 500 else e
    row = {"variant": spec, "profile": profile, "steps": variant.recipe.steps, "batch_size": variant.recipe.batch_size,
           "parameters": sum(p.numel() for p in net.parameters()), "train_seconds": round(seconds, 1),
           "seconds_per_step": round(seconds / variant.recipe.steps, 4), "threads": torch.get_num_threads(),
           "n_eval": n_eval, "recognised": e.recognised_fraction, "recognised_se": e.recognised_se,
           "recognised_first_500": first.recognised_fraction, "fd_ratio": e.fd_ratio,
           "class_min": float(e.class_histogram.min()), "class_max": float(e.class_histogram.max())}
    if variant.recipe.guide_step is not None:  # the same starting noise, autoguided by the kept early copy
        guided = autoguided(res, variant.recipe)
        with torch.no_grad():
            xg = nb.solvers.sample_from_noise(guided, n_eval, (1, 28, 28), ode_steps, seed=1000, chunk=500).x.clamp(-1, 1)
        g = evaluator.evaluate(xg)
        row.update({"guide_step": variant.recipe.guide_step, "guide_w": variant.recipe.guide_w,
                    "autoguided_recognised": g.recognised_fraction, "autoguided_recognised_se": g.recognised_se,
                    "autoguided_fd_ratio": g.fd_ratio, "autoguided_class_min": float(g.class_histogram.min()),
                    "autoguided_class_max": float(g.class_histogram.max())})
    return row


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.variants04", description=__doc__.splitlines()[0])
    ap.add_argument("variant", help='a JSON object, e.g. \'{"attention_levels": [2], "seed": 1}\' ({} = the cpu profile)')
    ap.add_argument("--name", default="", help="a label stored with the row")
    ap.add_argument("--n-eval", type=int, default=2000, help="samples scored (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    ap.add_argument("--profile", default="cpu", choices=("smoke", "cpu"), help="the recipe varied (default: %(default)s)")
    ap.add_argument("--evaluator-steps", type=int, default=None, help="the evaluator classifier's steps (default: the series')")
    ap.add_argument("--no-write", action="store_true", help="print the row only")
    return ap


@tool_errors
def main(argv: list[str] | None = None) -> int:
    from . import start

    ap, args = start(build_parser, argv)
    try:
        spec = json.loads(args.variant)
    except json.JSONDecodeError as exc:
        ap.error(f"the variant must be a JSON object, got {args.variant!r} ({exc.msg})")
    if not isinstance(spec, dict):
        ap.error(f"the variant must be a JSON object, got {args.variant!r}")
    if args.n_eval < 1 or args.threads < 1:
        ap.error(f"--n-eval and --threads must be positive, got {args.n_eval} and {args.threads}")
    try:
        parse_variant(spec, args.profile)
    except ValueError as exc:
        ap.error(str(exc))
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        row = {"name": args.name, **run_variant(spec, n_eval=args.n_eval, profile=args.profile,
                                                 evaluator_steps=args.evaluator_steps),
               "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    finally:
        torch.set_num_threads(threads)  # main() may be called in a process that goes on computing
    print(json.dumps(row))
    if not args.no_write:
        out = RESULTS / f"variants04__{machine_tag(row['machine'])}.jsonl"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "a") as f:
            f.write(json.dumps(row, sort_keys=True) + "\n")
        print(f"→ {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
