"""The package's floors: every module imports only modules on floors below its own (ARCHITECTURE.md).

Read statically (ast), so lazy imports inside functions count too. Imports inside one top-level
unit (``models.unet`` → ``models.embeddings``) are free. The foundation (floor 0) is itself four floors
(0a–0d) held to the same rule, so no two of its modules import each other. A new module fails here until
it is given a floor.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "nbhelpers"

# bottom to top; a floor's modules import only lower floors
FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # 0 the foundation, in four floors
    ("0a", ("_checks", "answers", "cli", "progress")),  # argument checks, written answers, CLI conventions, progress bars
    ("0b", ("files", "layout")),  # atomic writes and locks; paths, profiles, environment variables, a dry run's outputs
    ("0c", ("devices", "dryrun", "standin")),  # devices, seeds and float64 work; dry runs; the stand-in data sets
    ("0d", ("runtime", "checkpoints")),  # the notebook run; the checkpoint file
    ("1", ("schedules", "solvers", "guidance", "ddpm_oracle", "models", "metrics", "plotting", "data", "training")),  # building blocks
    ("2", ("paths", "distributions", "ddpm")),  # probability paths, distributions, discrete DDPM
    ("3", ("losses", "sde", "ddpm_sampling")),  # built on paths and solvers; guided DDPM sampling in chunks
    ("4", ("widgets", "runner")),  # front ends
    ("5", ("recipes",)),  # one recipe per notebook
    ("6", ("afhq", "exercises")),  # the alias behind ``python -m nbhelpers.afhq``; the student edition's checks
)
FLOOR = {unit: i for i, (_, units) in enumerate(FLOORS) for unit in units}
FLOOR_NAME = [name for name, _ in FLOORS]
ROOT_FLOOR = 0  # ``from nbhelpers import __version__``

# private names imported across units, each with the reason it stays for now; an entry no longer used fails
KNOWN_PRIVATE: dict[tuple[str, str, str], str] = {}


def _unit(path: Path, package: Path) -> str | None:
    """The top-level unit of a file (``models`` for models/unet.py); None for the package's own __init__."""
    rel = path.relative_to(package)
    if rel == Path("__init__.py"):
        return None
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path, package: Path) -> list[tuple[int, str, str]]:
    """``(line, target unit, imported name)`` for every import of the package from ``path``."""
    pkg_parts = [package.name, *path.relative_to(package).parent.parts]
    known = {p.stem for p in package.glob("*.py")} | {p.name for p in package.iterdir() if p.is_dir()}
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[:len(pkg_parts) - (node.level - 1)]
                target = base + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == package.name:
                target = node.module.split(".")
            else:
                continue
            for alias in node.names:
                full = target if node.module else target + [alias.name]
                unit = full[1] if len(full) > 1 and full[1] in known else ""
                out.append((node.lineno, unit, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == package.name:
                    out.append((node.lineno, parts[1] if len(parts) > 1 and parts[1] in known else "", alias.name))
    return out


def violations(package: Path = PACKAGE) -> list[str]:
    """Every import that goes sideways or up, or reaches a private name of another unit, as one line each."""
    bad, used_known = [], set()
    for path in sorted(package.rglob("*.py")):
        unit = _unit(path, package)
        if unit is None:
            continue
        name = path.relative_to(package.parent)
        if unit not in FLOOR:
            bad.append(f"{name}: module {unit!r} has no floor; add it to FLOORS in tests/test_layers.py "
                       f"and to ARCHITECTURE.md")
            continue
        here = FLOOR[unit]
        for line, target, imported in _imports(path, package):
            if target == unit:
                continue
            there = FLOOR.get(target, ROOT_FLOOR) if target else ROOT_FLOOR
            if there >= here:
                bad.append(f"{name}:{line} imports nbhelpers.{target or imported} (floor {FLOOR_NAME[there]}) from "
                           f"floor {FLOOR_NAME[here]}; a module imports only floors below its own")
            if imported.startswith("_") and not imported.startswith("__") and target:
                if (unit, target, imported) in KNOWN_PRIVATE:
                    used_known.add((unit, target, imported))
                else:
                    bad.append(f"{name}:{line} imports the private {target}.{imported}; make it public or keep it inside")
    if package == PACKAGE:
        bad += [f"KNOWN_PRIVATE entry {k} is no longer used; remove it" for k in set(KNOWN_PRIVATE) - used_known]
    return list(dict.fromkeys(bad))  # one line per import, however many names it brings


def test_no_module_imports_a_floor_above_or_beside_its_own():
    bad = violations()
    assert not bad, "\n".join(bad)


def test_every_floor_entry_names_a_module():
    units = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert set(FLOOR) <= units, f"FLOORS names modules that do not exist: {sorted(set(FLOOR) - units)}"


@pytest.mark.parametrize("source, expected", [
    ("from ..training import train\n", "imports nbhelpers.training (floor 1) from floor 1"),  # models → training
    ("from ..losses import flow_matching_loss\n", "imports nbhelpers.losses (floor 3) from floor 1"),
    ("def f():\n    from ..recipes.mnist import mnist_recipe\n", "imports nbhelpers.recipes (floor 5) from floor 1"),
    ("import nbhelpers.paths\n", "imports nbhelpers.paths (floor 2) from floor 1"),
    ("from .. import training\n", "imports nbhelpers.training (floor 1) from floor 1"),
    ("from ..runtime import _host\n", "imports the private runtime._host"),
])
def test_an_upward_or_private_import_is_named(tmp_path, source, expected):
    package = tmp_path / "nbhelpers"
    (package / "models").mkdir(parents=True)
    for unit in FLOOR:
        if unit != "models":
            (package / f"{unit}.py").write_text("")
    (package / "__init__.py").write_text("from .runtime import setup\n")
    (package / "models" / "__init__.py").write_text("")
    (package / "models" / "unet.py").write_text("from .._checks import check_labels\nfrom .embeddings import x\n" + source)
    bad = violations(package)
    assert len(bad) == 1 and bad[0].startswith("nbhelpers/models/unet.py:") and expected in bad[0], bad


@pytest.mark.parametrize("unit, source, expected", [
    ("layout", "def f():\n    from .dryrun import redirect\n", "imports nbhelpers.dryrun (floor 0c) from floor 0b"),
    ("dryrun", "from .runtime import build_dir\n", "imports nbhelpers.runtime (floor 0d) from floor 0c"),
    ("devices", "from . import dryrun\n", "imports nbhelpers.dryrun (floor 0c) from floor 0c"),
    ("cli", "from .progress import progress_bar\n", "imports nbhelpers.progress (floor 0a) from floor 0a"),
])
def test_the_foundation_imports_downwards_too(tmp_path, unit, source, expected):
    package = tmp_path / "nbhelpers"
    package.mkdir()
    for other in FLOOR:
        (package / f"{other}.py").write_text("")
    (package / "__init__.py").write_text("from .runtime import setup\n")
    (package / f"{unit}.py").write_text(source)
    bad = violations(package)
    assert len(bad) == 1 and bad[0].startswith(f"nbhelpers/{unit}.py:") and expected in bad[0], bad
