"""The package's public surface: every listed submodule exists and ``import *`` works."""
import importlib
import re
import subprocess
import sys

import nbhelpers


def test_star_import_loads_every_listed_name():
    out = subprocess.run([sys.executable, "-c", "from nbhelpers import *; print(sorted(dir()))"],
                         capture_output=True, text=True, cwd=str(nbhelpers.runtime.ROOT))
    assert out.returncode == 0, out.stderr
    for name in nbhelpers.__all__:
        assert f"'{name}'" in out.stdout


def test_every_package_module_is_reachable_from_the_top():
    modules = {p.stem for p in nbhelpers.runtime.ROOT.joinpath("nbhelpers").glob("*.py")} - {"__init__", "__main__"}
    modules |= {p.name for p in nbhelpers.runtime.ROOT.joinpath("nbhelpers").iterdir()
                if p.is_dir() and (p / "__init__.py").exists()}
    public = {m for m in modules if not m.startswith("_")}
    assert public <= set(nbhelpers.__all__), f"not listed in nbhelpers.__all__: {sorted(public - set(nbhelpers.__all__))}"
    for name in public:
        assert getattr(nbhelpers, name) is importlib.import_module(f"nbhelpers.{name}")


def test_every_slow_entry_names_a_test():
    from tests.conftest import SLOW

    root = nbhelpers.runtime.ROOT
    stale = [e for e in SLOW
             if not re.search(rf"^def {re.escape(e.split('::')[1])}\(", (root / e.split("::")[0]).read_text(), re.M)]
    assert not stale, f"tests/conftest.py SLOW names tests that do not exist: {stale}"
