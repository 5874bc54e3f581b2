"""The three export formats of one formula: a Python module (module_source.py), JSON (the canonical expression +
provenance; `evoprune prune --metric FILE.json` reads it back through the safe parser) and a LaTeX snippet."""

from __future__ import annotations

import json
from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.export.formula_text import ExportFormula
from evoprune.export.module_source import module_source, ordered_leaves
from evoprune.export.provenance import describe, json_safe, one_line
from evoprune.formula import to_latex, to_text
from evoprune.prune.recipe import Recipe

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


def json_payload(formula: ExportFormula, record: dict | None, recipe: Recipe | None = None) -> dict:
    """`formula` is the text `--metric FILE.json` parses (to exactly the exported expression); `recipe` (when the
    run evolved one) the stages `--metric FILE.json` applies with it; the rest is for people and other tools."""
    expr = formula.expr
    payload = {"kind": JSON_KIND, "version": JSON_VERSION, "formula": formula.text,
               "leaves": list(ordered_leaves(expr)), "text": to_text(expr), "latex": to_latex(expr),
               "provenance": json_safe(record)}
    if recipe is not None and not recipe.plain:
        payload["recipe"] = {**recipe.to_dict(), "score": formula.text}
    return payload


def latex_snippet(formula: ExportFormula, record: dict | None, recipe: Recipe | None = None) -> str:
    """An equation ready for a paper, the provenance (and the recipe's other stages) as LaTeX comments above it."""
    expr = formula.expr
    comments = [f"% evoprune metric: {one_line(formula.text)}"]  # describe() lines are one_line already
    if recipe is not None and not recipe.plain:
        comments += [f"% recipe {stage}: {one_line(str(value))}" for stage, value in recipe.to_dict().items()
                     if stage != "score"]
    comments += [f"% {line}" for line in describe(record)] if record is not None else []
    body = [r"\begin{equation}", rf"  S = {to_latex(expr)}", r"\end{equation}"]
    return "\n".join(comments + body) + "\n"


def render(formula: ExportFormula, record: dict | None, fmt: str, recipe: Recipe | None = None) -> str:
    if fmt == "python":
        return module_source(formula, record, recipe)
    if fmt == "json":
        return json.dumps(json_payload(formula, record, recipe), indent=2, ensure_ascii=False,
                          allow_nan=False) + "\n"
    if fmt == "latex":
        return latex_snippet(formula, record, recipe)
    raise EvopruneError(f"unknown format {fmt!r} (use {', '.join(FORMATS)})")
