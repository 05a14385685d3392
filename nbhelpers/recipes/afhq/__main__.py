"""``python -m nbhelpers.recipes.afhq``: the same trainer as ``python -m nbhelpers.afhq``."""
import sys

from .cli import main

sys.exit(main())
