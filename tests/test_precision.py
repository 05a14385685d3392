"""Mixed precision chosen by the card, and the fp16 path with its gradient scaler, exercised on the CPU.

A T4 (compute capability 7.5) has fp16 tensor cores but none for bf16, so ``amp_dtype`` gives it fp16 (with a
gradient scaler in training); Ampere and later get bf16. The fp16 path runs here under CPU autocast with the
CPU ``GradScaler``: finite losses, a step skipped on an overflowed gradient with the scale lowered, and a
bit-identical resume of a scaled run.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from nbhelpers import guidance, runtime
from nbhelpers.checkpoints import key_json, load_checkpoint
from nbhelpers.training import TrainConfig, ema_model, ema_update, train


@pytest.mark.parametrize("capability,expected", [((7, 0), torch.float16), ((7, 5), torch.float16),
                                                 ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16),
                                                 ((9, 0), torch.bfloat16)])
def test_the_card_picks_the_dtype(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert runtime.amp_dtype("cuda:0") is expected


def test_no_autocast_on_the_cpu_or_mps_unless_forced():
    assert runtime.amp_dtype("cpu") is None and runtime.amp_dtype(torch.device("mps")) is None
    assert runtime.amp_dtype("cpu", "fp16") is torch.float16 and runtime.amp_dtype("cpu", "bf16") is torch.bfloat16
    with pytest.raises(ValueError, match=r"unknown mixed-precision choice 'fp8'; valid choices: auto, bf16, fp16"):
        runtime.amp_dtype("cpu", "fp8")
    with pytest.raises(ValueError, match=r"unknown amp_dtype 'half'; valid choices: auto, bf16, fp16"):
        TrainConfig(steps=1, amp=True, amp_dtype="half")
    with runtime.autocast("cpu"):  # the default choice is a no-op context on the CPU
        assert not torch.is_autocast_enabled("cpu")
    with runtime.autocast("cpu", choice="fp16"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") is torch.float16


def test_the_card_choice_is_not_part_of_the_cache_key():
    auto = key_json({"m": 1}, TrainConfig(steps=3, amp=True))
    assert '"amp_dtype"' not in auto  # keys of models cached before the choice existed stay valid
    assert '"amp_dtype": "fp16"' in key_json({"m": 1}, TrainConfig(steps=3, amp=True, amp_dtype="fp16"))


def _problem(seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 32), nn.SiLU(), nn.Linear(32, 1))
    target = torch.randn(4, 1, generator=torch.Generator().manual_seed(5))

    def batch(g):
        return torch.randn(64, 4, generator=g)

    def loss(m, x, g):
        return (m(x) - x @ target).pow(2).mean()

    return net, batch, loss


FP16 = dict(amp=True, amp_dtype="fp16", ema_decay=0.9, seed=1)


def test_fp16_training_on_the_cpu_is_finite_and_learns(tmp_path):
    net, batch, loss = _problem()
    res = train(net, loss, batch, TrainConfig(steps=60, lr=1e-2, **FP16), checkpoint=tmp_path / "m.pt", progress=False)
    assert all(math.isfinite(v) for v in res.losses)
    assert sum(res.losses[-10:]) < 0.5 * sum(res.losses[:10])
    state = load_checkpoint(tmp_path / "m.pt")
    assert state["scaler"] is not None and state["scaler"]["scale"] > 0  # the scaler's state is kept


def test_an_overflowed_step_is_skipped_and_the_scale_lowered(tmp_path):
    net, batch, loss = _problem()
    weight = net[0].weight
    weight.register_hook(lambda g: torch.full_like(g, math.inf) if state["step"] == 3 else g)
    state = {"step": 0}
    before, scales = {}, {}
    ck = tmp_path / "m.pt"

    def loss_counting(m, x, g):
        state["step"] += 1
        before[state["step"]] = weight.detach().clone()
        return loss(m, x, g)

    def on_step(step, _):
        scales[step] = load_checkpoint(ck)["scaler"]["scale"] if step < 5 else None
        if step in before:
            before[step] = (before[step], weight.detach().clone())

    train(net, loss_counting, batch, TrainConfig(steps=5, lr=1e-2, checkpoint_every=1, **FP16), checkpoint=ck,
          progress=False, on_step=on_step)
    w_in, w_out = before[3]
    assert torch.equal(w_in, w_out)  # step 3: gradients overflowed, the optimizer step was skipped
    assert not torch.equal(*before[2]) and not torch.equal(*before[4])  # the others moved the weights
    assert scales[3] == scales[2] / 2 and scales[4] == scales[3]  # the scale halves on the overflow


def test_a_scaled_run_resumes_bit_identically(tmp_path):
    net, batch, loss = _problem()
    ref = train(net, loss, batch, TrainConfig(steps=30, lr=1e-2, **FP16), progress=False)

    def die(step, _):
        if step == 14:
            raise KeyboardInterrupt("stopped after step 14")

    part, _, _ = _problem()
    ck = tmp_path / "m.pt"
    cfg = TrainConfig(steps=30, lr=1e-2, checkpoint_every=7, **FP16)
    with pytest.raises(KeyboardInterrupt, match="stopped after step 14"):
        train(part, loss, batch, cfg, checkpoint=ck, progress=False, on_step=die)
    assert load_checkpoint(ck)["step"] == 14
    again, _, _ = _problem()
    res = train(again, loss, batch, cfg, checkpoint=ck, progress=False)
    assert res.resumed_from == 14 and res.losses == ref.losses
    for p, q in zip(res.model.parameters(), ref.model.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(res.ema.parameters(), ref.ema.parameters()):
        assert torch.equal(p, q)


def test_the_ema_step_is_torchs_without_the_host_round_trip():
    net, _, _ = _problem()
    ours, theirs = ema_model(net, 0.9), ema_model(net, 0.9)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p))
    ema_update(ours, net, 0.9)
    theirs.update_parameters(net)
    for p, q in zip(ours.module.parameters(), theirs.module.parameters()):
        assert torch.equal(p, q)
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 2 and ours.n_averaged.device.type == "cpu"


def test_guidance_combines_half_precision_outputs_in_float32():
    class Half(nn.Module):
        def forward(self, x, t, y):
            return (x + y[:, None].float()).half()

    x, t, y = torch.randn(3, 2), torch.rand(3), torch.tensor([0, 1, 2])
    out = guidance.guided_eps(Half(), x, t, y, 2.0, 3)
    assert out.dtype == torch.float32
    eps_c, eps_u = (x + y[:, None].float()).half().float(), (x + 3.0).half().float()
    assert torch.equal(out, 3.0 * eps_c - 2.0 * eps_u)


# --------------------------------------------------------------------------- no host round trip per step
HOT_PATHS = {
    "nbhelpers.guidance": ["drop_labels", "guided_eps", "CFGModel.forward", "AutoGuided.forward"],
    "nbhelpers.ddpm": ["DDPM.q_sample", "DDPM._q_sample", "DDPM.loss", "DDPM.p_step", "DDPM.predict_eps", "DDPM._steps",
                       "DDPM.time", "DDPM._at", "DDPM.sample_steps", "DDPM.sample", "DDPM.ddim_sample", "DDPM.ddim_step"],
    "nbhelpers.losses": ["flow_matching_loss", "score_matching_loss"],
    "nbhelpers.recipes.cfg_mnist.training": ["cfg_loss"],
    "nbhelpers.recipes.cfg_mnist.presets": ["PaperTimeEncoding.forward"],
    "nbhelpers.recipes.afhq.diffusion": ["Diffusion.p_losses", "Diffusion.forward", "make_batch_fn", "diffusion_loss"],
    "nbhelpers.training": ["ema_update"],
    "nbhelpers.solvers": ["euler", "heun", "euler_maruyama"],
    "nbhelpers._checks": ["check_labels", "batch_time"],
}
"""Functions every training step or sampler step runs."""

HOST_GUARDED = {("DDPM._steps", "int(kk.min())"), ("DDPM._steps", "int(kk.max())"),
                ("check_labels", "int(labels.min())"), ("check_labels", "int(labels.max())")}
"""Read-backs allowed: range checks made only when the values are on the host (see their guards)."""


def _read_backs(func) -> list[str]:
    import ast
    import inspect
    import textwrap

    found = []
    for node in ast.walk(ast.parse(textwrap.dedent(inspect.getsource(func)))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if (isinstance(f, ast.Attribute) and f.attr in ("item", "tolist", "cpu", "numpy")) or \
                (isinstance(f, ast.Name) and f.id in ("int", "float", "bool") and node.args
                 and not isinstance(node.args[0], ast.Constant)):
            found.append(ast.unparse(node))
    return found


def test_no_read_back_sits_in_a_per_step_path():
    import importlib

    bad = []
    for module, names in HOT_PATHS.items():
        for name in names:
            obj = importlib.import_module(module)
            for part in name.split("."):
                obj = getattr(obj, part)
            bad += [f"{module}.{name}: {expr}" for expr in _read_backs(obj) if (name, expr) not in HOST_GUARDED]
    assert not bad, "host-device syncs in a per-step path:\n" + "\n".join(bad)


def test_the_lint_sees_a_read_back():
    def step(x):
        return x * float(x.mean())

    assert _read_backs(step) == ["float(x.mean())"]


@pytest.mark.parametrize("where", ["labels", "steps"])
def test_range_checks_stay_for_host_tensors(where):
    from nbhelpers.ddpm import DDPM

    if where == "labels":
        with pytest.raises(ValueError, match=r"labels y .*0\.\.3"):
            guidance.drop_labels(torch.tensor([0, 7]), 0.1, 3)
    else:
        with pytest.raises(ValueError, match=r"step k must lie in 0\.\.10, got values in 0\.\.11"):
            DDPM.from_schedule("linear", 10).q_sample(torch.zeros(2, 2), torch.tensor([0, 11]))


def test_the_process_group_waits_for_rank_0s_fid(monkeypatch):
    """Under torchrun the other ranks wait at a barrier while rank 0 scores FID: the group's timeout must
    outlast NCCL's 10-minute default watchdog."""
    import datetime

    from nbhelpers.recipes.afhq import trainer

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, timeout: seen.update(b=backend, t=timeout))
    device, started = trainer._init_distributed(torch.device("cpu"))
    assert started and seen["b"] == "gloo" and seen["t"] >= datetime.timedelta(minutes=30)
