"""Exercises: checks that teach, and the fallback that keeps a notebook running with blanks.

**Convention: nbgrader's markers.** In the solution notebooks a teaching function keeps its body between
``### BEGIN SOLUTION`` and ``### END SOLUTION``; ``tools/make_exercises.py`` (``make exercises``) writes the
student edition in ``exercises/``, where each marked body becomes ``raise NotImplementedError("<task>")``.
The exercise's cell also carries nbgrader's cell metadata (``solution: true``, ``grade_id`` = the exercise's
name), so an instructor with nbgrader can run ``nbgrader generate_assignment`` on the same notebooks. We follow
nbgrader rather than otter-grader because its markers are plain comments that need nothing at run time: the
checks here are ordinary functions, so the student edition runs in JupyterLab, in Colab and headless with no
grading server and no extra package. Written answers are cells tagged ``answer`` (the mechanism papermill
already uses for ``parameters``): nbgrader marks them through its own metadata and tooling, a tag survives
Jupyter and Colab as it is, and the generator replaces the whole cell with a prompt.

In a notebook::

    def em_step(sde, x, t, h, generator):
        ### BEGIN SOLUTION
        eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + h * sde.drift(x, t) + sde.diffusion(x, t) * math.sqrt(h) * eps
        ### END SOLUTION

    em_step = nb.exercises.use("em_step", em_step)

:func:`use` runs the exercise's check, prints one line per case (pass or fail, expected against got and one
hint; "not implemented yet" while the body still raises) and returns what the later cells call: the student's
function once every case passes, otherwise the library's equivalent, announced by a banner. :func:`check`
returns the :class:`CheckReport` without choosing.

Every case compares against a closed form or the library (shapes, boundary values, a moment, a known
solution); tolerances of the statistical cases are four standard errors. Time directions are those of the
modules checked: :mod:`nbhelpers.paths` and the samplers use t = 0 noise, t = 1 data; DDPM's k = 0 data.

Each notebook's exercises live in a module of this package (``flows``: 01–03, ``unet``: 04, ``score``: 05, ``ddpm``: 06, ``cfg``: 07, ``afhq``: 08) that registers them in
:data:`EXERCISES` through :func:`register`; :mod:`.core` holds the machinery (the registry, :func:`check` and
:func:`use`), with :mod:`.timeouts` (the time limit), :mod:`.observe` (the learner's function and its inputs
watched) and :mod:`.differences` (what differs and how it is said) beneath it.
"""
from __future__ import annotations

# each notebook group's module registers its exercises on import, in the order of the series
from . import flows  # noqa: F401  (01–03)
from . import unet  # noqa: F401  (04)
from . import score  # noqa: F401  (05)
from . import ddpm  # noqa: F401  (06)
from . import cfg  # noqa: F401  (07)
from . import afhq  # noqa: F401  (08)
from .core import (EXERCISES, NOT_IMPLEMENTED, Case, CaseResult, CheckReport, Exercise, check, comparison_note,
                   exercises_in, register, standing_in, use)

__all__ = ["Case", "CaseResult", "CheckReport", "Exercise", "EXERCISES", "check", "use", "exercises_in",
           "register", "NOT_IMPLEMENTED", "standing_in", "comparison_note"]
