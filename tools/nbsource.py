"""Convert notebooks to and from a plain-text "percent" source, for editing and review.

    python tools/nbsource.py to-py notebooks/01_sdes.ipynb build/01_sdes.py
    python tools/nbsource.py to-ipynb build/01_sdes.py notebooks/01_sdes.ipynb

Cell markers: ``# %%`` (code), ``# %% [markdown]`` (markdown; each line starts with ``# ``),
and ``# %% tags=["parameters"]`` for a tagged code cell. Outputs are never written.
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import nbformat

MARK = re.compile(r"^# %%(?P<md> \[markdown\])?(?: tags=(?P<tags>\[.*\]))?\s*$")


def py_to_nb(text: str) -> nbformat.NotebookNode:
    cells, kind, tags, buf = [], None, [], []

    def close() -> None:
        if kind is None:
            return
        body = "\n".join(buf).strip("\n")
        if kind == "markdown":
            body = "\n".join(l[2:] if l.startswith("# ") else l.lstrip("#") for l in body.split("\n"))
            cell = nbformat.v4.new_markdown_cell(body)
        else:
            cell = nbformat.v4.new_code_cell(body)
        if tags:
            cell.metadata["tags"] = tags
        cells.append(cell)

    for line in text.split("\n"):
        m = MARK.match(line)
        if m:
            close()
            kind = "markdown" if m.group("md") else "code"
            tags = json.loads(m.group("tags")) if m.group("tags") else []
            buf = []
        else:
            buf.append(line)
    close()
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for i, c in enumerate(nb.cells):
        c["id"] = f"cell-{i:03d}"
    return nb


def nb_to_py(nb: nbformat.NotebookNode) -> str:
    out = []
    for c in nb.cells:
        tags = c.metadata.get("tags", [])
        t = f" tags={json.dumps(tags)}" if tags else ""
        if c.cell_type == "markdown":
            out.append(f"# %% [markdown]{t}")
            out.extend(("# " + l) if l else "#" for l in c.source.split("\n"))
        else:
            out.append(f"# %%{t}")
            out.append(c.source)
        out.append("")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[0] not in ("to-ipynb", "to-py"):
        print(__doc__)
        return 2
    src, dst = Path(argv[1]), Path(argv[2])
    if argv[0] == "to-ipynb":
        nbformat.write(py_to_nb(src.read_text()), str(dst))
    else:
        dst.write_text(nb_to_py(nbformat.read(str(src), as_version=4)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
