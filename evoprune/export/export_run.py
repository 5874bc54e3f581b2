"""`evoprune export`: one formula of a run, rendered in one format, written without overwriting anything."""

from __future__ import annotations

from pathlib import Path

from evoprune.errors import EvopruneError
from evoprune.export.formats import render
from evoprune.export.formula_text import exportable
from evoprune.export.provenance import provenance, select_row
from evoprune.export.run_view import RunView
from evoprune.fitness.candidate import parse_candidate


def export_run(run: Path, rank: int, fmt: str) -> str:
    """The rank-th best formula of the run (1 = best) as text in `fmt` (python, json or latex)."""
    view = RunView.open(run)
    row = select_row(view, rank)
    key = row.get("canonical") or row["formula"]  # the cache key the run's evaluator parsed
    recipe = parse_candidate(key) if key.lstrip().startswith("{") else None  # a recipe search's row
    formula = exportable(recipe.score if recipe is not None else key)
    return render(formula, provenance(view, rank, row), fmt, recipe)


def check_out(out: Path, force: bool) -> None:
    """Refuse to replace an existing file unless --force (checked before any work is done)."""
    if out.is_dir():
        raise EvopruneError(f"--out {out} is a directory")
    if out.exists() and not force:
        raise EvopruneError(f"{out} exists (use --force to overwrite)")


def write_text(out: Path, text: str, force: bool) -> None:
    check_out(out, force)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
