"""The headless runner: refuses undeclared parameters before running anything, says what it is about to
run and how long that took last time, reports progress, and keeps the kernel's own log off the terminal."""
import io
import json

import nbformat
import pytest

from nbhelpers import runner
from nbhelpers.runner import Progress, check_parameters, declared_parameters, expected_time, format_duration, list_notebooks


def test_declared_parameters_come_from_the_parameters_cell():
    for name in list_notebooks():
        declared = declared_parameters(name)
        assert {"device", "profile", "seed"} <= set(declared), name


def test_undeclared_parameter_is_refused_naming_the_declared_ones():
    name = list_notebooks()[0]
    with pytest.raises(ValueError, match="'epoch'") as err:
        check_parameters(name, {"epoch": 3, "seed": 1})
    msg = str(err.value)
    assert "'epoch'" in msg and "'seed'" not in msg.split(";")[0]
    assert all(p in msg for p in declared_parameters(name)) and "\n" not in msg


def test_runner_refuses_before_executing_anything(monkeypatch, capsys):
    ran = []
    monkeypatch.setattr(runner, "run_notebook", lambda *a, **k: ran.append(a))
    # checked for every chosen notebook first: a typo must not cost the runs before the notebook that lacks it
    with pytest.raises(SystemExit, match=r"^2$") as exit_:
        runner.main(["--notebooks", "01,02", "-p", "epoch", "3"])
    assert exit_.value.code == 2 and ran == []
    err = capsys.readouterr().err
    first = list_notebooks()[0]
    assert f"{first} declares no parameter 'epoch'; its parameters are: {', '.join(declared_parameters(first))}" in err


def test_flags_are_dashed():
    ap_help = io.StringIO()
    with pytest.raises(SystemExit, match=r"^0$"), pytest.MonkeyPatch.context() as mp:
        mp.setattr("sys.stdout", ap_help)
        runner.main(["--help"])
    text = ap_help.getvalue()
    for flag in ("--profile", "--device", "--notebooks", "-p NAME VALUE, --parameter NAME VALUE"):
        assert flag in text
    assert "--no_" not in text


def test_format_duration_uses_the_unit_a_reader_expects():
    assert format_duration(13.0) == "13 s"
    assert format_duration(151.3) == "2.5 min"
    assert format_duration(799.2) == "13.3 min"
    assert format_duration(3 * 3600) == "3.0 h"


def _result(tmp_path, notebook, profile, machine, wall, status="ok"):
    payload = {"kind": "notebook", "notebook": notebook, "profile": profile, "machine_tag": machine,
               "status": status, "wall_s": wall, "date": "2026-01-01 00:00:00"}
    (tmp_path / f"{notebook}__{profile}__{machine}.json").write_text(json.dumps(payload))


def test_expected_time_prefers_this_machine(tmp_path):
    _result(tmp_path, "04_x", "cpu", "cpu2", 800.0)
    _result(tmp_path, "04_x", "cpu", "cpu8", 300.0)
    _result(tmp_path, "04_x", "smoke", "cpu2", 20.0, status="failed")
    assert expected_time("04_x", "cpu", tmp_path, machine="cpu8").seconds == 300.0
    assert expected_time("04_x", "cpu", tmp_path, machine="h100").machine == "cpu2"
    assert expected_time("04_x", "smoke", tmp_path) is None  # a failed run is no estimate
    assert expected_time("04_x", "gpu", tmp_path) is None


def test_progress_lines_and_heartbeat():
    now = [0.0]
    out = io.StringIO()
    p = Progress(stream=out, every=3.0, heartbeat=0, clock=lambda: now[0])
    p.start(total=4)
    p.cell(1)
    now[0] = 1.0
    p.cell(2)          # too soon after the last line: silent
    now[0] = 65.0
    p.cell(3)
    p.stop()
    assert out.getvalue().splitlines() == ["  cell 1/4 · 0:00", "  cell 3/4 · 1:05"]

    beat = Progress(stream=out, every=3.0, heartbeat=0.2)
    out.truncate(0), out.seek(0)
    beat.start(total=2)
    beat.cell(1)
    import time
    deadline = time.monotonic() + 10.0  # the heartbeat thread wakes every min(5 s, heartbeat): 0.2 s here
    while "cell 1/2 still running" not in out.getvalue() and time.monotonic() < deadline:
        time.sleep(0.05)
    beat.stop()
    assert any("cell 1/2 still running" in l for l in out.getvalue().splitlines())


def test_a_run_talks_and_the_kernel_log_stays_off_the_terminal(tmp_path, monkeypatch, capfd):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('device = "auto"\nprofile = "auto"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# t"), params, nbformat.v4.new_code_cell("x = 1 + 1"),
                nbformat.v4.new_code_cell("print(x)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, str(tmp_path / "nbs" / "99_tiny.ipynb"))
    monkeypatch.setattr(runner, "NOTEBOOK_DIR", tmp_path / "nbs")
    monkeypatch.setattr(runner, "BENCHMARK_RESULTS", tmp_path / "results")
    monkeypatch.setattr(runner, "metrics_dir", lambda: tmp_path / "metrics")
    monkeypatch.setattr(runner, "build_dir", lambda: tmp_path / "build")  # the executed copy lands here
    code = runner.main(["--notebooks", "99", "--profile", "smoke", "--device", "cpu", "-p", "seed", "3"])
    out, err = capfd.readouterr()
    assert code == 0
    assert "▶ [1/1] 99_tiny: profile smoke, device cpu (no smoke benchmark yet)" in out
    assert "cell 1/4 · 0:0" in out and "ok in" in out
    for noise in ("without encryption", "KeyboardInterrupt", "WARNING"):
        assert noise not in out + err
    path = tmp_path / "build" / "notebooks" / "99_tiny.ipynb"
    executed = nbformat.read(str(path), as_version=4)
    path.unlink()
    path.with_suffix(".kernel.log").unlink()
    assert executed.cells[-1].outputs[0]["text"] == "2\n"
