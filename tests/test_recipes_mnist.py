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


def _toy_digits(n=48, size=8):
    from nbhelpers.data import ImageDataset

    g = torch.Generator().manual_seed(0)
    return ImageDataset(torch.rand(n, 1, size, size, generator=g) * 2 - 1, torch.zeros(n, dtype=torch.long), "toy")


def test_train_mnist_field_runs_a_given_loss_under_the_same_key(tmp_path, monkeypatch):
    """Notebook 04 hands its own loss to the harness: called once per step as loss_fn(model, z, path, generator);
    the same loss gives the same training, the same checkpoint, and the cache does not tell them apart."""
    from dataclasses import replace

    from nbhelpers.losses import flow_matching_loss
    from nbhelpers.paths import GaussianPath
    from nbhelpers.recipes.mnist import train_mnist_field
    from nbhelpers.runtime import CHECKPOINT_ENV

    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path))
    data = _toy_digits()
    recipe = replace(mnist_recipe("smoke", steps=2), time_sampling="logit_normal",
                     unet=UNetConfig(base_channels=4, channel_mults=(1, 2), time_embed_dim=8))
    calls = []

    def loss_fn(model, z, path, generator):
        calls.append((tuple(z.shape), path, generator))
        return flow_matching_loss(model, z, path, generator=generator, time_sampling=recipe.time_sampling)

    args = ("velocity", "cosine", recipe, data)
    ref = train_mnist_field(*args, seed=1, retrain=True, progress=False)
    own = train_mnist_field(*args, seed=1, retrain=True, progress=False, loss_fn=loss_fn)
    assert len(calls) == recipe.steps
    shape, path, generator = calls[0]
    assert shape == (recipe.batch_size, 1, 8, 8) and isinstance(generator, torch.Generator)
    assert isinstance(path, GaussianPath) and type(path.schedule).__name__ == "CosineSchedule"
    assert own.losses == ref.losses and own.checkpoint == ref.checkpoint
    for (name, a), b in zip(own.model.state_dict().items(), ref.model.state_dict().values()):
        assert torch.equal(a, b), name
    cached = train_mnist_field(*args, seed=1, progress=False, loss_fn=loss_fn)
    assert cached.loaded_from_cache and len(calls) == recipe.steps
    with pytest.raises(ValueError, match="loss_fn must be a function loss_fn"):
        train_mnist_field(*args, seed=1, progress=False, loss_fn="flow_matching")


def test_notebook_04s_loss_is_the_librarys_draw_for_draw():
    """The fm_loss written out in notebook 04 (≤ 15 lines) draws t, then ε, as nb.losses.flow_matching_loss
    does: the same generator gives exactly the same loss, for every law of t and every schedule."""
    import json

    import nbhelpers as nb
    from nbhelpers.losses import TIME_SAMPLINGS, flow_matching_loss
    from nbhelpers.paths import GaussianPath
    from nbhelpers.runtime import ROOT

    cells = {c["id"]: "".join(c["source"]) for c in
             json.loads((ROOT / "notebooks" / "04_unet_images.ipynb").read_text())["cells"]}
    definition = cells["fm-loss"].split("\n\n\n")[0]
    assert definition.startswith("def fm_loss(") and len(definition.splitlines()) <= 15
    assert "loss_fn=fm_loss" in cells["cell-013"] and "loss_fn=fm_loss" in cells["cell-022"]
    scope = {"torch": torch, "nb": nb, "recipe": mnist_recipe("cpu")}
    exec(definition, scope)
    fm_loss = scope["fm_loss"]

    def model(x, t):
        return 0.5 * x - t.reshape(-1, 1, 1, 1)

    z = _toy_digits(6).images
    for schedule in ("linear", "cosine", "polynomial"):
        path = GaussianPath(schedule)
        for law in TIME_SAMPLINGS:
            mine = fm_loss(model, z, path, torch.Generator().manual_seed(3), law)
            lib = flow_matching_loss(model, z, path, torch.Generator().manual_seed(3), time_sampling=law)
            assert torch.equal(mine, lib), (schedule, law)
        default = fm_loss(model, z, path, torch.Generator().manual_seed(3))  # the recipe's law: logit-normal
        assert torch.equal(default, flow_matching_loss(model, z, path, torch.Generator().manual_seed(3),
                                                       time_sampling="logit_normal"))
