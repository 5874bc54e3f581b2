"""The three export formats of one formula: a Python module (module_source.py), JSON (the canonical expression +
provenance; `evoprune prune --metric FILE.json` reads it back through the safe parser) and a LaTeX snippet."""

from __future__ import annotations

import json
from pathlib import Path

import sympy

from evoprune.errors import EvopruneError
from evoprune.export.module_source import module_source, ordered_leaves
from evoprune.export.provenance import describe, json_safe
from evoprune.formula import canonical_string, to_latex, to_text

FORMATS = ("python", "json", "latex")
SUFFIX_FORMAT = {".py": "python", ".json": "json", ".tex": "latex"}
JSON_KIND = "evoprune-metric"  # marks a metric file (and tells it apart from best.json or a report)
JSON_VERSION = 1


def choose_format(explicit: str | None, out: Path | None) -> str:
    """--format wins; otherwise the suffix of --out (.py, .json, .tex); otherwise python."""
    if explicit is not None:
        if explicit not in FORMATS:
            raise EvopruneError(f"unknown format {explicit!r} (use {', '.join(FORMATS)})")
        return explicit
    if out is not None and out.suffix in SUFFIX_FORMAT:
        return SUFFIX_FORMAT[out.suffix]
    return "python"


def json_payload(expr: sympy.Expr, record: dict | None) -> dict:
    return {"kind": JSON_KIND, "version": JSON_VERSION, "formula": canonical_string(expr),
            "leaves": list(ordered_leaves(expr)), "text": to_text(expr), "latex": to_latex(expr),
            "provenance": json_safe(record)}


def latex_snippet(expr: sympy.Expr, record: dict | None) -> str:
    """An equation ready for a paper, the provenance as LaTeX comments above it."""
    comments = [f"% evoprune metric: {canonical_string(expr)}"]
    comments += [f"% {line}" for line in describe(record)] if record is not None else []
    body = [r"\begin{equation}", rf"  S = {to_latex(expr)}", r"\end{equation}"]
    return "\n".join(comments + body) + "\n"


def render(expr: sympy.Expr, record: dict | None, fmt: str) -> str:
    if fmt == "python":
        return module_source(expr, record)
    if fmt == "json":
        return json.dumps(json_payload(expr, record), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    if fmt == "latex":
        return latex_snippet(expr, record)
    raise EvopruneError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
