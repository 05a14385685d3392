"""No measured number is typed into a notebook's Markdown: answers render them from the run."""
import json

import pytest

from nbhelpers.answers import measured_numbers
from nbhelpers.runtime import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_markdown_cells_hold_no_measured_numbers(path):
    cells = json.loads(path.read_text())["cells"]
    found = {i: measured_numbers("".join(c["source"])) for i, c in enumerate(cells) if c["cell_type"] == "markdown"}
    found = {i: hits for i, hits in found.items() if hits}
    assert not found, (f"{path.name}: Markdown cells {sorted(found)} type measured numbers {found}; "
                       "render them with run.answer (nbhelpers.answers) or write settings as $maths$ or `code`")


def test_every_notebook_that_reports_metrics_answers_from_them():
    for path in NOTEBOOKS:
        src = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
        if "run.report(" in src:
            assert "run.answer(" in src, f"{path.name} records metrics but renders no answer from them"
