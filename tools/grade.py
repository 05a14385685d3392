"""Grade a folder of submitted student notebooks (``make grade SUBMISSIONS=folder``).

    python -m tools.grade SUBMISSIONS [--out DIR] [--timeout 300] [--check-timeout S] [--workers N]

Every ``*.ipynb`` under SUBMISSIONS (at any depth, so one folder per student works; its name in the table is its
path below SUBMISSIONS) is one submission: a notebook of the student edition (``exercises/``), filled in. Each runs
headless in the ``smoke`` profile on the CPU, in a process of its own with a fresh temporary folder as its working
directory, ``$HOME`` and ``$NBHELPERS_OUTPUT_DIR``, under a time limit for the whole notebook: at the limit its
kernel and everything it started are killed, and the others carry on (``--workers`` run side by side). The cells
that check the exercises are put back as the student edition has them before the run, so an edited check still
grades the student's function. A cell that raises does not stop the run: the later exercises are still checked.

What is collected: each exercise's check, as ``nb.exercises.use`` records it in ``$NBHELPERS_GRADE_LOG`` (pass,
fail, not implemented, timed out; cases passed of total; every failing case's expected, got and hint), and the
written answers, read from the submitted notebook's answer cells (those with ``question`` metadata). Written to
``--out`` (default ``<output root>/build/grades/``):

- ``grades.csv``: one row per submission: its notebook, status (``ok``; ``error``: a cell raised; ``timed out``;
  ``crashed``: the kernel died; ``unreadable``), one column per exercise (``passed/total``, or ``not run`` where the
  check never ran), written answers (``written/asked``) and a detail (the first error, where it stopped);
- ``<submission>.html``: the same for one submission with the failing cases' messages, the errors and the written
  answers to read; ``index.html`` links them; ``executed/<submission>.ipynb``: the run, with its outputs.

Not a sandbox: the working folder, ``$HOME`` and the output folder keep a notebook's ordinary writes away from
the checkout and from the other submissions, but code that names an absolute path can reach it (run submissions
you do not trust in a container). The records come from the submission's own kernel, as nbgrader's grades do.
"""
from __future__ import annotations

import argparse
import csv
import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nbhelpers.cli import flag, int_at_least, invoked_name, positive_float, read_json, tool_errors
from nbhelpers.exercises import EXERCISES, exercises_in
from nbhelpers.exercises.core import GRADE_LOG_ENV
from nbhelpers.exercises.timeouts import TIMEOUT_ENV
from nbhelpers.runner import list_notebooks
from nbhelpers.runtime import (CHECKPOINT_ENV, DEVICE_ENV, HEADLESS_ENV, HOME_ENV, OUTPUT_ENV, PROFILE_ENV,
                               build_dir)

from tools.make_exercises import ANSWER_STUB, OUT_DIR as EXERCISE_DIR, QUESTION_KEY

TIMEOUT = 300.0
"""Seconds a submission may run: a smoke run of the longest notebook takes under half a minute on 2 cores."""
GRACE = 20.0
"""Seconds the runner gets past the limit to save what ran and stop its kernel before it is killed."""
NOT_RUN = "not run"
_SETUP = re.compile(r"""nb\.setup\(\s*["'](\d\d_\w+)["']""")
CHECK_CELL = re.compile(  # a cell that checks an exercise: nb.exercises.use("<exercise>", …)
    r"""nb\.exercises\.use\(\s*["'](\w+)["']""")
_QUESTION_LABEL = re.compile(r"\*\*Question \(([^)]*)\)")
_YOUR_ANSWER = re.compile(r"\*\*Your answer[^*]*\*\*")


# --------------------------------------------------------------------------- what was found
@dataclass
class Check:
    """One exercise's check as the notebook recorded it (``nb.exercises`` ``CheckReport.record``)."""

    exercise: str
    status: str
    passed: int
    total: int
    stopped: str = ""
    cases: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cell(self) -> str:
        return f"{self.passed}/{self.total}"


@dataclass
class Answer:
    label: str
    question: str
    see: str
    text: str

    @property
    def written(self) -> bool:
        return bool(self.text.strip()) and ANSWER_STUB not in self.text


@dataclass
class Grade:
    """One submission, graded."""

    name: str
    path: Path
    notebook: str = ""
    status: str = ""
    detail: str = ""
    seconds: float = 0.0
    checks: dict[str, Check] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)  # {"cell", "ename", "evalue", "source"}
    restored: list[str] = field(default_factory=list)  # exercises whose check cell had been edited
    executed: Path | None = None

    def exercises(self) -> list[str]:
        known = exercises_in(self.notebook) if self.notebook else []
        return known + [n for n in self.checks if n not in known]

    def cell(self, exercise: str) -> str:
        if exercise in self.checks:
            return self.checks[exercise].cell
        return NOT_RUN if exercise in self.exercises() else ""

    def answered(self) -> str:
        return f"{sum(a.written for a in self.answers)}/{len(self.answers)}"


# --------------------------------------------------------------------------- reading a submission
def find_submissions(folder: Path, exclude: Path | None = None) -> list[tuple[str, Path]]:
    """``(name, path)`` of every notebook under ``folder``, sorted; the name is the path below it, without
    ``.ipynb``. Jupyter's ``.ipynb_checkpoints`` copies are not submissions, nor is anything under ``exclude``
    (the grades folder, whose executed notebooks a second run would otherwise grade)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"SUBMISSIONS={folder} is not a folder: give the folder that holds the submitted notebooks")
    skip = Path(exclude).resolve() if exclude is not None else None
    found = [p for p in folder.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.is_file()
             and not (skip is not None and p.resolve().is_relative_to(skip))]
    if not found:
        raise ValueError(f"no notebooks (*.ipynb) under {folder}")
    return sorted((p.relative_to(folder).with_suffix("").as_posix(), p) for p in found)


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else str(src)


def identify(nb: dict, path: Path) -> str:
    """Which notebook of the series a submission is: its ``nb.setup("…")`` call, else a series name in its file
    name; "" when neither says."""
    known = list_notebooks()
    for cell in nb.get("cells", []):
        m = _SETUP.search(_source(cell))
        if m and m.group(1) in known:
            return m.group(1)
    return next((stem for stem in known if stem in path.name), "")


def reference_checks(stem: str) -> dict[str, str]:
    """Exercise name → the source of its check cell in the student edition of ``stem``."""
    path = EXERCISE_DIR / f"{stem}.ipynb"
    if not path.is_file():
        return {}
    out = {}
    for cell in read_json(path, "notebook")["cells"]:
        m = CHECK_CELL.search(_source(cell))
        if cell.get("cell_type") == "code" and m:
            out[m.group(1)] = _source(cell)
    return out


def restore_checks(nb: dict, stem: str) -> list[str]:
    """Put back every check cell (``nb.exercises.use("name", …)``) as the student edition has it; the names of
    those that had been edited."""
    ref = reference_checks(stem)
    edited = []
    for cell in nb.get("cells", []):
        m = CHECK_CELL.search(_source(cell)) if cell.get("cell_type") == "code" else None
        if m and m.group(1) in ref and _source(cell) != ref[m.group(1)]:
            cell["source"] = ref[m.group(1)]
            edited.append(m.group(1))
    return edited


def read_answers(nb: dict) -> list[Answer]:
    """The written answers: every cell with ``question`` metadata (the prompts of the student edition), with the
    text the student wrote after its ``**Your answer (…).**`` (the whole cell where that is gone)."""
    out = []
    for cell in nb.get("cells", []):
        q = cell.get("metadata", {}).get(QUESTION_KEY)
        if not isinstance(q, dict):
            continue
        text = _source(cell)
        m = _QUESTION_LABEL.search(text)
        label = str(q.get("label") or (m.group(1) if m else "")) or f"cell {cell.get('id', '?')}"
        mine = _YOUR_ANSWER.search(text)
        out.append(Answer(label, str(q.get("text", "")), str(q.get("see", "")),
                          text[mine.end():].strip() if mine else text.strip()))
    return out


def read_log(path: Path) -> dict[str, Check]:
    """The checks recorded in a grade log, the last record of each exercise winning; a torn last line (the kernel
    killed while writing) is skipped."""
    checks: dict[str, Check] = {}
    if not path.is_file():
        return checks
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            r = json.loads(line)
            checks[r["exercise"]] = Check(r["exercise"], r["status"], int(r["passed"]), int(r["total"]),
                                          r.get("stopped", ""), list(r.get("cases", [])))
        except (ValueError, KeyError, TypeError):
            continue
    for name, c in checks.items():  # a check that failed before listing its cases still has a total
        if c.total == 0 and name in EXERCISES:
            c.total = len(EXERCISES[name].cases())
    return checks


# --------------------------------------------------------------------------- running one submission
def _environment(work: Path, threads: int, check_timeout: float | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NBHELPERS_", "JUPYTER_", "IPYTHON", "MPL", "PYTHONPATH"))}
    keep = os.environ.get("NBHELPERS_DATA_DIR")  # read-only data: a smoke run uses it where present
    if keep:
        env["NBHELPERS_DATA_DIR"] = keep
    home = work / "home"
    env.update({"HOME": str(home), OUTPUT_ENV: str(work / "out"), CHECKPOINT_ENV: str(work / "out" / "checkpoints"),
                PROFILE_ENV: "smoke", DEVICE_ENV: "cpu", HEADLESS_ENV: "1", GRADE_LOG_ENV: str(work / "grade.jsonl"),
                "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "TMPDIR": str(work / "tmp"),
                "PYTHONDONTWRITEBYTECODE": "1"})
    env.pop(HOME_ENV, None)
    if check_timeout is not None:
        env[TIMEOUT_ENV] = f"{check_timeout:g}"
    return env


def _kill_kernel(pid_file: Path) -> None:
    """Kill the kernel a runner left behind, with whatever it started: it leads a process group of its own (a pid
    that leads no group is no longer that kernel, and is left alone)."""
    try:
        pid = int(pid_file.read_text())
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def grade_one(name: str, path: Path, out_dir: Path, timeout: float = TIMEOUT, check_timeout: float | None = None,
              threads: int = 1) -> Grade:
    """Run one submission in its own process and temporary folder and collect its grade."""
    g = Grade(name, path)
    try:
        nb = read_json(path, "notebook")
        if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
            raise ValueError(f"{path} is not a notebook (no list of cells)")
    except ValueError as exc:
        g.status, g.detail = "unreadable", str(exc)
        return g
    g.notebook = identify(nb, path)
    g.answers = read_answers(nb)
    g.restored = restore_checks(nb, g.notebook) if g.notebook else []
    work = Path(tempfile.mkdtemp(prefix="nbhelpers-grade-"))
    try:
        for sub in ("home", "out", "tmp", "run"):
            (work / sub).mkdir()
        notebook = work / "run" / (f"{g.notebook}.ipynb" if g.notebook else "submission.ipynb")
        notebook.write_text(json.dumps(nb, ensure_ascii=False), encoding="utf-8")
        executed, result = work / "executed.ipynb", work / "result.json"
        cmd = [sys.executable, "-c", RUNNER, notebook.name, str(executed), str(result), f"{timeout:g}",
               str(work / "kernel.pid"), str(work / "kernel.log")]
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, cwd=work / "run", env=_environment(work, threads, check_timeout),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout + GRACE)
        except subprocess.TimeoutExpired:  # the runner itself is stuck: kill it with everything in its group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:  # it ended just now
                pass
            err = b""
            proc.wait()
        if not result.is_file():  # the runner did not shut its kernel down
            _kill_kernel(work / "kernel.pid")
        g.seconds = time.monotonic() - t0
        g.checks = read_log(work / "grade.jsonl")
        info = json.loads(result.read_text()) if result.is_file() else {}
        g.status = info.get("status", "timed out" if g.seconds >= timeout + GRACE else "crashed")
        g.errors = info.get("errors", [])
        if g.status == "timed out":
            where = f" (in cell {info['cell'] + 1})" if "cell" in info else ""
            g.detail = f"still running after {timeout:g} s{where}: stopped"
        elif g.status == "crashed":
            tail = (err or b"").decode(errors="replace").strip().splitlines()
            g.detail = info.get("detail") or (tail[-1] if tail else f"the runner exited with {proc.returncode}")
        if g.errors and not g.detail:
            first = g.errors[0]
            g.detail = f"{first['ename']} in cell {first['cell'] + 1}"
        if executed.is_file():
            g.executed = out_dir / "executed" / f"{_slug(name)}.ipynb"
            g.executed.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(executed, g.executed)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return g


# --------------------------------------------------------------------------- the runner (its own process)
RUNNER = r"""
# Run one notebook with nbclient: every cell, errors and all, until the time limit; then write the executed
# notebook and {"status", "errors", "cell"} as JSON. The kernel leads a session of its own, so its pid goes to
# a file: the grader kills it if this process cannot stop it. A program of its own, run with `python -c`, so that
# this process imports nbclient only (nbhelpers would bring torch, which only the kernel needs).
import json, math, sys, time
import nbformat
from jupyter_client import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError, DeadKernelError

notebook, executed, result, limit, pid_file, kernel_log = sys.argv[1:]
deadline = time.monotonic() + float(limit)


class Manager(AsyncKernelManager):
    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw["stderr"] = open(kernel_log, "ab")  # the kernel's own log, not the notebook's output
        await super()._async_launch_kernel(kernel_cmd, **kw)
        with open(pid_file, "w") as f:
            f.write(str(self.provisioner.pid))


nb = nbformat.read(notebook, as_version=4)
running = {"cell": -1}
client = NotebookClient(
    nb, kernel_name="python3", allow_errors=True, interrupt_on_timeout=False, shutdown_kernel="immediate",
    shell_timeout_interval=1,  # how often the time limit is looked at (nbclient's default: every 5 s)
    timeout_func=lambda cell: max(1, math.ceil(deadline - time.monotonic())),
    on_cell_execute=lambda cell, cell_index: running.update(cell=cell_index),
    resources={"metadata": {"path": "."}}, kernel_manager_class=Manager,
    extra_arguments=["--HistoryManager.hist_file=:memory:"])
info = {"status": "ok"}
try:
    client.execute()
except CellTimeoutError:
    info = {"status": "timed out", "cell": running["cell"]}
except DeadKernelError:
    info = {"status": "crashed", "cell": running["cell"], "detail": f"the kernel died in cell {running['cell'] + 1}"}
info["errors"] = [{"cell": i, "ename": o.get("ename", ""), "evalue": o.get("evalue", ""), "source": c.source}
                  for i, c in enumerate(nb.cells) for o in c.get("outputs", []) if o.get("output_type") == "error"]
if info["status"] == "ok" and info["errors"]:
    info["status"] = "error"
nbformat.write(nb, executed)
with open(result, "w") as f:
    json.dump(info, f)
"""


# --------------------------------------------------------------------------- writing the grades
def columns(grades: list[Grade]) -> list[str]:
    """The exercises of every graded notebook, in the order of the series."""
    seen = {n for g in grades for n in g.exercises()}
    return [n for n in EXERCISES if n in seen] + sorted(seen - set(EXERCISES))


def table(grades: list[Grade]) -> list[list[str]]:
    """grades.csv as rows of strings, the header first."""
    cols = columns(grades)
    rows = [["submission", "notebook", "status", *cols, "answers", "detail"]]
    for g in grades:
        rows.append([g.name, g.notebook, g.status, *(g.cell(c) for c in cols), g.answered(), g.detail])
    return rows


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.replace("/", "__")).strip("_") or "submission"


_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}"
          "pre{white-space:pre-wrap;background:#f6f6f6;padding:.5rem}.pass{color:#060}.fail{color:#a00}"
          ".note{color:#666}")


def _page(title: str, body: list[str]) -> str:
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>" + html.escape(title) + "</title><style>"
            + _STYLE + "</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def submission_page(g: Grade) -> str:
    e = html.escape
    body = [f"<h1>{e(g.name)}</h1>",
            f"<p>notebook <code>{e(g.notebook or 'unknown')}</code> · status <b>{e(g.status)}</b>"
            + (f" — {e(g.detail)}" if g.detail else "") + f" · {g.seconds:.1f} s</p>"]
    if g.restored:
        body.append(f"<p class=\"note\">The check cells of {e(', '.join(g.restored))} had been edited; they ran as the "
                    "student edition has them.</p>")
    if g.executed is not None:
        body.append(f"<p><a href=\"executed/{e(g.executed.name)}\">the executed notebook</a></p>")
    body += ["<h2>Exercises</h2>", "<table><tr><th>exercise</th><th>result</th><th>cases passed</th></tr>"]
    for name in g.exercises():
        c = g.checks.get(name)
        status = c.status if c else "its check did not run"
        css = "pass" if c and c.status == "pass" else "fail"
        body.append(f"<tr><td><code>{e(name)}</code></td><td class=\"{css}\">{e(status)}</td>"
                    f"<td>{e(g.cell(name))}</td></tr>")
    body.append("</table>")
    for name in g.exercises():
        c = g.checks.get(name)
        if c is None or c.status == "pass":
            continue
        body.append(f"<h3><code>{e(name)}</code>: {e(c.status)}</h3>")
        if c.stopped:
            body.append(f"<p>checking stopped: {e(c.stopped)}</p>")
        lines = []
        for i, case in enumerate(c.cases, 1):
            if case.get("status") == "pass":
                continue
            lines.append(f"case {i}/{len(c.cases)}: {case.get('case', '')} — {case.get('status', '')}")
            lines += [f"    {k + ':':9} {case[k]}" for k in ("expected", "got", "hint") if case.get(k)]
        if lines:
            body.append(f"<pre>{e(chr(10).join(lines))}</pre>")
    if g.errors:
        body.append("<h2>Cells that raised</h2>")
        for err in g.errors:
            head = "\n".join(err.get("source", "").splitlines()[:8])
            body.append(f"<p>cell {err['cell'] + 1}: <b>{e(err['ename'])}</b>: {e(err['evalue'])}</p>"
                        f"<pre>{e(head)}</pre>")
    body.append(f"<h2>Written answers ({g.answered()})</h2>")
    for a in g.answers:
        body.append(f"<h3>{e(a.label)}</h3><p>{e(a.question)} <i>See {e(a.see)}</i></p>")
        body.append(f"<pre>{e(a.text)}</pre>" if a.written else "<p class=\"fail\">no answer written</p>")
    return _page(f"{g.name}: grade", body)


def index_page(grades: list[Grade]) -> str:
    e = html.escape
    rows = table(grades)
    body = ["<h1>Grades</h1>", "<table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in rows[0]) + "</tr>"]
    for g, row in zip(grades, rows[1:]):
        cells = [f"<a href=\"{e(_slug(g.name))}.html\">{e(row[0])}</a>", *map(e, row[1:])]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    body.append("</table>")
    return _page("Grades", body)


def write(grades: list[Grade], out_dir: Path) -> Path:
    """grades.csv, index.html and one page per submission in ``out_dir``; the path of grades.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "grades.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(table(grades))
    for g in grades:
        (out_dir / f"{_slug(g.name)}.html").write_text(submission_page(g), encoding="utf-8")
    (out_dir / "index.html").write_text(index_page(grades), encoding="utf-8")
    return csv_path


def grade_all(folder: Path, out_dir: Path, timeout: float = TIMEOUT, check_timeout: float | None = None,
              workers: int | None = None, report: bool = True) -> list[Grade]:
    """Grade every submission under ``folder`` (``workers`` at a time) and write the results to ``out_dir``."""
    subs = find_submissions(folder, exclude=out_dir)
    cores = os.cpu_count() or 1
    workers = max(1, min(workers or cores, len(subs)))
    threads = max(1, cores // workers)

    def one(item: tuple[str, Path]) -> Grade:
        g = grade_one(*item, out_dir, timeout, check_timeout, threads)
        if report:
            cases = sum(c.passed for c in g.checks.values()), sum(c.total for c in g.checks.values())
            print(f"graded {g.name}: {g.status}, {cases[0]}/{cases[1]} cases pass, answers {g.answered()} "
                  f"({g.seconds:.1f} s)" + (f" — {g.detail}" if g.detail else ""), flush=True)
        return g

    with ThreadPoolExecutor(max_workers=workers) as pool:
        grades = list(pool.map(one, subs))
    write(grades, out_dir)
    return grades


@tool_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=invoked_name("tools.grade"), description=__doc__.splitlines()[0])
    parser.add_argument("submissions", type=Path, help="folder of submitted notebooks (at any depth)")
    flag(parser, "out", type=Path, default=None, help="where grades.csv and the pages go (default: build/grades/)")
    flag(parser, "timeout", type=positive_float("--timeout"), default=TIMEOUT,
         help=f"seconds one submission may run (default {TIMEOUT:g})")
    flag(parser, "check_timeout", type=positive_float("--check-timeout"), default=None,
         help=f"seconds one case of a check may run (${TIMEOUT_ENV}; default: the notebooks' own)")
    flag(parser, "workers", type=int_at_least("--workers"), default=None,
         help="submissions run side by side (default: one per CPU core)")
    args = parser.parse_args(argv)
    out = args.out if args.out is not None else build_dir() / "grades"
    t0 = time.monotonic()
    grades = grade_all(args.submissions, out, args.timeout, args.check_timeout, args.workers)
    print(f"{len(grades)} submissions graded in {time.monotonic() - t0:.1f} s: {out / 'grades.csv'}, "
          f"{out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
