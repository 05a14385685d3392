"""Find the run to publish, write the site's sources from it, and build them with Sphinx.

The sources are MyST: a landing page (``index.md``) with the README's series table, a gallery page and the
run's executed notebooks, each with a line saying which run it shows, its written answers set apart as
answers with the claims checked beside them, and a closing list of every claim the run checked. They are
written to a temporary folder and built by Sphinx (MyST-NB, the book theme) into ``build/site/``.
"""
from __future__ import annotations

import ast
import json
import re
import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import nbformat

from nbhelpers.answers import claim_key
from nbhelpers.cli import read_json
from nbhelpers.runner import format_duration, select_notebooks
from nbhelpers.runtime import ROOT, build_dir, figures_dir, metrics_dir
from tools.readme_figures import GALLERY, provenance
from tools.stamp_colab import BADGE_LINE, BRANCH, INSTALL_CELL_ID, SERIES_BEGIN, SERIES_END, colab_url, repository_url

HERE = Path(__file__).resolve().parent
PROJECT = "diffusion-notebooks"
CLAIMS_HEADING = "Claims checked in this run"
CLAIMS_ANCHOR = "claims-checked-in-this-run"  # MyST's slug of CLAIMS_HEADING


def site_dir() -> Path:
    """``build/site/`` under the output root (``$NBHELPERS_OUTPUT_DIR``, else the checkout)."""
    return build_dir() / "site"


def screenshots_dir() -> Path:
    return build_dir() / "site-screenshots"


# --------------------------------------------------------------------------- the run
@dataclass(frozen=True)
class ExecutedNotebook:
    """One notebook of the run: its executed copy, its metrics record and the gallery's figure of it."""

    name: str
    notebook: Path
    record: dict[str, Any]
    provenance: dict[str, Any]
    figure: Path

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics", {})


@dataclass(frozen=True)
class SeriesRun:
    """The last run of the chosen notebooks: one profile, every notebook finished."""

    profile: str
    notebooks: tuple[ExecutedNotebook, ...]
    root: Path = field(default_factory=build_dir)

    def _grouped(self, key: str) -> str:
        groups: dict[str, list[str]] = {}
        for nb in self.notebooks:
            groups.setdefault(str(nb.provenance.get(key)), []).append(nb.name[:2])
        if len(groups) == 1:
            return next(iter(groups))
        return ", ".join(f"{value} ({', '.join(names)})" for value, names in groups.items())

    @property
    def commit(self) -> str:
        """The run's commit, or each commit with the notebooks run at it when they differ."""
        return self._grouped("commit")

    @property
    def device(self) -> str:
        return self._grouped("device")

    @property
    def date(self) -> str:
        dates = sorted({str(nb.provenance.get("date")) for nb in self.notebooks})
        return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"

    def describe(self) -> str:
        names = [nb.name for nb in self.notebooks]
        which = names[0] if len(names) == 1 else f"{names[0]} … {names[-1]}"
        return (f"the {self.profile} run of {len(names)} notebook{'s' * (len(names) != 1)} ({which}) in "
                f"{self.root}: commit {self.commit}, device {self.device}, {self.date}")


def find_run(notebooks: str | Sequence[str] | None = "all") -> SeriesRun:
    """The run the site shows, or a ``ValueError`` naming the notebook, the file and what is wrong.

    The checks are the README gallery's (``tools.readme_figures.provenance``): a smoke run, a run that
    stopped half-way or a notebook without its gallery figure is refused. On top of them a site shows one
    run: every chosen notebook needs its executed copy, and all must share one profile.
    """
    names = select_notebooks(notebooks if notebooks is not None else "all")
    executed_dir, metrics_root = build_dir() / "notebooks", metrics_dir()
    found = []
    for name in names:
        executed, metrics_file = executed_dir / f"{name}.ipynb", metrics_root / f"{name}.json"
        for path in (metrics_file, executed):
            if not path.is_file():
                raise ValueError(f"{name} has no finished run here ({path} does not exist): run "
                                 f"`make notebooks NOTEBOOKS={name[:2]} PROFILE=cpu` (or gpu) first")
        record = read_json(metrics_file, "metrics file")
        if not isinstance(record, dict):
            raise ValueError(f"metrics file {metrics_file} holds {type(record).__name__}, not a run's record")
        try:  # a smoke run's figures live under build/smoke/figures: look there, so the refusal says "smoke"
            entry = provenance(name, figures_dir(record.get("profile")), metrics_root)
        except ValueError as exc:
            raise ValueError(f"make site publishes a finished cpu or gpu run, and {name}'s is not one: {exc}") from None
        figure = figures_dir(record.get("profile")) / name / f"{GALLERY[name]}.png"
        found.append(ExecutedNotebook(name, executed, record, entry, figure))
    profiles = {nb.provenance["profile"] for nb in found}
    if len(profiles) != 1:
        mix = ", ".join(f"{nb.name}: {nb.provenance['profile']}" for nb in found)
        raise ValueError(f"the last runs mix profiles ({mix}); a site shows one run: re-run the others with "
                         f"`make notebooks PROFILE=<profile>` first")
    return SeriesRun(profiles.pop(), tuple(found))


# --------------------------------------------------------------------------- what the README already says
@dataclass(frozen=True)
class SeriesRow:
    """A row of the README's series table (stamped by ``make colab-badges``)."""

    name: str
    what: str
    data: str
    costs: dict[str, str]


def readme_series(readme: str) -> tuple[dict[str, SeriesRow], list[str], str]:
    """The README's series table: rows by notebook, the cost columns' headers and the note under it."""
    if SERIES_BEGIN not in readme or SERIES_END not in readme:
        raise ValueError(f"README.md has no series table between {SERIES_BEGIN!r} and {SERIES_END!r}: "
                         f"run `make colab-badges`")
    block = readme.split(SERIES_BEGIN, 1)[1].split(SERIES_END, 1)[0].strip()
    lines = block.splitlines()
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    header = cells(lines[0])
    cost_cols = [h for h in header if h.endswith(" run")]
    rows = {}
    for line in lines[2:]:
        if not line.startswith("|"):
            continue
        row = dict(zip(header, cells(line)))
        m = re.fullmatch(r"`(\d\d_\w+)`", row.get("notebook", ""))
        if m:
            rows[m.group(1)] = SeriesRow(m.group(1), row.get("what you learn", ""), row.get("data", ""),
                                         {h: row.get(h, "") for h in cost_cols})
    note = " ".join(l.strip() for l in lines if not l.startswith("|") and l.strip())
    return rows, cost_cols, note


def readme_intro(readme: str) -> str:
    """The README's first paragraph (what the series is)."""
    body = readme.split("\n", 1)[1] if readme.startswith("# ") else readme
    return body.strip().split("\n\n", 1)[0].replace("\n", " ")


def readme_captions(readme: str) -> dict[str, str]:
    """The README gallery's caption of each notebook's figure."""
    out = {}
    for m in re.finditer(r"\*\*\d\d\*\*\s*([^|]*?)\s*!\[[^\]]*\]\(figures/readme/(\d\d_\w+)/", readme):
        out[m.group(2)] = m.group(1).strip()
    return out


def badge_url(notebook: Path) -> str | None:
    """The Colab address in a notebook's header badge (stamped by ``make colab-badges`` / ``make exercises``)."""
    if not notebook.is_file():
        return None
    cells = read_json(notebook, "notebook").get("cells") or [{}]  # the header alone: no need to validate the rest
    header = cells[0].get("source", "") if cells[0].get("cell_type") == "markdown" else ""
    m = BADGE_LINE.search(header if isinstance(header, str) else "".join(header))
    target = re.search(r"\]\((https://colab\.research\.google\.com/[^)\s]+)\)\s*$", m.group(0)) if m else None
    return target.group(1) if target else None


def colab_badges(name: str, executed: Path, short: bool = False) -> str:
    """The notebook's and its student edition's "Open in Colab" links, as badges drawn by the site's CSS
    (the site loads nothing from another host, so not Colab's badge image). ``short``: for the series
    table, whose column says "open in Colab"."""
    notebook_url = badge_url(executed) or colab_url(repository_url(), name)
    student_url = badge_url(ROOT / "exercises" / f"{name}.ipynb")
    words = ("notebook", "student edition") if short else ("Open in Colab", "Student edition in Colab")
    out = f"[{words[0]}]({notebook_url}){{.colab-badge}}"
    if student_url:
        out += f" [{words[1]}]({student_url}){{.colab-badge .student}}"
    return out


# --------------------------------------------------------------------------- claims and their texts
def _claim_calls(tree: ast.AST) -> list[str]:
    """The texts of ``claim("…", …)`` / ``nb.answers.claim("…", …)`` calls with a literal text."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called(node) == "claim" and node.args:
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.strip():
                out.append(first.value.strip())
    return out


def _called(node: ast.Call) -> str | None:
    func = node.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def _parse_cell(source: str) -> ast.AST | None:
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        return ast.parse(code)
    except SyntaxError:
        return None


@dataclass(frozen=True)
class ClaimIndex:
    """Claim texts by metric key, and by the package function that makes them (a recipe's evidence)."""

    texts: dict[str, str]
    by_function: dict[str, list[str]]

    @classmethod
    def from_package(cls, package: Path | None = None) -> "ClaimIndex":
        texts: dict[str, str] = {}
        by_function: dict[str, list[str]] = {}
        for path in sorted((package or ROOT / "nbhelpers").rglob("*.py")):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    made = _claim_calls(node)
                    if made:
                        by_function.setdefault(node.name, []).extend(made)
                        texts.update({claim_key(t): t for t in made})
        return cls(texts, by_function)

    def in_cell(self, source: str) -> list[str]:
        """The claims a cell makes: literal ones, and those of the package functions it calls."""
        tree = _parse_cell(source)
        if tree is None:
            return []
        made = _claim_calls(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _called(node) in self.by_function:
                made += self.by_function[_called(node)]
        return list(dict.fromkeys(made))

    def text(self, key: str) -> str:
        """A claim's words from its metric key; a key whose claim is not found reads as its words."""
        if key in self.texts:
            return self.texts[key]
        slug = key.removeprefix("claims/")
        cut = re.fullmatch(r"(.*)_[0-9a-f]{8}", slug)  # a long claim's key: cut, with a digest
        return (cut.group(1) if cut else slug).replace("_", " ") + ("…" if cut else "")


# --------------------------------------------------------------------------- the pages
_WARNING = re.compile(r"^> (⚠️ .*)$", re.M)


def answer_block(text: str, checked: list[tuple[str, bool]]) -> str:
    """A written answer set apart as one, with the claims checked beside it; a claim this run does not
    support (``nbhelpers.answers.render``'s quoted warning) becomes a warning inside it."""
    body = _WARNING.sub(lambda m: f":::{{warning}}\n{m.group(1)}\n:::", text.strip())
    lines = ["::::{admonition} Answer · written from this run's numbers", ":class: answer", "", body]
    if checked:
        lines += ["", "*Checked in this run:*", ""] + [f"- {'✓' if holds else '✗'} {t}" for t, holds in checked]
    return "\n".join(lines + ["::::"])


def run_banner(nb: ExecutedNotebook, profile: str, claims: dict[str, bool]) -> str:
    p = nb.provenance
    machine = f"{p.get('threads')} threads of {p.get('processor')}" if p.get("processor") else f"{p.get('threads')} threads"
    took = f", {format_duration(float(nb.record['elapsed_s']))}" if nb.record.get("elapsed_s") is not None else ""
    held = sum(claims.values())
    checked = (f" Its written answers are filled in from the run's measurements, and the claims they make are "
               f"checked in code: {held} of {len(claims)} hold ([listed at the end](#{CLAIMS_ANCHOR}))."
               if claims else " Its written answers are filled in from the run's measurements.")
    return "\n".join([
        f":::{{admonition}} The executed notebook of one `{profile}` run",
        ":class: run-banner",
        "",
        f"Run in the `{profile}` profile on `{p.get('device')}` (seed {p.get('seed')}, commit `{p.get('commit')}`, "
        f"{p.get('date')}{took}; {machine}): every output, figure and number below is that run's.{checked}",
        ":::",
    ])


def claims_section(claims: dict[str, bool], index: ClaimIndex, texts: dict[str, str]) -> str:
    """The closing table of every claim the run checked: those the page's cells make first, in their order."""
    held = sum(claims.values())
    ordered = [k for k in texts if k in claims] + [k for k in claims if k not in texts]
    lines = [f"## {CLAIMS_HEADING}", "",
             "Each written answer above is filled in from this run's measurements; the claims beside them are "
             "checked in code, and one this run does not support shows as a warning under its answer. "
             f"{held} of {len(claims)} hold:", "",
             "| claim | this run |", "|---|---|"]
    lines += [f"| {texts.get(k, index.text(k)).replace('|', '/')} | {'✓ holds' if claims[k] else '✗ does not hold'} |"
              for k in ordered]
    return "\n".join(lines)


def page_notebook(nb: ExecutedNotebook, profile: str, index: ClaimIndex) -> nbformat.NotebookNode:
    """The executed notebook as its page: badges, the run it shows, answers set apart, claims listed."""
    book = nbformat.read(nb.notebook, as_version=4)
    claims = {k: bool(v) for k, v in nb.metrics.items() if k.startswith("claims/") and isinstance(v, bool)}
    cells = book.cells
    if not cells or cells[0].cell_type != "markdown":
        raise ValueError(f"{nb.notebook}: the first cell must be the notebook's markdown title")
    badges = colab_badges(nb.name, nb.notebook)
    header = cells[0].source
    if BADGE_LINE.search(header):
        header = BADGE_LINE.sub(lambda _: badges + "\n\n", header, count=1)
    else:
        title, _, rest = header.partition("\n")
        header = f"{title}\n\n{badges}\n{rest}"
    cells[0].source = header
    cells.insert(1, nbformat.v4.new_markdown_cell(run_banner(nb, profile, claims)))
    texts: dict[str, str] = {}  # claim key → its words, in the order the page's cells make them
    for cell in cells:
        if cell.cell_type != "code":
            continue
        if cell.get("id") == INSTALL_CELL_ID:  # Colab's install step: nothing to read on the site
            cell.metadata.setdefault("tags", []).append("remove-cell")
        made = index.in_cell(cell.source)
        texts.update({claim_key(t): t for t in made if claim_key(t) not in texts})
        if ".answer(" not in cell.source:
            continue
        checked = [(t, claims[claim_key(t)]) for t in made if claim_key(t) in claims]
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = answer_block(data["text/markdown"], checked)
    if claims:
        cells.append(nbformat.v4.new_markdown_cell(claims_section(claims, index, texts)))
    return book


def index_page(run: SeriesRun, readme: str) -> str:
    rows, cost_cols, note = readme_series(readme)
    claims = [v for nb in run.notebooks for k, v in nb.metrics.items() if k.startswith("claims/") and isinstance(v, bool)]
    lines = ["---", "html_theme.sidebar_secondary.remove: true", "---", "", f"# {PROJECT}", "", readme_intro(readme), "",
             ":::{admonition} What this site shows", ":class: run-banner", "",
             f"Each page is a notebook as one run executed it: the `{run.profile}` profile on `{run.device}`, "
             f"commit `{run.commit}`, {run.date}. Its outputs, figures, tables and written answers are that run's; "
             f"the answers are filled in from its measurements and the claims they make are checked in code "
             f"({sum(claims)} of {len(claims)} hold, listed at the end of each page). The badges open the notebook, "
             "or its student edition with the exercises left blank, in Colab.",
             ":::", "", "## The series", "",
             "```{table}", ":class: series", "",
             "| notebook | what you learn | data | run time | open in Colab |",
             "|---|---|---|---|---|"]
    for nb in run.notebooks:
        row = rows.get(nb.name, SeriesRow(nb.name, "", "", {}))
        # one line per profile: "`cpu` 8 s" (the README's columns, folded to fit the page)
        costs = " ".join(f"[{c.removesuffix(' run')} {row.costs[c]}]{{.cost}}" for c in cost_cols if row.costs.get(c))
        lines.append(f"| [{nb.name}]({nb.name}.ipynb) | {row.what} | {row.data} | {costs} | "
                     f"{colab_badges(nb.name, nb.notebook, short=True)} |")
    lines += ["```", "", note, "", "## Gallery", "",
              "One figure per notebook, the ones the README shows, here from this run: [the gallery](gallery.md).", "",
              "```{toctree}", ":hidden:", "", "gallery", "```", "",
              "```{toctree}", ":hidden:", ":caption: The series", "", *[nb.name for nb in run.notebooks], "```", ""]
    return "\n".join(lines)


def gallery_page(run: SeriesRun, readme: str) -> str:
    captions = readme_captions(readme)
    lines = ["# Gallery", "",
             f"One figure per notebook — the figures the README shows — from this site's run (the `{run.profile}` "
             f"profile, commit `{run.commit}`).", ""]
    for nb in run.notebooks:
        caption = captions.get(nb.name, nb.name)
        lines += [f"## {nb.name[:2]} · {caption}", "",
                  f":::{{figure}} _gallery/{nb.name}.png", f":alt: {caption}", ":figclass: gallery", "",
                  f"From [`{nb.name}`]({nb.name}.ipynb): `{GALLERY[nb.name]}.png`, {nb.provenance.get('device')}, "
                  f"commit `{nb.provenance.get('commit')}`.", ":::", ""]
    return "\n".join(lines)


def write_sources(run: SeriesRun, src: Path) -> None:
    """The site's MyST sources and Sphinx configuration, in ``src``."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    src.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(HERE / "conf.py", src / "conf.py")
    shutil.copytree(HERE / "static", src / "_static", dirs_exist_ok=True)
    (src / "site.json").write_text(json.dumps({
        "project": PROJECT, "copyright": f"the {PROJECT} authors",
        "repository_url": repository_url(), "branch": BRANCH,
    }, indent=2), encoding="utf-8")
    index = ClaimIndex.from_package()
    for nb in run.notebooks:
        nbformat.write(page_notebook(nb, run.profile, index), src / f"{nb.name}.ipynb")
        (src / "_gallery").mkdir(exist_ok=True)
        shutil.copyfile(nb.figure, src / "_gallery" / f"{nb.name}.png")
    (src / "index.md").write_text(index_page(run, readme), encoding="utf-8")
    (src / "gallery.md").write_text(gallery_page(run, readme), encoding="utf-8")


# --------------------------------------------------------------------------- the build
@dataclass(frozen=True)
class BuiltSite:
    run: SeriesRun
    folder: Path
    pages: tuple[str, ...]
    seconds: float


def build_site(run: SeriesRun, out: Path | None = None) -> BuiltSite:
    """Write the sources and build them with Sphinx into ``out`` (default ``build/site/``), replacing it only
    once the build has succeeded; a warning fails the build."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        raise ValueError("Sphinx is missing: pip install -e '.[site]' (make site installs it)") from None
    out = Path(out) if out is not None else site_dir()
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=".site-", dir=out.parent) as tmp:
        src, html = Path(tmp) / "src", Path(tmp) / "html"
        write_sources(run, src)
        with warnings.catch_warnings():  # the extensions' use of APIs Sphinx will remove: theirs to fix, not ours
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            rc = build_main(["-b", "html", "-q", "-E", "-W", "--keep-going", "-d", str(Path(tmp) / "doctrees"),
                             str(src), str(html)])
        if rc != 0:
            raise ValueError(f"sphinx-build failed (exit status {rc}); its warnings are above")
        if out.exists():
            shutil.rmtree(out)
        shutil.move(str(html), str(out))
    (out / ".buildinfo").unlink(missing_ok=True)
    pages = tuple(sorted(str(p.relative_to(out)) for p in out.glob("*.html")))
    return BuiltSite(run, out, pages, time.perf_counter() - t0)
