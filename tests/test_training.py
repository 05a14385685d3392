"""The shared training loop: reproducibility, resume, cache, EMA, learning-rate schedule, non-finite guard."""
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from nbhelpers.checkpoints import checkpoint_path, load_checkpoint, save_checkpoint
from nbhelpers.training import TrainConfig, ema_model, lr_scheduler, train

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the subprocesses import ``tests`` from here, whatever folder pytest runs in."""


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    w_true = torch.tensor([[1.0, -2.0, 0.5]])

    def batch_fn(gen):
        x = torch.randn(32, 3, generator=gen)
        return x, x @ w_true.T

    def loss_fn(m, batch, gen):
        x, y = batch
        return ((m(x) - y) ** 2).mean()

    return model, batch_fn, loss_fn


def test_loss_decreases_and_history_length():
    model, batch_fn, loss_fn = _problem()
    res = train(model, loss_fn, batch_fn, TrainConfig(steps=200, lr=1e-2), progress=False)
    assert len(res.losses) == 200
    assert sum(res.losses[-20:]) / 20 < 0.2 * sum(res.losses[:20]) / 20


def test_same_seed_same_result():
    a, bf, lf = _problem()
    b, _, _ = _problem()
    train(a, lf, bf, TrainConfig(steps=30, seed=3), progress=False)
    train(b, lf, bf, TrainConfig(steps=30, seed=3), progress=False)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_resume_matches_uninterrupted_run(tmp_path):
    full, bf, lf = _problem()
    ref = train(full, lf, bf, TrainConfig(steps=40, seed=1, ema_decay=0.9), progress=False)

    # interrupted: a run with checkpoint_every=10 that "dies" after step 20 (on_step raises)
    part, _, _ = _problem()
    ck = tmp_path / "m.pt"

    def die(step, loss):
        if step == 20:
            raise KeyboardInterrupt(f"killed after step {step}")

    with pytest.raises(KeyboardInterrupt, match="killed after step 20"):
        train(part, lf, bf, TrainConfig(steps=40, seed=1, ema_decay=0.9, checkpoint_every=10), checkpoint=ck, progress=False, on_step=die)
    state = load_checkpoint(ck)
    assert state["step"] == 20 and not state["finished"]

    again, _, _ = _problem()
    res = train(again, lf, bf, TrainConfig(steps=40, seed=1, ema_decay=0.9, checkpoint_every=10), checkpoint=ck, progress=False)
    assert res.resumed_from == 20
    assert res.losses == pytest.approx(ref.losses, rel=1e-6, abs=1e-7)
    for p, q in zip(res.model.parameters(), ref.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
    for p, q in zip(res.ema.parameters(), ref.ema.parameters()):
        assert torch.allclose(p, q, atol=1e-6)


def test_finished_checkpoint_is_reused_and_retrain_forces(tmp_path):
    model, bf, lf = _problem()
    ck = tmp_path / "m.pt"
    first = train(model, lf, bf, TrainConfig(steps=10), checkpoint=ck, progress=False)
    fresh, _, _ = _problem()
    second = train(fresh, lf, bf, TrainConfig(steps=10), checkpoint=ck, progress=False)
    assert second.loaded_from_cache and second.losses == first.losses
    for p, q in zip(first.model.parameters(), fresh.parameters()):
        assert torch.equal(p, q)
    third = train(fresh, lf, bf, TrainConfig(steps=10), checkpoint=ck, progress=False, retrain=True)
    assert not third.loaded_from_cache


def test_config_mismatch_retrains(tmp_path):
    model, bf, lf = _problem()
    ck = tmp_path / "m.pt"
    train(model, lf, bf, TrainConfig(steps=5), checkpoint=ck, key={"width": 16}, progress=False)
    other, _, _ = _problem()
    with pytest.warns(UserWarning, match="another configuration"):
        res = train(other, lf, bf, TrainConfig(steps=5), checkpoint=ck, key={"width": 32}, progress=False)
    assert not res.loaded_from_cache
    assert load_checkpoint(ck)["key"].count('"width": 32') == 1


def test_checkpoint_path_is_keyed_by_config(tmp_path):
    a = checkpoint_path("mlp", {"w": 1}, directory=tmp_path)
    b = checkpoint_path("mlp", {"w": 2}, directory=tmp_path)
    assert a != b and a.parent == tmp_path and a == checkpoint_path("mlp", {"w": 1}, directory=tmp_path)
    with pytest.raises(ValueError, match="plain word"):
        checkpoint_path("a/b", {}, directory=tmp_path)


def test_non_finite_loss_names_the_step():
    model, bf, _ = _problem()

    def loss_fn(m, batch, gen):
        out = m(batch[0]).mean()
        return out * float("nan") if loss_fn.calls == 7 else (setattr(loss_fn, "calls", loss_fn.calls + 1) or out ** 2)

    loss_fn.calls = 0
    with pytest.raises(FloatingPointError, match="step 8"):
        train(model, loss_fn, bf, TrainConfig(steps=20), progress=False)


def test_ema_tracks_weights():
    m = nn.Linear(2, 2)
    ema = ema_model(m, 0.5)
    with torch.no_grad():
        m.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update_parameters(m)
    assert torch.allclose(ema.module.weight, 0.5 * before + 0.5 * m.weight)
    assert not ema.training and not any(p.requires_grad for p in ema.parameters())


def test_ema_is_a_lerp_per_step_and_copies_buffers():
    """θ_ema ← lerp(θ_ema, θ, 1 − decay) from the first update on (the start counts as one model), bit for bit;
    BatchNorm statistics are the model's own, not averaged."""
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    ema = ema_model(m, 0.9)
    ref = [p.detach().clone() for p in m.parameters()]
    for _ in range(5):
        m(torch.randn(16, 3))  # moves the running statistics
        with torch.no_grad():
            for p in m.parameters():
                p.add_(torch.randn_like(p))
        ema.update_parameters(m)
        ref = [torch.lerp(r, p.detach(), 1.0 - 0.9) for r, p in zip(ref, m.parameters())]
        for got, want in zip(ema.module.parameters(), ref):
            assert torch.equal(got, want)
        for got, want in zip(ema.module.buffers(), m.buffers()):
            assert torch.equal(got, want)
    assert int(ema.n_averaged) == 6


@pytest.mark.parametrize("bad", [dict(steps=-1), dict(steps=1, lr=0), dict(steps=1, ema_decay=1.5), dict(steps=1, grad_clip=0)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=f"{list(bad)[-1]} must be"):
        TrainConfig(**bad)


def test_lr_schedule_boundary_values():
    const = TrainConfig(steps=100, lr=0.2, warmup_steps=10)
    assert [const.lr_at(s) for s in (1, 5, 10, 50, 100)] == pytest.approx([0.02, 0.1, 0.2, 0.2, 0.2])
    cos = TrainConfig(steps=110, lr=0.2, warmup_steps=10, lr_decay="cosine")
    assert cos.lr_at(5) == pytest.approx(0.1)  # warm-up unchanged
    assert cos.lr_at(10) == pytest.approx(0.2)  # peak at the end of the warm-up
    assert cos.lr_at(60) == pytest.approx(0.1)  # half-way through the decay: cos(π/2) → half the rate
    assert cos.lr_at(110) == pytest.approx(0.0, abs=1e-12)  # zero at the last step
    with pytest.raises(ValueError, match="valid choices: none, cosine"):
        TrainConfig(steps=1, lr_decay="linear")
    assert TrainConfig(steps=1, betas=[0.9, 0.99]).betas == (0.9, 0.99)  # normalised, so keys and checkpoints agree


def test_lr_factor_is_lr_at_over_lr():
    cfg = TrainConfig(steps=30, lr=0.2, warmup_steps=7, lr_decay="cosine")
    assert [cfg.lr_at(s) for s in range(1, 31)] == [0.2 * cfg.lr_factor(s) for s in range(1, 31)]
    assert cfg.schedules_lr and TrainConfig(steps=3, warmup_steps=1).schedules_lr and not TrainConfig(steps=3).schedules_lr
    assert lr_scheduler(torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1), TrainConfig(steps=3)) is None


def _lr_recorder(opt, seen):
    """A loss function that records the rate the optimiser will use in this step."""
    _, _, loss_fn = _problem()

    def recording(m, batch, gen):
        seen.append(opt.param_groups[0]["lr"])
        return loss_fn(m, batch, gen)

    return recording


@pytest.mark.parametrize("warmup, decay", [(4, "cosine"), (0, "cosine"), (5, "none")])
def test_the_loop_applies_the_lr_schedule_exactly(tmp_path, warmup, decay):
    """The rate of every step is ``config.lr_at(step)`` to the bit, in one run and across a resume."""
    cfg = TrainConfig(steps=20, lr=0.01, warmup_steps=warmup, lr_decay=decay, checkpoint_every=5)
    want = [cfg.lr_at(s) for s in range(1, 21)]
    model, batch_fn, _ = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    seen = []
    train(model, _lr_recorder(opt, seen), batch_fn, cfg, progress=False, optimizer=opt)
    assert seen == want

    def die(step, loss):
        if step == 10:
            raise KeyboardInterrupt(f"killed after step {step}")

    ck, seen = tmp_path / "m.pt", []
    model, _, _ = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    with pytest.raises(KeyboardInterrupt, match="killed after step 10"):
        train(model, _lr_recorder(opt, seen), batch_fn, cfg, checkpoint=ck, progress=False, optimizer=opt, on_step=die)
    assert load_checkpoint(ck)["scheduler"]["last_epoch"] == 10
    model, _, _ = _problem()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr)
    res = train(model, _lr_recorder(opt, seen), batch_fn, cfg, checkpoint=ck, progress=False, optimizer=opt)
    assert res.resumed_from == 10 and seen == want


def _as_written_before_the_scheduler(state, config):
    """A checkpoint as the loop wrote it before the scheduler's state was saved: no ``"scheduler"``, the
    optimizer's groups without ``initial_lr`` and at the rate of the last step taken (set before each step)."""
    old = {k: v for k, v in state.items() if k != "scheduler"}
    groups = [{k: v for k, v in g.items() if k != "initial_lr"} for g in state["optimizer"]["param_groups"]]
    for g in groups:
        g["lr"] = config.lr_at(int(state["step"]))
    old["optimizer"] = {**state["optimizer"], "param_groups": groups}
    return old


def test_checkpoint_written_before_the_scheduler_resumes_bit_for_bit(tmp_path):
    cfg = TrainConfig(steps=40, lr=0.01, seed=1, ema_decay=0.9, warmup_steps=5, lr_decay="cosine", checkpoint_every=10)
    full, bf, lf = _problem()
    ref = train(full, lf, bf, cfg, progress=False)

    def die(step, loss):
        if step == 20:
            raise KeyboardInterrupt(f"killed after step {step}")

    ck = tmp_path / "m.pt"
    part, _, _ = _problem()
    with pytest.raises(KeyboardInterrupt, match="killed after step 20"):
        train(part, lf, bf, cfg, checkpoint=ck, progress=False, on_step=die)
    state = load_checkpoint(ck)
    assert state["scheduler"] is not None
    save_checkpoint(ck, _as_written_before_the_scheduler(state, cfg))
    assert "scheduler" not in load_checkpoint(ck)

    again, _, _ = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "scheduler stepped before the optimizer" warning reaches the user
        res = train(again, lf, bf, cfg, checkpoint=ck, progress=False)
    assert res.resumed_from == 20 and res.losses == ref.losses
    for p, q in zip(res.model.parameters(), ref.model.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(res.ema.parameters(), ref.ema.parameters()):
        assert torch.equal(p, q)
    assert load_checkpoint(ck)["scheduler"]["last_epoch"] == 40


def test_kill_minus_nine_then_resume(tmp_path):
    """A training process killed with SIGKILL resumes from its last checkpoint."""
    ck = tmp_path / "k.pt"
    script = textwrap.dedent(f"""
        import os, signal, sys, torch
        sys.path.insert(0, {str(ROOT)!r})
        from tests.test_training import _problem
        from nbhelpers.training import TrainConfig, train
        model, bf, lf = _problem()
        def maybe_die(step, loss):
            if step == 25 and sys.argv[1] == "die":
                os.kill(os.getpid(), signal.SIGKILL)
        res = train(model, lf, bf, TrainConfig(steps=50, seed=2, checkpoint_every=10), checkpoint={str(ck)!r},
                    progress=False, on_step=maybe_die)
        print("resumed_from", res.resumed_from)
    """)
    first = subprocess.run([sys.executable, "-c", script, "die"], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == -signal.SIGKILL
    assert load_checkpoint(ck)["step"] == 20
    second = subprocess.run([sys.executable, "-c", script, "run"], cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "resumed_from 20" in second.stdout
    assert load_checkpoint(ck)["finished"]


def test_snapshots_are_the_sampling_weights_after_their_steps_and_survive_resume_and_cache(tmp_path, monkeypatch):
    cfg = TrainConfig(steps=30, seed=2, ema_decay=0.8, snapshot_steps=(20, 7), checkpoint_every=10)
    assert cfg.snapshot_steps == (7, 20)  # sorted
    seen = {}
    model, bf, lf = _problem()
    holder = {}

    def watch(step, loss):  # the EMA copy after each step, as the loop holds it
        if step in (7, 20):
            seen[step] = [p.detach().clone() for p in holder["ema"].parameters()]

    # the reference: run without a checkpoint, capture the EMA weights through ema_model's copy
    import nbhelpers.training as T

    real_ema = T.ema_model

    def spy(m, decay):
        holder["ema"] = real_ema(m, decay)
        return holder["ema"]

    monkeypatch.setattr(T, "ema_model", spy)
    ref = train(model, lf, bf, TrainConfig(steps=30, seed=2, ema_decay=0.8, snapshot_steps=(7, 20)),
                progress=False, on_step=watch)
    monkeypatch.undo()
    assert sorted(ref.snapshots) == [7, 20]
    for step in (7, 20):
        got = ref.snapshot_model(step)
        assert all(torch.equal(p, q) for p, q in zip(got.parameters(), seen[step]))
        assert not got.training and not any(p.requires_grad for p in got.parameters())
    assert not torch.equal(ref.snapshots[7]["0.weight"], ref.snapshots[20]["0.weight"])
    assert ref.snapshot_model(20) is not ref.sampling_model  # a copy: the trained model is untouched

    # killed after step 15 (checkpoint at 10 holds snapshot 7), resumed: the same snapshots
    ck = tmp_path / "m.pt"

    def die(step, loss):
        if step == 15:
            raise KeyboardInterrupt(f"killed after step {step}")

    part, _, _ = _problem()
    with pytest.raises(KeyboardInterrupt, match="killed after step 15"):
        train(part, lf, bf, cfg, checkpoint=ck, progress=False, on_step=die)
    assert sorted(load_checkpoint(ck)["snapshots"]) == [7]
    again, _, _ = _problem()
    res = train(again, lf, bf, cfg, checkpoint=ck, progress=False)
    assert res.resumed_from == 10
    cached = train(_problem()[0], lf, bf, cfg, checkpoint=ck, progress=False)
    assert cached.loaded_from_cache
    for r in (res, cached):
        assert sorted(r.snapshots) == [7, 20]
        for step in (7, 20):
            for name, v in ref.snapshots[step].items():
                torch.testing.assert_close(r.snapshots[step][name], v, rtol=1e-6, atol=1e-7)


def test_snapshot_steps_are_checked_and_absent_ones_are_named():
    from nbhelpers.checkpoints import key_json

    with pytest.raises(ValueError, match="snapshot step"):
        TrainConfig(steps=10, snapshot_steps=(11,))
    with pytest.raises(ValueError, match="snapshot step"):
        TrainConfig(steps=10, snapshot_steps=(0,))
    with pytest.raises(ValueError, match="snapshot_steps must be a sequence"):
        TrainConfig(steps=10, snapshot_steps=5)
    # no snapshots: the key is the one models were cached under before snapshots existed
    assert "snapshot_steps" not in key_json({}, TrainConfig(steps=10))
    assert '"snapshot_steps": [4]' in key_json({}, TrainConfig(steps=10, snapshot_steps=(4,)))
    model, bf, lf = _problem()
    res = train(model, lf, bf, TrainConfig(steps=5, snapshot_steps=(2,)), progress=False)
    with pytest.raises(ValueError, match=r"no snapshot .* after step 3; kept after steps: 2"):
        res.snapshot_model(3)
    plain = train(_problem()[0], lf, bf, TrainConfig(steps=5), progress=False)
    with pytest.raises(ValueError, match="snapshot_steps is empty"):
        plain.snapshot_model(2)
