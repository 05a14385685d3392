"""Write the student edition of the series into ``exercises/`` (``make exercises``).

    python -m tools.make_exercises          # rewrite exercises/
    python -m tools.make_exercises --check  # exit 1 and name the files that are out of date

From each notebook in ``notebooks/`` (the solution edition) it writes ``exercises/<same name>.ipynb``:
- every body between nbgrader's ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes
  ``raise NotImplementedError("<task>")``, the task's text taken from :mod:`nbhelpers.exercises` by the cell's
  ``nbgrader.grade_id`` (the check cell after it then reports "not implemented yet" and the notebook carries on
  with the library's implementation, under a banner);
- every cell tagged ``answer`` becomes a Markdown prompt: its question and the figure or table it refers to,
  read from the cell's metadata ``question`` (``{"text": …, "see": …}``, with an optional ``label`` where the
  answer's text has no ``**Answer (…)**``), then ``YOUR ANSWER HERE`` (nbgrader's stub). The solution notebook
  keeps its rendered answer and the claims checked beside it; a ``claim(`` outside an answer cell is refused,
  so the student edition never lists the findings it asks for;
- outputs and execution counts are stripped; the Colab badge opens the student edition; a note under the
  title says which edition this is.
A notebook without exercises is copied with its outputs stripped and its answer cells turned into prompts.
``exercises/README.md`` lists the exercises.
The output depends only on the notebooks and the exercise registry, so a test regenerates it and compares.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import textwrap
from pathlib import Path

from nbhelpers.cli import read_json, tool_errors
from nbhelpers.exercises import EXERCISES
from nbhelpers.runner import list_notebooks
from nbhelpers.runtime import ROOT

SOURCE_DIR = ROOT / "notebooks"
OUT_DIR = ROOT / "exercises"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
ANSWER_TAG = "answer"
ANSWER_STUB = "YOUR ANSWER HERE"
QUESTION_KEY = "question"
_CLAIM = re.compile(r"\bclaim\(")
_ANSWER_LABEL = re.compile(r"\*\*Answer \(([^)]*)\)")
_BADGE = re.compile(r"(\[!\[Open In Colab\]\([^)]*\)\]\(https://colab\.research\.google\.com/github/[^)]*?/blob/[^/]+/)"
                    r"notebooks/")


def _lines(src: str) -> list[str]:
    return src.splitlines(keepends=True)


def _raise_line(indent: str, task: str, limit: int = 100) -> str:
    """``raise NotImplementedError("…")`` on one line when it fits in ``limit`` characters, else wrapped as
    implicitly joined strings, each line within the limit."""
    one = f"{indent}raise NotImplementedError({json.dumps(task, ensure_ascii=False)})"
    if len(one) <= limit:
        return one + "\n"
    parts = textwrap.wrap(task, limit - len(indent) - 6, drop_whitespace=False)
    body = "\n".join(f"{indent}    {json.dumps(p, ensure_ascii=False)}" for p in parts)
    return f"{indent}raise NotImplementedError(\n{body})\n"


def blank_solutions(src: str, task: str) -> str:
    """Replace each marked region (markers included) by one ``raise NotImplementedError(task)``."""
    out, inside = [], False
    for line in _lines(src):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"nested {BEGIN!r} in a cell starting {src[:80]!r}")
            inside = True
            out.append(_raise_line(line[: len(line) - len(line.lstrip())], task))
        elif stripped == END:
            if not inside:
                raise ValueError(f"{END!r} without {BEGIN!r} in a cell starting {src[:80]!r}")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN!r} without {END!r} (a misspelt marker?) in a cell starting {src[:80]!r}")
    return "".join(out)


def _task(cell: dict, notebook: str) -> str:
    name = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    if name not in EXERCISES:
        raise ValueError(f"{notebook}: cell {cell.get('id')} has solution markers but its nbgrader.grade_id "
                         f"{name!r} names no exercise in nbhelpers.exercises (known: {', '.join(EXERCISES)})")
    return EXERCISES[name].task


def question(cell: dict, notebook: str) -> dict[str, str]:
    """The ``question`` metadata of an answer cell, checked: ``text`` (the question, in one or two sentences) and
    ``see`` (the figure or table it refers to), both non-empty; ``label`` optional."""
    q = cell.get("metadata", {}).get(QUESTION_KEY)
    where = f"{notebook}: answer cell {cell.get('id')}"
    if not isinstance(q, dict) or not all(isinstance(q.get(k), str) and q[k].strip() for k in ("text", "see")):
        raise ValueError(f"{where} has no question: give it metadata {QUESTION_KEY!r} = {{\"text\": the question, "
                         f"\"see\": the figure or table it refers to}}, got {q!r}")
    unknown = set(q) - {"text", "see", "label"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} in its {QUESTION_KEY!r} (valid: text, see, label)")
    return q


def _prompt(cell: dict, notebook: str) -> dict:
    q = question(cell, notebook)
    m = _ANSWER_LABEL.search("".join(cell["source"]))
    label = q.get("label") or (m.group(1) if m else "")
    label = f" ({label})" if label else ""
    text = (f"**Question{label}.** {q['text'].strip()} *See {q['see'].strip().rstrip('.')}.*\n\n"
            f"**Your answer{label}.** {ANSWER_STUB}")
    return {"cell_type": "markdown", "id": cell["id"], "metadata": copy.deepcopy(cell.get("metadata", {})),
            "source": _lines(text)}


def _note(stem: str, n_exercises: int, n_answers: int) -> str:
    head = f"> **Student edition** of `notebooks/{stem}.ipynb`, written by `make exercises`: "
    prompts = " Each written answer is a prompt with its question and the figure or table it refers to."
    if n_exercises == 1:
        return (head + "1 function to write, checked by the cell after it; until it passes, the notebook runs on "
                "the library's version and says so." + prompts + "\n")
    if n_exercises:
        return (head + f"{n_exercises} functions to write, each checked by the cell after it; until one passes, the "
                "notebook runs on the library's version and says so." + prompts + "\n")
    return (head + "this notebook has no exercises yet; it is the solution notebook with its outputs stripped"
            + (" and its written answers turned into prompts (each with its question and the figure or table it "
               "refers to).\n" if n_answers else ".\n"))


def student_notebook(nb: dict, stem: str) -> tuple[dict, list[str]]:
    """The student edition of one notebook and the names of its exercises, in order."""
    out = copy.deepcopy(nb)
    names, cells, n_answers = [], [], 0
    for cell in out["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if ANSWER_TAG in cell.get("metadata", {}).get("tags", []):
            cells.append(_prompt(cell, stem))
            n_answers += 1
            continue
        if _CLAIM.search(src):
            raise ValueError(f"{stem}: cell {cell.get('id')} checks a claim but is no answer cell; the student edition "
                             "would list the findings it asks for: move the claims into the answer cell that states "
                             "them (tagged 'answer')")
        if BEGIN in src:
            if cell["cell_type"] != "code":
                raise ValueError(f"{stem}: solution markers in a {cell['cell_type']} cell {cell.get('id')}")
            cell["source"] = _lines(blank_solutions(src, _task(cell, stem)))
            names.append(cell["metadata"]["nbgrader"]["grade_id"])
        cells.append(cell)
    out["cells"] = cells
    first = cells[0]
    text = _BADGE.sub(r"\1exercises/", "".join(first["source"]), count=1)
    title, _, rest = text.partition("\n")
    first["source"] = _lines(f"{title}\n\n{_note(stem, len(names), n_answers)}{rest}")
    return out, names


def _readme(table: list[tuple[str, list[str]]]) -> str:
    lines = ["# The student edition", "",
             "Written by `make exercises` (`python -m tools.make_exercises`) from the solution notebooks in",
             "`notebooks/`; do not edit these files by hand, a test regenerates them and compares.", "",
             "Each exercise is a short function whose body raises `NotImplementedError` with the task; the cell after",
             "it runs `nb.exercises.use(...)`, which checks the function case by case against a closed form or the",
             "library (expected against got, and a hint) and, until every case passes, hands the later cells the",
             "library's implementation under a banner — so every figure still appears while you work on one",
             "exercise at a time. Written answers are prompts: each states its question and the figure or table it",
             "refers to, then `YOUR ANSWER HERE`; the claims the solution checks beside its answers are not shown.", "",
             "The markers follow nbgrader (`### BEGIN SOLUTION` / `### END SOLUTION`, cell metadata `solution`,",
             "`grade_id`); see `nbhelpers/exercises/__init__.py` for why.", "",
             "| notebook | exercises | what the check compares against |", "|---|---|---|"]
    for stem, names in table:
        if not names:
            lines.append(f"| `{stem}` | none: the solution notebook with outputs stripped and its written answers as prompts | — |")
            continue
        for i, name in enumerate(names):
            ex = EXERCISES[name]
            lines.append(f"| {f'`{stem}`' if i == 0 else ''} | `{name}` | {ex.reference_name}; "
                         f"{len(ex.cases())} cases |")
    total = sum(len(n) for _, n in table)
    lines += ["", f"{total} checked exercises in all.", ""]
    return "\n".join(lines)


def build(src_dir: Path = SOURCE_DIR) -> dict[str, str]:
    """``{file name: text}`` of everything ``exercises/`` should hold."""
    files, table = {}, []
    for stem in list_notebooks():
        nb = read_json(src_dir / f"{stem}.ipynb", "notebook")
        student, names = student_notebook(nb, stem)
        files[f"{stem}.ipynb"] = json.dumps(student, indent=1, ensure_ascii=False) + "\n"
        table.append((stem, names))
    files["README.md"] = _readme(table)
    return files


def out_of_date(out_dir: Path = OUT_DIR) -> list[str]:
    """Files of ``exercises/`` that differ from a fresh build (missing and extra ones included)."""
    want = build()
    have = {p.name for p in out_dir.glob("*")} if out_dir.is_dir() else set()
    stale = [n for n, text in want.items() if not (out_dir / n).is_file() or (out_dir / n).read_text() != text]
    return sorted(stale + [n for n in have - set(want)])


@tool_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 and name the files that are out of date")
    args = parser.parse_args(argv)
    if args.check:
        stale = out_of_date()
        if stale:
            print("out of date in exercises/ (run make exercises): " + ", ".join(stale))
            return 1
        print("exercises/ is up to date")
        return 0
    if OUT_DIR.exists() and not OUT_DIR.is_dir():
        raise ValueError(f"{OUT_DIR} is a file; exercises/ must be a folder (move the file away)")
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in build().items():
        path = OUT_DIR / name
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            print(f"wrote exercises/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
