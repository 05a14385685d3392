"""Alias of :mod:`nbhelpers.recipes.afhq`, kept so that ``python -m nbhelpers.afhq`` (the trainer's
documented command line) and ``nb.afhq.<name>`` keep working. The code lives in
``nbhelpers/recipes/afhq/``; new code imports it from there.
"""
from __future__ import annotations

import sys

from .recipes.afhq import *  # noqa: F401,F403 (the alias re-exports the recipe's public names)
from .recipes.afhq import __all__  # noqa: F401
from .recipes.afhq.cli import main

if __name__ == "__main__":
    sys.exit(main())
