"""``make grade`` (tools/grade.py) on submissions made here from the student edition of 01: all solved, none
solved, a syntax error, a loop (in a function, stopped by the check's own time limit; then at the top level of a
cell, stopped by the grader's limit for the whole notebook while the others finish) and a kernel that dies; and the
grade record ``nb.exercises.use`` writes."""
from __future__ import annotations

import copy
import csv
import json
import time
from pathlib import Path

import pytest

import nbhelpers as nb
from nbhelpers.exercises import EXERCISES, exercises_in
from nbhelpers.exercises.core import GRADE_LOG_ENV, NOT_IMPLEMENTED, cases_passed
from nbhelpers.runtime import ROOT
from tests.conftest import read_notebook as _nb
from tools import grade
from tools.make_exercises import ANSWER_STUB

STEM = "01_sdes"
NAMES = exercises_in(STEM)  # em_step, brownian_motion, ornstein_uhlenbeck
TOTAL = {n: len(EXERCISES[n].cases()) for n in NAMES}
LIMIT = 60.0  # the grader's limit per notebook: a smoke run of 01 takes 10–15 s, over 30 s on a busy machine
CHECK_LIMIT = 3.0  # the check's limit per case: the library's cases take well under 0.1 s


def _cell(nbk: dict, cell_id: str) -> dict:
    return next(c for c in nbk["cells"] if c.get("id") == cell_id)


def _index(nbk: dict, cell_id: str) -> int:
    return next(i for i, c in enumerate(nbk["cells"]) if c.get("id") == cell_id)


def _submissions(folder: Path) -> dict[str, dict]:
    student = _nb(ROOT / "exercises" / f"{STEM}.ipynb")
    solution = _nb(ROOT / "notebooks" / f"{STEM}.ipynb")

    def solved() -> dict:
        out = copy.deepcopy(student)
        for name in NAMES:
            _cell(out, f"ex-{name}")["source"] = _cell(solution, f"ex-{name}")["source"]
        for cell in out["cells"]:
            if "question" in cell.get("metadata", {}):
                cell["source"] = "".join(cell["source"]).replace(ANSWER_STUB, "It is <b>bold</b> & x < y.")
        return out

    subs = {"solved": solved(), "none": copy.deepcopy(student)}
    syntax = solved()
    _cell(syntax, "ex-em_step")["source"] = "def em_step(sde, x, t, h, generator):\n    return x +\n"
    # an edited check that would fail the student's class: the grader runs the student edition's check instead
    _cell(syntax, "ex-brownian_motion-check")["source"] = \
        'Brownian = nb.exercises.use("brownian_motion", nb.sde.OrnsteinUhlenbeck)'
    subs["syntax"] = syntax
    loop = solved()
    # a function that loops (the check's limit stops it, the notebook carries on), then a cell that loops at top
    # level (the grader's limit stops the notebook)
    _cell(loop, "ex-em_step")["source"] = "def em_step(sde, x, t, h, generator):\n    while True:\n        pass\n"
    _cell(loop, "ex-brownian_motion")["source"] = "while True:\n    pass\n"
    subs["loop"] = loop
    crash = copy.deepcopy(student)
    _cell(crash, "ex-em_step")["source"] = "import os\n\nos._exit(3)\n"  # the kernel dies
    subs["crash"] = crash
    for name, content in subs.items():
        (folder / f"{name}.ipynb").write_text(json.dumps(content))
    return subs


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("submissions")
    out = tmp_path_factory.mktemp("grades")
    subs = _submissions(folder)
    t0 = time.monotonic()
    grades = grade.grade_all(folder, out, timeout=LIMIT, check_timeout=CHECK_LIMIT, workers=2, report=False)
    return subs, {g.name: g for g in grades}, out, time.monotonic() - t0, folder


def test_the_table(graded):
    subs, grades, out, _, _ = graded
    with open(out / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    full = [f"{TOTAL[n]}/{TOTAL[n]}" for n in NAMES]
    zero = [f"0/{TOTAL[n]}" for n in NAMES]
    asked = sum("question" in c.get("metadata", {}) for c in subs["none"]["cells"])
    syntax_cell = _index(subs["syntax"], "ex-em_step") + 1
    loop_cell = _index(subs["loop"], "ex-brownian_motion") + 1
    crash_cell = _index(subs["crash"], "ex-em_step") + 1
    assert rows == [
        ["submission", "notebook", "status", *NAMES, "answers", "detail"],
        ["crash", STEM, "crashed", "not run", "not run", "not run", f"0/{asked}",
         f"the kernel died in cell {crash_cell}"],
        ["loop", STEM, "timed out", zero[0], "not run", "not run", f"{asked}/{asked}",
         f"still running after {LIMIT:g} s (in cell {loop_cell}): stopped"],
        ["none", STEM, "ok", *zero, f"0/{asked}", ""],
        ["solved", STEM, "ok", *full, f"{asked}/{asked}", ""],
        ["syntax", STEM, "error", "not run", *full[1:], f"{asked}/{asked}", f"SyntaxError in cell {syntax_cell}"],
    ]
    # the looping notebook held one worker for its whole limit, and its runner stopped it within the grace
    assert LIMIT <= grades["loop"].seconds < LIMIT + grade.GRACE


def test_what_each_check_found(graded):
    _, grades, _, _, _ = graded
    assert {n: c.status for n, c in grades["none"].checks.items()} == {n: NOT_IMPLEMENTED for n in NAMES}
    assert {n: c.status for n, c in grades["solved"].checks.items()} == {n: "pass" for n in NAMES}
    looped = grades["loop"]
    assert looped.checks["em_step"].status == "timed out"
    assert f"did not return within {CHECK_LIMIT:g} s" in looped.checks["em_step"].stopped
    assert set(looped.checks) == {"em_step"}
    assert grades["syntax"].restored == ["brownian_motion"]
    errors = grades["syntax"].errors
    assert errors[0]["ename"] == "SyntaxError" and "return x +" in errors[0]["source"]


def test_the_pages(graded):
    _, grades, out, _, _ = graded
    page = (out / "solved.html").read_text()
    assert "It is &lt;b&gt;bold&lt;/b&gt; &amp; x &lt; y." in page and "<b>bold</b>" not in page
    none = (out / "none.html").read_text()
    assert none.count(NOT_IMPLEMENTED) >= len(NAMES) and "no answer written" in none
    assert "write one Euler–Maruyama step" in none  # the task, as the failing case's hint
    assert "SyntaxError" in (out / "syntax.html").read_text()
    assert "timed out" in (out / "loop.html").read_text()
    assert "had been edited" in (out / "syntax.html").read_text()
    index = (out / "index.html").read_text()
    assert all(f'href="{name}.html"' in index for name in grades)
    executed = _nb(out / "executed" / "solved.ipynb")
    assert any(o.get("output_type") == "display_data" for c in executed["cells"] for o in c.get("outputs", []))


def test_nothing_is_written_beside_the_submissions(graded):
    subs, _, _, _, folder = graded
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{name}.ipynb" for name in subs)


# --------------------------------------------------------------------------- the pure parts
def test_read_log_keeps_the_last_record_and_skips_a_torn_line(tmp_path):
    log = tmp_path / "grade.jsonl"
    first = {"exercise": "em_step", "status": "fail", "passed": 1, "total": 4, "cases": []}
    last = {**first, "status": "pass", "passed": 4}
    log.write_text(json.dumps(first) + "\n" + json.dumps(last) + "\n" + '{"exercise": "brownian_mot')
    checks = grade.read_log(log)
    assert list(checks) == ["em_step"] and checks["em_step"].cell == "4/4" and checks["em_step"].status == "pass"


def test_find_submissions_and_identify(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        grade.find_submissions(tmp_path / "missing")
    with pytest.raises(ValueError, match="no notebooks"):
        grade.find_submissions(tmp_path)
    (tmp_path / "alice" / ".ipynb_checkpoints").mkdir(parents=True)
    (tmp_path / "alice" / "01_sdes.ipynb").write_text("{}")
    (tmp_path / "alice" / ".ipynb_checkpoints" / "01_sdes-checkpoint.ipynb").write_text("{}")
    assert [n for n, _ in grade.find_submissions(tmp_path)] == ["alice/01_sdes"]
    (tmp_path / "grades" / "executed").mkdir(parents=True)
    (tmp_path / "grades" / "executed" / "alice__01_sdes.ipynb").write_text("{}")
    assert [n for n, _ in grade.find_submissions(tmp_path, exclude=tmp_path / "grades")] == ["alice/01_sdes"]
    student = _nb(ROOT / "exercises" / "02_paths_schedules.ipynb")
    assert grade.identify(student, Path("anything.ipynb")) == "02_paths_schedules"
    assert grade.identify({"cells": []}, Path("bob_03_flow_matching_2d.ipynb")) == "03_flow_matching_2d"


def test_read_answers_takes_what_follows_your_answer():
    student = _nb(ROOT / "exercises" / f"{STEM}.ipynb")
    answers = grade.read_answers(student)
    assert answers and not any(a.written for a in answers) and answers[0].label == "1a"
    prompt = next(c for c in student["cells"] if "question" in c.get("metadata", {}))
    prompt["source"] = "".join(prompt["source"]).replace(ANSWER_STUB, "It holds.")
    assert (grade.read_answers(student)[0].text, grade.read_answers(student)[0].written) == ("It holds.", True)
    prompt["source"] = "I rewrote the whole cell."  # the prompt's words gone: the whole cell is the answer
    assert grade.read_answers(student)[0].text == "I rewrote the whole cell."


def test_an_unreadable_submission_gets_its_row(tmp_path):
    bad = tmp_path / "broken.ipynb"
    bad.write_text('{"cells": [')
    g = grade.grade_one("broken", bad, tmp_path / "out")
    assert g.status == "unreadable" and "not valid JSON" in g.detail
    assert grade.table([g]) == [["submission", "notebook", "status", "answers", "detail"],
                                ["broken", "", "unreadable", "0/0", g.detail]]


# --------------------------------------------------------------------------- the record the checks write
def test_use_appends_one_record_per_check(tmp_path, monkeypatch):
    log = tmp_path / "grade.jsonl"
    monkeypatch.setenv(GRADE_LOG_ENV, str(log))
    ref = EXERCISES["em_step"].reference()
    assert nb.exercises.use("em_step", ref, quiet=True) is ref

    def blank(sde, x, t, h, generator):
        raise NotImplementedError("later")

    nb.exercises.use("em_step", blank, quiet=True)
    assert cases_passed("em_step") == 0
    first, second = map(json.loads, log.read_text().splitlines())
    n = TOTAL["em_step"]
    assert (first["exercise"], first["notebook"], first["status"], first["passed"], first["total"]) == \
        ("em_step", STEM, "pass", n, n)
    assert (second["status"], second["passed"], second["total"]) == (NOT_IMPLEMENTED, 0, n)
    assert [c["status"] for c in second["cases"]] == [NOT_IMPLEMENTED] * n


def test_a_log_that_cannot_be_written_warns_and_the_check_goes_on(tmp_path, monkeypatch):
    monkeypatch.setenv(GRADE_LOG_ENV, str(tmp_path / "missing" / "grade.jsonl"))
    ref = EXERCISES["em_step"].reference()
    with pytest.warns(UserWarning, match=GRADE_LOG_ENV):
        assert nb.exercises.use("em_step", ref, quiet=True) is ref
    assert cases_passed("em_step") == TOTAL["em_step"]
    with pytest.raises(ValueError, match="valid choices"):
        cases_passed("no_such_exercise")


def test_the_command_line_names_a_missing_folder_in_one_line(tmp_path, capsys):
    assert grade.main([str(tmp_path / "missing"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: SUBMISSIONS=") and "is not a folder" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit, match=r"^2$"):  # argparse's usage error
        grade.main([str(tmp_path), "--timeout", "0"])
    assert "--timeout must be a positive number" in capsys.readouterr().err
