"""Prepare an nbgrader course folder from the solution notebooks (``python -m tools.nbgrader_course COURSE``).

    python -m tools.nbgrader_course COURSE [--notebooks 01,03]
    cd COURSE && nbgrader generate_assignment 01_sdes      # release/01_sdes/01_sdes.ipynb, the blanks
    cd COURSE && nbgrader autograde 01_sdes                 # submitted/<student>/01_sdes/ → autograded/, gradebook.db

Each notebook becomes an assignment of its own, ``COURSE/source/<notebook>/<notebook>.ipynb``, written from
``notebooks/`` and the exercise registry (nothing is kept by hand, so it cannot drift from the solutions). The
solution notebooks already carry nbgrader's markers (``### BEGIN SOLUTION`` / ``### END SOLUTION``) and its
``solution`` metadata on every exercise cell, so ``nbgrader generate_assignment`` blanks the same regions as
``make exercises``, with nbgrader's stub (``# YOUR CODE HERE`` / ``raise NotImplementedError()``) in place of the
task. What this adds is what nbgrader needs to grade:

- after each exercise's check cell (locked, so nbgrader's autograde runs it as written), a locked grade cell
  ``nb.exercises.core.cases_passed("<exercise>")`` worth one point per case: nbgrader takes the number it shows as
  partial credit;
- each written answer (a cell tagged ``answer``) becomes nbgrader's manually graded answer, a Markdown cell worth
  one point with the question as ``make exercises`` writes it and, between the markers, the solution's answer (its
  template, for a code cell that renders it from the run: the numbers in braces are the run's);
- the Colab badge opens the student edition, never the solutions.

``COURSE/nbgrader_config.py`` (written once, then yours to edit) names the course and runs autograding in the
``smoke`` profile on the CPU, writing what the runs write under ``COURSE/runs/``. nbgrader starts ``alembic`` from
``PATH`` when it creates its gradebook: run it with the venv activated (``. .venv/bin/activate``).
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import sys
from pathlib import Path

from nbhelpers.cli import flag, invoked_name, read_json, tool_errors
from nbhelpers.exercises import EXERCISES
from nbhelpers.runner import select_notebooks
from nbhelpers.runtime import ROOT

from tools.grade import CHECK_CELL
from tools.make_exercises import _BADGE, ANSWER_STUB, ANSWER_TAG, BEGIN, END, SOURCE_DIR
from tools.make_exercises import _prompt as prompt_cell

COURSE_ID = "diffusion-notebooks"
CONFIG = f'''# nbgrader's configuration of this course, written once by `python -m tools.nbgrader_course`: yours to edit
import os

c = get_config()  # noqa: F821 - nbgrader provides it
c.CourseDirectory.course_id = "{COURSE_ID}"
c.Execute.timeout = 600  # seconds per cell; an exercise's check stops a learner's looping function by itself

# autograde in the smoke profile on the CPU, as `make grade` does (the kernels inherit this environment), and
# keep what the runs write (build/, figures/) in this folder, away from the checkout's own runs
os.environ.setdefault("NBHELPERS_PROFILE", "smoke")
os.environ.setdefault("NBHELPERS_DEVICE", "cpu")
os.environ.setdefault("NBHELPERS_HEADLESS", "1")
os.environ.setdefault("NBHELPERS_OUTPUT_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "runs"))
'''


def _meta(grade_id: str, *, solution: bool, grade: bool, locked: bool, points: int | None = None) -> dict:
    out = {"grade": grade, "grade_id": grade_id, "locked": locked, "schema_version": 3, "solution": solution,
           "task": False}
    if points is not None:
        out["points"] = points
    return out


def model_answer(cell: dict, stem: str) -> str:
    """The solution's written answer: a Markdown answer's text, or the template a code cell passes to
    ``run.answer(...)`` (its ``{name:format}`` fields are the run's numbers)."""
    src = "".join(cell["source"])
    if cell["cell_type"] == "markdown":
        return src.strip()
    try:
        tree = ast.parse(src)
    except SyntaxError:
        tree = None
    for node in ast.walk(tree) if tree is not None else ():
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "answer"
                and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            return node.args[0].value.strip()
    return f"(rendered by cell {cell.get('id')} of notebooks/{stem}.ipynb from its run)"


def answer_cell(cell: dict, stem: str) -> dict:
    """nbgrader's manually graded answer: the prompt ``make exercises`` writes, the solution's answer between the
    markers where the prompt has ``YOUR ANSWER HERE`` (nbgrader's text stub, which it puts back)."""
    out = prompt_cell(cell, stem)
    text = "".join(out["source"])
    out["source"] = text.replace(ANSWER_STUB, f"\n{BEGIN}\n{model_answer(cell, stem)}\n{END}")
    out["metadata"]["nbgrader"] = _meta(f"answer-{cell['id']}", solution=True, grade=True, locked=False, points=1)
    return out


def course_notebook(nb: dict, stem: str) -> dict:
    """The source notebook nbgrader releases from: the solution notebook with grade cells, locked checks and
    nbgrader's written answers."""
    out = copy.deepcopy(nb)
    cells = []
    for cell in out["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if ANSWER_TAG in cell.get("metadata", {}).get("tags", []):
            cells.append(answer_cell(cell, stem))
            continue
        cells.append(cell)
        m = CHECK_CELL.search("".join(cell["source"])) if cell["cell_type"] == "code" else None
        if m and m.group(1) in EXERCISES:
            name = m.group(1)
            cell.setdefault("metadata", {})["nbgrader"] = _meta(f"{name}-check", solution=False, grade=False,
                                                                locked=True)
            cells.append({"cell_type": "code", "execution_count": None, "id": f"ex-{name}-grade", "outputs": [],
                          "metadata": {"nbgrader": _meta(f"{name}-cases", solution=False, grade=True, locked=True,
                                                         points=len(EXERCISES[name].cases()))},
                          "source": [f'nb.exercises.core.cases_passed("{name}")  # nbgrader: points = cases '
                                     'passed']})
    out["cells"] = cells
    first = cells[0]
    first["source"] = _BADGE.sub(r"\1exercises/", "".join(first["source"]), count=1)
    return out


def write_course(course: Path, notebooks: list[str], src_dir: Path = SOURCE_DIR) -> list[Path]:
    """``course/source/<stem>/<stem>.ipynb`` for each notebook, and ``nbgrader_config.py`` where there is none."""
    course = Path(course)
    if course.exists() and not course.is_dir():
        raise ValueError(f"{course} is a file; the course must be a folder")
    written = []
    for stem in notebooks:
        nb = read_json(src_dir / f"{stem}.ipynb", "notebook")
        path = course / "source" / stem / f"{stem}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(course_notebook(nb, stem), indent=1, ensure_ascii=False) + "\n")
        written.append(path)
    config = course / "nbgrader_config.py"
    if not config.exists():
        config.write_text(CONFIG)
    return written


@tool_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=invoked_name("tools.nbgrader_course"), description=__doc__.splitlines()[0])
    parser.add_argument("course", type=Path, help="the nbgrader course folder to write (created if missing)")
    flag(parser, "notebooks", default="all", help="which notebooks become assignments: all, or e.g. 01,03")
    args = parser.parse_args(argv)
    for path in write_course(args.course, select_notebooks(args.notebooks)):
        print(f"wrote {path}")
    print(f"next: cd {args.course} && nbgrader generate_assignment <notebook> (pip install -e '{ROOT}[course]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
