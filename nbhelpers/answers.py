"""Written answers whose numbers come from the run, and claims checked where they are made.

A measured number typed into Markdown is wrong the first time a profile, seed or device changes.
So an answer that cites a measurement is a template filled from the run's recorded metrics, and a
qualitative claim about a measurement ("the cosine schedule keeps the modes longer") is checked in
code beside it::

    run.answer('''**Answer (4c).** {linear/recognised:.0%} of the samples are recognised ...''',
               claims=[nb.answers.claim("every digit appears", cls_min > 0.04, f"rarest class {cls_min:.1%}")])

When a claim does not hold in this run, the rendered answer says so in a visible warning block
(and the run's metrics record it under ``claims/...``), instead of showing text that is wrong.
"""
from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

__all__ = ["Claim", "claim", "render", "template_keys", "failed_claims", "claim_key", "measured_numbers"]


@dataclass(frozen=True)
class Claim:
    """A statement about this run's measurements and whether the run supports it."""

    text: str
    holds: bool
    evidence: str = ""


def claim(text: str, holds: Any, evidence: str = "") -> Claim:
    """A checked claim: ``holds`` is evaluated from the run's numbers (a bool or a 0-d tensor)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"a claim needs its text, got {text!r}")
    return Claim(text.strip(), _truth(text, holds), str(evidence))


def _truth(text: str, holds: Any) -> bool:
    """A claim's check as a bool: a bool, NumPy bool or one-element tensor/array; a number counts as its
    truth, NaN as not holding (a measurement that failed supports nothing). Strings, None and
    containers are refused: ``'no'`` would otherwise count as holding."""
    import math

    import numpy as np
    import torch

    def bad(why: str) -> ValueError:
        return ValueError(f"the check of claim {text!r} must be a single truth value (a comparison of this run's "
                          f"numbers), got {holds!r}: {why}")

    value = holds
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if (value.size if isinstance(value, np.ndarray) else value.numel()) != 1:
            raise bad("it has more than one element (use .all() or .any())")
        if (value.is_complex() if isinstance(value, torch.Tensor) else np.iscomplexobj(value)):
            raise bad("a complex number is not a truth value")
        value = value.item()
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return False if math.isnan(float(value)) else bool(value)
    raise bad(f"a {type(holds).__name__} is not a truth value")


class _Values(dict):
    """Template values; a missing key is an error that lists the recorded ones."""

    def __missing__(self, key: str) -> Any:
        known = ", ".join(sorted(self)) or "none"
        raise ValueError(f"the answer cites {{{key}}}, which this run did not record; recorded: {known}")


def template_keys(template: str) -> list[str]:
    """The field names a template cites, in order (``{a/b:.2f}`` → ``a/b``)."""
    return [field for _, field, _, _ in string.Formatter().parse(template) if field]


def render(template: str, values: Mapping[str, Any] | None = None, claims: Iterable[Claim] = ()) -> str:
    """Fill ``{key:format}`` fields from ``values`` and append a warning for each claim that fails.

    Keys may contain ``/`` (metric names such as ``linear/recognised``). A value recorded as
    ``None`` (a metric that could not be measured here) renders as "n/a".
    """
    if not isinstance(template, str):
        raise ValueError(f"template must be a string, got {type(template).__name__}")
    vals = _Values(values or {})
    for key in template_keys(template):
        v = vals.get(key, 0)
        if v is None or isinstance(v, float) and v != v:  # not measured here, or NaN
            vals[key] = _NA
    text = template.format_map(vals)
    warnings = [c for c in claims if not c.holds]
    for c in warnings:
        ev = f" Measured: {c.evidence}." if c.evidence else ""
        text += (f"\n\n> ⚠️ **This run does not support the claim** “{c.text}”.{ev} The sentence above was "
                 f"written from a run that did; read it against this run's numbers.")
    return text


class _NotAvailable:
    """A value this run could not measure (recorded as None, or NaN): "n/a" however it is formatted."""

    def __format__(self, spec: str) -> str:
        return "n/a"

    def __str__(self) -> str:
        return "n/a"

    __repr__ = __str__


_NA = _NotAvailable()


def failed_claims(metrics: Mapping[str, Any]) -> list[str]:
    """The claims a run's recorded metrics mark as not supported."""
    return sorted(k[len("claims/"):] for k, v in metrics.items() if k.startswith("claims/") and v is False)


def claim_key(text: str) -> str:
    """A stable metric name for a claim: ``claims/<lower-case words joined by _>`` (≤ 60 chars; a longer
    text is cut and ends in 8 hex digits of its SHA-1, so two long claims that differ only past the cut get
    different names). Texts that differ only in case or punctuation share a name; ``run.answer`` refuses a
    second such claim in one run rather than let one overwrite the other."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if len(slug) > 60:  # cut, with a digest of the whole text, so two long claims never share a key
        import hashlib

        slug = slug[:51].rstrip("_") + "_" + hashlib.sha1(text.strip().encode()).hexdigest()[:8]
    return f"claims/{slug or 'claim'}"


# --------------------------------------------------------------------------- the prose rule
_MATH = re.compile(r"\$\$.*?\$\$|\$[^$\n]*\$", re.S)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_LINK = re.compile(r"\]\([^)]*\)")
_GENERATED = re.compile(r"<!-- (\S+):begin.*?<!-- \1:end -->", re.S)  # stamped by a tool, kept in sync by a test
_HEADING_NUMBER = re.compile(r"^(#+\s*)[\d.]+", re.M)  # "### 4.1 · …": a section number
_MEASURED = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s?(?:%|×(?!\s?\d))|(?<![\w.])(?![1-9]\.\d(?![\d]))\d+\.\d+(?![\w.])")


def measured_numbers(markdown: str) -> list[str]:
    """Numbers in Markdown prose that look measured: decimals, percentages and ×-ratios.

    Maths (``$…$``), code spans, link targets, section numbers of headings, task numbers such as
    (4.1, 5.2) — one digit on each side of the point —, sizes such as 28×28 and blocks stamped by a
    tool between ``<!-- name:begin … -->`` and ``<!-- name:end -->`` (the run-cost tables, generated
    from ``benchmarks/results`` and kept in step by a test) are left out: a formula's constants and a setting written as code are not measurements. Used by the test that keeps every measured
    number out of the notebooks' Markdown cells.
    """
    text = _LINK.sub("]()", _CODE.sub("", _MATH.sub("", _GENERATED.sub("", markdown))))
    text = _HEADING_NUMBER.sub(r"\1", text)
    return _MEASURED.findall(text)
