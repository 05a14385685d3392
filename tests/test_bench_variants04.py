"""benchmarks.variants04: variants parse onto the cpu recipe, the method switches do what they say, one tiny run."""
from __future__ import annotations

import itertools
import json

import pytest
import torch
from torch import nn

from benchmarks import variants04 as v04
from nbhelpers import data
from nbhelpers.models.unet import ResidualLayer
from nbhelpers.paths import GaussianPath
from nbhelpers.recipes.mnist import mnist_recipe
from nbhelpers.runtime import data_dir
from tests.needs import need


def test_a_variant_changes_only_what_it_names():
    base = mnist_recipe("cpu")
    v = v04.parse_variant({"attention_levels": [2], "steps": 50, "betas": [0.9, 0.99], "seed": 3, "ot": True})
    assert v.recipe.unet.attention_levels == (2,) and v.recipe.steps == 50 and v.seed == 3 and v.ot
    assert v.recipe.unet.base_channels == base.unet.base_channels and v.recipe.lr == base.lr
    cfg = v.train_config()
    assert cfg.betas == (0.9, 0.99) and cfg.seed == 3 and cfg.steps == 50 and cfg.lr_decay == base.lr_decay
    assert v04.parse_variant({}).recipe == base


def test_unknown_keys_name_the_valid_ones(capsys):
    with pytest.raises(ValueError, match=r"unknown variant key\(s\) \['widht'\]; valid choices: .*base_channels.*x_prediction"):
        v04.parse_variant({"widht": 8})
    with pytest.raises(SystemExit, match=r"^2$"):  # argparse's usage error
        v04.main(["[1, 2]", "--no-write"])
    assert "the variant must be a JSON object" in capsys.readouterr().err


def test_ot_pairing_is_the_cheapest_permutation():
    g = torch.Generator().manual_seed(0)
    z, eps = torch.randn(6, 1, 2, 2, generator=g), torch.randn(6, 1, 2, 2, generator=g)
    paired = v04.ot_pairing(z, eps)
    assert sorted(paired.flatten(1).tolist()) == sorted(eps.flatten(1).tolist())  # a permutation of the noise
    cost = lambda e: float((z - e).square().sum())  # noqa: E731
    best = min(cost(eps[list(p)]) for p in itertools.permutations(range(6)))
    assert cost(paired) == pytest.approx(best) and cost(paired) <= cost(eps)


def test_data_prediction_of_the_clean_image_gives_the_conditional_velocity():
    """A network that returns the clean image z makes α̇ x̂ + β̇ (x − α x̂)/β the target α̇ z + β̇ ε exactly."""
    path = GaussianPath("cosine")
    g = torch.Generator().manual_seed(1)
    z, eps, t = torch.randn(5, 1, 3, 3, generator=g), torch.randn(5, 1, 3, 3, generator=g), torch.rand(5, generator=g) * 0.9

    class Oracle(nn.Module):
        def forward(self, x, t):
            return z

    u = v04._DataPrediction(Oracle(), path, floor=1e-3)(path.sample(z, t, eps=eps).x, t)
    torch.testing.assert_close(u, path.velocity_from_noise(z, eps, t), rtol=1e-5, atol=1e-5)


def test_film_starts_as_the_layer_without_a_time_shift():
    spec = {"base_channels": 8, "channel_mults": [1, 2], "time_embed_dim": 16, "film": True}
    net = v04.build(v04.parse_variant(spec), GaussianPath("linear")).eval()
    layers = [m for m in net.modules() if isinstance(m, ResidualLayer)]
    assert layers and all(m.time_mlp[-1].out_features == 2 * m.block1[-1].out_channels for m in layers)
    x, emb = torch.randn(2, 8, 6, 6), torch.randn(2, 16)
    layer = next(m for m in layers if m.block1[-1].out_channels == 8)
    torch.testing.assert_close(layer(x, emb), x + layer.block2(layer.block1(x)))
    torch.nn.init.normal_(layer.time_mlp[-1].weight)  # once trained, the scale and the shift act
    assert not torch.allclose(layer(x, emb), x + layer.block2(layer.block1(x)))


def test_a_tiny_run_writes_one_scored_row(tmp_path, monkeypatch, capsys):
    need(data.has_mnist(), f"MNIST not under the data root {data_dir()} (set NBHELPERS_DATA_DIR)")
    monkeypatch.setenv("NBHELPERS_CHECKPOINT_DIR", str(tmp_path))
    monkeypatch.setattr(v04, "RESULTS", tmp_path / "results")
    threads = torch.get_num_threads()
    assert v04.main(['{"steps": 3, "ot": true}', "--profile", "smoke", "--n-eval", "40", "--evaluator-steps", "3",
                     "--name", "tiny"]) == 0
    rows = [json.loads(line) for line in next((tmp_path / "results").glob("variants04__*.jsonl")).read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["name"] == "tiny" and rows[0]["variant"] == {"steps": 3, "ot": True}
    row = rows[0]
    assert row["threads"] == 1 and torch.get_num_threads() == threads  # run at --threads, the caller's count restored
    assert row["steps"] == 3 and row["n_eval"] == 40 and 0 <= row["recognised"] <= 1 and row["fd_ratio"] > 0
    assert row["recognised_se"] == pytest.approx((row["recognised"] * (1 - row["recognised"]) / 40) ** 0.5)
    assert row["guide_step"] == 1 and row["guide_w"] == 2.0  # a third of 3 steps: the copy after step 1
    assert 0 <= row["autoguided_recognised"] <= 1 and row["autoguided_fd_ratio"] > 0
    assert row["autoguided_class_min"] <= 0.1 <= row["autoguided_class_max"]
    assert '"name": "tiny"' in capsys.readouterr().out


def test_space_to_depth_runs_the_unet_at_half_resolution_and_restores_the_image():
    spec = {"base_channels": 8, "channel_mults": [1, 2], "time_embed_dim": 16, "space_to_depth": True}
    v = v04.parse_variant(spec)
    assert v.recipe.unet.in_channels == 4 and v.recipe.unet.out_channels == 4
    net = v04.build(v, GaussianPath("linear")).eval()
    seen = []
    net.net.register_forward_hook(lambda m, args, out: seen.append((tuple(args[0].shape), tuple(out.shape))))
    x = torch.randn(3, 1, 28, 28)
    assert net(x, torch.rand(3)).shape == x.shape and seen == [((3, 4, 14, 14), (3, 4, 14, 14))]
    torch.testing.assert_close(net.up(net.down(x)), x)  # the rearrangement loses nothing


def test_without_ot_the_loss_is_the_recipes_and_ot_only_reorders_the_noise():
    path = GaussianPath("linear")
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    z = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(6))
    batch = type("Batch", (), {"x": z})()
    seen = []

    def model(x, t):
        seen.append((x, t))
        return torch.zeros_like(x)

    plain = v04.variant_loss(v04.parse_variant({}), path)(model, batch, g())
    from nbhelpers.losses import flow_matching_loss
    assert plain == flow_matching_loss(model, z, path, generator=g(), time_sampling="logit_normal")
    (x_plain, t_plain), _ = seen[:2]
    v04.variant_loss(v04.parse_variant({"ot": True}), path)(model, batch, g())
    x_ot, t_ot = seen[2]
    torch.testing.assert_close(t_ot, t_plain)  # the same times; only the pairing of noise and images differs
    c = path.coefficients(t_ot, z)
    eps_plain, eps_ot = (x_plain - c.alpha * z) / c.beta, (x_ot - c.alpha * z) / c.beta
    assert sorted(eps_ot.flatten(1).sum(1).tolist()) == pytest.approx(sorted(eps_plain.flatten(1).sum(1).tolist()), abs=1e-4)
    assert (z - eps_ot).square().sum() <= (z - eps_plain).square().sum() + 1e-4
