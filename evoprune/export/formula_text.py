"""The formula an export describes, with a text that re-parses to exactly it.

An export holds two forms of one formula: the sympy expression (printed as Python, LaTeX and unicode text) and a
string for `FORMULA` / the JSON file, which `evoprune prune --metric` parses again. Both must mean the same thing
bit for bit. The canonical string usually does, but not always: in the formula language `**` is the registry's
pow (|a|^c) and `/` the protected div, so sympy's signed `W**3` or a native quotient print as text that re-parses
differently. Then the text the expression was parsed from (a run's cache key: what its evaluator parsed) is kept.
"""

from __future__ import annotations

from typing import NamedTuple

import sympy

from evoprune.errors import EvopruneError
from evoprune.formula import FormulaError, canonical_string, parse_formula


class ExportFormula(NamedTuple):
    expr: sympy.Expr
    text: str  # parse_formula(text) == expr, structurally


def faithful_text(expr: sympy.Expr, source: str | None = None) -> str:
    """The canonical string when it re-parses to `expr`, else `source` (which must)."""
    canonical = canonical_string(expr)
    for text in (canonical, source):
        if text is not None and parse_formula(text) == expr:
            return text
    raise EvopruneError(f"formula {canonical!r} has no text that re-parses to it exactly; it cannot be exported")


def exportable(text: str) -> ExportFormula:
    """The formula exactly as `parse_formula(text)` means it (for a run: as its evaluator scored it)."""
    try:
        expr = parse_formula(text)
    except FormulaError as exc:
        raise EvopruneError(f"cannot export formula {text!r}: {exc}") from None
    return ExportFormula(expr, faithful_text(expr, text))
