"""Shared conventions of the project's command lines (``nbhelpers.afhq``, ``benchmarks``, the peer scripts).

- Every flag has a dashed spelling (``--image-size``), the one ``--help`` shows; a flag whose name has
  an underscore also accepts the underscored spelling (``--image_size``), as the assignments write it.
- On/off flags are ``--fid`` / ``--no-fid`` pairs (:class:`Switch`); ``--fid True`` and
  ``--fid False`` keep working.
- The usage line names the program as it was started (:func:`invoked_name`).
- Integer and float flags are range-checked while parsing (:func:`int_at_least`, :func:`positive_float`),
  so a bad value is one ``error:`` line naming the flag and the valid range.
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

__all__ = ["HelpFormatter", "Switch", "flag", "invoked_name", "int_at_least", "positive_float", "boolean",
           "underscore_only_flags"]

_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


def boolean(name: str) -> Callable[[str], bool]:
    """Parse true/false, 1/0, yes/no, on/off (any case) for flag ``name``."""
    def parse(text: str) -> bool:
        key = text.strip().lower()
        if key in _TRUE:
            return True
        if key in _FALSE:
            return False
        raise argparse.ArgumentTypeError(f"{name} takes no value or one of {', '.join(_TRUE + _FALSE)}; got {text!r}")

    return parse


def int_at_least(name: str, minimum: int = 1) -> Callable[[str], int]:
    """Parse an integer ``>= minimum`` for flag ``name``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{name} must be an integer >= {minimum}, got {value}")
        return value

    return parse


def positive_float(name: str) -> Callable[[str], float]:
    """Parse a finite number ``> 0`` for flag ``name``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"{name} must be a positive number, got {text!r}")
        return value

    return parse


class Switch(argparse.BooleanOptionalAction):
    """``--fid`` / ``--no-fid`` (and ``--no_fid``); ``--fid True`` and ``--fid False`` work too."""

    def __init__(self, option_strings: Sequence[str], dest: str, default: bool = False, help: str | None = None) -> None:
        super().__init__(option_strings, dest, default=default, help=help)
        self.help = help  # as written (Python < 3.14 would append "(default: False)")
        self.option_strings += ["--no_" + s[5:].replace("-", "_") for s in self.option_strings if s.startswith("--no-")]
        self.nargs = "?"
        self.type = boolean(dest)
        self.metavar = "BOOL"

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        negative = option_string is not None and option_string[:5] in ("--no-", "--no_")
        if negative and values is not None:
            parser.error(f"{option_string} takes no value (use --{self.dest.replace('_', '-')} {values} instead)")
        setattr(namespace, self.dest, False if negative else (True if values is None else values))


def _shown(action: argparse.Action) -> list[str]:
    names = action.option_strings
    return [s for s in names if "_" not in s or s.replace("_", "-") not in names]


class HelpFormatter(argparse.HelpFormatter):
    """Shows each flag by its dashed spelling only (the underscored twin is accepted, not listed)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        shown = _shown(action)
        if action.nargs == 0 or isinstance(action, Switch):
            return ", ".join(shown)
        metavar = self._format_args(action, self._get_default_metavar_for_optional(action))
        return ", ".join(f"{s} {metavar}" for s in shown)

    def _format_usage(self, usage, actions, groups, prefix):
        slim = []
        for a in actions:  # one spelling per flag in the usage line
            if a.option_strings:
                switch = isinstance(a, Switch)
                a = copy.copy(a)
                a.option_strings = _shown(a)[:2 if switch else 1]
                if switch:
                    a.nargs = 0  # "[--fid | --no-fid]"
                    a.format_usage = lambda names=a.option_strings: " | ".join(names)
            slim.append(a)
        return super()._format_usage(usage, slim, groups, prefix)


def flag(parser: Any, name: str, *short: str, **kwargs: Any) -> argparse.Action:
    """Add ``--name-with-dashes`` and, if ``name`` has an underscore, its ``--name_with_underscores`` twin
    as one flag (``dest=name``) to ``parser`` or an argument group; ``short`` adds e.g. ``-p``."""
    spellings = [*short, f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
    return parser.add_argument(*spellings, dest=name, **kwargs)


def invoked_name(module: str) -> str:
    """The program name for the usage line: the console script's name when started as one (``nbhelpers-afhq``),
    else ``python -m <module>``."""
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    if not name or name.endswith(".py") or name in ("-c", "-m") or name.startswith("python"):
        return f"python -m {module}"
    return name


def underscore_only_flags(parser: argparse.ArgumentParser) -> list[str]:
    """Option strings with an underscore but no dashed twin (the conventions above want none)."""
    names = {s for a in parser._actions for s in a.option_strings}
    return sorted(s for s in names if "_" in s and s.replace("_", "-") not in names)


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """``json.loads`` of a file, with one ``ValueError`` naming the file (missing, unreadable, truncated or not JSON)."""
    import json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{what} {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} cannot be read ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
                         f"restore it from git or delete it") from None


def tool_errors(main: Callable[..., int]) -> Callable[..., int]:
    """Wrap a command line's ``main``: an expected failure (a ``ValueError`` or ``OSError`` — a bad file, a
    folder that is a file, a missing input) prints one ``error:`` line and returns 2, never a traceback."""
    import functools

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> int:
        try:
            return main(*args, **kwargs)
        except (ValueError, OSError) as exc:
            where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            print(f"error: {text}{where}", file=sys.stderr)
            return 2
    return wrapped
