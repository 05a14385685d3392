"""The dry-run cap ($NBHELPERS_MAX_STEPS): training, samplers, and the separate model cache."""
from __future__ import annotations

import pytest
import torch
from torch import nn

import nbhelpers.runtime as runtime
from nbhelpers import dryrun, layout
from nbhelpers.ddpm import DDPM
from nbhelpers.solvers import euler, euler_maruyama, heun
from nbhelpers.checkpoints import checkpoint_path
from nbhelpers.training import TrainConfig, train


@pytest.fixture
def build(tmp_path, monkeypatch):
    """Dry-run outputs under a temporary build folder."""
    monkeypatch.setattr(layout, "build_dir", lambda: tmp_path / "build")
    return tmp_path / "build"


class Counting(nn.Module):
    """x ↦ a·x (a learnable), counting its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))
        self.calls = 0

    def forward(self, x, t, y=None):
        self.calls += 1
        return self.a * x


def _train(model, steps, checkpoint=None):
    def batch_fn(g):
        return torch.randn(16, 2, generator=g)

    def loss_fn(m, batch, g):
        return ((m(batch, torch.zeros(len(batch))) - batch) ** 2).mean()

    return train(model, loss_fn, batch_fn, TrainConfig(steps=steps, lr=1e-2), checkpoint=checkpoint,
                 key={"model": "Counting"}, progress=False)


# --------------------------------------------------------------------------- the variable
def test_unset_means_no_cap(monkeypatch):
    monkeypatch.delenv(dryrun.MAX_STEPS_ENV, raising=False)
    assert dryrun.max_steps() is None and not dryrun.is_dry_run()
    assert dryrun.cap(1000) == 1000
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "  ")
    assert dryrun.max_steps() is None


@pytest.mark.parametrize("raw", ["0", "-2", "two", "1.5", "2e3"])
def test_bad_values_name_the_variable(monkeypatch, raw):
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, raw)
    with pytest.raises(ValueError, match=rf"NBHELPERS_MAX_STEPS.*positive integer.*{raw!r}"):
        dryrun.max_steps()


def test_cap(monkeypatch):
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    assert dryrun.max_steps() == 2 and dryrun.is_dry_run()
    assert dryrun.cap(1000) == 2 and dryrun.cap(1) == 1


# --------------------------------------------------------------------------- training
def test_training_stops_at_the_cap(monkeypatch, build):
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "3")
    res = _train(Counting(), steps=500)
    assert res.steps == 3 and len(res.losses) == 3


def test_cache_separation(monkeypatch, build, tmp_path):
    """A capped run neither reads nor overwrites the full model's checkpoint, and reuses its own."""
    ckpt = tmp_path / "models" / "m.pt"
    monkeypatch.delenv(dryrun.MAX_STEPS_ENV, raising=False)
    full = _train(Counting(), steps=6, checkpoint=ckpt)
    assert full.steps == 6 and ckpt.exists()
    full_bytes = ckpt.read_bytes()

    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    capped = _train(Counting(), steps=6, checkpoint=ckpt)
    assert not capped.loaded_from_cache and capped.steps == 2
    assert capped.checkpoint != ckpt and build / "dryrun" / "max-steps-2" in capped.checkpoint.parents
    assert capped.checkpoint.exists() and ckpt.read_bytes() == full_bytes
    again = _train(Counting(), steps=6, checkpoint=ckpt)
    assert again.loaded_from_cache and again.checkpoint == capped.checkpoint and again.steps == 2

    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "4")  # another cap: another folder
    other = _train(Counting(), steps=6, checkpoint=ckpt)
    assert not other.loaded_from_cache and other.steps == 4 and build / "dryrun" / "max-steps-4" in other.checkpoint.parents

    monkeypatch.delenv(dryrun.MAX_STEPS_ENV)
    back = _train(Counting(), steps=6, checkpoint=ckpt)
    assert back.loaded_from_cache and back.steps == 6 and back.checkpoint == ckpt


def test_capped_checkpoint_copied_into_place_is_not_taken_for_the_full_model(monkeypatch, build, tmp_path):
    ckpt = tmp_path / "m.pt"
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    capped = _train(Counting(), steps=6, checkpoint=ckpt)
    ckpt.write_bytes(capped.checkpoint.read_bytes())  # the key records the cap
    monkeypatch.delenv(dryrun.MAX_STEPS_ENV)
    with pytest.warns(UserWarning, match="another configuration"):
        res = _train(Counting(), steps=6, checkpoint=ckpt)
    assert not res.loaded_from_cache and res.steps == 6


def test_checkpoints_dir_and_paths_move(monkeypatch, build):
    monkeypatch.delenv(dryrun.MAX_STEPS_ENV, raising=False)
    assert runtime.checkpoints_dir("cpu") == runtime.output_root() / "checkpoints"
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    root = build / "dryrun" / "max-steps-2"
    assert runtime.checkpoints_dir("gpu") == root / "checkpoints"
    assert checkpoint_path("x", {"a": 1}, profile="gpu").parent == root / "checkpoints"
    assert dryrun.redirect(root / "checkpoints" / "x.pt") == root / "checkpoints" / "x.pt"  # idempotent
    assert root in dryrun.redirect("/elsewhere/model.pt").parents


def test_a_dry_run_draws_its_figures_apart(monkeypatch, build):
    monkeypatch.delenv(dryrun.MAX_STEPS_ENV, raising=False)
    assert runtime.figures_dir("gpu") == runtime.output_root() / "figures"
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    assert runtime.figures_dir("gpu") == build / "dryrun" / "max-steps-2" / "figures"


# --------------------------------------------------------------------------- samplers
def test_holds_network():
    net = Counting()
    assert dryrun.holds_network(net)
    assert dryrun.holds_network(lambda x, t: net(x, t))

    class Reverse:  # an SDE object built around a closure over the network
        def __init__(self, score):
            self.score = score

        def drift(self, x, t):
            return self.score(x, t)

    assert dryrun.holds_network(Reverse(lambda x, t: net(x, t)).drift)
    assert not dryrun.holds_network(lambda x, t: -x)
    assert not dryrun.holds_network(nn.ReLU())  # no parameters: an exact reference, not a network


def test_network_budget():
    net = Counting()
    f = dryrun.NetworkBudget(net, 2)
    x = torch.ones(3, 2)
    assert torch.equal(f(x, None), 0.5 * x) and torch.equal(f(x, None), 0.5 * x)
    out = f(x, None)
    assert torch.equal(out, torch.zeros_like(x)) and net.calls == 2 and f.calls == 2
    with pytest.raises(ValueError, match="non-negative integer"):
        dryrun.NetworkBudget(net, -1)


def test_samplers_cap_network_evaluations(monkeypatch):
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    ddpm = DDPM.from_schedule("linear", 20)
    net = Counting()
    out = ddpm.sample(net, (4, 2), generator=torch.Generator().manual_seed(0), return_steps=range(21))
    assert net.calls == 2 and out.x.shape == (4, 2) and sorted(out.trajectory) == list(range(21))
    net = Counting()
    out = ddpm.ddim_sample(net, (4, 2), n_steps=10, generator=torch.Generator().manual_seed(0))
    assert net.calls == 2 and out.x.shape == (4, 2)
    for solver, n in ((euler, 50), (heun, 50)):
        net = Counting()
        sol = solver(lambda x, t: net(x, t), torch.ones(4, 2), 0.0, 1.0, n, return_trajectory=True)
        assert net.calls == 2 and sol.trajectory.shape == (n + 1, 4, 2)
    net = Counting()
    euler_maruyama(lambda x, t: net(x, t), 0.1, torch.ones(4, 2), 0.0, 1.0, 30, generator=torch.Generator().manual_seed(0))
    assert net.calls == 2


def test_a_network_runs_once_per_call_after_its_first_batch(monkeypatch):
    """A sweep (guidance weights, σ values) calls the sampler again and again with the same network and
    batch: the first call evaluates it up to the cap, each later call once (its own cost is counted, not
    the first call's); another batch shape starts again."""
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    ddpm = DDPM.from_schedule("linear", 20)
    net = Counting()
    for _ in range(3):
        assert ddpm.sample(net, (4, 2), generator=torch.Generator().manual_seed(0)).x.shape == (4, 2)
    assert net.calls == 2 + 1 + 1
    ddpm.sample(net, (8, 2), generator=torch.Generator().manual_seed(0))
    assert net.calls == 6


def test_a_later_call_is_charged_its_own_cost(monkeypatch, tmp_path):
    """05's σ sweep: the σ = 0 call never evaluates the score network, σ > 0 does. Each call's record
    carries the FLOPs of its own first evaluation, not the cost cached from the first call."""
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    flow, score = nn.Linear(2, 2), nn.Linear(2, 2)
    x = torch.ones(4, 2)

    def field(sigma):
        return lambda z, t: flow(z) + (sigma * score(z) if sigma else 0)

    costs = []
    for sigma in (0.0, 1.0):
        f = dryrun.NetworkBudget(field(sigma), 2)
        f(x, None)
        costs.append(dryrun._EVALUATED[flow][(f._nets, (4, 2), torch.float32)])
    assert costs[1] == 2 * costs[0]


def test_analytic_fields_are_not_capped(monkeypatch):
    x0 = torch.ones(5, 1)
    monkeypatch.delenv(dryrun.MAX_STEPS_ENV, raising=False)
    ref = euler(lambda x, t: -x, x0, 0.0, 1.0, 40).x
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    assert torch.equal(euler(lambda x, t: -x, x0, 0.0, 1.0, 40).x, ref)


def test_setup_says_it_is_a_dry_run(monkeypatch, build, capsys, tmp_path):
    monkeypatch.setattr(runtime, "metrics_dir", lambda: tmp_path / "metrics")
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    run = runtime.setup("03_flow_matching_2d", device="cpu", profile="gpu")
    assert "DRY RUN" in capsys.readouterr().out and run.metrics["dry_run_max_steps"] == 2
    monkeypatch.delenv(dryrun.MAX_STEPS_ENV)
    runtime.setup("03_flow_matching_2d", device="cpu", profile="gpu")
    assert "DRY RUN" not in capsys.readouterr().out


def test_records_what_a_step_costs(monkeypatch, build, tmp_path):
    """A recorded dry run writes one line per training (FLOPs of a linear layer: 2·B·in·out forward,
    twice that backward) and one per sampler call (calls of the full run)."""
    import json

    rec = tmp_path / "rec.jsonl"
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    monkeypatch.setenv(dryrun.RECORD_ENV, str(rec))
    net = nn.Linear(8, 4)
    train(net, lambda m, b, g: m(b).pow(2).mean(), lambda g: torch.randn(32, 8, generator=g),
          TrainConfig(steps=100, ema_decay=0.9), progress=False, desc="lin")
    ddpm = DDPM.from_schedule("linear", 20)
    model = Counting()
    ddpm.sample(model, (4, 2), generator=torch.Generator().manual_seed(0))
    lines = [json.loads(line) for line in rec.read_text().splitlines()]
    tr = [r for r in lines if r["kind"] == "train"]
    sa = [r for r in lines if r["kind"] == "sampler"]
    assert len(tr) == 1 and len(sa) == 1
    r = tr[0]
    assert r["desc"] == "lin" and r["parameters"] == 8 * 4 + 4 and r["full_steps"] == 100
    assert r["flops_per_step"] == 2 * 32 * 8 * 4 * 3 - 2 * 32 * 8 * 4  # forward, weight grad; no input grad
    mem = r["memory_bytes"]
    assert mem["weights"] == 36 * 4 and mem["gradients"] == 36 * 4 and mem["optimizer_state"] >= 2 * 36 * 4
    assert mem["ema"] == 36 * 4 and mem["batch"] == 32 * 8 * 4 and mem["saved_activations"] >= 32 * 8 * 4
    assert r["step_seconds"] > 0
    assert sa[0]["calls"] == 20 and sa[0]["calls_made"] == 2 and sa[0]["batch"] == 4


def test_a_resumed_training_runs_the_cap_again(monkeypatch, build, tmp_path):
    """08 continues its 1k-step model to 10k steps: in a dry run that is N more steps, not zero."""
    from nbhelpers.recipes.afhq import adopt_checkpoint

    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    first = _train(Counting(), steps=10, checkpoint=tmp_path / "a.pt")
    assert first.steps == 2
    cfg_long = TrainConfig(steps=100, lr=1e-2)
    longer = tmp_path / "b.pt"
    assert adopt_checkpoint(first.checkpoint, dryrun.redirect(longer), {"model": "Counting"}, cfg_long) == 2
    res = train(Counting(), lambda m, b, g: ((m(b, torch.zeros(len(b))) - b) ** 2).mean(),
                lambda g: torch.randn(16, 2, generator=g), cfg_long, checkpoint=longer, key={"model": "Counting"},
                progress=False)
    assert res.resumed_from == 2 and res.steps == 4 and len(res.losses) == 4


NET_GLOBAL = Counting()


def test_holds_network_through_a_global_name():
    """A notebook writes ``field = lambda x, t: flow(x, t)`` with ``flow`` a global of its namespace."""
    assert dryrun.holds_network(lambda x, t: NET_GLOBAL(x, t))
    assert not dryrun.holds_network(lambda x, t: torch.zeros_like(x))  # torch is a module: not searched


def test_one_budget_for_all_chunks(monkeypatch):
    """sample_from_noise and cfg_mnist.generate draw their samples in chunks: a dry run evaluates the
    network N times in all, at the full chunk size, and the result keeps its full size."""
    from nbhelpers.solvers import sample_from_noise

    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    net = Counting()
    sol = sample_from_noise(net, 1000, (2,), 10, chunk=100)
    assert net.calls == 2 and sol.x.shape == (1000, 2)
    wrapped = dryrun.budget(net)
    assert isinstance(wrapped, nn.Module) and next(wrapped.parameters()) is net.a  # the device is still found


def test_a_dry_run_records_its_metrics_apart(monkeypatch, build):
    """The capped run's numbers never overwrite build/metrics/<notebook>.json of a real run."""
    from nbhelpers.runtime import metrics_dir

    monkeypatch.delenv(dryrun.MAX_STEPS_ENV, raising=False)
    real = metrics_dir()
    assert real == build / "metrics"
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    capped = metrics_dir()
    assert capped != real and build / "dryrun" / "max-steps-2" in capped.parents


class LabelledCounting(Counting):
    """A conditional ε-network ``(x, t, y) ↦ a·x`` that records the batch of each call."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def forward(self, x, t, y=None):
        self.batches.append(x.shape[0])
        return super().forward(x, t, y)


def test_a_guided_sampler_call_is_one_budget_and_one_record(monkeypatch, build, tmp_path):
    """Guided sampling in chunks (:func:`nbhelpers.ddpm_sampling.guided_sample`, w > 0: one network call on [x; x]
    per step) spends one budget over all chunks and records once, at the guided call's batch: calls = the full
    run's T steps per chunk, each costing the doubled batch's FLOPs — not a second record for the inner network."""
    import json

    from nbhelpers.ddpm_sampling import guided_sample

    rec = tmp_path / "rec.jsonl"
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    monkeypatch.setenv(dryrun.RECORD_ENV, str(rec))
    net = LabelledCounting()
    out = guided_sample(DDPM.from_schedule("linear", 20), net, torch.tensor([0, 1, 0, 1, 1, 0]), 2.0, 2, shape=(2,),
                        chunk=3, generator=torch.Generator().manual_seed(0))
    assert out.x.shape == (6, 2) and net.batches == [6, 6]  # two evaluations of [x; x] for 3 labels, then zeros
    (r,) = [json.loads(line) for line in rec.read_text().splitlines()]
    assert r["kind"] == "sampler" and r["batch"] == 3 and r["calls"] == 2 * 20 and r["calls_made"] == 2
    assert r["shape"] == [3, 2]  # the sampler's state, not the doubled batch the network saw


def test_nested_sampler_calls_spend_the_outer_budget(monkeypatch):
    """A sampler called inside another (chunks) joins the outer call's budget scope; outside any sampler call the
    cap is off: ``capped`` returns the field itself and a notebook's own loop of ``p_step`` is not cut short."""
    monkeypatch.setenv(dryrun.MAX_STEPS_ENV, "2")
    net = Counting()
    field = lambda x, t: net(x, t)  # noqa: E731

    @dryrun.sampler
    def two_chunks():
        return [euler(field, torch.ones(4, 2), 0.0, 1.0, 10).x for _ in range(2)]

    first, second = two_chunks()
    assert net.calls == 2 and torch.equal(second, torch.ones(4, 2))  # the second chunk integrated zeros
    assert dryrun.capped(net) is net
    ddpm, x = DDPM.from_schedule("linear", 20), torch.ones(4, 2)
    for k in range(20, 15, -1):
        x = ddpm.p_step(net, x, k, generator=torch.Generator().manual_seed(k)).x_prev
    assert net.calls == 2 + 5
