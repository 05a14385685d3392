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


def _silu(x):
    return x / (1 + torch.exp(-x))


def _batch_norm_eval(x, bn):
    """BatchNorm in eval mode: (x − running mean)/√(running var + eps) · γ + β, per channel."""
    c = lambda v: v.reshape(1, -1, 1, 1)  # noqa: E731
    return (x - c(bn.running_mean)) / torch.sqrt(c(bn.running_var) + bn.eps) * c(bn.weight) + c(bn.bias)


def _conv3x3(x, conv):
    """A 3×3 convolution with zero padding 1, written as a sum over the nine shifts."""
    xp = torch.nn.functional.pad(x, (1, 1, 1, 1))
    H, W = x.shape[-2:]
    out = conv.bias.reshape(1, -1, 1, 1).expand(x.shape[0], -1, H, W).clone()
    for i in range(3):
        for j in range(3):
            out = out + torch.einsum("oc,bchw->bohw", conv.weight[:, :, i, j], xp[:, :, i:i + H, j:j + W])
    return out


def _randomise(module, seed):
    """Every parameter and BatchNorm statistic drawn at random, so that a term in the wrong place shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g, dtype=m.running_mean.dtype))
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)


def test_residual_layer_formula():
    """Figure 1's residual layer, h = Conv(BN(SiLU(x))) + MLP(emb), out = x + Conv(BN(SiLU(h))), written out here
    from its weights (per-block MLP: Linear, SiLU, Linear), in float64, in eval mode."""
    layer = ResidualLayer(4, 6).double().eval()
    _randomise(layer, 0)
    g = torch.Generator().manual_seed(1)
    x, emb = torch.randn(2, 4, 5, 5, generator=g, dtype=torch.float64), torch.randn(2, 6, generator=g, dtype=torch.float64)
    bn1, conv1 = layer.block1[1], layer.block1[2]
    bn2, conv2 = layer.block2[1], layer.block2[-1]
    lin1, lin2 = layer.time_mlp[0], layer.time_mlp[2]
    mlp = _silu(emb @ lin1.weight.T + lin1.bias) @ lin2.weight.T + lin2.bias
    h = _conv3x3(_batch_norm_eval(_silu(x), bn1), conv1) + mlp[:, :, None, None]
    expected = x + _conv3x3(_batch_norm_eval(_silu(h), bn2), conv2)
    torch.testing.assert_close(layer(x, emb), expected, atol=1e-10, rtol=0)


def _attention_reference(attn, x):
    """Multi-head softmax attention over the H·W positions, from the module's weights: the 1×1 convolution gives
    q, k, v (channels [0, C), [C, 2C), [2C, 3C)), each split into ``heads`` consecutive groups of d = C / heads;
    per head softmax(q kᵀ/√d) v; the heads concatenated, projected by the 1×1 ``proj`` and added to x."""
    B, C, H, W = x.shape
    d = C // attn.heads
    n = attn.norm(x).reshape(B, C, H * W)
    w_qkv, b_qkv = attn.qkv.weight[:, :, 0, 0], attn.qkv.bias
    qkv = torch.einsum("oc,bcp->bop", w_qkv, n) + b_qkv[None, :, None]  # (B, 3C, HW)
    out = torch.empty(B, C, H * W, dtype=x.dtype)
    for b in range(B):
        for h in range(attn.heads):
            q = qkv[b, h * d:(h + 1) * d].T  # (HW, d)
            k = qkv[b, C + h * d:C + (h + 1) * d].T
            v = qkv[b, 2 * C + h * d:2 * C + (h + 1) * d].T
            logits = q @ k.T / d**0.5
            weights = torch.exp(logits - logits.max(dim=1, keepdim=True).values)
            weights = weights / weights.sum(dim=1, keepdim=True)  # each query's weights over the keys sum to 1
            out[b, h * d:(h + 1) * d] = (weights @ v).T
    proj = torch.einsum("oc,bcp->bop", attn.proj.weight[:, :, 0, 0], out) + attn.proj.bias[None, :, None]
    return x + proj.reshape(B, C, H, W)


@pytest.mark.parametrize("norm,heads", [("group", 2), ("batch", 4), ("group", 1)])
def test_self_attention_is_softmax_attention_over_positions(norm, heads):
    attn = SelfAttention(8, heads=heads, norm=norm, groups=4).double().eval()
    _randomise(attn, 2)
    x = torch.randn(2, 8, 5, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    torch.testing.assert_close(attn(x), _attention_reference(attn, x), atol=1e-10, rtol=0)


def test_self_attention_is_permutation_equivariant_over_positions():
    """Attention with 1×1 projections and no positional code: permuting the H·W positions of the input
    permutes the output the same way."""
    attn = SelfAttention(8, heads=2, norm="group", groups=4).double().eval()
    _randomise(attn, 4)
    x = torch.randn(3, 8, 4, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    perm = torch.randperm(24, generator=torch.Generator().manual_seed(6))
    shuffle = lambda t: t.reshape(3, 8, 24)[:, :, perm].reshape(3, 8, 4, 6)  # noqa: E731
    torch.testing.assert_close(attn(shuffle(x)), shuffle(attn(x)), atol=1e-10, rtol=0)
    assert not torch.allclose(attn(x) - x, torch.zeros_like(x), atol=1e-3)  # the attention term is not trivially zero


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


# --------------------------------------------------------------------------- inference in cache-sized chunks
def _count_forwards(model, monkeypatch):
    calls = []
    inner = model._forward

    def counted(x, t, y):
        calls.append(x.shape[0])
        return inner(x, t, y)

    monkeypatch.setattr(model, "_forward", counted)
    return calls


@pytest.mark.parametrize("norm,attention", [("batch", ()), ("group", (1,))])
def test_inference_on_the_cpu_runs_in_chunks_with_the_same_result(monkeypatch, norm, attention):
    torch.manual_seed(0)
    # float64, so that what differs between the chunks and the whole batch is the arithmetic, not its rounding
    model = UNet(_tiny(norm=norm, attention_levels=attention, num_classes=3)).double()
    _randomise(model, 1)
    model.eval()
    x, t = torch.randn(11, 1, 28, 28, dtype=torch.float64), torch.rand(11, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2])
    monkeypatch.setenv("NBHELPERS_EVAL_CHUNK", "0")
    with torch.no_grad():
        whole = model(x, t, y)
    monkeypatch.setenv("NBHELPERS_EVAL_CHUNK", "4")
    calls = _count_forwards(model, monkeypatch)
    with torch.no_grad():
        chunked = model(x, t, y)
        unlabelled = model(x, 0.3)  # a scalar t and no labels are split too
    assert calls == [4, 4, 3, 4, 4, 3]
    torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-9)
    monkeypatch.setenv("NBHELPERS_EVAL_CHUNK", "0")
    with torch.no_grad():
        torch.testing.assert_close(unlabelled, model(x, 0.3), rtol=1e-10, atol=1e-9)


def test_no_chunks_with_gradients_or_in_training_mode(monkeypatch):
    torch.manual_seed(0)
    model = UNet(_tiny())
    monkeypatch.setenv("NBHELPERS_EVAL_CHUNK", "4")
    calls = _count_forwards(model, monkeypatch)
    x, t = torch.randn(10, 1, 28, 28), torch.rand(10)
    model.train()
    with torch.no_grad():
        model(x, t)  # BatchNorm in training mode normalises over the whole batch
    model.eval()
    model(x, t)  # gradients on: the backward pass needs one graph
    assert calls == [10, 10]
    monkeypatch.delenv("NBHELPERS_EVAL_CHUNK")
    with torch.no_grad():
        model(torch.randn(300, 1, 28, 28), torch.rand(300))  # the default: 128 at a time
    assert calls[2:] == [128, 128, 44]


def test_eval_chunk_setting_is_checked(monkeypatch):
    from nbhelpers.devices import eval_chunk

    x = torch.zeros(2)
    with torch.no_grad():
        monkeypatch.setenv("NBHELPERS_EVAL_CHUNK", "0")
        assert eval_chunk(x) is None
        monkeypatch.setenv("NBHELPERS_EVAL_CHUNK", "many")
        with pytest.raises(ValueError, match=r"NBHELPERS_EVAL_CHUNK must be a non-negative integer.*'many'"):
            eval_chunk(x)
        monkeypatch.setenv("NBHELPERS_EVAL_CHUNK", "-3")
        with pytest.raises(ValueError, match=r"NBHELPERS_EVAL_CHUNK must be a non-negative integer.*'-3'"):
            eval_chunk(x)
