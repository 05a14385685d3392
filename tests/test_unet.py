"""The image UNet: Figure 1's structure, shapes for every use in the series, options, conditioning."""
import pytest
import torch
from torch import nn

from nbhelpers.models.unet import ResidualLayer, SelfAttention, UNet, UNetConfig

# the configurations the later notebooks use
MNIST_GUIDED = UNetConfig(base_channels=32, channel_mults=(1, 2, 2, 2), res_layers=2, norm="group",
                          attention_levels=(2,), num_classes=10, dropout=0.1)
AFHQ = UNetConfig(in_channels=3, base_channels=16, channel_mults=(1, 2, 4, 8), norm="group", attention_levels=(3,))


def _tiny(**kw):
    return UNetConfig(base_channels=8, channel_mults=(1, 2, 2), time_embed_dim=16, **kw)


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("classes", [None, 10])
def test_output_shape_matches_input(size, channels, classes):
    torch.manual_seed(0)
    net = UNet(_tiny(in_channels=channels, num_classes=classes))
    x = torch.randn(3, channels, size, size)
    t = torch.rand(3)
    y = torch.tensor([0, 9, 10]) if classes else None  # 10 = the null label
    out = net(x, t, y)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_figure1_block_counts():
    d = UNet().describe()
    assert d.initial_convs == 1 and d.final_convs == 1
    assert d.encoders == 3 and d.res_layers_per_encoder == [2, 2, 2] and d.downsamples == 3
    assert d.bottleneck_res_layers == 3
    assert d.decoders == 3 and d.res_layers_per_decoder == [2, 2, 2] and d.upsamples == 3
    assert d.skip_connections == 3 and d.norm == "batch" and d.attention_blocks == 0
    n_res = sum(isinstance(m, ResidualLayer) for m in UNet().modules())
    assert n_res == 3 * 2 + 3 + 3 * 2


def test_residual_layer_is_silu_batchnorm_conv_twice_plus_time_mlp():
    layer = UNet().encoders[0].stage.layers[0]
    for block in (layer.block1, layer.block2):
        kinds = [type(m) for m in block if not isinstance(m, (nn.Identity, nn.Dropout))]
        assert kinds == [nn.SiLU, nn.BatchNorm2d, nn.Conv2d]
    assert isinstance(layer.time_mlp[0], nn.Linear) and isinstance(layer.time_mlp[-1], nn.Linear)


def test_residual_layer_formula():
    torch.manual_seed(0)
    layer = ResidualLayer(4, 6).eval()
    x, emb = torch.randn(2, 4, 5, 5), torch.randn(2, 6)
    h = layer.block1(x) + layer.time_mlp(emb)[:, :, None, None]
    assert torch.allclose(layer(x, emb), x + layer.block2(h))


def test_28x28_goes_down_to_4x4_and_back():
    net = UNet()
    seen = {}

    def record(name, pick):
        def hook(module, inputs, output):
            seen[name] = tuple(pick(output).shape[-2:])
        return hook

    net.bottleneck.register_forward_hook(record("bottleneck", lambda o: o))
    for k, e in enumerate(net.encoders):
        e.register_forward_hook(record(f"skip{k}", lambda o: o[1]))
    net(torch.randn(2, 1, 28, 28), torch.rand(2))
    assert [seen[f"skip{k}"] for k in range(3)] == [(28, 28), (14, 14), (7, 7)]
    assert seen["bottleneck"] == (4, 4)


def test_time_and_class_change_the_output():
    torch.manual_seed(0)
    net = UNet(_tiny(num_classes=10)).eval()
    x = torch.randn(2, 1, 28, 28)
    a = net(x, torch.tensor([0.1, 0.1]), torch.tensor([3, 3]))
    b = net(x, torch.tensor([0.9, 0.9]), torch.tensor([3, 3]))
    c = net(x, torch.tensor([0.1, 0.1]), torch.tensor([7, 7]))
    assert not torch.allclose(a, b, atol=1e-4) and not torch.allclose(a, c, atol=1e-4)
    # y=None means the null class
    assert torch.allclose(net(x, torch.tensor([0.1, 0.1])), net(x, torch.tensor([0.1, 0.1]), torch.tensor([10, 10])))


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_samples_are_processed_independently_in_eval_mode(norm):
    torch.manual_seed(0)
    net = UNet(_tiny(norm=norm, num_classes=10)).eval()
    x, t, y = torch.randn(4, 1, 28, 28), torch.rand(4), torch.tensor([1, 2, 3, 10])
    full = net(x, t, y)
    one = torch.cat([net(x[i:i + 1], t[i:i + 1], y[i:i + 1]) for i in range(4)])
    assert torch.allclose(full, one, atol=1e-5)


def test_scalar_time_is_broadcast():
    net = UNet(_tiny()).eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(net(x, 0.3), net(x, torch.full((3,), 0.3)))


def test_channels_last_gives_the_same_result():
    torch.manual_seed(0)
    net = UNet(_tiny(attention_levels=(1,), attention_heads=2)).eval()
    x, t = torch.randn(2, 1, 28, 28), torch.rand(2)
    ref = net(x, t)
    net_cl = net.to(memory_format=torch.channels_last)
    assert torch.allclose(net_cl(x.to(memory_format=torch.channels_last), t), ref, atol=1e-5)


def test_group_norm_and_attention_options():
    net = UNet(_tiny(norm="group", norm_groups=4, attention_levels=(1, 3), attention_heads=2))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    # level 1: 2 encoder + 2 decoder layers; level 3 = bottleneck: 3 layers
    assert net.describe().attention_blocks == 4 + 3
    assert all(isinstance(m, SelfAttention) for m in net.bottleneck.attention)


@pytest.mark.parametrize("cfg,size", [(MNIST_GUIDED, 28), (AFHQ, 32), (AFHQ, 64)], ids=["mnist-guided", "afhq32", "afhq64"])
def test_later_notebooks_configs_train(cfg, size):
    torch.manual_seed(0)
    net = UNet(cfg).to(memory_format=torch.channels_last)
    x = torch.randn(2, cfg.in_channels, size, size)
    y = torch.tensor([4, 10]) if cfg.num_classes else None
    out = net(x, torch.rand(2), y)
    assert out.shape == x.shape
    out.square().mean().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None]
    assert unused == []


def test_fourier_embedding_and_shared_mlp():
    net = UNet(_tiny(time_embedding="fourier", time_mlp="shared"))
    out = net(torch.randn(2, 1, 32, 32), torch.rand(2))
    assert out.shape == (2, 1, 32, 32)
    assert net.shared_mlp is not None


@pytest.mark.parametrize("bad,match", [
    (dict(norm="layer"), "valid choices: batch, group"),
    (dict(time_embedding="rope"), "valid choices"),
    (dict(time_mlp="film"), "valid choices"),
    (dict(channel_mults=()), "channel_mults"),
    (dict(attention_levels=(5,)), "valid levels"),
    (dict(norm="group", norm_groups=3), "norm_groups"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_config_is_a_clear_error(bad, match):
    with pytest.raises(ValueError, match=match):
        UNetConfig(**bad)


def test_bad_inputs_are_clear_errors():
    net = UNet(_tiny())
    with pytest.raises(ValueError, match="shape"):
        net(torch.randn(2, 3, 28, 28), torch.rand(2))
    with pytest.raises(ValueError, match="class conditioning"):
        net(torch.randn(2, 1, 28, 28), torch.rand(2), torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="t must"):
        net(torch.randn(2, 1, 28, 28), torch.rand(3))


def test_config_key_is_json_friendly():
    import json

    key = MNIST_GUIDED.key()
    assert json.loads(json.dumps(key))["channel_mults"] == [1, 2, 2, 2]
    assert UNet(UNetConfig(**{**key, "channel_mults": tuple(key["channel_mults"]),
                             "attention_levels": tuple(key["attention_levels"])})).config == MNIST_GUIDED
