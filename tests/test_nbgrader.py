"""nbgrader on the series: ``tools/nbgrader_course.py`` writes a course from the solution notebooks, ``nbgrader
generate_assignment`` blanks exactly the cells ``make exercises`` blanks (nbgrader's stub in place of ours) and
leaves every other cell as the student edition has it, and ``nbgrader autograde`` scores a solved and an unsolved
submission of 01 as the checks do. The course-folder tests need no nbgrader; the others need the ``course`` extra."""
from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nbhelpers.exercises import EXERCISES, exercises_in
from nbhelpers.runner import list_notebooks
from nbhelpers.runtime import ROOT
from tests.conftest import cell_source as _src
from tests.conftest import read_notebook as _nb
from tests.needs import need_module
from tools import nbgrader_course
from tools.make_exercises import ANSWER_STUB, ANSWER_TAG, BEGIN, END

STEMS = list_notebooks()
NEED = "nbgrader missing: pip install -e '.[course]'"


def _grading(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def _is_exercise(cell: dict) -> bool:
    return cell["cell_type"] == "code" and _grading(cell).get("solution", False)


def _nbgrader(course: Path, *args: str) -> None:
    env = {**os.environ, "HOME": str(course / "home"),
           # nbgrader runs `alembic` from PATH when it creates its gradebook: the venv's, beside this Python
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    need_module("nbgrader", NEED)
    root = tmp_path_factory.mktemp("course")
    (root / "home").mkdir()
    nbgrader_course.write_course(root, STEMS)
    _nbgrader(root, "generate_assignment", "*")
    return root


# --------------------------------------------------------------------------- the course folder (no nbgrader needed)
def test_the_course_notebook_adds_grade_cells_and_nbgraders_answers():
    solution = _nb(ROOT / "notebooks" / "01_sdes.ipynb")
    out = nbgrader_course.course_notebook(solution, "01_sdes")
    graded = {_grading(c)["grade_id"]: c for c in out["cells"] if _grading(c).get("grade")}
    for name in exercises_in("01_sdes"):
        cell = graded[f"{name}-cases"]
        assert _src(cell) .startswith(f'nb.exercises.core.cases_passed("{name}")')
        assert _grading(cell)["points"] == len(EXERCISES[name].cases()) and _grading(cell)["locked"]
    answers = [c for c in out["cells"] if ANSWER_TAG in c["metadata"].get("tags", [])]
    assert len(answers) == sum(ANSWER_TAG in c["metadata"].get("tags", []) for c in solution["cells"])
    for cell in answers:
        g = _grading(cell)
        assert cell["cell_type"] == "markdown" and g["solution"] and g["grade"] and g["points"] == 1
        text = _src(cell)
        assert text.startswith("**Question") and BEGIN in text and END in text and "claim(" not in text
    first = _src(answers[0])  # a code cell's answer: its template, the run's numbers still in braces
    assert "**Answer (1a).**" in first and "{langevin_vs_ou_drift_max_abs_diff:.1e}" in first
    assert "/blob/main/exercises/01_sdes.ipynb" in _src(out["cells"][0])
    assert "/notebooks/01_sdes.ipynb" not in _src(out["cells"][0])


def test_the_course_folder_keeps_an_edited_config(tmp_path):
    nbgrader_course.write_course(tmp_path, ["01_sdes"])
    assert (tmp_path / "source" / "01_sdes" / "01_sdes.ipynb").is_file()
    config = tmp_path / "nbgrader_config.py"
    assert 'course_id = "diffusion-notebooks"' in config.read_text()
    config.write_text("c = get_config()\n")
    nbgrader_course.write_course(tmp_path, ["01_sdes"])
    assert config.read_text() == "c = get_config()\n"


# --------------------------------------------------------------------------- nbgrader generate_assignment
def _stubbed(src: str) -> str:
    """A blanked cell with each stub — ours, ``raise NotImplementedError("<task>")``, or nbgrader's, ``# YOUR CODE
    HERE`` then ``raise NotImplementedError()`` — as one ``<stub>`` line at its indentation."""
    lines = [line for line in src.splitlines() if line.strip() != "# YOUR CODE HERE"]
    stubs = {}
    for node in ast.walk(ast.parse("\n".join(lines))):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                and getattr(node.exc.func, "id", "") == "NotImplementedError":
            stubs[node.lineno] = (node.end_lineno, node.col_offset)
    out, i = [], 1
    while i <= len(lines):
        if i in stubs:
            end, col = stubs[i]
            out.append(" " * col + "<stub>")
            i = end + 1
        else:
            out.append(lines[i - 1])
            i += 1
    return "\n".join(out).rstrip()


def _solution_lines(src: str) -> list[str]:
    lines, inside = [], False
    for line in src.splitlines():
        if line.strip() in (BEGIN, END):
            inside = line.strip() == BEGIN
        elif inside and line.strip():
            lines.append(line.strip())
    return lines


@pytest.mark.parametrize("stem", STEMS)
def test_generate_assignment_blanks_what_make_exercises_blanks(course, stem):
    solution = _nb(ROOT / "notebooks" / f"{stem}.ipynb")["cells"]
    ours = _nb(ROOT / "exercises" / f"{stem}.ipynb")["cells"]
    release = _nb(course / "release" / stem / f"{stem}.ipynb")["cells"]
    grade_cells = [c for c in release if _grading(c).get("grade_id", "").endswith("-cases")]
    assert [_grading(c)["grade_id"] for c in grade_cells] == [f"{n}-cases" for n in exercises_in(stem)]
    release = [c for c in release if c not in grade_cells]
    assert len(release) == len(ours) == len(solution)
    assert "/exercises/" in _src(release[0]) and "/notebooks/" not in _src(release[0])  # the badge
    blanked_by_nbgrader, blanked_by_us = [], []
    for i, (s, o, r) in enumerate(zip(solution, ours, release)):
        if i == 0:
            continue
        if _src(r) != _src(s):
            blanked_by_nbgrader.append(i)
        if _src(o) != _src(s):
            blanked_by_us.append(i)
        if _is_exercise(s):
            assert _stubbed(_src(r)) == _stubbed(_src(o)), f"cell {i} ({s.get('id')}) is blanked differently"
            left = set(map(str.strip, _src(r).splitlines()))
            assert not [line for line in _solution_lines(_src(s)) if line in left], f"solution left in cell {i}"
        elif ANSWER_TAG in s["metadata"].get("tags", []):
            assert r["cell_type"] == o["cell_type"] == "markdown"
            assert " ".join(_src(r).split()) == " ".join(_src(o).split()), f"answer prompt {i} differs"
            assert ANSWER_STUB in _src(r)
        else:
            assert (r["cell_type"], _src(r)) == (o["cell_type"], _src(o)), f"cell {i} differs"
    assert blanked_by_nbgrader == blanked_by_us
    assert [i for i in blanked_by_us if _is_exercise(solution[i])] == \
        [i for i, c in enumerate(solution) if _is_exercise(c)]


# --------------------------------------------------------------------------- nbgrader autograde
def test_autograde_scores_a_solved_and_an_unsolved_submission(course):
    from nbgrader.api import Gradebook

    stem = "01_sdes"
    release = _nb(course / "release" / stem / f"{stem}.ipynb")
    solution = {c.get("id"): c for c in _nb(ROOT / "notebooks" / f"{stem}.ipynb")["cells"]}
    solved = copy.deepcopy(release)
    for cell in solved["cells"]:
        if _is_exercise(cell):
            cell["source"] = solution[cell["id"]]["source"]
        elif _grading(cell).get("solution"):
            cell["source"] = _src(cell).replace(ANSWER_STUB, "The paths forget their start.")
    for student, nb in (("solved", solved), ("unsolved", release)):
        folder = course / "submitted" / student / stem
        folder.mkdir(parents=True)
        (folder / f"{stem}.ipynb").write_text(json.dumps(nb))
    _nbgrader(course, "autograde", stem)

    cases = {f"{n}-cases": float(len(EXERCISES[n].cases())) for n in exercises_in(stem)}
    answers = [f"answer-{c['id']}" for c in release["cells"] if ANSWER_TAG in c["metadata"].get("tags", [])]
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "diffusion-notebooks") as gb:
        def scores(student):
            nb = gb.find_submission_notebook(stem, stem, student)
            return {g.name: (g.auto_score, g.max_score, g.needs_manual_grade) for g in nb.grades}

        # every case passes; the written answers wait for a person
        assert scores("solved") == {**{k: (v, v, False) for k, v in cases.items()},
                                    **{a: (None, 1.0, True) for a in answers}}
        # no case passes; an answer left as released scores 0 without a person
        assert scores("unsolved") == {**{k: (0.0, v, False) for k, v in cases.items()},
                                      **{a: (0.0, 1.0, False) for a in answers}}
