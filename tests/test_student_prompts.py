"""The student edition, read as a student reads it: every answer prompt asks its question and names the figure or
table it is about; nothing in it states the findings it asks for (no claim lists, no answer text); the cells after an
answer still run without what the answer cell defined; a cell that compares the learner's function with the library
says when the library stands in for it (and so compares the library with itself)."""
import ast
import json
import re

import pytest
import torch

from nbhelpers import exercises as ex
from nbhelpers.answers import measured_numbers
from nbhelpers.exercises import core
from nbhelpers.runtime import ROOT
from tests.conftest import cell_source as _src
from tools import make_exercises

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STUDENT = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
ANSWER = make_exercises.ANSWER_TAG
# what a question may point at: a figure, a table, a printed line …
_SEEN = re.compile(r"figure|table|grid|curve|plot|panel|histogram|bars|printed|slider|strip|map|paragraph|line",
                   re.I)
_CLAIM = re.compile(r"\bclaim\(")

# the cells that compare exercises with the library, and what the compared function calls of the other exercises
COMPARISONS = {
    ("01_sdes", "cell-009"): ("em_step",),
    ("03_flow_matching_2d", "cell-006"): ("target_velocity",),
    ("04_unet_images", "residual-layer-demo"): ("residual_layer",),
    ("05_score_sde", "cell-009"): ("vp_dsm_loss", "vp_reverse_step"),
    ("06_two_pixel_ddpm_cfg", "cell-013"): ("p_step",),
    ("07_mnist_cfg", "ddim-step-demo"): ("ddim_step",),
    ("08_afhq_ddpm", "x0-predictions"): ("predict_x0",),
}
NEEDS = {"p_step": ("q_posterior",)}


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _is_answer(cell):
    return ANSWER in cell["metadata"].get("tags", [])


def _sentences(text):
    plain = re.sub(r"\$[^$]*\$|`[^`]*`", "x", text)  # maths and code hold no sentence ends
    return [s for s in re.split(r"(?<=[.?!])\s+", plain.strip()) if s]


# --------------------------------------------------------------------------- prompts that ask
@pytest.mark.parametrize("path", STUDENT, ids=lambda p: p.stem)
def test_every_answer_prompt_asks_its_question_and_names_what_it_refers_to(path):
    prompts = [c for c in _cells(path) if _is_answer(c)]
    assert prompts, f"{path.name}: no answer prompts"
    for c in prompts:
        text = _src(c)
        assert c["cell_type"] == "markdown" and text.endswith(make_exercises.ANSWER_STUB), c["id"]
        asked, _, stub = text.partition("**Your answer")
        assert asked.startswith("**Question") and "?" in asked, f"{path.name} {c['id']}: the prompt asks nothing"
        q = c["metadata"]["question"]
        assert q["text"].strip() in asked and q["see"].strip().rstrip(".") in asked
        assert 1 <= len(_sentences(q["text"])) <= 2, f"{path.name} {c['id']}: one or two sentences, got {q['text']!r}"
        assert _SEEN.search(q["see"]) and q["see"].startswith("the "), \
            f"{path.name} {c['id']}: name the figure or table the question is about, got {q['see']!r}"
        assert "*" not in q["see"], f"{path.name} {c['id']}: the prompt italicises 'see'; no emphasis inside it"
        assert not measured_numbers(q["text"] + "\n" + q["see"]), f"{path.name} {c['id']}: a measured number"
        label = re.match(r"\*\*Question( \([^)]*\))?\.\*\*", asked).group(1) or ""
        assert stub.startswith(f"{label}.**"), f"{path.name} {c['id']}: question and answer carry the same label"


def test_the_prompts_the_issue_named_now_ask():
    cells = {c["id"]: _src(c) for c in _cells(ROOT / "exercises" / "06_two_pixel_ddpm_cfg.ipynb")}
    assert "loss curves" in cells["cell-011-answer"] and "DDIM" in cells["cell-023"]
    assert "guidance weight" in cells["cell-030"]
    for qid, words in (("cell-017", "trajectory"), ("cell-020-answer", "final distribution"), ("cell-026", "y = 1")):
        assert cells[qid].startswith("**Question (Q") and words in cells[qid]


def test_make_exercises_refuses_an_answer_without_a_question_and_a_claim_outside_an_answer():
    def nb(*cells):
        return {"cells": [{"cell_type": "markdown", "id": "t", "metadata": {}, "source": ["# title"]}, *cells],
                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}

    def code(cid, src, **md):
        return {"cell_type": "code", "id": cid, "metadata": md, "source": [src], "outputs": [],
                "execution_count": None}

    with pytest.raises(ValueError, match="has no question"):
        make_exercises.student_notebook(nb(code("a", "run.answer('x')", tags=[ANSWER])), "99_t")
    with pytest.raises(ValueError, match="checks a claim but is no answer cell"):
        make_exercises.student_notebook(nb(code("c", "cs = [nb.answers.claim('x', True)]")), "99_t")
    q = {"text": "What does it show?", "see": "the figure above"}
    out, _ = make_exercises.student_notebook(nb(code("a", "run.answer('**Answer (Q9).** x')", tags=[ANSWER],
                                                     question=q)), "99_t")
    assert _src(out["cells"][1]) == ("**Question (Q9).** What does it show? *See the figure above.*\n\n"
                                     "**Your answer (Q9).** YOUR ANSWER HERE")


def test_the_edition_note_counts_in_words():
    text = "".join(_src(_cells(p)[0]) for p in STUDENT)
    assert "1 functions" not in text and "1 function to write, checked by the cell after it" in text


# --------------------------------------------------------------------------- nothing gives the answer away
def test_the_student_edition_calls_no_claim():
    assert any(_CLAIM.search(_src(c)) for p in NOTEBOOKS for c in _cells(p)), "the solutions check their claims"
    found = [(p.name, c["id"]) for p in STUDENT for c in _cells(p) if _CLAIM.search(_src(c))]
    assert not found, f"claims in the student edition: {found}"


def test_no_answer_text_waits_in_a_code_cell():
    for p in STUDENT:
        for c in _cells(p):
            assert "**Answer" not in _src(c) and "run.answer(ANSWER" not in _src(c), (p.name, c["id"])


def _bound_and_loaded(src):
    tree = ast.parse("\n".join(line[:len(line) - len(line.lstrip())] + "pass"  # IPython's %pip, !ls
                               if line.lstrip().startswith(("%", "!")) else line for line in src.splitlines()))
    bound, loaded = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (bound if isinstance(node.ctx, (ast.Store, ast.Del)) else loaded).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return bound, loaded


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_later_cell_needs_a_name_only_an_answer_cell_defines(path):
    """The student edition replaces answer cells by prompts: what they define is gone for the cells after them."""
    only_in_answers, kept = set(), set()
    for c in _cells(path):
        if c["cell_type"] != "code":
            continue
        bound, loaded = _bound_and_loaded(_src(c))
        if _is_answer(c):
            only_in_answers |= bound - kept
            continue
        kept |= bound
        missing = (loaded & only_in_answers) - kept
        assert not missing, f"{path.name} {c['id']} uses {sorted(missing)}, defined only in an answer cell before it"


def test_no_markdown_line_starts_like_a_list_by_accident():
    for p in NOTEBOOKS:
        for c in _cells(p):
            if c["cell_type"] == "markdown":
                text = re.sub(r"\$\$.*?\$\$", "", _src(c), flags=re.S)
                bad = [line for line in text.splitlines() if re.match(r"\s*\+\s", line)]
                assert not bad, f"{p.name} {c['id']}: a line starting with '+' renders as a bullet: {bad}"


# --------------------------------------------------------------------------- honest fallbacks
@pytest.mark.parametrize("where, names", list(COMPARISONS.items()), ids=lambda v: "-".join(v))
def test_every_comparison_with_the_library_prints_who_stands_in(where, names):
    stem, cid = where
    cells = {c["id"]: _src(c) for c in _cells(ROOT / "exercises" / f"{stem}.ipynb")}
    for name in names:
        needs = "".join(f', "{n}"' for n in NEEDS.get(name, ()))
        assert f'nb.exercises.comparison_note("{name}"{needs})' in cells[cid], \
            f"{stem} {cid}: compares {name} with the library without saying who stands in"
        assert re.search(rf'\w+ = nb\.exercises\.use\("{name}"', "".join(cells.values())), \
            f"{stem}: no cell takes {name} through nb.exercises.use"


def _unsolved(*args, **kwargs):
    raise NotImplementedError("not yet")


@pytest.mark.parametrize("name", sorted({n for names in COMPARISONS.values() for n in names}
                                         | {n for needs in NEEDS.values() for n in needs}))
def test_while_the_library_stands_in_the_note_says_it_compares_the_library_with_itself(name, capsys):
    assert ex.use(name, _unsolved) is not _unsolved
    assert core.standing_in(name)
    note = core.comparison_note(name)
    assert "comparing the library with itself" in note and ex.EXERCISES[name].reference_name in note
    solution = ex.EXERCISES[name].reference()
    assert ex.use(name, solution, quiet=True) is solution
    assert not core.standing_in(name) and core.comparison_note(name) == ""
    assert "┌" in capsys.readouterr().out  # the banner said it too


def test_a_function_that_passes_but_calls_a_stand_in_says_which(capsys):
    ex.use("q_posterior", _unsolved, quiet=True)
    ex.use("p_step", ex.EXERCISES["p_step"].reference(), quiet=True)
    note = core.comparison_note("p_step", "q_posterior")
    assert "your p_step" in note and "q_posterior" in note and "itself" not in note
    ex.use("q_posterior", ex.EXERCISES["q_posterior"].reference(), quiet=True)
    assert core.comparison_note("p_step", "q_posterior") == ""


def test_standing_in_needs_a_check_first():
    core._STANDING_IN.pop("heun_sample", None)
    with pytest.raises(ValueError, match="has not run"):
        core.standing_in("heun_sample")
    with pytest.raises(ValueError, match="unknown exercise"):
        core.standing_in("hen_sample")


def test_a_task_used_only_through_another_exercise_names_it():
    cells = {c["id"]: _src(c) for c in _cells(ROOT / "notebooks" / "06_two_pixel_ddpm_cfg.ipynb")}
    task = " ".join(cells["ex-q_posterior-task"].split())
    assert "through your `p_step`" in task and "used once both checks pass" in task


def test_the_fallback_note_runs_in_a_comparison_cell(capsys):
    """The 06 cell itself, on the library's p_step: it prints that it compares the library with itself."""
    import nbhelpers as nb
    from nbhelpers.ddpm import DDPM

    ex.use("q_posterior", _unsolved, quiet=True)
    p_step = ex.use("p_step", _unsolved, quiet=True)
    ddpm50 = DDPM.from_schedule("cosine", 50)
    model50 = lambda x, t, y=None: torch.zeros_like(x)  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    scope = {"nb": nb, "torch": torch, "p_step": p_step, "ddpm50": ddpm50, "model50": model50, "gen": gen,
             "run": type("R", (), {"device": torch.device("cpu")})()}
    cells = {c["id"]: _src(c) for c in _cells(ROOT / "exercises" / "06_two_pixel_ddpm_cfg.ipynb")}
    exec(cells["cell-013"].replace("trained[50].result.sampling_model", "model50"), scope)
    out = capsys.readouterr().out
    assert "max |p_step − DDPM.p_step| = 0.0" in out and "comparing the library with itself" in out
