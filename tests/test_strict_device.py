"""The series on a device without float64 (Apple's MPS), checked on a CPU: ``nbhelpers.runtime.StrictDevice``.

MPS has no float64 at all: a float64 tensor can neither be made there nor moved there. The library does its
float64 work (DDPM tables, exact oracles, metrics, checks, the phase of a time encoding) inside
``runtime.exact()`` on ``runtime.exact_device(device)`` — the CPU for MPS — with inputs brought over by
``runtime.to_exact`` and results sent back by ``runtime.from_exact``. Under ``runtime.strict_device()`` a CPU
run fails where an MPS run would (float64 made from a tensor of the run's device, or put on a device given at
run time outside ``exact()``); its docstring says what it cannot see. Here the samplers, oracles, losses and
metrics of notebooks 03, 05, 06, 07 and 08 run under it at tiny sizes, removing one hop makes it fail, and one
whole notebook runs under it (``$NBHELPERS_STRICT_DEVICE=1``). Devices are never touched: the MPS queries are
monkeypatched.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from nbhelpers import ddpm_oracle
from nbhelpers import runtime
from nbhelpers.ddpm import DDPM, GMMEpsOracle
from nbhelpers.distributions import toy_gmm, two_pixel
from nbhelpers.guidance import CFGModel, drop_labels
from nbhelpers.metrics import toy
from nbhelpers.runtime import StrictDeviceError, exact, strict_device, to_exact
from tests.conftest import generator as _gen

ROOT = Path(__file__).resolve().parents[1]
DEVICE = torch.device("cpu")
"""The run's device: StrictDevice places what is sent there (and every tensor made before it was entered) on it."""


# --------------------------------------------------------------------------- where float64 work happens
def test_float64_work_stays_on_a_device_that_has_it_and_goes_to_the_cpu_from_mps():
    assert runtime.exact_device("cpu") == torch.device("cpu")
    assert runtime.exact_device("cuda:1") == torch.device("cuda:1")  # CUDA computes float64: no host hop per step
    assert runtime.exact_device("mps") == torch.device("cpu")
    assert runtime.exact_device(torch.device("mps", 0)) == torch.device("cpu")


def test_to_exact_widens_floats_keeps_steps_and_labels_and_from_exact_restores_the_dtype():
    x, k = torch.randn(3, 2), torch.tensor([1, 2, 3])
    with exact():
        xd, kd = to_exact(x), to_exact(k)
        assert xd.dtype == torch.float64 and torch.equal(xd, x.double())
        assert kd.dtype == torch.int64 and torch.equal(kd, k)
        assert to_exact(k, torch.float64).dtype == torch.float64
        assert to_exact(x, x.dtype).dtype == torch.float32
        back = runtime.from_exact(xd * 2, x)
    assert back.dtype == torch.float32 and back.device == x.device and torch.equal(back, 2 * x)


def test_ddpm_keeps_its_float64_tables_on_the_cpu_for_mps():
    d = DDPM.from_schedule("cosine", 20)
    e = d.to("mps")  # no MPS needed: the tables never go there
    assert all(getattr(e, n).device.type == "cpu" and getattr(e, n).dtype == torch.float64 for n in DDPM.BUFFERS)
    assert torch.equal(e.sample(lambda x, t: torch.zeros_like(x), (4, 2), generator=_gen()).x,
                       d.sample(lambda x, t: torch.zeros_like(x), (4, 2), generator=_gen()).x)


def test_a_checkpoint_for_mps_loads_on_the_cpu(tmp_path):
    from nbhelpers.checkpoints import load_checkpoint, save_checkpoint

    path = tmp_path / "c.pt"
    save_checkpoint(path, {"losses": torch.tensor([0.5, 0.25], dtype=torch.float64), "model": {"w": torch.ones(2)}})
    state = load_checkpoint(path, map_location="mps")  # its loss history is float64
    assert state["losses"].device.type == "cpu" and state["model"]["w"].device.type == "cpu"


# --------------------------------------------------------------------------- precision and profile on a Mac
@pytest.fixture
def on_a_mac(monkeypatch):
    """This machine answering as an Apple-silicon Mac does: MPS available, no CUDA."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    monkeypatch.delenv(runtime.PROFILE_ENV, raising=False)


def test_auto_picks_mps_with_float32_the_cpu_profile_and_float64_on_the_host(on_a_mac):
    dev = runtime.get_device("auto")
    assert dev.type == "mps"
    assert runtime.amp_dtype(dev) is None  # autocast off unless asked for
    assert isinstance(runtime.autocast(dev), type(runtime.autocast("cpu")))  # the same no-op context as the CPU's
    assert runtime.amp_dtype(dev, "bf16") == torch.bfloat16 and runtime.amp_dtype(dev, "fp16") == torch.float16
    assert runtime.resolve_profile("auto", dev) == "cpu"
    assert runtime.resolve_profile("auto") == "cpu"
    assert runtime.exact_device(dev) == torch.device("cpu")


def test_on_a_mac_importing_nbhelpers_lets_a_missing_operator_fall_back_to_the_cpu(monkeypatch):
    import importlib
    import os
    import sys

    import nbhelpers

    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    importlib.reload(nbhelpers)
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"
    monkeypatch.setenv("PYTORCH_ENABLE_MPS_FALLBACK", "0")  # the user's own choice stays
    importlib.reload(nbhelpers)
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "0"


def test_cuda_keeps_its_per_card_choice(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert runtime.amp_dtype("cuda") == torch.float16
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert runtime.amp_dtype("cuda") == torch.bfloat16


# --------------------------------------------------------------------------- the strict mode itself
def test_strict_mode_stops_float64_made_from_the_run_s_tensors():
    x, y = torch.randn(4, 2), torch.tensor([0, 1, 1, 0])
    with strict_device():
        host = torch.ones(2, dtype=torch.float64)  # made without a device: the host's
        for make in (lambda: x.double(), lambda: torch.as_tensor(x, dtype=torch.float64), lambda: x * host):
            with pytest.raises(StrictDeviceError, match="on the run's device"):
                make()
        with exact(), pytest.raises(StrictDeviceError, match="to_exact"):  # the region alone moves nothing
            x.to(torch.float64)
        mask = y[:, None] == torch.arange(2, device=DEVICE)
        with exact(), pytest.raises(StrictDeviceError, match="torch.bool"):  # a label mask built on the device
            to_exact(x).masked_fill(~mask, 0.0)
        with exact():
            assert to_exact(x).sum().dtype == torch.float64
        # on the host, float64 work passes: what .cpu() brings over, what is made without a device
        assert x.cpu().double().dtype == torch.float64 and torch.arange(3).double().sum() == 3
        with pytest.raises(StrictDeviceError, match=r"made a torch\.float64 tensor from a torch\.float32 tensor .* on the "
                                                   r"run's device"):
            x.double()  # .cpu() above left x itself on the device


def test_strict_mode_stops_float64_sent_to_a_device_outside_exact():
    x, table = torch.randn(4, 2), torch.linspace(0.1, 0.9, 5, dtype=torch.float64)  # made on the host: allowed

    class Buffered(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("freqs", table.clone())

    with strict_device():
        for send in (lambda: table.to(x.device), lambda: torch.zeros(3, dtype=torch.float64, device=x.device),
                     lambda: Buffered().to(x.device)):
            with pytest.raises(StrictDeviceError, match="device it was given"):
                send()
        assert (table[1:] - table[:-1]).dtype == torch.float64  # float64 work on host tables passes
        assert table.to(x)[2].dtype == torch.float32  # .to(x): x's dtype, on x's device
        with exact():
            assert table.to(runtime.exact_device(x.device)).dtype == torch.float64


# --------------------------------------------------------------------------- 03: flow matching in 2D
def test_notebook_03_training_sampling_and_scoring_under_the_strict_mode(tmp_path):
    from nbhelpers import losses, solvers
    from nbhelpers.models.mlp import TimeMLP
    from nbhelpers.paths import GaussianPath
    from nbhelpers.recipes import flow_2d
    from nbhelpers.training import TrainConfig, train

    gmm, path = toy_gmm(), GaussianPath("linear")
    with strict_device():
        torch.manual_seed(0)
        for embed in ("none", "sinusoidal", "fourier"):
            model = TimeMLP(dim=2, hidden=16, depth=2, time_embedding=embed)
            losses.flow_matching_loss(model, gmm.sample(32, generator=_gen()), path, _gen(1)).backward()
        config = TrainConfig(steps=3, lr=1e-3, ema_decay=0.9, seed=0, checkpoint_every=2)
        ckpt = tmp_path / "flow.pt"
        for _ in range(2):  # trained, then loaded from the checkpoint cache
            res = train(model, lambda m, z, g: losses.flow_matching_loss(m, z, path, g),
                        lambda g: gmm.sample(32, generator=g), config, checkpoint=ckpt, key={"t": 1}, progress=False)
        assert res.loaded_from_cache
        flow = res.sampling_model
        oracle = lambda x, t: gmm.marginal_velocity(x, t, path.schedule)  # noqa: E731
        x0 = torch.randn(200, 2, generator=_gen(2)).to(DEVICE)
        x_euler = solvers.euler(flow, x0, 0.0, 1.0, 4, return_trajectory=True).x
        x_heun = solvers.heun(oracle, x0, 0.0, 1.0, 4).x
        solvers.sample_from_noise(flow, 8, (2,), 3, method="heun", seed=0)
        floor = toy.energy_noise_floor(gmm, 50, generator=_gen(3), repeats=2, n_pairs=1000)
        score = toy.score_against_truth(x_heun, gmm, generator=_gen(4), n=50, floor=floor)
        score.as_dict(), score.summary(), toy.ratio_separation(score, 1.0)
        toy.mmd(x_euler, x_heun), toy.sliced_wasserstein(x_euler, x_heun, n_projections=8, generator=_gen(5))
        toy.total_variation(toy.mode_weights(x_heun, gmm.means), gmm.weights)
        toy.posterior_mode_fractions(x_heun, gmm), toy.gmm_log_likelihood(x_heun, gmm)
        toy.noise_floor(toy.energy_distance, gmm, 20, generator=_gen(6), repeats=2)
        study = flow_2d.nt_study(flow, x0[:100], x_heun[:100], [1, 2], [1], gmm, 50, floor, score_seed=7)
        flow_2d.steps_to_floor(study, "euler")


# --------------------------------------------------------------------------- 05: score SDE
def test_notebook_05_losses_reverse_sde_and_judge_under_the_strict_mode():
    from nbhelpers import losses, sde as sde_module, solvers
    from nbhelpers.exercises import EXERCISES
    from nbhelpers.models.mlp import ScoreFromNoise, TimeMLP
    from nbhelpers.paths import GaussianPath
    from nbhelpers.recipes import score_sde as r05

    gmm, path = toy_gmm(), GaussianPath("linear")
    vp = sde_module.VPSDE(beta_min=0.1, beta_max=20.0)
    step = EXERCISES["vp_reverse_step"].reference()
    with strict_device():
        torch.manual_seed(0)
        u_net = TimeMLP(dim=2, hidden=16, depth=2)
        s_net = ScoreFromNoise(TimeMLP(dim=2, hidden=16, depth=2), lambda t: path.schedule(t).beta)
        z = gmm.sample(64, generator=_gen())
        losses.vpsde_dsm_loss(u_net, z, vp, _gen(1)).backward()
        losses.score_matching_loss(s_net, z, path, _gen(2), weighting="beta2", t_max=0.999).backward()
        x1 = vp.prior_sample((100, 2), generator=_gen(3))
        traj = r05.reverse_sample(step, vp, u_net, x1, 1e-3, 5, _gen(4), return_trajectory=True)
        for method in r05.VPMethod:
            r05.vp_sample(method, vp, step, u_net, x1, 1e-3, 4, lambda: _gen(5))
        solvers.euler_maruyama(sde_module.FlowScoreSDE(u_net, s_net, sigma=0.5), None, x1, 0.0, 1.0, 4,
                               generator=_gen(6))
        floor = toy.energy_noise_floor(gmm, 50, generator=_gen(7), repeats=2, n_pairs=1000)
        r05.TruthJudge(gmm, floor, 50, ref_seed=8).score(traj.x)
        r05.score_flow_agreement(s_net, u_net, path, z[:16], torch.tensor([0.2, 0.8]),
                                 lambda sched, u, x, t: GaussianPath(sched).velocity_to_score(u, x, t), _gen(9), "cpu")


# --------------------------------------------------------------------------- 06: two-pixel DDPM and guidance
def test_notebook_06_ddpm_oracle_and_guidance_under_the_strict_mode():
    from nbhelpers.models.two_pixel import TwoPixelUNet
    from nbhelpers.recipes import two_pixel as tp

    gmm = two_pixel()
    with strict_device():
        d = DDPM.from_schedule("cosine", 10)
        torch.manual_seed(0)
        net = TwoPixelUNet(num_classes=2, channels=(8, 32), embed_dim=16)
        x, y = gmm.sample_with_labels(64, generator=_gen())
        for kind in ("l2", "l1", "huber"):
            d.loss(net, x, drop_labels(y, 0.2, 2, _gen(1)), kind=kind, generator=_gen(2)).backward()
        oracle = GMMEpsOracle(d, gmm)
        for model in (oracle, CFGModel(oracle, 1.5, 2), CFGModel(net, 1.0, 2)):
            for sigma in ("posterior", "beta"):
                out = d.sample(model, (32, 2), y=y[:32], generator=_gen(3), sigma=sigma, return_steps=[10, 5, 0])
            d.ddim_sample(model, (32, 2), 4, eta=1.0, y=y[:32], generator=_gen(4))
        d.sample(oracle, x_start=x[:8], start_step=4, generator=_gen(5))
        k = d.sample_steps(8, _gen(6))
        d.q_posterior(x[:8], d.q_sample(x[:8], k, generator=_gen(7)), k)
        d.predict_x0(x[:8], k, oracle(x[:8], d.time(k, x[:8])))
        truth = tp.noised_two_pixel(gmm, d, 5)
        floor = toy.energy_noise_floor(truth, 16, generator=_gen(8), repeats=2, n_pairs=1000)
        tp.TruthScorer(gmm, floor, 16, seed=0)(out.x)
        x_T = torch.randn(8, 2, generator=_gen(9)).to(DEVICE)
        tp.same_noise_two_labels(d, CFGModel(oracle, 1.0, 2), x_T, gmm.means, seed=1)
        tp.guidance_sweep(d, lambda w: CFGModel(oracle, w, 2), x_T, torch.arange(8, device=DEVICE) % 2, (0.0, 1.0),
                          gmm.means, seed=2)


# --------------------------------------------------------------------------- 07: MNIST with guidance
def test_notebook_07_encoding_training_sampling_and_scores_under_the_strict_mode():
    from nbhelpers.data import Batch
    from nbhelpers.metrics.images import MNISTClassifier, MNISTEvaluator, mean_pairwise_distance
    from nbhelpers.recipes import cfg_mnist

    p = cfg_mnist.preset("ddpm_paper", "smoke")  # seed 003's float64 time encoding
    with strict_device():
        torch.manual_seed(0)
        model = cfg_mnist.build_model(p, device="cpu")  # .to(device) meets no float64 buffer
        d = DDPM.from_schedule("cosine", 6)
        g = _gen()
        x, y = (torch.rand(2, 1, 28, 28, generator=g) * 2 - 1).to(DEVICE), torch.tensor([3, 7], device=DEVICE)
        cfg_mnist.cfg_loss(d, 0.5)(model, Batch(x, y), g).backward()
        model.eval()
        out = cfg_mnist.generate(d, model, y, 1.0, generator=_gen(1), return_steps=[6, 0])
        cfg_mnist.generate(d, model, y, 0.0, sampler="ddim", n_steps=2, eta=1.0, generator=_gen(2))
        cfg_mnist.edit(d, model, x, y, 0.5, guidance_w=1.0, generator=_gen(3))
        cfg_mnist.forward_process(d, x, [0, 3, 6], generator=_gen(4))
        four, labels = torch.cat([x, out.x.to(DEVICE)]), torch.tensor([3, 7, 3, 7], device=DEVICE)
        ev = MNISTEvaluator(MNISTClassifier(width=4, feature_dim=8), four, four.flip(0), labels)
        ev.evaluate(four), ev.accuracy(four, labels), ev.diversity(four, labels), ev.reference_diversity(per_class=2)
        mean_pairwise_distance(torch.randn(5, 8, generator=_gen(5)).to(DEVICE))


# --------------------------------------------------------------------------- 08: AFHQ DDPM
def test_notebook_08_training_sampling_and_copy_check_under_the_strict_mode(tmp_path):
    from nbhelpers.metrics.nearest import copy_check
    from nbhelpers.recipes.afhq import diffusion_loss, make_diffusion
    from nbhelpers.training import TrainConfig, train

    with strict_device():
        torch.manual_seed(0)
        dif = make_diffusion(image_size=8, time_steps=4, unet_dim=4)
        data = (torch.rand(6, 3, 8, 8, generator=_gen()) * 2 - 1).to(DEVICE)

        def batch(g):
            x0 = data[torch.randint(0, 6, (2,), generator=g)]
            return x0, dif.ddpm.sample_steps(2, g), runtime.randn(x0.shape, g)

        for _ in range(2):
            res = train(dif, diffusion_loss, batch, TrainConfig(steps=2, lr=1e-3, seed=0), checkpoint=tmp_path / "a.pt",
                        key={"afhq": 1}, progress=False)
        dif.eval()
        samples = dif.sample(3, generator=_gen(1))
        dif.p_sample_loop(samples, generator=_gen(2), start_step=2, return_steps=[2, 0])
        copy_check(samples, data, n_train=4, generator=_gen(3))
        assert res.loaded_from_cache


# --------------------------------------------------------------------------- removing a hop fails
def _as_on_the_device(x, dtype=None):
    """A hop removed: float64 made where the input lives (on MPS: its device, which has none)."""
    if not isinstance(x, torch.Tensor):
        return x.to(dtype=torch.float64)
    return x.to(torch.float64) if x.is_floating_point() or dtype is not None else x


def test_evaluating_the_oracle_in_float64_on_the_input_s_device_fails(monkeypatch):
    d = DDPM.from_schedule("cosine", 10)
    oracle = GMMEpsOracle(d, two_pixel())
    sample = lambda: d.sample(oracle, (16, 2), generator=_gen()).x  # noqa: E731
    with strict_device():
        kept = sample()
    monkeypatch.setattr(ddpm_oracle, "to_exact", _as_on_the_device)
    assert torch.equal(sample(), kept)  # on the CPU the numbers are the same: only the mode tells
    with strict_device(), pytest.raises(StrictDeviceError, match="on the run's device"):
        sample()


def test_a_metric_or_an_encoding_without_its_hop_fails(monkeypatch):
    from nbhelpers.models import embeddings
    from nbhelpers.recipes import cfg_mnist

    x, t = torch.randn(50, 2, generator=_gen()), torch.rand(8, generator=_gen(1))
    enc = cfg_mnist.PaperTimeEncoding(T=100, n_freqs=4)
    monkeypatch.setattr(toy, "to_exact", _as_on_the_device)
    with strict_device(), pytest.raises(StrictDeviceError, match="on the run's device"):
        toy.energy_distance(x, x + 1)
    monkeypatch.setattr(embeddings, "to_exact", _as_on_the_device)
    with strict_device(), pytest.raises(StrictDeviceError, match="on the run's device"):
        enc(t)
    monkeypatch.undo()
    monkeypatch.setattr(cfg_mnist.presets, "exact", lambda: __import__("contextlib").nullcontext())
    with strict_device(), pytest.raises(StrictDeviceError, match="device it was given"):
        cfg_mnist.PaperTimeEncoding(T=100, n_freqs=4)(t)  # its float64 frequencies sent over outside exact()


# --------------------------------------------------------------------------- a whole notebook
def test_notebook_06_runs_whole_under_the_strict_mode(tmp_path, monkeypatch):
    """``$NBHELPERS_STRICT_DEVICE=1`` puts the kernel under StrictDevice from ``nb.setup`` on (a cell that makes
    float64 from a tensor on ``run.device`` fails); then the smoke run of notebook 06 — oracle, DDPM, guidance,
    scoring, its exercise solutions — passes under it (papermill raises on the first cell that fails)."""
    import nbformat
    import papermill as pm

    for var, value in ((runtime.PROFILE_ENV, "smoke"), (runtime.STRICT_DEVICE_ENV, "1"), (runtime.DEVICE_ENV, "cpu"),
                       (runtime.OUTPUT_ENV, str(tmp_path))):
        monkeypatch.setenv(var, value)
    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import torch, nbhelpers as nb\nrun = nb.setup('strict_probe')\ntorch.ones(2, device=run.device).double()")])
    nbformat.write(probe, tmp_path / "probe.ipynb")
    with pytest.raises(pm.PapermillExecutionError, match="StrictDeviceError"):
        pm.execute_notebook(str(tmp_path / "probe.ipynb"), str(tmp_path / "probe.out.ipynb"), kernel_name="python3",
                            progress_bar=False, cwd=str(tmp_path))
    pm.execute_notebook(str(ROOT / "notebooks" / "06_two_pixel_ddpm_cfg.ipynb"), str(tmp_path / "06.ipynb"),
                        kernel_name="python3", progress_bar=False, cwd=str(ROOT / "notebooks"))
    assert (tmp_path / "build" / "metrics" / "06_two_pixel_ddpm_cfg.json").is_file()
