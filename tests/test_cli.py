"""The project's command lines speak one dialect (nbhelpers.cli): every flag has a dashed spelling,
underscored twins keep working, on/off flags come in --x/--no-x pairs; and the AFHQ trainer meets
every expected failure with one ``error:`` line on stderr, exit status 2, no traceback and no
config.json left behind."""
import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import benchmarks.__main__ as bench
import nbhelpers.runner as runner
from benchmarks import dryrun, peer_diffusers, peer_lucidrains, roofline, variants04
from nbhelpers import cli
from nbhelpers.recipes import afhq
from nbhelpers.runtime import ROOT

PARSERS = {
    "nbhelpers.afhq": afhq.build_parser,
    "benchmarks": bench.build_parser,
    "benchmarks.peer_diffusers": peer_diffusers.build_parser,
    "benchmarks.peer_lucidrains": peer_lucidrains.build_parser,
    "benchmarks.roofline": roofline.build_parser,
    "benchmarks.dryrun": dryrun.build_parser,
    "benchmarks.variants04": variants04.build_parser,
}
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9_-]*")


def _help_of(build, capsys) -> str:
    with pytest.raises(SystemExit, match=r"^0$") as info:
        build().parse_args(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def _no_underscore_only(help_text: str) -> None:
    flags = set(FLAG.findall(help_text))
    assert flags, "no flags found in the help text"
    lonely = sorted(f for f in flags if "_" in f and f.replace("_", "-") not in flags)
    assert not lonely, f"flags only spelled with underscores: {lonely}"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_shows_no_underscore_only_flag(name, capsys):
    text = _help_of(PARSERS[name], capsys)
    assert text.startswith(f"usage: python -m {name}")  # run by python -m: the usage says so
    _no_underscore_only(text)
    assert cli.underscore_only_flags(PARSERS[name]()) == []


def test_runner_help_shows_no_underscore_only_flag(capsys):
    with pytest.raises(SystemExit, match=r"^0$") as info:
        runner.main(["--help"])
    assert info.value.code == 0
    _no_underscore_only(capsys.readouterr().out)


@pytest.mark.parametrize("module, argv, dest, value", [
    (peer_lucidrains, ["--no-write"], "no_write", True),
    (peer_lucidrains, ["--no_write"], "no_write", True),  # the older spelling
    (peer_diffusers, ["--no-write"], "no_write", True),
    (peer_diffusers, ["--no_write"], "no_write", True),
    (peer_diffusers, ["--steps-per-round", "4"], "steps_per_round", 4),
    (peer_diffusers, ["--steps_per_round", "4"], "steps_per_round", 4),
    (bench, ["--profile", "smoke"], "profile", "smoke"),
])
def test_benchmark_flags_parse_in_both_spellings(module, argv, dest, value):
    assert getattr(module.build_parser().parse_args(argv), dest) == value


@pytest.mark.parametrize("module, argv, words", [
    (peer_lucidrains, ["--rounds", "0"], ["rounds", ">= 1"]),
    (peer_diffusers, ["--batch", "-3"], ["batch", ">= 1"]),
    (peer_diffusers, ["--threads", "two"], ["threads", "integer"]),
    (bench, ["--profile", "fast"], ["smoke", "cpu", "gpu"]),
])
def test_benchmark_bad_values_name_the_flag(module, argv, words, capsys):
    with pytest.raises(SystemExit, match=r"^2$") as info:
        module.build_parser().parse_args(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words) and "Traceback" not in err


# =========================================================================== AFHQ: spellings
@pytest.mark.parametrize("dashed, underscored", [
    (["--image-size", "16"], ["--image_size", "16"]),
    (["--save-and-sample-every", "7"], ["--save_and_sample_every", "7"]),
    (["--no-progress"], ["--no_progress"]),
    (["--fid"], ["--fid", "True"]),  # seed 004 writes `--fid` as a flag; `--fid True` kept working
    (["--fid", "--no-fid", "--progress"], ["--fid", "True", "--fid", "false", "--progress", "on"]),
    (["--visualize"], ["--visualize", "yes"]),
])
def test_afhq_dashed_and_underscored_spellings_agree(dashed, underscored):
    assert afhq.parse_args(dashed) == afhq.parse_args(underscored)
    if dashed[-1] != "--progress":
        assert afhq.parse_args(dashed) != afhq.parse_args([])


def test_afhq_switch_pairs_and_a_value_after_no_is_an_error(capsys):
    assert afhq.parse_args(["--fid", "--no-fid"]).fid is False
    assert afhq.parse_args(["--no-visualize", "--visualize"]).visualize is True
    with pytest.raises(SystemExit, match=r"^2$"):
        afhq.parse_args(["--no-fid", "True"])
    assert "--no-fid takes no value" in capsys.readouterr().err


def test_afhq_version_and_invoked_name(capsys, monkeypatch):
    from nbhelpers import __version__

    with pytest.raises(SystemExit, match=r"^0$") as info:
        afhq.build_parser().parse_args(["--version"])
    assert info.value.code == 0 and __version__ in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/nbhelpers-afhq"])
    assert afhq.build_parser().format_usage().startswith("usage: nbhelpers-afhq ")
    monkeypatch.setattr(sys, "argv", [str(ROOT / "nbhelpers" / "afhq.py")])
    assert afhq.build_parser().format_usage().startswith("usage: python -m nbhelpers.afhq ")


def test_afhq_help_groups_are_for_users(capsys):
    text = _help_of(afhq.build_parser, capsys)
    titles = re.findall(r"^(\S[^\n]*):$", text, flags=re.M)
    assert titles[1:] == ["data", "model and training", "saving, sampling and evaluation"]
    assert "seed 004" not in text


def test_afhq_table1_has_the_thirteen_flags_with_their_defaults():
    rows = afhq.table1()
    assert [r["flag"] for r in rows] == ["--" + d.replace("_", "-") for d in afhq.TABLE1_FLAGS]
    assert len(rows) == 13
    d = afhq.AFHQConfig()
    by_flag = {r["flag"]: r for r in rows}
    assert by_flag["--image-size"]["default"] == str(d.image_size) and by_flag["--image-size"]["also"] == "--image_size"
    assert by_flag["--fid"]["also"] == "--no-fid, --fid True/False"
    assert by_flag["--learning-rate"]["default"] == str(d.learning_rate) and by_flag["--fid"]["default"] == "off"
    assert all(r["help"] and "%(" not in r["help"] for r in rows)


# =========================================================================== AFHQ: expected failures
TINY = ["--image-size", "8", "--batch-size", "4", "--time-steps", "3", "--unet-dim", "4", "--device", "cpu",
        "--no-progress", "--train-steps", "1", "--save-and-sample-every", "1"]


@pytest.fixture(scope="module")
def cats(tmp_path_factory) -> Path:
    """afhq/train/cat with 6 random 8×8 PNGs."""
    folder = tmp_path_factory.mktemp("afhq") / "train" / "cat"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder.parent


def _garbage_images(tmp: Path) -> list[str]:
    folder = tmp / "bad" / "train" / "cat"
    folder.mkdir(parents=True)
    (folder / "0.png").write_bytes(b"not a png at all")
    return ["--data-path", str(folder.parent)]


def _file_as_save_folder(tmp: Path) -> list[str]:
    (tmp / "out").write_text("a file")
    return []


def _save_folder_under_a_file(tmp: Path) -> list[str]:
    (tmp / "blocker").write_text("a file")
    return ["--save-folder", str(tmp / "blocker" / "out")]


def _garbage_checkpoint_resumed(tmp: Path) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "model.pt").write_bytes(b"\x00garbage" * 10)
    return []


def _truncated_load_path(tmp: Path) -> list[str]:
    (tmp / "m.pt").write_bytes(b"PK\x03\x04")
    return ["--load-path", str(tmp / "m.pt")]


def _empty_load_path(tmp: Path) -> list[str]:
    (tmp / "m.pt").write_bytes(b"")
    return ["--load_path", str(tmp / "m.pt")]


def _missing_load_path(tmp: Path) -> list[str]:
    return ["--load-path", str(tmp / "nowhere" / "m.pt")]


def _not_a_checkpoint(tmp: Path) -> list[str]:
    import torch

    torch.save({"weights": torch.zeros(2)}, tmp / "m.pt")
    return ["--load-path", str(tmp / "m.pt")]


def _offline_download(tmp: Path, monkeypatch) -> list[str]:
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("urllib.request.urlopen", offline)
    return ["--download", "--data-path", str(tmp / "dl")]


def _read_only_save_folder(tmp: Path, monkeypatch) -> list[str]:
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")  # what a read-only folder gives (root ignores chmod)

    monkeypatch.setattr(afhq.trainer.tempfile, "TemporaryFile", refuse)
    return []


def _garbage_archive(tmp: Path, monkeypatch) -> list[str]:
    (tmp / "dl").mkdir()
    (tmp / "dl" / "afhq_v1.zip").write_bytes(b"half a download")  # present: no network needed
    return ["--download", "--data-path", str(tmp / "dl")]


def _garbage_fid_history(tmp: Path) -> list[str]:
    (tmp / "out").mkdir()
    (tmp / "out" / "model.fid.json").write_text("{not json")
    return []


FAILURES = {
    "read-only save folder": (_read_only_save_folder, ["cannot be written", "Permission denied", "--save-folder"]),
    "garbage AFHQ archive": (_garbage_archive, ["afhq_v1.zip", "damaged or not the published file", "download it again"]),
    "garbage FID history": (_garbage_fid_history, ["model.fid.json", "delete it"]),
    "missing data folder": (lambda tmp: ["--data-path", str(tmp / "nothing")], ["--data_path", "nothing"]),
    "unreadable image": (_garbage_images, ["0.png"]),
    "save folder is a file": (_file_as_save_folder, ["is a file", "--save-folder"]),
    "save folder under a file": (_save_folder_under_a_file, ["lies under the file", "blocker", "--save-folder"]),
    "garbage checkpoint on auto-resume": (_garbage_checkpoint_resumed, ["model.pt", "delete it"]),
    "truncated --load-path": (_truncated_load_path, ["m.pt", "--load-path"]),
    "empty --load-path": (_empty_load_path, ["m.pt", "--load-path"]),
    "missing --load-path": (_missing_load_path, ["m.pt", "does not exist"]),
    "foreign --load-path": (_not_a_checkpoint, ["m.pt", "not a checkpoint"]),
    "offline --download": (_offline_download, ["download", "name resolution", "without --download"]),
}


@pytest.mark.parametrize("case", sorted(FAILURES))
def test_afhq_expected_failure_is_one_line_and_exit_2(case, cats, tmp_path, capsys, monkeypatch):
    make, words = FAILURES[case]
    needs_patch = make in (_offline_download, _read_only_save_folder, _garbage_archive)
    extra = make(tmp_path, monkeypatch) if needs_patch else make(tmp_path)
    out_existed = (tmp_path / "out").exists()
    argv = ["--data-path", str(cats), "--save-folder", str(tmp_path / "out"), *TINY, *extra]
    assert afhq.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    leftovers = list(tmp_path.rglob("config.json"))
    assert leftovers == [], leftovers  # failed before training: no config.json
    if not out_existed:
        assert not (tmp_path / "out").exists()  # nor an empty save folder


def test_afhq_success_writes_config_and_reports_training_speed(cats, tmp_path, capsys):
    out = tmp_path / "ok"
    assert afhq.main(["--data-path", str(cats), "--save-folder", str(out), *TINY, "--train-steps", "2"]) == 0
    text = capsys.readouterr().out
    assert (out / "config.json").is_file() and (out / "model.pt").is_file()
    assert "steps/s of training" in text


def test_afhq_steps_per_second_count_training_time_only(cats, tmp_path, capsys):
    import time

    def slow_hook(step, loss):  # stands in for sampling and FID: time outside training
        time.sleep(0.4)

    cfg = afhq.parse_args(["--data-path", str(cats), "--save-folder", str(tmp_path / "t"), *TINY, "--train-steps", "3"])
    t0 = time.perf_counter()
    res = afhq.train_afhq(cfg, on_step=slow_hook)
    wall = time.perf_counter() - t0
    assert res.sampling_seconds >= 3 * 0.4
    assert res.seconds <= wall - 3 * 0.4
    assert res.steps_per_s == pytest.approx(3 / res.seconds)
    assert "s sampling" in capsys.readouterr().out


def test_afhq_cli_process_exits_2_without_traceback(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "nbhelpers.afhq", "--data-path", str(tmp_path / "none"),
                           "--save-folder", str(tmp_path / "out"), "--device", "cpu"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
    assert not (tmp_path / "out" / "config.json").exists()
