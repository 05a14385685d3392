"""Notebooks 04 and 05's MNIST recipe: the noise-parameterised score and the per-profile sizes."""
import pytest
import torch

from nbhelpers.models.unet import UNet, UNetConfig
from nbhelpers.models.mlp import ScoreFromNoise
from nbhelpers.recipes.mnist import mnist_recipe


def test_the_mnist_score_is_minus_eps_over_beta_and_its_loss_is_the_eps_loss():
    from nbhelpers.losses import score_matching_loss
    from nbhelpers.paths import GaussianPath

    torch.manual_seed(0)
    path = GaussianPath("linear")
    net = UNet(UNetConfig(base_channels=4, channel_mults=(1, 2), time_embed_dim=8)).eval()
    score = ScoreFromNoise.on_path(net, path)  # as train_mnist_field builds it
    x, t = torch.randn(3, 1, 8, 8), torch.tensor([0.1, 0.5, 0.9])
    beta = (1 - t).view(-1, 1, 1, 1)  # linear schedule: β_t = 1 − t
    with torch.no_grad():
        torch.testing.assert_close(score(x, t), -net(x, t) / beta)
    # β²-weighted score matching of s = −ε_θ/β is ‖ε_θ − ε‖²: rebuild it from the same draws
    z = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        loss = score_matching_loss(score, z, path, generator=torch.Generator().manual_seed(1))
        g = torch.Generator().manual_seed(1)
        t_draw = torch.rand(3, generator=g) * 0.999
        drawn = path.sample(z, t_draw, generator=g)
        eps_loss = (net(drawn.x, t_draw) - drawn.eps).square().mean()
    torch.testing.assert_close(loss, eps_loss)


def test_mnist_recipes_keep_figure1_and_name_bad_choices():
    for profile in ("smoke", "cpu", "gpu"):
        r = mnist_recipe(profile)
        assert len(r.unet.channel_mults) == 3 and r.unet.res_layers == 2 and r.unet.bottleneck_layers == 3
    gpu = mnist_recipe("gpu")
    assert (gpu.batch_size, gpu.steps, gpu.unet.channels) == (250, 5000, (32, 64, 128))  # seed 000 task 4b
    assert gpu.train_config().amp and not mnist_recipe("cpu").train_config().amp  # mixed precision on the card only
    short = mnist_recipe("cpu", steps=40)
    assert short.steps == 40 and short.warmup_steps == 10 and short.lr_decay == mnist_recipe("cpu").lr_decay
    assert short.key("velocity", "linear") != short.key("score", "linear") != short.key("score", "cosine")
    with pytest.raises(ValueError, match="valid choices: smoke, cpu, gpu"):
        mnist_recipe("laptop")
    with pytest.raises(ValueError, match="positive integer"):
        mnist_recipe("cpu", steps=0)


def test_mnist_recipe_time_law_enters_the_velocity_key_only():
    """The cpu profile trains its flow model with logit-normal t; the gpu profile keeps seed 000's U[0, 1].
    Uniform keys stay as they were (cached models stay valid) and the score model's key never changes."""
    from dataclasses import replace

    from nbhelpers.recipes.mnist import mnist_recipe, train_mnist_field

    assert mnist_recipe("gpu").time_sampling == "uniform" and mnist_recipe("cpu").time_sampling == "logit_normal"
    cpu = mnist_recipe("cpu")
    uni = replace(cpu, time_sampling="uniform")
    assert "time_sampling" not in uni.key("velocity", "linear")
    assert cpu.key("velocity", "linear") == {**uni.key("velocity", "linear"), "time_sampling": "logit_normal"}
    assert cpu.key("score", "linear") == uni.key("score", "linear")
    with pytest.raises(ValueError, match=r"unknown time_sampling 'beta'; valid choices: uniform, logit_normal"):
        train_mnist_field("velocity", "linear", replace(cpu, time_sampling="beta"), data=None)


def test_mnist_recipes_keep_a_third_way_copy_and_autoguide_with_it():
    from dataclasses import replace

    from nbhelpers.guidance import AutoGuided
    from nbhelpers.recipes.mnist import autoguided
    from nbhelpers.training import TrainResult

    for profile, step in (("smoke", 3), ("cpu", 300), ("gpu", 1667)):
        r = mnist_recipe(profile)
        assert r.guide_step == step and r.train_config().snapshot_steps == (step,) and r.guide_w == 2.0
    assert mnist_recipe("cpu", steps=1).guide_step == 1
    torch.manual_seed(0)
    recipe = mnist_recipe("smoke")
    final, early = UNet(recipe.unet).eval(), UNet(recipe.unet).eval()
    res = TrainResult(final, None, [], recipe.steps, 1.0, snapshots={3: early.state_dict()})
    ag = autoguided(res, recipe)
    assert isinstance(ag, AutoGuided) and ag.strong is final and ag.w == 2.0
    x, t = torch.randn(2, 1, 28, 28), torch.tensor([0.3, 0.8])
    with torch.no_grad():
        torch.testing.assert_close(ag(x, t), 2 * final(x, t) - early(x, t))
        torch.testing.assert_close(autoguided(res, recipe, w=3.0)(x, t), 3 * final(x, t) - 2 * early(x, t))
    none = replace(recipe, guide_at=None)
    assert none.guide_step is None and none.train_config().snapshot_steps == ()
    with pytest.raises(ValueError, match="guide_at=None"):
        autoguided(res, none)
    with pytest.raises(ValueError, match="guide_at"):
        replace(recipe, guide_at=1.0)
    with pytest.raises(ValueError, match="guide_w"):
        replace(recipe, guide_w=float("inf"))
