"""Notebook 04's exercise: Figure 1's residual layer, checked against nbhelpers.models.unet.ResidualLayer with
shared weights. The right layer passes; each typical slip fails the case that isolates it, with the hint that
names it (and the cases that do not concern it pass); the weights are copied part by part, and a whole UNet runs
on the learner's layers with the same output."""
import json

import pytest
import torch
from torch import nn
from torch.nn.functional import silu

import nbhelpers as nb
from nbhelpers import exercises as ex
from nbhelpers.exercises import core
from nbhelpers.exercises import unet as exu
from nbhelpers.runtime import ROOT

NAME = "residual_layer"


class Right(nn.Module):
    """Figure 1's layer written out: h = Conv(BN(SiLU(x))) + MLP(emb), out = x + Conv(BN(SiLU(h)))."""

    def __init__(self, channels, emb_dim):
        super().__init__()
        self.norm1, self.conv1 = nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 3, padding=1)
        self.time_mlp = nn.Sequential(nn.Linear(emb_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, channels))
        self.norm2, self.conv2 = nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 3, padding=1)

    def first(self, x):
        return self.conv1(self.norm1(silu(x)))

    def second(self, h):
        return self.conv2(self.norm2(silu(h)))

    def embedded(self, emb):
        return self.time_mlp(emb)[:, :, None, None]

    def forward(self, x, emb):
        return x + self.second(self.first(x) + self.embedded(emb))


class NoTime(Right):
    def forward(self, x, emb):
        return x + self.second(self.first(x))  # the time embedding left out


class NoResidual(Right):
    def forward(self, x, emb):
        return self.second(self.first(x) + self.embedded(emb))  # x not added back


class TimeAfterSecondConv(Right):
    def forward(self, x, emb):
        return x + self.second(self.first(x)) + self.embedded(emb)  # added after the second convolution


class NormBeforeActivation(Right):
    def forward(self, x, emb):
        h = self.conv1(silu(self.norm1(x))) + self.embedded(emb)  # BN → SiLU instead of SiLU → BN
        return x + self.conv2(silu(self.norm2(h)))


class NormsSwapped(Right):
    def forward(self, x, emb):
        h = self.conv1(self.norm2(silu(x))) + self.embedded(emb)
        return x + self.conv2(self.norm1(silu(h)))


class OtherNames(nn.Module):
    def __init__(self, channels, emb_dim):
        super().__init__()
        self.block = nb.models.unet.ResidualLayer(channels, emb_dim)

    def forward(self, x, emb):
        return self.block(x, emb)


class Unwritten(nn.Module):
    def __init__(self, channels, emb_dim):
        super().__init__()
        raise NotImplementedError("build Figure 1's residual layer")


def _report(cls):
    report = ex.check(NAME, cls)
    return report, {r.case.split(":")[0]: r for r in report.results}


def _cases():
    return [c.name.split(":")[0] for c in ex.EXERCISES[NAME].cases()]


def test_the_exercise_is_registered_for_notebook_04_against_the_library_block():
    exercise = ex.EXERCISES[NAME]
    assert exercise.notebook == "04_unet_images" and ex.exercises_in("04_unet_images") == [NAME]
    assert exercise.reference_name == "nbhelpers.models.unet.ResidualLayer"
    assert issubclass(exercise.reference(), nb.models.unet.ResidualLayer)
    assert len(exercise.cases()) == 7


@pytest.mark.parametrize("cls", [Right, ex.EXERCISES[NAME].reference()], ids=["written out", "library"])
def test_the_right_layer_passes_every_case(cls):
    report, _ = _report(cls)
    assert report.passed, str(report)


@pytest.mark.parametrize("cls, failing, words", [
    (NoTime, {"what the time changes", "the whole layer at t = 0, 0.25, 0.5, 0.75, 1 (one per image), training mode "
              "(BatchNorm on the batch's statistics), against nbhelpers.models.unet.ResidualLayer with the same "
              "weights", "evaluation mode (BatchNorm on its running statistics, as when sampling)"},
     "t reaches the output only through time_mlp(emb)"),
    (NoResidual, None, "the residual connection is missing"),
    (TimeAfterSecondConv, None, "the time embedding goes between the two convolutions"),
    (NormBeforeActivation, None, "SiLU, then BatchNorm, then the 3×3 convolution"),
    (NormsSwapped, None, "SiLU, then BatchNorm, then the 3×3 convolution"),
], ids=["no time embedding", "no residual", "embedding after the second conv", "BN before SiLU", "norms swapped"])
def test_a_wrong_layer_fails_the_case_that_isolates_it_with_its_diagnosis(cls, failing, words):
    report, by_case = _report(cls)
    assert not report.passed and not report.not_implemented
    hit = [r for r in report.failures if words in r.hint]
    assert hit, f"no failing case says {words!r}:\n{report}"
    assert all(r.status == "fail" and r.kind == "values" for r in report.failures), str(report)
    assert by_case[_cases()[0]].passed, "the parts are Figure 1's: the first case passes"
    if failing is not None:
        assert {n for n, r in by_case.items() if not r.passed} == failing, str(report)


def test_each_slip_is_told_apart_by_the_cases_that_pass():
    """The residual case fails only without the residual; the 'where t enters' case only when t skips conv2;
    the time-difference case catches a missing embedding that every case with the MLP silent lets through."""
    names = _cases()
    residual, conv_path, enters, changes = names[1], names[2], names[3], names[4]
    outcome = {cls.__name__: {n: r.passed for n, r in _report(cls)[1].items()}
               for cls in (NoTime, NoResidual, TimeAfterSecondConv, NormBeforeActivation)}
    assert [outcome[c][residual] for c in outcome] == [True, False, True, True]
    assert [outcome[c][enters] for c in outcome] == [True, True, False, True]
    assert [outcome[c][conv_path] for c in outcome] == [True, False, True, False]
    assert not outcome["NoTime"][changes]


def test_a_layer_with_other_names_is_told_the_names_the_weights_go_into():
    report, by_case = _report(OtherNames)
    first = by_case[_cases()[0]]
    assert not first.passed and "norm1 = nn.BatchNorm2d(channels)" in first.hint and "time_mlp" in first.hint
    assert "[0, 0, 0, 0, 0, 810]" in first.got  # every parameter outside the named parts
    later = report.results[1:]
    assert later and all("your ResidualLayer has no module 'norm1'" in r.got and "it has: block" in r.got
                         for r in later), str(report)


def test_an_unwritten_layer_is_not_implemented_and_the_library_stands_in(capsys):
    report = ex.check(NAME, Unwritten)
    assert report.not_implemented, str(report)
    used = ex.use(NAME, Unwritten)
    assert used is ex.EXERCISES[NAME].reference() and core.standing_in(NAME)
    assert "comparing the library with itself" in core.comparison_note(NAME)
    out = capsys.readouterr().out
    assert "residual_layer: not implemented yet" in out and "nbhelpers.models.unet.ResidualLayer instead" in out
    assert ex.use(NAME, Right, quiet=True) is Right and core.comparison_note(NAME) == ""


def test_the_check_leaves_the_global_random_state_as_it_was():
    """A notebook's later draws do not depend on whether, or how often, the check ran."""
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    for cls in (Right, NoResidual, ex.EXERCISES[NAME].reference()):
        ex.check(NAME, cls)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_layer_like_copies_the_block_part_by_part_in_its_mode_dtype_and_device():
    torch.manual_seed(0)
    block = nb.models.unet.ResidualLayer(4, 6).double().eval()
    with torch.no_grad():
        block.block2[1].running_var.fill_(2.0)
    mine = exu.layer_like(Right, block)
    assert isinstance(mine, Right) and not mine.training and mine.conv1.weight.dtype == torch.float64
    assert torch.equal(mine.conv2.weight, block.block2[3].weight) and torch.equal(mine.norm2.running_var,
                                                                                  block.block2[1].running_var)
    assert mine.conv2.weight.data_ptr() != block.block2[3].weight.data_ptr(), "a copy, not shared storage"
    x, emb = torch.randn(3, 4, 5, 5, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    torch.testing.assert_close(mine(x, emb), block(x, emb), rtol=0, atol=1e-12)

    class Narrow(Right):
        def __init__(self, channels, emb_dim):
            super().__init__(channels, emb_dim)
            self.conv2 = nn.Conv2d(channels, channels, 1)  # 1×1 instead of 3×3

    with pytest.raises(ValueError, match=r"your conv2 does not hold what Figure 1's does"):
        exu.layer_like(Narrow, block)
    with pytest.raises(ValueError, match="Figure 1's: BatchNorm, one MLP per layer"):
        exu.layer_like(Right, nb.models.unet.ResidualLayer(8, 6, norm="group"))


def test_a_unet_on_the_learners_layers_computes_the_same_field():
    torch.manual_seed(0)
    net = nb.models.unet.UNet(nb.recipes.mnist.mnist_recipe("smoke").unet).eval()
    mine = exu.with_layer(net, Right)
    n_blocks = sum(isinstance(m, nb.models.unet.ResidualLayer) for m in net.modules())
    assert n_blocks == 3 * 2 + 3 + 3 * 2  # Figure 1: two per encoder and decoder, three in the bottleneck
    assert sum(isinstance(m, Right) for m in mine.modules()) == n_blocks
    assert not any(isinstance(m, nb.models.unet.ResidualLayer) for m in mine.modules())
    x, t = torch.randn(4, 1, 28, 28), torch.tensor([0.0, 0.3, 0.7, 1.0])
    with torch.no_grad():
        torch.testing.assert_close(mine(x, t), net(x, t), rtol=0, atol=1e-6)
        assert (exu.with_layer(net, NoResidual)(x, t) - net(x, t)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="no nbhelpers.models.unet.ResidualLayer"):
        exu.with_layer(nn.Linear(2, 2), Right)


def test_the_notebook_uses_the_layer_it_checks():
    cells = {c["id"]: "".join(c["source"]) for c in json.loads((ROOT / "notebooks" / "04_unet_images.ipynb")
                                                               .read_text())["cells"]}
    assert "**Exercise (4b) · `ResidualLayer`.**" in cells["ex-residual_layer-task"]
    assert cells["ex-residual_layer-check"].startswith('ResidualLayer = nb.exercises.use("residual_layer", '
                                                       'ResidualLayer)')
    for cid in ("residual-layer-demo", "residual-layer-samples"):
        assert "nb.exercises.unet.with_layer(" in cells[cid] and 'comparison_note("residual_layer")' in cells[cid]
