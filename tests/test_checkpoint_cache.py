"""The trained-model cache with an image model: a tiny UNet trained by flow matching is cached,
reloaded bit-for-bit (BatchNorm buffers and EMA included), retrained on a config mismatch, written
atomically, and resumed after a kill -9."""
import os
import signal
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from nbhelpers import files
from nbhelpers.data import TensorBatcher
from nbhelpers.models.unet import UNet, UNetConfig
from nbhelpers.checkpoints import checkpoint_path, load_checkpoint
from nbhelpers.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
"""The repository root: the subprocesses import ``tests`` from here, whatever folder pytest runs in."""

CFG = UNetConfig(base_channels=4, channel_mults=(1, 2), res_layers=1, bottleneck_layers=1, time_embed_dim=8)


def _setup(cfg=CFG):
    torch.manual_seed(0)
    net = UNet(cfg)
    images = torch.rand(32, 1, 12, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    batcher = TensorBatcher(images, None, 8)

    def loss_fn(model, batch, gen):  # flow matching on the linear path, written out
        t = torch.rand(batch.x.shape[0], generator=gen)
        eps = torch.randn(batch.x.shape, generator=gen)
        xt = t[:, None, None, None] * batch.x + (1 - t[:, None, None, None]) * eps
        return (model(xt, t) - (batch.x - eps)).square().mean()

    return net, loss_fn, batcher


def _key(cfg=CFG):
    return {"unet": cfg.key(), "data": "random-12x12", "loss": "fm-linear"}


def test_round_trip_restores_weights_buffers_and_ema(tmp_path):
    ck = checkpoint_path("tiny_unet", _key(), directory=tmp_path)
    net, lf, bf = _setup()
    first = train(net, lf, bf, TrainConfig(steps=6, ema_decay=0.9), checkpoint=ck, key=_key(), progress=False)
    fresh, _, _ = _setup()
    second = train(fresh, lf, bf, TrainConfig(steps=6, ema_decay=0.9), checkpoint=ck, key=_key(), progress=False)
    assert second.loaded_from_cache and second.losses == first.losses
    for a, b in zip(first.model.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)  # includes BatchNorm running statistics
    for a, b in zip(first.ema.state_dict().values(), second.ema.state_dict().values()):
        assert torch.equal(a, b)
    x = torch.randn(3, 1, 12, 12)
    t = torch.full((3,), 0.5)
    assert torch.equal(first.model.eval()(x, t), fresh.eval()(x, t))
    assert load_checkpoint(ck)["finished"]


def test_a_different_unet_config_retrains(tmp_path):
    ck = tmp_path / "unet.pt"
    net, lf, bf = _setup()
    train(net, lf, bf, TrainConfig(steps=3), checkpoint=ck, key=_key(), progress=False)
    other_cfg = UNetConfig(**{**CFG.key(), "channel_mults": (1, 2), "attention_levels": (), "norm": "group", "norm_groups": 4})
    other, lf2, bf2 = _setup(other_cfg)
    with pytest.warns(UserWarning, match="another configuration"):
        res = train(other, lf2, bf2, TrainConfig(steps=3), checkpoint=ck, key=_key(other_cfg), progress=False)
    assert not res.loaded_from_cache
    assert '"norm": "group"' in load_checkpoint(ck)["key"]
    # the cache file name itself depends on the config
    assert checkpoint_path("u", _key(), directory=tmp_path) != checkpoint_path("u", _key(other_cfg), directory=tmp_path)


def test_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    ck = tmp_path / "unet.pt"
    net, lf, bf = _setup()
    train(net, lf, bf, TrainConfig(steps=3), checkpoint=ck, key=_key(), progress=False)
    before = ck.read_bytes()

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", crash)
    again, _, _ = _setup()
    with pytest.raises(OSError, match="disk full"):
        train(again, lf, bf, TrainConfig(steps=3), checkpoint=ck, key=_key(), progress=False, retrain=True)
    assert ck.read_bytes() == before  # old file untouched
    assert [p.name for p in tmp_path.iterdir()] == ["unet.pt"]  # no temp files left behind
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_checkpoint(ck)["finished"]


def test_kill_minus_nine_then_resume_with_a_unet(tmp_path):
    ck = tmp_path / "k.pt"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(ROOT)!r})
        from tests.test_checkpoint_cache import _setup, _key
        from nbhelpers.training import TrainConfig, train
        net, lf, bf = _setup()
        def maybe_die(step, loss):
            if step == 7 and sys.argv[1] == "die":
                os.kill(os.getpid(), signal.SIGKILL)
        res = train(net, lf, bf, TrainConfig(steps=12, ema_decay=0.9, checkpoint_every=5), checkpoint={str(ck)!r},
                    key=_key(), progress=False, on_step=maybe_die)
        print("resumed_from", res.resumed_from, "losses", len(res.losses))
    """)
    first = subprocess.run([sys.executable, "-c", script, "die"], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == -signal.SIGKILL
    state = load_checkpoint(ck)
    assert state["step"] == 5 and not state["finished"]
    second = subprocess.run([sys.executable, "-c", script, "run"], cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "resumed_from 5 losses 12" in second.stdout

    # the resumed run equals an uninterrupted one
    net, lf, bf = _setup()
    ref = train(net, lf, bf, TrainConfig(steps=12, ema_decay=0.9, checkpoint_every=5), progress=False)
    resumed = load_checkpoint(ck)
    assert torch.allclose(resumed["losses"].float(), torch.tensor(ref.losses), atol=1e-6)
    for name, value in ref.model.state_dict().items():
        assert torch.allclose(resumed["model"][name].float(), value.float(), atol=1e-6), name


def _leftovers(folder):
    """Files other than the checkpoint itself: temp files and locks."""
    return sorted(p.name for p in folder.iterdir() if p.name != "k.pt")


_KILL_SCRIPT = """
import os, signal, sys, time
sys.path.insert(0, {root!r})
from tests.test_checkpoint_cache import _setup, _key
from nbhelpers import files
from nbhelpers.training import TrainConfig, train
mode = sys.argv[1]
if mode == "die-mid-write":  # the second checkpoint write dies between writing its temp file and the rename
    real_replace, calls = os.replace, []
    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst)
    files.os.replace = replace
def on_step(step, loss):
    if mode == "slow":
        print("step", step, flush=True)
        time.sleep(0.02)
net, lf, bf = _setup()
res = train(net, lf, bf, TrainConfig(steps={steps}, ema_decay=0.9, checkpoint_every={every}), checkpoint={ck!r},
            key=_key(), progress=False, on_step=on_step)
print("resumed_from", res.resumed_from, "losses", len(res.losses))
"""


def _assert_bit_identical_to_an_uninterrupted_run(ck, steps, every):
    net, lf, bf = _setup()
    ref = train(net, lf, bf, TrainConfig(steps=steps, ema_decay=0.9, checkpoint_every=every), progress=False)
    resumed = load_checkpoint(ck)
    assert resumed["finished"] and resumed["losses"].tolist() == ref.losses
    for name, value in ref.model.state_dict().items():
        assert torch.equal(resumed["model"][name], value), name
    for name, value in ref.ema.state_dict().items():
        assert torch.equal(resumed["ema"][name], value), name


def test_kill_minus_nine_mid_write_leaves_no_temp_file_after_the_rerun(tmp_path):
    ck = tmp_path / "k.pt"
    script = _KILL_SCRIPT.format(root=str(ROOT), steps=12, every=5, ck=str(ck))
    first = subprocess.run([sys.executable, "-c", script, "die-mid-write"], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == -signal.SIGKILL, first.stderr
    left = _leftovers(tmp_path)
    assert any(n.startswith(".k.pt.") and n.endswith(".tmp") for n in left), left  # the orphan the kill leaves …
    assert "k.pt.lock" in left  # … and the lock of the dead run
    assert load_checkpoint(ck)["step"] == 5
    second = subprocess.run([sys.executable, "-c", script, "run"], cwd=ROOT, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert "resumed_from 5 losses 12" in second.stdout
    assert _leftovers(tmp_path) == []  # … are both gone after the rerun
    _assert_bit_identical_to_an_uninterrupted_run(ck, 12, 5)


@pytest.mark.slow
def test_kill_minus_nine_at_random_times_resumes_bit_identically(tmp_path):
    """SIGKILL from outside at random moments of training (writes included), then a rerun."""
    import random
    import time

    rng = random.Random(0)
    steps, every = 30, 2
    for trial in range(3):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        ck = folder / "k.pt"
        script = _KILL_SCRIPT.format(root=str(ROOT), steps=steps, every=every, ck=str(ck))
        proc = subprocess.Popen([sys.executable, "-c", script, "slow"], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        target = rng.randint(3, steps - 3)
        for line in proc.stdout:  # wait until training is under way, then a random extra delay
            if line.startswith("step") and int(line.split()[1]) >= target:
                break
        time.sleep(rng.uniform(0.0, 0.03))
        proc.kill()
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        second = subprocess.run([sys.executable, "-c", script, "run"], cwd=ROOT, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        assert _leftovers(folder) == [], (trial, _leftovers(folder))
        _assert_bit_identical_to_an_uninterrupted_run(ck, steps, every)


def test_a_second_run_on_a_checkpoint_in_use_stops_before_training(tmp_path, live_pid):
    import json

    from nbhelpers import runtime

    ck = tmp_path / "k.pt"
    (tmp_path / "k.pt.lock").write_text(json.dumps({"pid": live_pid, "host": files._host(), "started": "now"}))
    net, lf, bf = _setup()
    drawn = []
    with pytest.raises(runtime.OutputError, match=r"in use by another run .*delete .*k.pt.lock"):
        train(net, lf, lambda g: drawn.append(1) or bf(g), TrainConfig(steps=3), checkpoint=ck, key=_key(),
              progress=False)
    assert drawn == [] and not ck.exists()


def test_an_unwritable_checkpoint_folder_fails_before_step_one(tmp_path):
    from nbhelpers import runtime

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    net, lf, bf = _setup()
    drawn = []
    with pytest.raises(runtime.OutputError, match=r"file"):
        train(net, lf, lambda g: drawn.append(1) or bf(g), TrainConfig(steps=3), checkpoint=blocker / "ck" / "k.pt",
              key=_key(), progress=False)
    assert drawn == []  # no batch drawn: nothing trained


@pytest.mark.parametrize("content, what", [
    (b"", "is empty"),
    (b"garbage, not a checkpoint", "cannot be read"),
    ("truncated", "cannot be read"),
    ("not-a-dict", "not a checkpoint dict"),
])
def test_an_unreadable_checkpoint_names_the_file_and_the_remedy(tmp_path, content, what):
    from nbhelpers.checkpoints import CheckpointError

    ck = tmp_path / "k.pt"
    if content == "truncated":
        net, lf, bf = _setup()
        train(net, lf, bf, TrainConfig(steps=2), checkpoint=ck, key=_key(), progress=False)
        ck.write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    elif content == "not-a-dict":
        torch.save([torch.zeros(2)], ck)
    else:
        ck.write_bytes(content)
    net, lf, bf = _setup()
    with pytest.raises(CheckpointError, match=rf"{ck}.*{what}.*delete it to retrain"):
        train(net, lf, bf, TrainConfig(steps=2), checkpoint=ck, key=_key(), progress=False)
    assert not (tmp_path / "k.pt.lock").exists()
